package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// createRevert creates a Revert of plan, of target when it is not empty.
func createRevert(t *testing.T, ns, name, plan, target string) {
	t.Helper()
	e := &drv1.DRPlanExecution{ObjectMeta: requested(t, metav1.ObjectMeta{Name: name}),
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: plan}, Operation: drv1.OperationRevert}}
	if target != "" {
		e.Spec.RevertExecutionRef = &drv1.LocalReference{Name: target}
	}
	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), e, metav1.CreateOptions{})
	require.NoError(t, err)
}

// TestRevertUndoesWhatTheExecuteDid runs a two-stage failover, then reverts it: stages in
// reverse, actions in reverse, rollbacks where defined, created objects deleted (that very
// object), HTTP calls and Deletes skipped with the reason; the target is marked Reverted and the
// plan is Ready again; a second revert is refused.
func TestRevertUndoesWhatTheExecuteDid(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "revert")
	rec := newRecorder(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: legacy, namespace: %[1]s}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: infra, namespace: %[1]s}
spec:
  actions:
  - name: notify
    type: HTTP
    http: {url: %[2]q}
  - name: make-config
    type: KubernetesResource
    resource:
      operation: Create
      manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dr-config}\ndata: {mode: dr}\n"
  - name: drop-legacy
    type: KubernetesResource
    resource:
      operation: Delete
      manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: legacy}\n"
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: app, namespace: %[1]s}
spec:
  actions:
  - name: switch
    type: HTTP
    http: {url: %[3]q, method: PUT}
    rollback:
      type: HTTP
      http: {url: %[4]q, method: PUT}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  stages:
  - name: infrastructure
    workflows: [{workflowRef: {name: infra}}]
  - name: applications
    dependsOn: [infrastructure]
    workflows: [{workflowRef: {name: app}}]
`, ns, rec.URL("/notify"), rec.URL("/switch"), rec.URL("/switch-back")))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "failover", "p")
	waitExecution(t, ns, "failover", drv1.ExecutionSucceeded)
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
	cm, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "dr-config", metav1.GetOptions{})
	require.NoError(t, err)

	createRevert(t, ns, "back", "p", "") // the latest Execute in effect
	e := waitExecution(t, ns, "back", drv1.ExecutionSucceeded)
	assert.Equal(t, []string{"applications", "infrastructure"}, []string{e.Status.StageStatuses[0].Name, e.Status.StageStatuses[1].Name},
		"stages in reverse order")
	phases := map[string]string{}
	var order []string
	for _, a := range e.Status.ActionStatuses {
		phases[a.Name] = string(a.Phase) + ": " + a.Message
		order = append(order, a.Name)
	}
	assert.Equal(t, []string{"switch", "drop-legacy", "make-config", "notify"}, order, "actions in reverse")
	assert.Equal(t, "Succeeded: HTTP request completed with status 200", phases["switch"], "its rollback ran")
	assert.Equal(t, "Skipped: A Delete cannot be undone (define a rollback to undo it)", phases["drop-legacy"])
	assert.Equal(t, "Succeeded: ConfigMap "+ns+"/dr-config deleted", phases["make-config"])
	assert.Equal(t, "Skipped: An HTTP call cannot be undone automatically (define a rollback to undo it)", phases["notify"])
	_, err = env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "dr-config", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the created ConfigMap (uid %s) is gone: %v", cm.UID, err)
	assert.Len(t, rec.CallsTo("/switch-back"), 1)
	assert.Len(t, rec.CallsTo("/notify"), 1, "not called again")

	target, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "failover", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "back", target.Status.RevertedBy)
	assert.True(t, conditionTrue(target.Status.Conditions, drv1.ConditionReverted))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	p := waitLockReleased(t, ns, "p")
	require.NotNil(t, p.Status.LastSuccessfulExecution)
	assert.Equal(t, drv1.OperationRevert, p.Status.LastSuccessfulExecution.Operation)
	assert.Equal(t, "back", p.Status.LastSuccessfulExecution.Name)

	again := fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: again, namespace: %s}\nspec: {planRef: {name: p}, operation: Revert, revertExecutionRef: {name: failover}}\n", ns)
	assert.Contains(t, kubectlFails(t, again, "apply", "-f", "-"), "cannot revert: execution failover was already reverted by back")
}

// TestRevertOfAPartialFailover reverts an Execute that failed halfway: only what took effect is
// undone.
func TestRevertOfAPartialFailover(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "partial")
	rec := newRecorder(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - name: first
    type: KubernetesResource
    resource: {operation: Create, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n"}
  - name: broken
    type: HTTP
    http: {url: %[2]q}
  - name: never
    type: KubernetesResource
    resource: {operation: Create, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: never}\n"}
`, ns, rec.URL("/fail?status=500")))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "failover", "p")
	waitExecution(t, ns, "failover", drv1.ExecutionFailed)
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted) // something took effect

	createRevert(t, ns, "back", "p", "failover")
	e := waitExecution(t, ns, "back", drv1.ExecutionSucceeded)
	msgs := map[string]string{}
	for _, a := range e.Status.ActionStatuses {
		msgs[a.Name] = string(a.Phase) + ": " + a.Message
	}
	assert.Equal(t, "Skipped: Nothing to undo: it did not take effect in execution failover", msgs["never"])
	assert.Equal(t, "Skipped: Nothing to undo: it did not take effect in execution failover", msgs["broken"])
	assert.Equal(t, "Succeeded: ConfigMap "+ns+"/first deleted", msgs["first"])
	_, err := env.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "first", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
}

// TestRevertUndoesASequentialStageLastFirst is the plan, tried as a new user would: stage
// first runs workflows a, b, c one after another and stage second runs d after it, each an HTTP
// call with an HTTP rollback. The Revert undoes d, then c, b, a.
func TestRevertUndoesASequentialStageLastFirst(t *testing.T) {
	ns := newNamespace(t, "revert-order")
	rec := newRecorder(t)
	var manifests []string
	for _, w := range []string{"a", "b", "c", "d"} {
		manifests = append(manifests, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  actions:
  - name: call-%[1]s
    type: HTTP
    http: {url: %[3]q}
    rollback:
      type: HTTP
      http: {url: %[4]q}
`, w, ns, rec.URL("/"+w), rec.URL("/"+w+"/back")))
	}
	manifests = append(manifests, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %s}
spec:
  stages:
  - name: first
    workflows: [{workflowRef: {name: a}}, {workflowRef: {name: b}}, {workflowRef: {name: c}}]
  - name: second
    dependsOn: [first]
    workflows: [{workflowRef: {name: d}}]
`, ns))
	kubectlApply(t, strings.Join(manifests, "---\n"))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "failover", "p")
	waitExecution(t, ns, "failover", drv1.ExecutionSucceeded)
	assert.Equal(t, []string{"/a", "/b", "/c", "/d"}, arrivalOrder(rec), "the Execute")

	createRevert(t, ns, "back", "p", "failover")
	e := waitExecution(t, ns, "back", drv1.ExecutionSucceeded)
	assert.Equal(t, []string{"/a", "/b", "/c", "/d", "/d/back", "/c/back", "/b/back", "/a/back"}, arrivalOrder(rec),
		"the Revert undoes the later stage first, then the sequential stage's workflows last first")
	var listed []string
	for _, a := range e.Status.ActionStatuses {
		listed = append(listed, fmt.Sprintf("%s/%d/%s", a.Stage, a.WorkflowIndex, a.Name))
	}
	assert.Equal(t, []string{"second/0/call-d", "first/0/call-c", "first/1/call-b", "first/2/call-a"}, listed,
		"the Revert's status lists its actions in the order they ran")
}

// arrivalOrder lists the paths the recorder was called on, in the order the calls arrived.
func arrivalOrder(rec *recorder) []string {
	calls := rec.Calls()
	sort.SliceStable(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
	paths := make([]string, len(calls))
	for i, c := range calls {
		paths[i] = c.Path
	}
	return paths
}
