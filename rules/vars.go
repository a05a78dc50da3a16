package rules

import (
	"k8s.io/apimachinery/pkg/api/meta"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// The variables of the plan-level rules are built here, once, for the controller and the
// admission webhook alike: both decide through the same rules on the same inputs.

// LockVars are PlanLock's variables: the plan and its lock, the execution asking, and the
// execution the lock names (holder nil: it does not exist any more).
func LockVars(plan *drv1.DRPlan, exec *drv1.DRPlanExecution, holder *drv1.DRPlanExecution) map[string]any {
	p := planVar(plan)
	h := map[string]any{"exists": false, "finished": false}
	if cur := plan.Status.CurrentExecution; cur != nil {
		p["currentExecution"] = map[string]any{"name": cur.Name, "namespace": cur.Namespace, "operation": string(cur.Operation)}
		if holder != nil {
			h = map[string]any{"name": holder.Name, "exists": true, "finished": ExecutionEnded(&holder.Status)}
		}
	}
	return map[string]any{VarPlan: p, VarExecution: executionVar(exec), VarLockHolder: h}
}

// RevertVars are RevertEligible's variables: the plan, the Revert asking, and its target (nil:
// the target named does not exist, or, with name "", there is nothing to revert).
func RevertVars(plan *drv1.DRPlan, exec *drv1.DRPlanExecution, name string, target *drv1.DRPlanExecution) map[string]any {
	t := map[string]any{"name": name, "namespace": exec.Namespace, "exists": false, "operation": "", "phase": "",
		"planName": "", "planNamespace": "", "tookEffect": false, "hasSnapshot": false, "reverted": false, "revertedBy": ""}
	if target != nil {
		t = map[string]any{"name": target.Name, "namespace": target.Namespace, "exists": true,
			"operation": string(target.Spec.Operation), "phase": string(target.Status.Phase),
			"planName": target.Spec.PlanRef.Name, "planNamespace": target.Spec.PlanRef.NamespaceOr(target.Namespace),
			"tookEffect": TookEffect(target), "hasSnapshot": target.Status.Snapshot != nil,
			"reverted": Reverted(target), "revertedBy": target.Status.RevertedBy}
	}
	return map[string]any{VarPlan: planVar(plan), VarExecution: executionVar(exec), VarTarget: t}
}

func planVar(plan *drv1.DRPlan) map[string]any {
	return map[string]any{"name": plan.Name, "namespace": plan.Namespace}
}

func executionVar(exec *drv1.DRPlanExecution) map[string]any {
	return map[string]any{"name": exec.Name, "namespace": exec.Namespace, "operation": string(exec.Spec.Operation)}
}

// TookEffect says whether an execution changed anything: it succeeded, or at least one of its
// actions took effect (ActionTookEffect), or it left an object behind (an output refers to one).
func TookEffect(e *drv1.DRPlanExecution) bool {
	if e.Status.Phase == drv1.ExecutionSucceeded {
		return true
	}
	for _, a := range e.Status.ActionStatuses {
		if ActionTookEffect(a) {
			return true
		}
	}
	for _, o := range e.Status.Outputs {
		if o.ResourceRef != nil || o.JobRef != nil || o.LocalizationRef != nil || o.SubscriptionRef != nil {
			return true
		}
	}
	return false
}

// ActionTookEffect says whether an action may have changed something: it succeeded (carried
// over from an earlier run of the chain too), or it failed after it may have acted.
func ActionTookEffect(a drv1.ActionStatus) bool {
	return a.Phase == drv1.StepSucceeded || a.MayHaveActed
}

// Reverted says whether a Revert undid the execution.
func Reverted(e *drv1.DRPlanExecution) bool {
	return meta.IsStatusConditionTrue(e.Status.Conditions, drv1.ConditionReverted)
}

// InEffect says whether an execution is an Execute whose effects stand: it ended having taken
// effect, and no Revert undid it. A plan with one is Executed, and a Revert without a
// revertExecutionRef undoes the latest of them.
func InEffect(e *drv1.DRPlanExecution) bool {
	return e.Spec.Operation == drv1.OperationExecute && ExecutionEnded(&e.Status) && TookEffect(e) && !Reverted(e)
}

// RevertTarget picks what a Revert without revertExecutionRef undoes: of the plan's executions,
// the latest Execute in effect (by completion, then creation time), or nil when there is none.
func RevertTarget(execs []*drv1.DRPlanExecution) *drv1.DRPlanExecution {
	var best *drv1.DRPlanExecution
	for _, e := range execs {
		if !InEffect(e) {
			continue
		}
		if best == nil || later(e, best) {
			best = e
		}
	}
	return best
}

// ChooseRevertTarget names the execution a Revert undoes, and reads it with get (nil, nil: it
// does not exist): its revertExecutionRef, else the latest Execute in effect among the plan's
// executions (name "": nothing to revert). The one chosen from execs is read again with get, so
// that it is judged as it is now, not as a cache last saw it.
func ChooseRevertTarget(exec *drv1.DRPlanExecution, execs []*drv1.DRPlanExecution,
	get func(name string) (*drv1.DRPlanExecution, error)) (string, *drv1.DRPlanExecution, error) {
	var name string
	if ref := exec.Spec.RevertExecutionRef; ref != nil {
		name = ref.Name
	} else if t := RevertTarget(execs); t != nil {
		name = t.Name
	}
	if name == "" {
		return "", nil, nil
	}
	target, err := get(name)
	return name, target, err
}

// later orders executions by completion time, then creation time, then name.
func later(a, b *drv1.DRPlanExecution) bool {
	at, bt := a.Status.CompletionTime, b.Status.CompletionTime
	switch {
	case at != nil && bt != nil && !at.Equal(bt):
		return bt.Before(at)
	case (at == nil) != (bt == nil):
		return at != nil
	case !a.CreationTimestamp.Equal(&b.CreationTimestamp):
		return b.CreationTimestamp.Before(&a.CreationTimestamp)
	}
	return a.Name > b.Name
}
