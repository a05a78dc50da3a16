package admission_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestDecideExecutionDelete: deleting the record of a failover (rules.Record has the table) is
// refused with the reason while the plan is there without allow-delete; everything else is
// admitted, and so is the controller's own delete.
func TestDecideExecutionDelete(t *testing.T) {
	acted := func(e *drv1.DRPlanExecution) {
		e.Status.ActionStatuses = []drv1.ActionStatus{{Name: "call", Phase: drv1.StepSucceeded}}
	}
	reverted := func(e *drv1.DRPlanExecution) {
		e.Status.Conditions = []metav1.Condition{{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue}}
	}
	inEffect := execution("run-2", drv1.OperationExecute, drv1.ExecutionSucceeded, nil)
	undone := execution("run-1", drv1.OperationExecute, drv1.ExecutionSucceeded, reverted)
	failedActed := execution("failed", drv1.OperationExecute, drv1.ExecutionFailed, acted)
	failedIdle := execution("idle", drv1.OperationExecute, drv1.ExecutionFailed, nil)
	elsewhere := execution("elsewhere", drv1.OperationExecute, drv1.ExecutionSucceeded, func(e *drv1.DRPlanExecution) { e.Spec.PlanRef.Namespace = "other" })
	execs := []*drv1.DRPlanExecution{inEffect, undone, failedActed, failedIdle}
	for _, tc := range []struct {
		name    string
		exec    *drv1.DRPlanExecution
		planAnn map[string]string
		noPlan  bool
		want    string // "" admits
	}{
		{name: "the Execute in effect", exec: inEffect,
			want: `drplanexecutions.dr.bkbcs.tencent.com "run-2" is forbidden: execution run-2 is the failover in effect of plan p: revert it first, or annotate the plan dr.bkbcs.tencent.com/allow-delete=true`},
		{name: "a failed run that took effect", exec: failedActed, want: "execution failed is an Execute of plan p that took effect and is not reverted (Failed, what it did still stands)"},
		{name: "a reverted run", exec: undone},
		{name: "a failed run that did nothing", exec: failedIdle},
		{name: "the plan allows deleting", exec: inEffect, planAnn: map[string]string{drv1.AnnotationAllowDelete: "true"}},
		{name: "the plan is gone", exec: inEffect, noPlan: true},
		{name: "a plan of another namespace (it never ran)", exec: elsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := fixture(t, execs...)
			p, _ := d.State.GetPlan("prod", "p")
			p.Annotations = tc.planAnn
			if tc.noPlan {
				d = fixture(t)
				d.State = noPlans{d.State}
			}
			got := d.ExecutionDelete(tc.exec)
			if tc.want == "" {
				assert.True(t, got.Allowed(), "%v", got.Err)
				return
			}
			require.False(t, got.Allowed())
			assert.Contains(t, got.Err.Error(), tc.want)
		})
	}
}

type noPlans struct{ admission.State }

func (noPlans) GetPlan(string, string) (*drv1.DRPlan, bool) { return nil, false }

// TestReviewExecutionDelete: the webhook judges a DELETE of an execution from its old object, as
// Forbidden, and admits the controller's own (the history it prunes).
func TestReviewExecutionDelete(t *testing.T) {
	inEffect := execution("run-2", drv1.OperationExecute, drv1.ExecutionSucceeded, nil)
	raw, err := json.Marshal(inEffect)
	require.NoError(t, err)
	h := &admission.Webhook{Decider: fixture(t, inEffect), Controller: controllerUser, Ready: func() bool { return true }}
	req := func(user drv1.Requester) *admissionv1.AdmissionRequest {
		return &admissionv1.AdmissionRequest{UID: "u", Name: "run-2", Namespace: "prod", Operation: admissionv1.Delete, UserInfo: userInfo(user),
			Kind:      metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: "DRPlanExecution"},
			Resource:  metav1.GroupVersionResource{Group: drv1.GroupName, Version: "v1alpha1", Resource: "drplanexecutions"},
			OldObject: runtime.RawExtension{Raw: raw}}
	}
	resp := h.Review(context.Background(), req(alice))
	require.False(t, resp.Allowed)
	assert.EqualValues(t, http.StatusForbidden, resp.Result.Code)
	assert.Contains(t, resp.Result.Message, "execution run-2 is the failover in effect of plan p")
	assert.True(t, h.Review(context.Background(), req(controller)).Allowed, "the controller's own delete")
}
