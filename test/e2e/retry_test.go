package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// runOf creates an execution of plan: a retry of retryOf when set, a Revert when revert.
func runOf(t *testing.T, ns, name, plan, retryOf string, revert bool, skip ...string) {
	t.Helper()
	op := drv1.OperationExecute
	if revert {
		op = drv1.OperationRevert
	}
	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), &drv1.DRPlanExecution{
		ObjectMeta: requested(t, metav1.ObjectMeta{Name: name}),
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: plan}, Operation: op, RetryOf: retryOf, SkipActions: skip},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// configMaps lists the names of the ConfigMaps in ns made by the runs (prefix "made-").
func configMaps(t *testing.T, ns string) []string {
	t.Helper()
	list, err := env.Kube.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var out []string
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "made-") {
			out = append(out, cm.Name)
		}
	}
	return out
}

// TestRetryGoesOnWhereItFailed: a plan fails at its 3rd of 5 actions because its endpoint answers
// 500; retried once the endpoint answers 200, it runs only actions 3-5 (no second POST of the 2nd),
// and a Revert of the chain removes every object once and marks both runs Reverted.
func TestRetryGoesOnWhereItFailed(t *testing.T) {
	ns := newNamespace(t, "retry")
	rec := newRecorder(t)
	create := func(name string) string {
		return fmt.Sprintf("  - {name: %s, type: KubernetesResource, resource: {operation: Create, manifest: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: made-%s}\\n\"}}\n", name, name)
	}
	post := func(name string) string {
		return fmt.Sprintf("  - {name: %s, type: HTTP, http: {url: %q}}\n", name, rec.URL("/"+name))
	}
	kubectlApply(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: wf, namespace: %s}\nspec:\n  actions:\n", ns)+
		create("one")+post("start")+post("flaky")+create("two")+post("done")+
		fmt.Sprintf("---\napiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: p, namespace: %s}\nspec: {workflowRef: {name: wf}}\n", ns))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	rec.answer("/flaky", http.StatusInternalServerError)
	createExecution(t, ns, "run", "p")
	first := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	assert.Contains(t, first.Status.Message, "flaky")

	// A retry with parameters of its own is refused: it runs the same runbook with the same values.
	stderr := kubectlFails(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: bad, namespace: %s}\nspec: {planRef: {name: p}, retryOf: run, params: [{name: x, value: z}]}\n", ns), "apply", "-f", "-")
	assert.Contains(t, stderr, "a retry runs with the parameters of the run it retries")

	rec.answer("/flaky", http.StatusOK)
	runOf(t, ns, "again", "p", "run", false)
	again := waitExecution(t, ns, "again", drv1.ExecutionSucceeded)
	assert.Equal(t, 1, rec.Arrived("/start"), "the POST that succeeded is not sent again")
	assert.Equal(t, 2, rec.Arrived("/flaky"), "once a run")
	assert.Equal(t, 1, rec.Arrived("/done"))
	phases := map[string]string{}
	for _, a := range again.Status.ActionStatuses {
		phases[a.Name] = string(a.Phase) + ": " + a.Message
	}
	assert.Equal(t, "Succeeded: Succeeded (carried over from run)", phases["one"])
	assert.Equal(t, "Succeeded: Succeeded (carried over from run)", phases["start"])
	assert.Contains(t, phases["two"], "Succeeded: ConfigMap "+ns+"/made-two created")
	retried, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), "run", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "again", retried.Status.RetriedBy)
	assert.True(t, meta.IsStatusConditionTrue(retried.Status.Conditions, drv1.ConditionRetried))
	assert.ElementsMatch(t, []string{"made-one", "made-two"}, configMaps(t, ns))

	// A second retry of the first run is refused: retry the latest of the chain.
	stderr = kubectlFails(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: twice, namespace: %s}\nspec: {planRef: {name: p}, retryOf: run}\n", ns), "apply", "-f", "-")
	assert.Contains(t, stderr, "execution run was already retried by again: retry the latest run of the chain")

	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
	runOf(t, ns, "back", "p", "", true)
	back := waitExecution(t, ns, "back", drv1.ExecutionSucceeded)
	deleted := 0
	for _, a := range back.Status.ActionStatuses {
		if strings.Contains(a.Message, "deleted") {
			deleted++
		}
	}
	assert.Equal(t, 2, deleted, "each object once: %v", back.Status.ActionStatuses)
	assert.Empty(t, configMaps(t, ns))
	for _, name := range []string{"run", "again"} {
		waitReverted(t, ns, name)
	}
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
}

// TestRetryAdoptsAndSkips: a Create whose waitFor timed out left its object; a Revert of that run
// deletes it. Run again, a retry adopts the object (the same UID) once it is ready, and an action
// the requester marks done by hand is shown so and not undone.
func TestRetryAdoptsAndSkips(t *testing.T) {
	ns := newNamespace(t, "adopt")
	rec := newRecorder(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - name: config
    type: KubernetesResource
    resource: {operation: Create, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made-config}\ndata: {ready: 'no'}\n"}
    waitFor: {condition: "object.data.ready == 'yes'", timeout: 2s}
  - {name: manual, type: HTTP, http: {url: %[2]q}}
  - {name: after, type: HTTP, http: {url: %[3]q}}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec: {workflowRef: {name: wf}}
`, ns, rec.URL("/manual"), rec.URL("/after")))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)

	// A Revert after a waitFor timeout deletes the object the Create left.
	createExecution(t, ns, "timed-out", "p")
	waitExecution(t, ns, "timed-out", drv1.ExecutionFailed)
	require.Equal(t, []string{"made-config"}, configMaps(t, ns))
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
	runOf(t, ns, "undo", "p", "", true)
	waitExecution(t, ns, "undo", drv1.ExecutionSucceeded)
	assert.Empty(t, configMaps(t, ns), "the object a failed Create left is undone")
	waitPlanPhase(t, ns, "p", drv1.PlanReady)

	createExecution(t, ns, "run", "p")
	first := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	made := ""
	for _, o := range first.Status.Outputs {
		if o.ResourceRef != nil {
			made = o.ResourceRef.UID
		}
	}
	require.NotEmpty(t, made)
	cm, err := env.Kube.CoreV1().ConfigMaps(ns).Get(context.Background(), "made-config", metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data["ready"] = "yes"
	_, err = env.Kube.CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{})
	require.NoError(t, err)

	runOf(t, ns, "again", "p", "run", false, "manual")
	again := waitExecution(t, ns, "again", drv1.ExecutionSucceeded)
	assert.Equal(t, 0, rec.Arrived("/manual"), "marked done by hand")
	assert.Equal(t, 1, rec.Arrived("/after"))
	for _, a := range again.Status.ActionStatuses {
		if a.Name == "manual" {
			assert.Equal(t, drv1.StepSkipped, a.Phase)
			assert.Contains(t, a.Message, "Skipped: marked done by ")
		}
	}
	for _, o := range again.Status.Outputs {
		if o.ResourceRef != nil {
			assert.Equal(t, made, o.ResourceRef.UID, "the object the first run made is adopted, not made again")
		}
	}
}

// TestRetryOfAFailedRevert: a Revert undoes as much as it can (Continue) and fails on a rollback
// whose endpoint answers 500; its retry runs only that rollback, none that succeeded again.
func TestRetryOfAFailedRevert(t *testing.T) {
	ns := newNamespace(t, "revert-retry")
	rec := newRecorder(t)
	step := func(name string) string {
		return fmt.Sprintf("  - {name: %s, type: HTTP, http: {url: %q}, rollback: {type: HTTP, http: {url: %q}}}\n", name, rec.URL("/"+name), rec.URL("/undo-"+name))
	}
	kubectlApply(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: wf, namespace: %s}\nspec:\n  actions:\n", ns)+
		step("a")+step("b")+step("c")+
		fmt.Sprintf("---\napiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: p, namespace: %s}\nspec: {workflowRef: {name: wf}}\n", ns))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "run", "p")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)

	rec.answer("/undo-b", http.StatusInternalServerError)
	runOf(t, ns, "back", "p", "", true)
	back := waitExecution(t, ns, "back", drv1.ExecutionFailed)
	assert.Contains(t, back.Status.Message, "undo-b")
	assert.Equal(t, []int{1, 1, 1}, []int{rec.Arrived("/undo-a"), rec.Arrived("/undo-b"), rec.Arrived("/undo-c")}, "Continue: a is undone after b failed")

	rec.answer("/undo-b", http.StatusOK)
	runOf(t, ns, "back-again", "p", "back", true)
	waitExecution(t, ns, "back-again", drv1.ExecutionSucceeded)
	assert.Equal(t, []int{1, 2, 1}, []int{rec.Arrived("/undo-a"), rec.Arrived("/undo-b"), rec.Arrived("/undo-c")}, "only the rollback that failed runs again")
	waitReverted(t, ns, "run")
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
}

// waitReverted waits for an execution's Reverted condition (the controller marks it as the Revert
// ends, or on a later sync if that write failed).
func waitReverted(t *testing.T, ns, name string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("DRPlanExecution %s/%s to be Reverted", ns, name),
		func() (*drv1.DRPlanExecution, error) {
			return env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), name, metav1.GetOptions{})
		},
		func(e *drv1.DRPlanExecution) (bool, string) {
			return meta.IsStatusConditionTrue(e.Status.Conditions, drv1.ConditionReverted), fmt.Sprintf("conditions %v", e.Status.Conditions)
		})
}
