package controller

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/templates"
)

// prepared is a run ready to go: its plan of stages, every action rendered, and the parameter
// values to show.
type prepared struct {
	planName string
	plan     *rules.RunPlan
	// bodies are the rendered actions, by flat index.
	bodies []drv1.ActionBody
	// waits are the actions' waitFor conditions, by flat index (nil: none).
	waits []*waitSpec
	// rollbacks are the actions' rendered rollbacks, by flat index (nil: none); a Revert runs them.
	rollbacks []*drv1.ActionBody
	// undo, in a Revert, names by flat index the object to delete instead of running the body:
	// exactly the one the reverted execution created (nil: run the body).
	undo []*drv1.ResourceReference
	// params shows the values common to every workflow entry; perWorkflow[stage][workflow]
	// shows the values of an entry that differ from params.
	params      map[string]string
	perWorkflow [][]map[string]string
	redact      *strings.Replacer
}

// prepare resolves the parameters of every workflow entry of the snapshot and renders every
// action, before any side effect: a missing required parameter or a template error fails the
// run with a message naming the stage, the workflow and the field.
func prepare(exec *drv1.DRPlanExecution, snap *snapshotData, read rules.SecretReader, timestamp string, decide *rules.Rules) (*prepared, error) {
	stages := snap.Plan.EffectiveStages()
	nodes := make([]rules.Node, len(stages))
	for i, s := range stages {
		nodes[i] = rules.Node{Name: s.Name, DependsOn: s.DependsOn}
	}
	dag, errs := rules.NewDAG(field.NewPath("spec", "stages"), nodes)
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	p := &prepared{planName: snap.PlanName}
	runStages := make([]rules.RunStage, len(stages))
	var displays []map[string]string
	var values []map[string]any
	var secrets []string
	guard := func(where, expr string, declared []drv1.Parameter) (*rules.Program, error) {
		if expr == "" {
			return nil, nil
		}
		prg, err := decide.Env.CompileGuard(expr, declared)
		if err != nil {
			return nil, fmt.Errorf("%s: when: %w", where, err)
		}
		return prg, nil
	}
	for si, s := range stages {
		runStages[si] = rules.RunStage{Name: s.Name, Parallel: s.Parallel, DependsOn: s.DependsOn}
		var err error
		if runStages[si].When, err = guard(fmt.Sprintf("stage %q", s.Name), s.When, nil); err != nil {
			return nil, err
		}
		p.perWorkflow = append(p.perWorkflow, make([]map[string]string, len(s.Workflows)))
		for wi, sw := range s.Workflows {
			where := fmt.Sprintf("stage %q, workflow %d (DRWorkflow %s/%s)", s.Name, wi, sw.WorkflowRef.NamespaceOr(snap.Namespace), sw.WorkflowRef.Name)
			wf, ok := snap.workflow(sw.WorkflowRef)
			if !ok {
				return nil, fmt.Errorf("%s: not in the snapshot", where)
			}
			resolved, err := rules.ResolveParams(wf.Parameters, read, snap.Plan.GlobalParams, sw.Params, exec.Spec.Params)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			displays = append(displays, resolved.Display)
			values = append(values, resolved.Values)
			secrets = append(secrets, resolved.Secrets...)
			data := templates.TemplateData{Params: resolved.Values, PlanName: snap.PlanName,
				ExecutionName: exec.Name, Namespace: exec.Namespace, Timestamp: timestamp}
			rw := rules.RunWorkflow{Ref: sw.WorkflowRef, FailurePolicy: wf.FailurePolicy, Params: resolved.Values}
			declared := wf.DeclaredParameters()
			if rw.When, err = guard(where, sw.When, declared); err != nil {
				return nil, err
			}
			for ai, a := range wf.Actions {
				body, err := templates.RenderBody(a.ActionBody, data)
				if err != nil {
					return nil, fmt.Errorf("%s: spec.actions[%d] (%s): %w", where, ai, a.Name, err)
				}
				when, err := guard(fmt.Sprintf("%s: spec.actions[%d] (%s)", where, ai, a.Name), a.When, declared)
				if err != nil {
					return nil, err
				}
				wait, err := newWaitSpec(fmt.Sprintf("%s: spec.actions[%d] (%s)", where, ai, a.Name), a.WaitFor, decide, resolved.Values, declared)
				if err != nil {
					return nil, err
				}
				var rollback *drv1.ActionBody
				if a.Rollback != nil {
					rb, err := templates.RenderBody(a.Rollback.ActionBody, data)
					if err != nil {
						return nil, fmt.Errorf("%s: spec.actions[%d] (%s).rollback: %w", where, ai, a.Name, err)
					}
					rollback = &rb
				}
				rw.Actions = append(rw.Actions, a.Name)
				rw.ActionWhen = append(rw.ActionWhen, when)
				p.bodies = append(p.bodies, body)
				p.waits = append(p.waits, wait)
				p.rollbacks = append(p.rollbacks, rollback)
				p.undo = append(p.undo, nil)
			}
			runStages[si].Workflows = append(runStages[si].Workflows, rw)
		}
	}
	common := agreed(values)
	for si := range runStages {
		runStages[si].Params = common
	}
	p.plan = rules.NewRunPlan(snap.Plan.FailurePolicy, dag, runStages)
	p.plan.Rules = decide
	p.plan.PlanName, p.plan.ExecutionName, p.plan.Namespace, p.plan.Operation = snap.PlanName, exec.Name, exec.Namespace, exec.Spec.Operation
	p.params = agreed(displays)
	i := 0
	for si := range p.perWorkflow {
		for wi := range p.perWorkflow[si] {
			p.perWorkflow[si][wi] = differing(displays[i], p.params)
			i++
		}
	}
	var pairs []string
	for _, s := range secrets {
		pairs = append(pairs, s, rules.Redacted)
	}
	p.redact = strings.NewReplacer(pairs...)
	return p, nil
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

// waitSpec is an action's compiled waitFor, with the parameters its condition sees.
type waitSpec struct {
	cond    *rules.Program
	timeout time.Duration
	params  map[string]any
}

func newWaitSpec(where string, w *drv1.WaitFor, decide *rules.Rules, params map[string]any, declared []drv1.Parameter) (*waitSpec, error) {
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
	return &waitSpec{cond: cond, timeout: timeout, params: params}, nil
}
