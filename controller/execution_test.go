package controller

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clienttesting "k8s.io/client-go/testing"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func TestRequireServiceAccountRefusesPlansWithoutOne(t *testing.T) {
	wf := workflow("wf", 1)
	wf.Status.Phase = drv1.WorkflowReady
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
		Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
	exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod", UID: "u1",
		Labels: map[string]string{drv1.LabelPlan: "p"}},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute}}
	f := newFixture(t, wf, plan, exec)
	f.c.requireServiceAccount = true
	require.NoError(t, f.c.syncExecution(context.Background(), "prod", "run"))

	var patched bool
	for _, a := range f.client.Actions() {
		p, ok := a.(clienttesting.PatchAction)
		if !ok || a.GetSubresource() != "status" {
			continue
		}
		var ops []struct {
			Op    string          `json:"op"`
			Value json.RawMessage `json:"value"`
		}
		require.NoError(t, json.Unmarshal(p.GetPatch(), &ops))
		assert.Equal(t, "test", ops[0].Op, "the patch checks the execution's UID")
		var st drv1.DRPlanExecutionStatus
		require.NoError(t, json.Unmarshal(ops[len(ops)-1].Value, &st))
		assert.Equal(t, drv1.ExecutionFailed, st.Phase)
		assert.Equal(t, "Cannot start: DRPlan prod/p has no spec.serviceAccountName, and this controller runs plans only as a ServiceAccount (--require-service-account)", st.Message)
		patched = true
	}
	assert.True(t, patched, "the execution was failed")
	for _, a := range f.client.Actions() {
		assert.NotEqual(t, "configmaps", a.GetResource().Resource, "no side effect")
	}
}
