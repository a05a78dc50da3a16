package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// waitLong waits up to 5 minutes for an execution to end (2,000 actions take longer than the
// suite's usual wait), failing at once if it ends otherwise than want.
func waitLong(t *testing.T, ns, name string, want drv1.ExecutionPhase) *drv1.DRPlanExecution {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Second) {
		e, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), name, metav1.GetOptions{})
		require.NoError(t, err)
		if e.Status.Phase == want {
			return e
		}
		for _, end := range []drv1.ExecutionPhase{drv1.ExecutionSucceeded, drv1.ExecutionFailed, drv1.ExecutionCancelled} {
			require.NotEqual(t, end, e.Status.Phase, e.Status.Message)
		}
		require.True(t, time.Now().Before(deadline), "%s/%s did not end in 5 minutes: %v", ns, name, e.Status.Summary)
	}
}

// TestStatusAtItsCaps runs the largest plan with every HTTP answer longer than the 1 KiB kept of
// it: 2,000 bodies of 1 KiB would make a 2.5 MB status, which the controller cuts, all bodies to
// one length, to fit 1 MiB; what a Revert reads stays whole.
func TestStatusAtItsCaps(t *testing.T) {
	ns := newNamespace(t, "caps")
	rec := newRecorder(t)
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: calls, namespace: %s}\nspec:\n  actions:\n", ns)
	const perWorkflow, stages = 200, drv1.MaxPlanActions / 200
	for i := range perWorkflow {
		fmt.Fprintf(&b, "  - {name: get-%d, type: HTTP, http: {method: GET, url: %q}}\n", i, rec.URL(fmt.Sprintf("/c%d?pad=1200", i)))
	}
	kubectlApply(t, b.String())
	waitWorkflowPhase(t, ns, "calls", drv1.WorkflowReady)
	p := fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: caps, namespace: %s}\nspec:\n  stages:\n", ns)
	for i := range stages {
		p += fmt.Sprintf("  - {name: s%d, workflows: [{workflowRef: {name: calls}}]}\n", i)
	}
	kubectlApply(t, p)
	waitPlanPhase(t, ns, "caps", drv1.PlanReady)
	start := time.Now()
	createExecution(t, ns, "run", "caps")
	e := waitLong(t, ns, "run", drv1.ExecutionSucceeded)
	took := time.Since(start)

	status, err := json.Marshal(e.Status)
	require.NoError(t, err)
	whole, err := json.Marshal(e)
	require.NoError(t, err)
	require.Len(t, e.Status.Outputs, drv1.MaxPlanActions)
	body := len(e.Status.Outputs[0].HTTPResponse.Body)
	t.Logf("2,000 calls answered with 1.2 KB each ran in %s; status %d bytes, object %d bytes; every body kept to %d bytes",
		took.Round(time.Millisecond), len(status), len(whole), body)
	assert.LessOrEqual(t, len(status), 1<<20, "the status fits 1 MiB")
	assert.Less(t, body, 1024, "the bodies were cut to fit")
	for _, o := range e.Status.Outputs {
		require.NotNil(t, o.HTTPResponse)
		assert.EqualValues(t, 200, o.HTTPResponse.StatusCode)
		assert.Len(t, o.HTTPResponse.Body, body, "one cap for every body")
	}
	for _, a := range e.Status.ActionStatuses {
		assert.Equal(t, drv1.StepSucceeded, a.Phase)
	}
	assert.Len(t, rec.Calls(), drv1.MaxPlanActions)
}

// TestStatusRefusedForSize: a run whose object outgrows what the API server stores (700 KB of
// parameters in its spec, shown again in its status, and then its HTTP answers) is not retried
// forever: it ends Failed saying why, its lock released, with the outputs a Revert needs, and
// the Revert deletes what it made.
func TestStatusRefusedForSize(t *testing.T) {
	ns := newNamespace(t, "refused")
	rec := newRecorder(t)
	var b strings.Builder
	// 170 values of 4,096 bytes (the most a value may have): 700 KB.
	const values = 170
	var params []drv1.ParamValue
	fmt.Fprintf(&b, "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: made, namespace: %s}\nspec:\n  parameters:\n", ns)
	for i := range values {
		fmt.Fprintf(&b, "  - {name: p%d}\n", i)
		params = append(params, drv1.ParamValue{Name: fmt.Sprintf("p%d", i), Value: strings.Repeat("b", 4096)})
	}
	b.WriteString("  actions:\n")
	const made = 5
	for i := range made {
		fmt.Fprintf(&b, "  - {name: cm-%d, type: KubernetesResource, resource: {operation: Create, manifest: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: made-%d}\\n\"}}\n", i, i)
	}
	fmt.Fprintf(&b, "---\napiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: calls, namespace: %s}\nspec:\n  actions:\n", ns)
	for i := range 200 {
		fmt.Fprintf(&b, "  - {name: get-%d, type: HTTP, http: {method: GET, url: %q}}\n", i, rec.URL(fmt.Sprintf("/c%d?pad=1200", i)))
	}
	fmt.Fprintf(&b, "---\napiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: p, namespace: %s}\nspec:\n  stages:\n  - {name: made, workflows: [{workflowRef: {name: made}}]}\n", ns)
	for i := range 5 { // 1,000 calls
		fmt.Fprintf(&b, "  - {name: calls-%d, dependsOn: [made], workflows: [{workflowRef: {name: calls}}]}\n", i)
	}
	kubectlApply(t, b.String())
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: ns},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute,
			Params: params}}
	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), exec, metav1.CreateOptions{})
	require.NoError(t, err)
	e := waitLong(t, ns, "run", drv1.ExecutionFailed)
	t.Logf("ended: %s", e.Status.Message)
	assert.Contains(t, e.Status.Message, "Cannot write the status: the API server refuses it as too large")
	refs := 0
	for _, o := range e.Status.Outputs {
		if o.ResourceRef != nil {
			refs++
			assert.NotEmpty(t, o.ResourceRef.UID)
		}
	}
	assert.Equal(t, made, refs, "the objects made are recorded for the Revert")
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted) // the lock is released

	revert := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "back", Namespace: ns},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationRevert}}
	_, err = env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), revert, metav1.CreateOptions{})
	require.NoError(t, err)
	back := waitLong(t, ns, "back", drv1.ExecutionSucceeded)
	t.Logf("reverted: %s", back.Status.Message)
	cms, err := env.Kube.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	for _, cm := range cms.Items {
		assert.False(t, strings.HasPrefix(cm.Name, "made-"), "%s was reverted", cm.Name)
	}
}
