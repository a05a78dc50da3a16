// Package validation holds the static checks of workflows and plans: what makes them Invalid, each
// error at its field. The webhook, the controller's status sync and offline tools share them.
package validation

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
	"github.com/bkbcs/drplan-controller/templates"
)

// ValidateWorkflow checks what the schema cannot: parameter defaults convert to their type,
// templates parse and name declared parameters, guards compile in env, each action type has the
// fields its operation needs, and manifests are single objects the runners can use. Rules the
// CRD schema already enforces are not repeated here.
func ValidateWorkflow(env *rules.Env, wf *drv1.DRWorkflow) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	declared, names := wf.Spec.DeclaredParameters(), wf.Spec.ParameterNames()
	for i, p := range wf.Spec.Parameters {
		if p.Default == nil {
			continue
		}
		path := spec.Child("parameters").Index(i).Child("default")
		s, err := rules.DefaultString(p.Default)
		if err == nil && len(s) > drv1.MaxParamValue {
			err = fmt.Errorf("the default is %d characters, over the %d a parameter's value may have", len(s), drv1.MaxParamValue)
		}
		if err == nil {
			_, err = rules.ConvertParam(p.Type, s)
		}
		if err != nil {
			errs = append(errs, field.Invalid(path, string(p.Default.Raw), err.Error()+
				fmt.Sprintf(": give a default of type %s or change the parameter's type", rules.TypeName(p.Type))))
		}
	}
	placeholders := placeholderParams(wf.Spec.Parameters)
	for i := range wf.Spec.Actions {
		a := &wf.Spec.Actions[i]
		path := spec.Child("actions").Index(i)
		errs = append(errs, validateGuard(env, path.Child("when"), a.When, declared)...)
		if a.WaitFor != nil {
			errs = append(errs, validateGuard(env, path.Child("waitFor", "condition"), a.WaitFor.Condition, declared)...)
		}
		errs = append(errs, validateBody(env, path, &a.ActionBody, names, placeholders)...)
		if a.Rollback != nil {
			errs = append(errs, validateBody(env, path.Child("rollback"), &a.Rollback.ActionBody, names, placeholders)...)
		}
		errs = append(errs, validateDurations(path, a)...)
	}
	return errs
}

// validateDurations refuses a duration of the action (its body's, its wait's and its rollback's)
// that does not parse or is over drv1.MaxActionDuration. The schema refuses them too; this finds
// workflows stored before it did.
func validateDurations(path *field.Path, a *drv1.Action) field.ErrorList {
	all := timings(path, &a.ActionBody)
	if a.WaitFor != nil {
		all = append(all, timing{path.Child("waitFor", "timeout"), a.WaitFor.Timeout})
	}
	if a.Rollback != nil {
		all = append(all, timings(path.Child("rollback"), &a.Rollback.ActionBody)...)
	}
	var errs field.ErrorList
	for _, t := range all {
		switch d, err := t.d.Parse(); {
		case err != nil:
			errs = append(errs, field.Invalid(t.path, string(t.d), "must be a duration such as 30s, 5m or 1h30m"))
		case d > drv1.MaxActionDuration:
			errs = append(errs, field.Invalid(t.path, string(t.d), fmt.Sprintf("must be at most %dh", int(drv1.MaxActionDuration.Hours()))))
		}
	}
	return errs
}

// timing is a duration field and where it is.
type timing struct {
	path *field.Path
	d    drv1.Duration
}

// timings are the durations of an action body at path.
func timings(path *field.Path, b *drv1.ActionBody) []timing {
	var out []timing
	if h := b.HTTP; h != nil {
		out = append(out, timing{path.Child("http", "timeout"), h.Timeout})
		if h.Retry != nil {
			out = append(out, timing{path.Child("http", "retry", "interval"), h.Retry.Interval},
				timing{path.Child("http", "retry", "maxInterval"), h.Retry.MaxInterval})
		}
	}
	if b.Job != nil {
		out = append(out, timing{path.Child("job", "timeout"), b.Job.Timeout})
	}
	return out
}

func validateBody(env *rules.Env, path *field.Path, b *drv1.ActionBody, declared []string, placeholders map[string]any) field.ErrorList {
	errs := templates.CheckBody(path, b, declared)
	if b.HTTP != nil {
		errs = append(errs, validateGuard(env, path.Child("http", "successCondition"), b.HTTP.SuccessCondition, []drv1.Parameter{})...)
	}
	if len(errs) > 0 {
		return errs // the checks below render templates: only meaningful once those are sound
	}
	switch b.Type {
	case drv1.ActionTypeJob:
		if b.Job != nil {
			errs = append(errs, validateJobTemplate(path.Child("job", "template"), b.Job, placeholders)...)
		}
	case drv1.ActionTypeLocalization:
		if l := b.Localization; l != nil {
			p := path.Child("localization")
			if l.Namespace == "" && l.ClusterNamespace == "" {
				errs = append(errs, field.Required(p.Child("namespace"), "the ManagedCluster namespace (clusternet-xxxxx) the Localization lives in"))
			}
			if l.Operation == "Create" && l.Feed == nil {
				errs = append(errs, field.Required(p.Child("feed"), "a Localization Create needs the feed it customises"))
			}
			if l.Operation != "Delete" && len(l.Overrides) == 0 {
				errs = append(errs, field.Required(p.Child("overrides"), "a Localization "+string(l.Operation)+" needs at least one override"))
			}
			errs = append(errs, validateOverrides(p.Child("overrides"), l)...)
		}
	case drv1.ActionTypeSubscription:
		if s := b.Subscription; s != nil && s.Operation == "Create" {
			p := path.Child("subscription")
			if len(s.Feeds) == 0 {
				errs = append(errs, field.Required(p.Child("feeds"), "a Subscription Create needs the feeds to distribute"))
			}
			if len(s.Subscribers) == 0 {
				errs = append(errs, field.Required(p.Child("subscribers"), "a Subscription Create needs subscribers that select clusters"))
			}
		}
	case drv1.ActionTypeKubernetesResource:
		if b.Resource != nil {
			errs = append(errs, validateManifest(path.Child("resource", "manifest"), b.Resource, placeholders)...)
		}
	}
	return errs
}

// placeholderParams gives every declared parameter a value of its type, so that templates can be
// rendered to check the shape of what they produce.
func placeholderParams(params []drv1.Parameter) map[string]any {
	out := make(map[string]any, len(params))
	for _, p := range params {
		switch p.Type {
		case drv1.ParameterTypeInt:
			out[p.Name] = int64(1)
		case drv1.ParameterTypeBool:
			out[p.Name] = true
		default:
			out[p.Name] = "placeholder"
		}
	}
	return out
}

func renderPlaceholder(text string, params map[string]any) (string, error) {
	return templates.Render(text, templates.TemplateData{
		Params: params, PlanName: "plan", ExecutionName: "execution", Namespace: "default",
		Timestamp: "2006-01-02T15:04:05Z",
	})
}

// validateManifest renders a manifest with placeholder values and checks it as the runner will.
func validateManifest(path *field.Path, r *drv1.ResourceAction, params map[string]any) field.ErrorList {
	rendered, err := renderPlaceholder(r.Manifest, params)
	if err != nil {
		return field.ErrorList{field.Invalid(path, r.Manifest, err.Error())}
	}
	if _, ferr := templates.CheckManifest(path, rendered, r.Operation); ferr != nil {
		return field.ErrorList{ferr}
	}
	return nil
}

func validateJobTemplate(path *field.Path, job *drv1.JobAction, params map[string]any) field.ErrorList {
	rendered, err := renderPlaceholder(string(job.Template.Raw), params)
	if err != nil {
		return field.ErrorList{field.Invalid(path, "<template>", err.Error())}
	}
	var tmpl struct {
		Spec struct {
			Containers []json.RawMessage `json:"containers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(rendered), &tmpl); err != nil {
		return field.ErrorList{field.Invalid(path, "<template>", "not a pod template: "+err.Error())}
	}
	if len(tmpl.Spec.Containers) == 0 {
		return field.ErrorList{field.Required(path.Child("spec", "containers"), "a Job's pod template needs at least one container")}
	}
	return nil
}

// WorkflowGetter finds the workflows a plan references.
type WorkflowGetter interface {
	// GetWorkflow returns the workflow, or false when it does not exist.
	GetWorkflow(namespace, name string) (*drv1.DRWorkflow, bool)
}

// PlanReport is what ValidatePlan found.
type PlanReport struct {
	// Errors are mistakes in the plan itself; the plan cannot run.
	Errors field.ErrorList
	// Unresolved are referenced workflows that are missing or Invalid; the plan cannot run until
	// they are fixed, but admission lets such a plan in (with a warning) so that a directory of
	// manifests applies in any order.
	Unresolved []string
	// MissingParams are required parameters the plan leaves without a value and does not name in
	// spec.executionParams: each is also in Errors (the plan is Invalid).
	MissingParams []MissingParam
	// DAG is the plan's stage graph, when the stages are sound.
	DAG *rules.DAG
}

// MissingParam is a required parameter without a value, and where it is needed.
type MissingParam struct {
	Name     string
	Stage    string
	Workflow string // namespace/name
	// Path is where the plan would give it a value: the workflow entry's params, or
	// spec.globalParams for a plan of one workflowRef.
	Path *field.Path
}

func (m MissingParam) String() string {
	return fmt.Sprintf("%s (stage %q, DRWorkflow %s)", m.Name, m.Stage, m.Workflow)
}

// ValidatePlan checks a plan's stages (their guards compiled in env) and, against the workflows it
// references, its parameters.
func ValidatePlan(env *rules.Env, plan *drv1.DRPlan, workflows WorkflowGetter) PlanReport {
	var r PlanReport
	spec := field.NewPath("spec")
	stagesPath := spec.Child("stages")
	if plan.Spec.WorkflowRef != nil && len(plan.Spec.Stages) == 0 {
		stagesPath = spec // the shorthand: errors point at spec.workflowRef
	}
	stages := plan.Spec.EffectiveStages()
	r.DAG, r.Errors = rules.StageDAG(stagesPath, stages)
	for i, s := range plan.Spec.Stages {
		r.Errors = append(r.Errors, validateGuard(env, stagesPath.Index(i).Child("when"), s.When, nil)...)
		for j, sw := range s.Workflows {
			var declared []drv1.Parameter // unknown until the workflow exists
			if wf, ok := workflows.GetWorkflow(sw.WorkflowRef.NamespaceOr(plan.Namespace), sw.WorkflowRef.Name); ok {
				declared = wf.Spec.DeclaredParameters()
			}
			r.Errors = append(r.Errors, validateGuard(env, stagesPath.Index(i).Child("workflows").Index(j).Child("when"), sw.When, declared)...)
		}
	}

	for i, s := range stages {
		for j, sw := range s.Workflows {
			wfPath := stagesPath.Index(i).Child("workflows").Index(j)
			if stagesPath == spec {
				wfPath = spec.Child("workflowRef")
			}
			wf, unresolved := resolveWorkflow(workflows, plan.Namespace, sw.WorkflowRef)
			if unresolved != "" {
				r.Unresolved = append(r.Unresolved, unresolved)
				continue
			}
			r.Errors = append(r.Errors, entryParams(plan, sw, wf, wfPath)...)
		}
	}
	if n := drv1.PlanActions(plan.Namespace, &plan.Spec, func(ns, name string) (*drv1.DRWorkflowSpec, bool) {
		wf, ok := workflows.GetWorkflow(ns, name)
		if !ok {
			return nil, false
		}
		return &wf.Spec, true
	}); n > drv1.MaxPlanActions {
		r.Errors = append(r.Errors, field.Forbidden(stagesPath, fmt.Sprintf(
			"the plan runs %d actions in all (the sum over its stages' workflows), over the limit of %d: split it into several plans", n, drv1.MaxPlanActions)))
	}
	if err := runplan.CheckSnapshotSize(plan, workflows); err != nil {
		r.Errors = append(r.Errors, field.Forbidden(stagesPath, err.Error()))
	}
	r.MissingParams = unlisted(MissingParams(plan, workflows, nil), plan.Spec.ExecutionParams)
	r.Errors = append(r.Errors, missingErrors(r.MissingParams)...)
	r.Errors = append(r.Errors, executionParamsDeclared(plan, workflows)...)
	// A workflow used several times, or a global value it refuses, is reported once.
	r.Errors = dedupe(r.Errors, func(e *field.Error) string { return e.Error() })
	r.Unresolved = dedupe(r.Unresolved, func(s string) string { return s })
	return r
}

// resolveWorkflow finds a workflow entry's workflow, or says why it cannot run: it is missing or
// Invalid.
func resolveWorkflow(workflows WorkflowGetter, planNamespace string, ref drv1.ObjectReference) (*drv1.DRWorkflow, string) {
	ns := ref.NamespaceOr(planNamespace)
	wf, ok := workflows.GetWorkflow(ns, ref.Name)
	switch {
	case !ok:
		return nil, fmt.Sprintf("DRWorkflow %s/%s not found", ns, ref.Name)
	case wf.Status.Phase == drv1.WorkflowInvalid:
		return nil, fmt.Sprintf("DRWorkflow %s/%s is Invalid: %s", ns, ref.Name, wf.Status.Message)
	}
	return wf, ""
}

// entryParams checks the values of a workflow entry (at wfPath) against wf's declarations: its
// params must be declared and convert to their types, and so must the globalParams it takes.
func entryParams(plan *drv1.DRPlan, sw drv1.StageWorkflow, wf *drv1.DRWorkflow, wfPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	ref := drv1.RefKey(sw.WorkflowRef.NamespaceOr(plan.Namespace), sw.WorkflowRef.Name)
	decl := map[string]drv1.Parameter{}
	for _, p := range wf.Spec.Parameters {
		decl[p.Name] = p
	}
	for k, p := range sw.Params {
		pp := wfPath.Child("params").Index(k)
		d, known := decl[p.Name]
		if !known {
			errs = append(errs, field.Invalid(pp.Child("name"), p.Name, fmt.Sprintf(
				"DRWorkflow %s declares no parameter %q%s", ref, p.Name, rules.DidYouMean(p.Name, wf.Spec.ParameterNames()))))
			continue
		}
		if _, err := rules.ConvertParam(d.Type, p.Value); p.ValueFrom == nil && err != nil { // a Secret's value is checked when read
			errs = append(errs, field.Invalid(pp.Child("value"), p.Value, err.Error()+" (parameter "+p.Name+" is declared "+rules.TypeName(d.Type)+")"))
		}
	}
	src := rules.SourcesOf(&plan.Spec, sw, nil)
	for k, p := range plan.Spec.GlobalParams {
		d, known := decl[p.Name]
		if _, from, _ := src.Lookup(p.Name); !known || p.ValueFrom != nil || from != (rules.ParamSource{Layer: rules.LayerGlobal, Index: k}) {
			continue // not this workflow's, a Secret's (checked when read), or overridden
		}
		if _, err := rules.ConvertParam(d.Type, p.Value); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("spec", "globalParams").Index(k).Child("value"), p.Value,
				fmt.Sprintf("%s (DRWorkflow %s declares %s as %s)", err, ref, p.Name, rules.TypeName(d.Type))))
		}
	}
	return errs
}

// MissingParams lists the required parameters that no layer of values (rules.ParamLayer) and no
// default sets, for each workflow entry of plan whose workflow is found and not Invalid, given
// the execution's own values (nil: before there is an execution).
func MissingParams(plan *drv1.DRPlan, workflows WorkflowGetter, execParams []drv1.ParamValue) []MissingParam {
	var missing []MissingParam
	for i, s := range plan.Spec.EffectiveStages() {
		for j, sw := range s.Workflows {
			wf, unresolved := resolveWorkflow(workflows, plan.Namespace, sw.WorkflowRef)
			if unresolved != "" {
				continue
			}
			path := field.NewPath("spec", "globalParams") // the workflowRef shorthand has no params of its own
			if len(plan.Spec.Stages) > 0 {
				path = field.NewPath("spec", "stages").Index(i).Child("workflows").Index(j).Child("params")
			}
			src := rules.SourcesOf(&plan.Spec, sw, execParams)
			for _, p := range wf.Spec.Parameters {
				if _, _, set := src.Lookup(p.Name); p.Required && p.Default == nil && !set {
					missing = append(missing, MissingParam{Name: p.Name, Stage: s.Name, Path: path,
						Workflow: drv1.RefKey(sw.WorkflowRef.NamespaceOr(plan.Namespace), sw.WorkflowRef.Name)})
				}
			}
		}
	}
	return dedupe(missing, MissingParam.String)
}

func dedupe[T any](items []T, key func(T) string) []T {
	seen := map[string]bool{}
	out := items[:0]
	for _, x := range items {
		if k := key(x); !seen[k] {
			seen[k] = true
			out = append(out, x)
		}
	}
	return out
}

// validateGuard compiles a guard or condition in env: a CEL expression over the guard variables
// that evaluates to bool, reading only declared parameters (nil: not known). The error carries
// cel-go's message with the position.
func validateGuard(env *rules.Env, path *field.Path, expr string, declared []drv1.Parameter) field.ErrorList {
	if expr == "" {
		return nil
	}
	if _, err := env.CompileGuard(expr, declared); err != nil {
		return field.ErrorList{field.Invalid(path, expr, err.Error())}
	}
	return nil
}
