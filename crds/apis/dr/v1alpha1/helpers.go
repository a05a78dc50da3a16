package v1alpha1

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// ImplicitStageName is the name of the one stage of a plan written with the workflowRef shorthand.
const ImplicitStageName = "default"

// EffectiveStages returns the plan's stages; the workflowRef shorthand is one stage running that
// one workflow.
func (s *DRPlanSpec) EffectiveStages() []Stage {
	if s.WorkflowRef != nil && len(s.Stages) == 0 {
		return []Stage{{Name: ImplicitStageName, Workflows: []StageWorkflow{{WorkflowRef: *s.WorkflowRef}}}}
	}
	return s.Stages
}

// NamespaceOr returns the reference's namespace, or def when it has none.
func (r ObjectReference) NamespaceOr(def string) string {
	if r.Namespace == "" {
		return def
	}
	return r.Namespace
}

// RefKey is the key of a namespaced reference, "namespace/name": the index key of the informers
// and the key of a snapshot's workflows (stored in executions' status: it must not change).
func RefKey(namespace, name string) string { return namespace + "/" + name }

// MaxActionDuration bounds every Duration: an action's timeouts and retry intervals. The CRD
// schema refuses more (the Duration type's rule), and so does validation.ValidateWorkflow, for
// workflows stored before.
const MaxActionDuration = 24 * time.Hour

// MaxParamValue bounds a parameter's value as a plan or an execution writes it (the schema's
// maxLength), and a default as validation.ValidateWorkflow reads it.
const MaxParamValue = 4096

// Parse returns the duration; an empty Duration is zero.
func (d Duration) Parse() (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	return time.ParseDuration(string(d))
}

// DeclaredParameters is the workflow's parameter declarations, never nil (none is an empty list):
// guards are type-checked against exactly these.
func (s *DRWorkflowSpec) DeclaredParameters() []Parameter {
	if s.Parameters == nil {
		return []Parameter{}
	}
	return s.Parameters
}

// ParameterNames lists the names of the workflow's parameters, in declaration order.
func (s *DRWorkflowSpec) ParameterNames() []string {
	names := make([]string, len(s.Parameters))
	for i, p := range s.Parameters {
		names[i] = p.Name
	}
	return names
}

// MaxPlanActions bounds the actions one run of a plan runs in all: the sum, over its stages'
// workflow entries, of each workflow's actions. Checked where a plan is validated (the webhook and
// the status sync) and again at start, so that every admitted plan's execution status fits in its
// object (docs/execution.md).
const MaxPlanActions = 2000

// PlanActions counts the actions a run of spec (of namespace) runs, finding workflows with get;
// a workflow get cannot find counts none.
func PlanActions(namespace string, spec *DRPlanSpec, get func(namespace, name string) (*DRWorkflowSpec, bool)) int {
	n := 0
	for _, s := range spec.EffectiveStages() {
		for _, sw := range s.Workflows {
			if wf, ok := get(sw.WorkflowRef.NamespaceOr(namespace), sw.WorkflowRef.Name); ok {
				n += len(wf.Actions)
			}
		}
	}
	return n
}

// TruncatedTail ends a status text that was cut to size.
const TruncatedTail = "... (truncated)"

// TruncateText cuts s, a text a status shows, to at most limit bytes, TruncatedTail included, on
// a rune boundary; a limit too small for the tail leaves only the tail's first limit bytes.
func TruncateText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	if limit <= len(TruncatedTail) {
		return TruncatedTail[:max(limit, 0)]
	}
	cut := limit - len(TruncatedTail)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + TruncatedTail
}

// ID names the action in its run: "<stage>/<workflowIndex>/<action>". Runners derive the names
// of what they make from it, so it never changes.
func (a ActionStatus) ID() string {
	return a.Stage + "/" + strconv.Itoa(int(a.WorkflowIndex)) + "/" + a.Name
}
