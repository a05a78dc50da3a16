package runplan

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/templates"
)

// A Revert undoes one Execute, its target: from the target's snapshot and outputs, never from
// the live plan and workflows. Everything runs in reverse: stages in the reverse order of the DAG
// (a stage after every stage that depended on it), a sequential stage's workflows last first (a
// parallel stage's all at once), each workflow's actions last first. Per action: its rollback
// when it has one; otherwise the object a Create made is deleted (that very object, by UID); an
// HTTP call or a Delete is skipped, saying why. Actions that did not take effect in the target
// are skipped.

// Revert prepares the Revert named revert of a chain of runs (one Execute, or an Execute and
// its retries, first run first), from the snapshot they ran, snap: the chain's run as its first
// run ran it (its parameters and identity, so rollbacks name what it made), turned around, undoing
// what any run of the chain did. policy is the Revert's failurePolicy: Continue (undo as much as
// possible) when empty.
func Revert(revert string, chain []*drv1.DRPlanExecution, snap *Snapshot, read rules.SecretReader, decide *rules.Rules, policy drv1.FailurePolicy) (*Prepared, error) {
	first := chain[0]
	start := first.CreationTimestamp.Time
	if first.Status.StartTime != nil {
		start = first.Status.StartTime.Time
	}
	fwd, err := Prepare(first, snap, read, start, decide)
	if err != nil {
		return nil, err
	}
	if policy == "" {
		policy = drv1.FailurePolicyContinue
	}
	p := reversed(fwd, chain, policy)
	p.Plan.ExecutionName, p.Plan.Operation = revert, drv1.OperationRevert
	p.MadeBy = &drv1.ExecutionIdentity{Name: first.Name, UID: string(first.UID), StartTime: metav1.NewTime(start)}
	if s := first.Status.Snapshot; s != nil && s.RunAs != nil {
		p.MadeBy = s.RunAs.DeepCopy()
	}
	return p, nil
}

// stepKey identifies an action of a run across its status and outputs.
type stepKey struct {
	stage    string
	workflow int32
	name     string
}

// effects reads what a chain's runs did, the later run deciding: which actions took effect
// (succeeded, or may have acted: rules.ActionTookEffect), the object each one made, and which
// were marked done by hand, in which run (not undone).
func effects(chain []*drv1.DRPlanExecution) (tookEffect map[stepKey]bool, made map[stepKey]*drv1.ResourceReference, byHand map[stepKey]string) {
	tookEffect, made, byHand = map[stepKey]bool{}, map[stepKey]*drv1.ResourceReference{}, map[stepKey]string{}
	for _, e := range chain {
		for _, a := range e.Status.ActionStatuses {
			k := stepKey{a.Stage, a.WorkflowIndex, a.Name}
			switch {
			case IsSkippedByHand(a):
				tookEffect[k], made[k], byHand[k] = false, nil, e.Name
			case rules.ActionTookEffect(a):
				tookEffect[k] = true
				delete(byHand, k)
			}
		}
		for _, o := range e.Status.Outputs {
			k := stepKey{o.Stage, o.WorkflowIndex, o.ActionName}
			for _, ref := range []*drv1.ResourceReference{o.ResourceRef, o.JobRef, o.LocalizationRef, o.SubscriptionRef} {
				if ref != nil {
					made[k], tookEffect[k] = ref, true
				}
			}
		}
	}
	return tookEffect, made, byHand
}

// reversed turns target's prepared run around (see the top of this file): its stages in the
// order of the reversed DAG, each stage's workflows last first (a parallel stage's still all at
// once), each workflow's actions last first.
func reversed(fwd *Prepared, chain []*drv1.DRPlanExecution, policy drv1.FailurePolicy) *Prepared {
	tookEffect, made, byHand := effects(chain)
	target := chain[len(chain)-1]
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
			rw := rules.RunWorkflow{Ref: w.Ref, FailurePolicy: policy, Params: w.Params}
			for ai := len(w.Actions) - 1; ai >= 0; ai-- {
				k := stepKey{s.Name, int32(wi), w.Actions[ai]}
				a := fwd.Actions[w.First+ai]
				body, undo, skip := undoOf(a.Body, a.Rollback, made[k], tookEffect[k], target.Name)
				if by := byHand[k]; by != "" {
					skip = fmt.Sprintf("Not undone: marked done by hand in execution %s (spec.skipActions)", by)
				}
				if skip == "" && undo == nil && a.Rollback == nil && operationOf(a.Body) == "Create" {
					undo = findMade(a.Body) // made, perhaps, before the run was interrupted
				}
				rw.Actions = append(rw.Actions, w.Actions[ai])
				rw.ActionSkip = append(rw.ActionSkip, skip)
				p.Actions = append(p.Actions, Action{Body: body, Undo: undo,
					UndoID: (drv1.ActionStatus{Stage: s.Name, WorkflowIndex: int32(wi), Name: w.Actions[ai]}).ID()})
			}
			rs.Workflows = append(rs.Workflows, rw)
			perWorkflow = append(perWorkflow, fwd.PerWorkflow[si][wi])
		}
		stages = append(stages, rs)
		p.PerWorkflow = append(p.PerWorkflow, perWorkflow)
	}
	p.Plan = rules.NewRunPlan(fwd.Plan.Rules, policy, dag, stages)
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
		if made == nil && body.Type != drv1.ActionTypeKubernetesResource {
			return body, nil, fmt.Sprintf("Nothing to undo: execution %s recorded no object made by it", target)
		}
		if made == nil {
			return body, nil, "" // found by its name and the run's label (findMade)
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

// findMade is the object a KubernetesResource Create may have made before its run stopped
// without recording it (a restart in flight): the name its manifest gives, or, for a
// generateName, no name (Undo.Name empty: the runner derives the name the Create used). The
// engine deletes it only if it carries the run's execution label.
func findMade(body drv1.ActionBody) *drv1.ResourceReference {
	obj, err := templates.CheckManifest(nil, body.Resource.Manifest, body.Resource.Operation)
	if err != nil {
		return nil
	}
	return &drv1.ResourceReference{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Name: obj.GetName(), Namespace: obj.GetNamespace()}
}
