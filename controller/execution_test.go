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

	"github.com/bkbcs/drplan-controller/access"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
)

func TestRequireServiceAccountRefusesPlansWithoutOne(t *testing.T) {
	wf := workflow("wf", 1)
	wf.Status.Phase = drv1.WorkflowReady
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
		Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
	exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod", UID: "u1",
		Labels: map[string]string{drv1.LabelPlan: "p"}, Annotations: map[string]string{drv1.AnnotationRequester: alice.Encode()}},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute}}
	f := newFixture(t, wf, plan, exec)
	f.c.access = &access.Authorizer{Policy: access.Policy{WithoutServiceAccount: access.WithoutServiceAccount{Refuse: true}}}
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
		assert.Equal(t, "Cannot start: DRPlan prod/p has no spec.serviceAccountName, and this controller runs plans only as a ServiceAccount (--plans-without-service-account=refuse)", st.Message)
		patched = true
	}
	assert.True(t, patched, "the execution was failed")
	for _, a := range f.client.Actions() {
		assert.NotEqual(t, "configmaps", a.GetResource().Resource, "no side effect")
	}
}

// TestStatusMatches: a status is resumed only if it lists the prepared run, action by action.
func TestStatusMatches(t *testing.T) {
	call := func(name string) drv1.Action {
		return drv1.Action{Name: name, ActionBody: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/" + name}}}
	}
	snap := &runplan.Snapshot{PlanName: "p", Namespace: "prod", Plan: drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "s", Workflows: []drv1.StageWorkflow{
		{WorkflowRef: drv1.ObjectReference{Name: "a"}}, {WorkflowRef: drv1.ObjectReference{Name: "b"}}}}}},
		Workflows: map[string]drv1.DRWorkflowSpec{"prod/a": {Actions: []drv1.Action{call("x")}}, "prod/b": {Actions: []drv1.Action{call("y")}}}}
	exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod"}}
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	decide, err := rules.NewRules(env)
	require.NoError(t, err)
	p, err := runplan.Prepare(exec, snap, nil, time.Now(), decide)
	require.NoError(t, err)
	var st drv1.DRPlanExecutionStatus
	st.StageStatuses, st.ActionStatuses = p.Plan.InitialStatus()
	assert.True(t, statusMatches(p, &st))

	swapped := st.DeepCopy() // the same shape, the workflows in the other order
	ws := swapped.StageStatuses[0].WorkflowExecutions
	ws[0], ws[1] = ws[1], ws[0]
	swapped.ActionStatuses[0].Name, swapped.ActionStatuses[1].Name = "y", "x"
	assert.False(t, statusMatches(p, swapped))

	renamed := st.DeepCopy()
	renamed.ActionStatuses[1].Name = "z"
	assert.False(t, statusMatches(p, renamed))
}
