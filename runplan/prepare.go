package runplan

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/templates"
)

// Prepared is a run ready to go: its plan of stages, every action rendered, and the parameter
// values to show. Nothing in it changes during the run.
type Prepared struct {
	PlanName string
	Plan     *rules.RunPlan
	// Actions are the run's actions, by flat index (as in the status's actionStatuses).
	Actions []Action
	// Params shows the values common to every workflow entry; PerWorkflow[stage][workflow]
	// shows the values of an entry that differ from Params.
	Params      map[string]string
	PerWorkflow [][]map[string]string
	// Redact scrubs the Secret-sourced values from messages and outputs.
	Redact *strings.Replacer
	// MadeBy, in a Revert, is the run whose objects it undoes: the first run of the chain, whose
	// name and UID the chain's objects carry.
	MadeBy *drv1.ExecutionIdentity
}

// Action is one action of a run, ready to go.
type Action struct {
	// Body is the rendered action.
	Body drv1.ActionBody
	// Wait is its waitFor condition (nil: none).
	Wait *WaitSpec
	// Rollback is its rendered rollback (nil: none); a Revert runs it.
	Rollback *drv1.ActionBody
	// Undo, in a Revert, is the object to delete instead of running Body: exactly the one the
	// reverted execution created (nil: run Body). Without a UID it is an object an interrupted
	// Create may have made: found by name (empty: the name generated from Body's generateName
	// and UndoID) and deleted only if it carries MadeBy's labels.
	Undo *drv1.ResourceReference
	// UndoID, in a Revert, is the ID of the action undone (drv1.ActionStatus.ID) as it ran.
	UndoID string
}

// WaitSpec is an action's compiled waitFor, with the parameters its condition sees.
type WaitSpec struct {
	Cond    *rules.Program
	Timeout time.Duration
	Params  map[string]any
}

// Prepare resolves the parameters of every workflow entry of the snapshot and renders every
// action of exec, before any side effect: a missing required parameter or a template error fails
// the run with a message naming the stage, the workflow and the field. start is the run's start,
// its templates' .timestamp.
func Prepare(exec *drv1.DRPlanExecution, snap *Snapshot, read rules.SecretReader, start time.Time, decide *rules.Rules) (*Prepared, error) {
	if n := drv1.PlanActions(snap.Namespace, &snap.Plan, func(ns, name string) (*drv1.DRWorkflowSpec, bool) {
		wf, ok := snap.Workflows[drv1.RefKey(ns, name)]
		return &wf, ok
	}); n > drv1.MaxPlanActions {
		return nil, fmt.Errorf("the plan runs %d actions in all (the sum over its stages' workflows), over the limit of %d", n, drv1.MaxPlanActions)
	}
	stages := snap.Plan.EffectiveStages()
	dag, errs := rules.StageDAG(field.NewPath("spec", "stages"), stages)
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	b := &preparation{exec: exec, snap: snap, read: read, timestamp: start.UTC().Format(time.RFC3339), decide: decide,
		p: &Prepared{PlanName: snap.PlanName}}
	runStages := make([]rules.RunStage, len(stages))
	for si, s := range stages {
		var err error
		if runStages[si], err = b.stage(s); err != nil {
			// A value read from a Secret may be in the error (a URL that is not one, say): the
			// message goes to the status and an event.
			return nil, &scrubbed{msg: redactor(b.secrets).Replace(err.Error()), err: err}
		}
	}
	return b.finish(dag, runStages), nil
}

// scrubbed is an error whose message has the Secret-sourced values redacted; it still unwraps
// to the error it was made from.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// redactor scrubs each Secret-sourced value from a text, as written and as JSON, a Go quote or a
// URL escape write it (an error quoting a value, an endpoint echoing it in JSON).
func redactor(secrets []string) *strings.Replacer {
	var pairs []string
	seen := map[string]bool{}
	for _, s := range secrets {
		q, _ := json.Marshal(s) // a string always marshals
		for _, form := range []string{s, string(q[1 : len(q)-1]), strings.Trim(strconv.Quote(s), `"`), url.QueryEscape(s), url.PathEscape(s)} {
			if form != "" && !seen[form] {
				seen[form] = true
				pairs = append(pairs, form, rules.Redacted)
			}
		}
	}
	return strings.NewReplacer(pairs...)
}

// preparation is Prepare's state while it goes through the stages: the run taking shape, and
// what every workflow entry resolved, in order.
type preparation struct {
	exec      *drv1.DRPlanExecution
	snap      *Snapshot
	read      rules.SecretReader
	timestamp string
	decide    *rules.Rules

	p        *Prepared
	displays []map[string]string // per workflow entry
	values   []map[string]any    // per workflow entry
	secrets  []string
	rendered int // bytes of JSON the actions rendered so far
}

// stage prepares one stage and its workflow entries.
func (b *preparation) stage(s drv1.Stage) (rules.RunStage, error) {
	rs := rules.RunStage{Name: s.Name, Parallel: s.Parallel, DependsOn: s.DependsOn}
	var err error
	if rs.When, err = b.guard(fmt.Sprintf("stage %q", s.Name), s.When, nil); err != nil {
		return rs, err
	}
	b.p.PerWorkflow = append(b.p.PerWorkflow, make([]map[string]string, len(s.Workflows)))
	for wi, sw := range s.Workflows {
		where := fmt.Sprintf("stage %q, workflow %d (DRWorkflow %s/%s)", s.Name, wi, sw.WorkflowRef.NamespaceOr(b.snap.Namespace), sw.WorkflowRef.Name)
		rw, err := b.workflow(where, sw)
		if err != nil {
			return rs, err
		}
		rs.Workflows = append(rs.Workflows, rw)
	}
	return rs, nil
}

// workflow resolves a workflow entry's parameters and prepares its actions.
func (b *preparation) workflow(where string, sw drv1.StageWorkflow) (rules.RunWorkflow, error) {
	wf, ok := b.snap.Workflow(sw.WorkflowRef)
	if !ok {
		return rules.RunWorkflow{}, fmt.Errorf("%s: not in the snapshot", where)
	}
	resolved, err := rules.ResolveParams(wf.Parameters, b.read, rules.SourcesOf(&b.snap.Plan, sw, b.exec.Spec.Params))
	if err != nil {
		return rules.RunWorkflow{}, fmt.Errorf("%s: %w", where, err)
	}
	b.displays = append(b.displays, resolved.Display)
	b.values = append(b.values, resolved.Values)
	b.secrets = append(b.secrets, resolved.Secrets...)
	data := templates.TemplateData{Params: resolved.Values, PlanName: b.snap.PlanName,
		ExecutionName: b.exec.Name, Namespace: b.exec.Namespace, Timestamp: b.timestamp}
	rw := rules.RunWorkflow{Ref: sw.WorkflowRef, FailurePolicy: wf.FailurePolicy, Params: resolved.Values}
	declared := wf.DeclaredParameters()
	if rw.When, err = b.guard(where, sw.When, declared); err != nil {
		return rw, err
	}
	for ai, a := range wf.Actions {
		when, err := b.action(fmt.Sprintf("%s: spec.actions[%d] (%s)", where, ai, a.Name), a, data, declared)
		if err != nil {
			return rw, err
		}
		rw.Actions = append(rw.Actions, a.Name)
		rw.ActionWhen = append(rw.ActionWhen, when)
	}
	return rw, nil
}

// action renders an action, its rollback and its waitFor, and returns its compiled when.
func (b *preparation) action(where string, a drv1.Action, data templates.TemplateData, declared []drv1.Parameter) (*rules.Program, error) {
	body, err := templates.RenderBody(a.ActionBody, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	when, err := b.guard(where, a.When, declared)
	if err != nil {
		return nil, err
	}
	wait, err := newWaitSpec(where, a.WaitFor, b.decide, data.Params, declared)
	if err != nil {
		return nil, err
	}
	var rollback *drv1.ActionBody
	if a.Rollback != nil {
		rb, err := templates.RenderBody(a.Rollback.ActionBody, data)
		if err != nil {
			return nil, fmt.Errorf("%s.rollback: %w", where, err)
		}
		rollback = &rb
	}
	if err := b.count(where, body, rollback); err != nil {
		return nil, err
	}
	b.p.Actions = append(b.p.Actions, Action{Body: body, Wait: wait, Rollback: rollback})
	return when, nil
}

// MaxRenderedRun bounds what a run's actions render to in all (each one renders to at most
// templates.MaxRenderedBytes a text): a run keeps them until it ends.
const MaxRenderedRun = 16 << 20

// count adds an action's rendering to the run's total, and refuses it past MaxRenderedRun.
func (b *preparation) count(where string, body drv1.ActionBody, rollback *drv1.ActionBody) error {
	for _, x := range []any{body, rollback} {
		raw, err := json.Marshal(x)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if b.rendered += len(raw); b.rendered > MaxRenderedRun {
			return fmt.Errorf("%s: the run's actions render to more than %d MiB in all: split the plan", where, MaxRenderedRun>>20)
		}
	}
	return nil
}

// guard compiles a when expression; an empty one is nil (always true).
func (b *preparation) guard(where, expr string, declared []drv1.Parameter) (*rules.Program, error) {
	if expr == "" {
		return nil, nil
	}
	prg, err := b.decide.Env.CompileGuard(expr, declared)
	if err != nil {
		return nil, fmt.Errorf("%s: when: %w", where, err)
	}
	return prg, nil
}

// finish builds the run's plan of stages and the parameters to show, and the redaction of the
// Secret-sourced values.
func (b *preparation) finish(dag *rules.DAG, runStages []rules.RunStage) *Prepared {
	p, exec, snap := b.p, b.exec, b.snap
	common := agreed(b.values)
	for si := range runStages {
		runStages[si].Params = common
	}
	p.Plan = rules.NewRunPlan(b.decide, snap.Plan.FailurePolicy, dag, runStages)
	p.Plan.PlanName, p.Plan.ExecutionName, p.Plan.Namespace, p.Plan.Operation = snap.PlanName, exec.Name, exec.Namespace, exec.Spec.Operation
	p.Params = firstKeys(agreed(b.displays), maxShownParams)
	i, total := 0, shownSize(p.Params)
	for si := range p.PerWorkflow {
		for wi := range p.PerWorkflow[si] {
			d := differing(b.displays[i], p.Params)
			if total += shownSize(d); total > maxShownTotal && d != nil {
				d = map[string]string{NotShown: fmt.Sprintf("%d values of this workflow entry not shown: the run shows at most %d KiB of values", len(d), maxShownTotal>>10)}
			}
			p.PerWorkflow[si][wi] = cutValues(d)
			i++
		}
	}
	p.Params = cutValues(p.Params)
	p.Redact = redactor(b.secrets)
	return p
}

// What a run shows of its parameter values (status.resolvedParams, and each workflow entry's) is
// bounded: each value to maxShownValue bytes, the run's own map to maxShownParams names (the
// schema's), and all of them to about maxShownTotal bytes, past which a workflow entry shows only
// NotShown. The run itself uses the values whole.
const (
	maxShownValue  = 256
	maxShownParams = 256
	maxShownTotal  = 128 << 10
	// NotShown is the one name a workflow entry's values show when they are not shown.
	NotShown = "..."
)

// firstKeys keeps the first n names of m, in order.
func firstKeys(m map[string]string, n int) map[string]string {
	if len(m) <= n {
		return m
	}
	keys := slices.Sorted(maps.Keys(m))
	for _, k := range keys[n:] {
		delete(m, k)
	}
	return m
}

// shownSize is what m's values take when cut to maxShownValue.
func shownSize(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + min(len(v), maxShownValue)
	}
	return n
}

// cutValues cuts m's values to maxShownValue bytes.
func cutValues(m map[string]string) map[string]string {
	for k, v := range m {
		m[k] = drv1.TruncateText(v, maxShownValue)
	}
	return m
}

// agreed keeps the values that every map holding the name agrees on: the execution's flat
// resolvedParams (display text) and what stage guards see as params (typed values, which are
// strings, int64s and bools, so comparable).
func agreed[V comparable](maps []map[string]V) map[string]V {
	common := map[string]V{}
	conflict := map[string]bool{}
	for _, m := range maps {
		for k, v := range m {
			if prev, seen := common[k]; seen && prev != v {
				conflict[k] = true
			}
			common[k] = v
		}
	}
	for k := range conflict {
		delete(common, k)
	}
	return common
}

func differing(d, common map[string]string) map[string]string {
	var out map[string]string
	for k, v := range d {
		if c, ok := common[k]; !ok || c != v {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func newWaitSpec(where string, w *drv1.WaitFor, decide *rules.Rules, params map[string]any, declared []drv1.Parameter) (*WaitSpec, error) {
	if w == nil {
		return nil, nil
	}
	cond, err := decide.Env.CompileGuard(w.Condition, declared)
	if err != nil {
		return nil, fmt.Errorf("%s: waitFor.condition: %w", where, err)
	}
	timeout, err := w.Timeout.Parse()
	if err != nil {
		return nil, fmt.Errorf("%s: waitFor.timeout: %w", where, err)
	}
	return &WaitSpec{Cond: cond, Timeout: timeout, Params: params}, nil
}
