package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clienttesting "k8s.io/client-go/testing"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// failedWith returns the message of the Failed status the sync wrote, or "".
func failedWith(t *testing.T, f *fixture) string {
	for _, a := range f.client.Actions() {
		p, ok := a.(clienttesting.PatchAction)
		if !ok || a.GetSubresource() != "status" {
			continue
		}
		var ops []struct {
			Value json.RawMessage `json:"value"`
		}
		require.NoError(t, json.Unmarshal(p.GetPatch(), &ops))
		var st drv1.DRPlanExecutionStatus
		require.NoError(t, json.Unmarshal(ops[len(ops)-1].Value, &st))
		if st.Phase == drv1.ExecutionFailed {
			return st.Message
		}
	}
	return ""
}

// TestExecutionWithoutRequesterNeverRuns: a new (or Pending) execution without a readable
// requester record fails before any side effect, with the exact message; a forged record by hand
// that does not parse counts as none.
func TestExecutionWithoutRequesterNeverRuns(t *testing.T) {
	for name, annotations := range map[string]map[string]string{
		"none":       nil,
		"unreadable": {drv1.AnnotationRequester: "alice"},
		"pending":    nil,
	} {
		t.Run(name, func(t *testing.T) {
			wf := workflow("wf", 1)
			wf.Status.Phase = drv1.WorkflowReady
			plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
				Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
			exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod", UID: "u1", Annotations: annotations},
				Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute}}
			if name == "pending" {
				exec.Status.Phase = drv1.ExecutionPending // since before the upgrade
			}
			f := newFixture(t, wf, plan, exec)
			require.NoError(t, f.c.syncExecution(context.Background(), "prod", "run"))
			assert.Equal(t, "no requester recorded: the admission webhook was not called", failedWith(t, f))
			for _, a := range f.client.Actions() {
				assert.False(t, a.GetResource().Resource == "drplans" && a.GetSubresource() == "status", "the plan's lock is never taken")
			}
		})
	}
}

// TestCancelRequested: the controller acts on a cancel recorded in the decisions list, not on
// the bare annotation; an execution from before the records keeps the annotation's old rule.
func TestCancelRequested(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	decided := drv1.EncodeDecisions([]drv1.Decision{{User: alice, Annotation: drv1.AnnotationCancel, Value: "true", Time: at}})
	tests := []struct {
		name        string
		annotations map[string]string
		want        bool
	}{
		{"recorded", map[string]string{drv1.AnnotationRequester: alice.Encode(), drv1.AnnotationCancel: "true", drv1.AnnotationDecisions: decided}, true},
		{"the annotation without a decision", map[string]string{drv1.AnnotationRequester: alice.Encode(), drv1.AnnotationCancel: "true"}, false},
		{"an unreadable list", map[string]string{drv1.AnnotationRequester: alice.Encode(), drv1.AnnotationCancel: "true", drv1.AnnotationDecisions: "[{"}, false},
		{"nothing", map[string]string{drv1.AnnotationRequester: alice.Encode()}, false},
		{"from before the records", map[string]string{drv1.AnnotationCancel: "true"}, true},
	}
	for _, tc := range tests {
		exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Annotations: tc.annotations}}
		assert.Equal(t, tc.want, cancelRequested(exec), tc.name)
	}
}
