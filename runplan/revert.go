package runplan

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// A Revert undoes one Execute, its target: from the target's snapshot and outputs, never from
// the live plan and workflows. Stages run in the reverse order of the DAG (a stage after every
// stage that depended on it), a parallel stage's workflows in parallel, each workflow's actions
// in reverse. Per action: its rollback when it has one; otherwise the object a Create made is
// deleted (that very object, by UID); an HTTP call or a Delete is skipped, saying why. Actions
// that did not take effect in the target are skipped.

// Revert prepares the Revert named revert of target, from target's snapshot snap: target's run
// as the target ran it (its parameters and identity, so rollbacks name what it made), turned
// around.
func Revert(revert string, target *drv1.DRPlanExecution, snap *Snapshot, read rules.SecretReader, decide *rules.Rules) (*Prepared, error) {
	start := target.CreationTimestamp.Time
	if target.Status.StartTime != nil {
		start = target.Status.StartTime.Time
	}
	fwd, err := Prepare(target, snap, read, start, decide)
	if err != nil {
		return nil, err
	}
	p, err := reversed(fwd, target)
	if err != nil {
		return nil, err
	}
	p.Plan.ExecutionName, p.Plan.Operation = revert, drv1.OperationRevert
	return p, nil
}

// stepKey identifies an action of a run across its status and outputs.
type stepKey struct {
	stage    string
	workflow int32
	name     string
}

// reversed turns target's prepared run around: see the top of this file.
func reversed(fwd *Prepared, target *drv1.DRPlanExecution) (*Prepared, error) {
	tookEffect := map[stepKey]bool{}
	for _, a := range target.Status.ActionStatuses {
		tookEffect[stepKey{a.Stage, a.WorkflowIndex, a.Name}] = a.Phase == drv1.StepSucceeded
	}
	made := map[stepKey]*drv1.ResourceReference{}
	for _, o := range target.Status.Outputs {
		k := stepKey{o.Stage, o.WorkflowIndex, o.ActionName}
		for _, ref := range []*drv1.ResourceReference{o.ResourceRef, o.JobRef, o.LocalizationRef, o.SubscriptionRef} {
			if ref != nil {
				made[k] = ref
			}
		}
	}
	dependents := map[string][]string{}
	for _, s := range fwd.Plan.Stages {
		for _, d := range s.DependsOn {
			dependents[d] = append(dependents[d], s.Name)
		}
	}
	p := &Prepared{PlanName: fwd.PlanName, Params: fwd.Params, Redact: fwd.Redact}
	var stages []rules.RunStage
	var nodes []rules.Node
	for si := len(fwd.Plan.Stages) - 1; si >= 0; si-- {
		s := fwd.Plan.Stages[si]
		rs := rules.RunStage{Name: s.Name, Parallel: s.Parallel, DependsOn: dependents[s.Name], Params: s.Params}
		nodes = append(nodes, rules.Node{Name: rs.Name, DependsOn: rs.DependsOn})
		var perWorkflow []map[string]string
		for wi, w := range s.Workflows {
			rw := rules.RunWorkflow{Ref: w.Ref, FailurePolicy: w.FailurePolicy, Params: w.Params}
			for ai := len(w.Actions) - 1; ai >= 0; ai-- {
				flat := w.First + ai
				k := stepKey{s.Name, int32(wi), w.Actions[ai]}
				a := fwd.Actions[flat]
				body, undo, skip := undoOf(a.Body, a.Rollback, made[k], tookEffect[k], target.Name)
				rw.Actions = append(rw.Actions, w.Actions[ai])
				rw.ActionSkip = append(rw.ActionSkip, skip)
				p.Actions = append(p.Actions, Action{Body: body, Undo: undo})
			}
			rs.Workflows = append(rs.Workflows, rw)
			perWorkflow = append(perWorkflow, fwd.PerWorkflow[si][wi])
		}
		stages = append(stages, rs)
		p.PerWorkflow = append(p.PerWorkflow, perWorkflow)
	}
	dag, errs := rules.NewDAG(field.NewPath("spec", "stages"), nodes)
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	p.Plan = rules.NewRunPlan(fwd.Plan.FailurePolicy, dag, stages)
	p.Plan.Rules = fwd.Plan.Rules
	p.Plan.PlanName, p.Plan.Namespace = fwd.Plan.PlanName, fwd.Plan.Namespace
	return p, nil
}

// undoOf decides how one action is undone: the body to run, or the object to delete, or why it
// is skipped.
func undoOf(body drv1.ActionBody, rollback *drv1.ActionBody, made *drv1.ResourceReference, tookEffect bool, target string) (drv1.ActionBody, *drv1.ResourceReference, string) {
	switch {
	case !tookEffect:
		return body, nil, fmt.Sprintf("Nothing to undo: it did not take effect in execution %s", target)
	case rollback != nil:
		return *rollback, nil, ""
	case body.Type == drv1.ActionTypeHTTP:
		return body, nil, "An HTTP call cannot be undone automatically (define a rollback to undo it)"
	}
	switch operationOf(body) {
	case "Delete":
		return body, nil, "A Delete cannot be undone (define a rollback to undo it)"
	case "Create":
		if made == nil {
			return body, nil, fmt.Sprintf("Nothing to undo: execution %s recorded no object made by it", target)
		}
		del := drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationDelete,
			Manifest: fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata: {name: %s, namespace: %s}\n", made.APIVersion, made.Kind, made.Name, made.Namespace)}}
		return del, made, ""
	}
	return body, nil, fmt.Sprintf("A %s without a rollback cannot be undone", operationOf(body))
}

// operationOf is an action's operation: Create, Apply, Patch or Delete (a Job always creates).
func operationOf(b drv1.ActionBody) string {
	switch {
	case b.Resource != nil:
		return string(b.Resource.Operation)
	case b.Localization != nil:
		return string(b.Localization.Operation)
	case b.Subscription != nil:
		return string(b.Subscription.Operation)
	case b.Job != nil:
		return "Create"
	}
	return ""
}
