package rules_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

func TestChain(t *testing.T) {
	at := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	run := func(name, retryOf string, op drv1.Operation, minute int) *drv1.DRPlanExecution {
		return &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod",
			CreationTimestamp: metav1.NewTime(at.Add(time.Duration(minute) * time.Minute))},
			Spec: drv1.DRPlanExecutionSpec{Operation: op, RetryOf: retryOf}}
	}
	names := func(chain []*drv1.DRPlanExecution) []string {
		var out []string
		for _, e := range chain {
			out = append(out, e.Name)
		}
		return out
	}
	first, second, third := run("first", "", drv1.OperationExecute, 0), run("second", "first", drv1.OperationExecute, 1), run("third", "second", drv1.OperationExecute, 2)
	other := run("other", "", drv1.OperationExecute, 3)
	back := run("back", "", drv1.OperationRevert, 4)
	backAgain := run("back-2", "back", drv1.OperationRevert, 5)
	late := run("late", "first", drv1.OperationExecute, 6) // a second retry of first: only without the webhook
	loopA, loopB := run("loop-a", "loop-b", drv1.OperationExecute, 7), run("loop-b", "loop-a", drv1.OperationExecute, 8)
	all := []*drv1.DRPlanExecution{third, first, other, second, back, backAgain, late, loopA, loopB}
	for _, tc := range []struct {
		e    *drv1.DRPlanExecution
		want []string
	}{
		{first, []string{"first", "second", "third"}},
		{second, []string{"first", "second", "third"}},
		{third, []string{"first", "second", "third"}},
		{other, []string{"other"}},
		{back, []string{"back", "back-2"}},
		{backAgain, []string{"back", "back-2"}},
		{late, []string{"late"}},              // not the run that continues first's chain
		{loopA, []string{"loop-b", "loop-a"}}, // a cycle ends
		{loopB, []string{"loop-a", "loop-b"}},
	} {
		assert.Equal(t, tc.want, names(rules.Chain(tc.e, all)), tc.e.Name)
	}
	assert.Equal(t, []string{"second"}, names(rules.Chain(second, []*drv1.DRPlanExecution{second})), "a run retried that is gone")
}
