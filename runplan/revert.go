package runplan

import (
	"fmt"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// A Revert undoes one Execute, its target: from the target's snapshot and outputs, never from
// the live plan and workflows. Everything runs in reverse: stages in the reverse order of the DAG
// (a stage after every stage that depended on it), a sequential stage's workflows last first (a
// parallel stage's all at once), each workflow's actions last first. Per action: its rollback
// when it has one; otherwise the object a Create made is deleted (that very object, by UID); an
// HTTP call or a Delete is skipped, saying why. Actions that did not take effect in the target
// are skipped.

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
	p := reversed(fwd, target)
	p.Plan.ExecutionName, p.Plan.Operation = revert, drv1.OperationRevert
	return p, nil
}

// stepKey identifies an action of a run across its status and outputs.
type stepKey struct {
	stage    string
	workflow int32
	name     string
}

// effects reads what target's actions did: which took effect, and the object each one made.
func effects(target *drv1.DRPlanExecution) (tookEffect map[stepKey]bool, made map[stepKey]*drv1.ResourceReference) {
	tookEffect, made = map[stepKey]bool{}, map[stepKey]*drv1.ResourceReference{}
	for _, a := range target.Status.ActionStatuses {
		tookEffect[stepKey{a.Stage, a.WorkflowIndex, a.Name}] = a.Phase == drv1.StepSucceeded
	}
	for _, o := range target.Status.Outputs {
		k := stepKey{o.Stage, o.WorkflowIndex, o.ActionName}
		for _, ref := range []*drv1.ResourceReference{o.ResourceRef, o.JobRef, o.LocalizationRef, o.SubscriptionRef} {
			if ref != nil {
				made[k] = ref
			}
		}
	}
	return tookEffect, made
}

// reversed turns target's prepared run around (see the top of this file): its stages in the
// order of the reversed DAG, each stage's workflows last first (a parallel stage's still all at
// once), each workflow's actions last first.
func reversed(fwd *Prepared, target *drv1.DRPlanExecution) *Prepared {
	tookEffect, made := effects(target)
	dag := fwd.Plan.DAG.Reverse()
	index := make(map[string]int, len(fwd.Plan.Stages))
	for si, s := range fwd.Plan.Stages {
		index[s.Name] = si
	}
	p := &Prepared{PlanName: fwd.PlanName, Params: fwd.Params, Redact: fwd.Redact}
	stages := make([]rules.RunStage, 0, len(fwd.Plan.Stages))
	for _, name := range dag.TopologicalOrder() {
		si := index[name]
		s := fwd.Plan.Stages[si]
		rs := rules.RunStage{Name: s.Name, Parallel: s.Parallel, DependsOn: dag.DependsOn(name), Params: s.Params}
		var perWorkflow []map[string]string
		for wi := len(s.Workflows) - 1; wi >= 0; wi-- {
			w := s.Workflows[wi]
			rw := rules.RunWorkflow{Ref: w.Ref, FailurePolicy: w.FailurePolicy, Params: w.Params}
			for ai := len(w.Actions) - 1; ai >= 0; ai-- {
				k := stepKey{s.Name, int32(wi), w.Actions[ai]}
				a := fwd.Actions[w.First+ai]
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
	p.Plan = rules.NewRunPlan(fwd.Plan.Rules, fwd.Plan.FailurePolicy, dag, stages)
	p.Plan.PlanName, p.Plan.Namespace = fwd.Plan.PlanName, fwd.Plan.Namespace
	return p
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
