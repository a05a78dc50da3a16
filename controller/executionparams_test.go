package controller

import (
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestCannotExecute: at start, an Execute must give every parameter the plan's
// spec.executionParams names (the webhook refuses it earlier; this holds without it).
func TestCannotExecute(t *testing.T) {
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
		Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}, ExecutionParams: []string{"region", "token"}}}
	exec := func(op drv1.Operation, retryOf string, params ...string) *drv1.DRPlanExecution {
		e := &drv1.DRPlanExecution{Spec: drv1.DRPlanExecutionSpec{Operation: op, RetryOf: retryOf}}
		for _, p := range params {
			e.Spec.Params = append(e.Spec.Params, drv1.ParamValue{Name: p, Value: "x"})
		}
		return e
	}
	assert.Equal(t, "", cannotExecute(exec(drv1.OperationExecute, "", "token", "region"), plan))
	assert.Equal(t, "Cannot start: DRPlan prod/p names region, token in spec.executionParams: every execution must give them a value in its spec.params",
		cannotExecute(exec(drv1.OperationExecute, ""), plan))
	assert.Equal(t, "Cannot start: DRPlan prod/p names token in spec.executionParams: every execution must give it a value in its spec.params",
		cannotExecute(exec(drv1.OperationExecute, "", "region"), plan))
	assert.Equal(t, "", cannotExecute(exec(drv1.OperationRevert, ""), plan), "a Revert runs its target's parameters")
	assert.Equal(t, "", cannotExecute(exec(drv1.OperationExecute, "run-1"), plan), "a retry runs its chain's")

	deleting := plan.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{}
	assert.Equal(t, "Cannot start: DRPlan prod/p is being deleted (it can still be reverted)", cannotExecute(exec(drv1.OperationExecute, "", "token", "region"), deleting))
}
