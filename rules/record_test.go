package rules_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// recordRun is an ended run of plan p: its phase, whether an action succeeded, whether it was
// reverted, the run it retries, minutes after 3 a.m. when it ended.
func recordRun(name string, op drv1.Operation, phase drv1.ExecutionPhase, acted, reverted bool, retryOf string, minute int) *drv1.DRPlanExecution {
	at := metav1.NewTime(time.Date(2026, 11, 29, 3, minute, 0, 0, time.UTC))
	e := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod", CreationTimestamp: at},
		Spec:   drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: op, RetryOf: retryOf},
		Status: drv1.DRPlanExecutionStatus{Phase: phase, CompletionTime: &at, Snapshot: &drv1.ExecutionSnapshot{}}} // they ran
	if acted {
		e.Status.ActionStatuses = []drv1.ActionStatus{{Name: "a", Phase: drv1.StepSucceeded}}
	}
	if reverted {
		e.Status.Conditions = []metav1.Condition{{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue}}
	}
	return e
}

func TestRecord(t *testing.T) {
	ex, rv := drv1.OperationExecute, drv1.OperationRevert
	ok, failed, cancelled := drv1.ExecutionSucceeded, drv1.ExecutionFailed, drv1.ExecutionCancelled
	for _, tc := range []struct {
		name  string
		execs []*drv1.DRPlanExecution
		want  map[string]string
	}{
		{"nothing ran", nil, map[string]string{}},
		{"the Execute in effect", []*drv1.DRPlanExecution{recordRun("x1", ex, ok, true, false, "", 1)},
			map[string]string{"x1": "is the failover in effect of plan p"}},
		{"reverted, and its Revert: no record", []*drv1.DRPlanExecution{recordRun("x1", ex, ok, true, true, "", 1), recordRun("r1", rv, ok, true, false, "", 2)},
			map[string]string{}},
		{"a failed run that did nothing", []*drv1.DRPlanExecution{recordRun("x1", ex, failed, false, false, "", 1)}, map[string]string{}},
		{"a cancelled run that took effect, and an older success", []*drv1.DRPlanExecution{
			recordRun("x1", ex, ok, true, false, "", 1), recordRun("x2", ex, cancelled, true, false, "", 2)},
			map[string]string{"x2": "is the failover in effect of plan p", "x1": "is an Execute of plan p in effect (not reverted)"}},
		{"a failed run that took effect, and a newer one", []*drv1.DRPlanExecution{
			recordRun("x1", ex, failed, true, false, "", 1), recordRun("x2", ex, ok, true, false, "", 2)},
			map[string]string{"x2": "is the failover in effect of plan p",
				"x1": "is an Execute of plan p that took effect and is not reverted (Failed, what it did still stands)"}},
		{"a chain: the first run did nothing, its retry succeeded", []*drv1.DRPlanExecution{
			recordRun("x1", ex, failed, false, false, "", 1), recordRun("x2", ex, ok, true, false, "x1", 2), recordRun("x3", ex, failed, false, false, "", 3)},
			map[string]string{"x2": "is the failover in effect of plan p", "x1": "is a run of the retry chain of x2, in effect in plan p"}},
		{"a retry running: the runs it retries are kept (it is not: deleting it stops it)", []*drv1.DRPlanExecution{
			recordRun("x1", ex, failed, false, false, "", 1), recordRun("x2", ex, drv1.ExecutionRunning, false, false, "x1", 2)},
			map[string]string{"x1": "is a run of the retry chain of x2, which has not ended"}},
		{"a chain reverted as a whole", []*drv1.DRPlanExecution{
			recordRun("x1", ex, failed, true, true, "", 1), recordRun("x2", ex, ok, true, true, "x1", 2), recordRun("r1", rv, ok, true, false, "", 3)},
			map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, rules.Record("p", tc.execs))
		})
	}
	assert.Equal(t, "execution x1 is the failover in effect of plan p: revert it first, or annotate the plan dr.bkbcs.tencent.com/allow-delete=true",
		rules.RecordMessage("x1", "is the failover in effect of plan p"))
}
