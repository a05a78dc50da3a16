package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestGuards runs a plan whose second stage's when guard is false (it is skipped, and the stage
// that depends on it still runs) and whose workflow guards an action on an earlier action's HTTP
// output.
func TestGuards(t *testing.T) {
	ns := newNamespace(t, "guards")
	rec := newRecorder(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: check, namespace: %[1]s}
spec:
  parameters: [{name: replicas, type: int, default: 3}]
  actions:
  - {name: probe, type: HTTP, http: {url: %[2]q, method: GET}}
  - name: on-200
    when: "actions['probe'].outputs.httpResponse.statusCode == 200 && params.replicas >= 3"
    type: HTTP
    http: {url: %[3]q}
  - name: on-500
    when: "actions['probe'].outputs.httpResponse.statusCode == 500"
    type: HTTP
    http: {url: %[4]q}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  globalParams: [{name: replicas, value: "5"}]
  stages:
  - {name: first, workflows: [{workflowRef: {name: check}}]}
  - name: only-in-drills
    dependsOn: [first]
    when: "execution.name.startsWith('drill-')"
    workflows: [{workflowRef: {name: check}}]
  - {name: last, dependsOn: [only-in-drills], workflows: [{workflowRef: {name: check}}]}
`, ns, rec.URL("/probe"), rec.URL("/on-200"), rec.URL("/on-500")))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "run", "p")
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)

	assert.Equal(t, drv1.StepSkipped, e.Status.StageStatuses[1].Phase)
	assert.Equal(t, `Skipped by its guard: when "execution.name.startsWith('drill-')" is false`, e.Status.StageStatuses[1].Message)
	assert.Equal(t, drv1.StepSucceeded, e.Status.StageStatuses[2].Phase, "a stage skipped by its guard does not block its dependents")
	assert.Len(t, rec.CallsTo("/probe"), 2, "first and last ran")
	assert.Len(t, rec.CallsTo("/on-200"), 2, "the guard read the probe's status code and the plan's replicas")
	assert.Empty(t, rec.CallsTo("/on-500"))
	var onFive drv1.ActionStatus
	for _, a := range e.Status.ActionStatuses {
		if a.Stage == "first" && a.Name == "on-500" {
			onFive = a
		}
	}
	assert.Equal(t, drv1.StepSkipped, onFive.Phase)
	assert.Equal(t, `Skipped by its guard: when "actions['probe'].outputs.httpResponse.statusCode == 500" is false`, onFive.Message)
}

// TestBrokenGuardMakesThePlanInvalid: a guard that does not compile makes the plan Invalid, with
// the field and the position in the expression.
func TestBrokenGuardMakesThePlanInvalid(t *testing.T) {
	ns := newNamespace(t, "badguard")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/x"))
	plan := fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %s}
spec:
  stages:
  - {name: s, when: "stages['x'].phase = 'Succeeded'", workflows: [{workflowRef: {name: wf}}]}
`, ns)
	want := `spec.stages[0].when: Invalid value: "stages['x'].phase = 'Succeeded'": ERROR: <input>:1:19: Syntax error: token recognition error at: '= '`
	assert.Contains(t, kubectlFails(t, plan, "apply", "-f", "-"), `The DRPlan "p" is invalid: `+want, "the webhook refuses it")
	withoutWebhook(t) // as when the webhook is down: the controller still finds it
	kubectlApply(t, plan)
	p := waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Contains(t, p.Status.Message, want)
}

// TestGuardTypedParameters: a guard that uses a parameter as the wrong type makes the workflow,
// and so its plan, Invalid when applied, with the field, the position and the types involved.
func TestGuardTypedParameters(t *testing.T) {
	ns := newNamespace(t, "typedguard")
	workflow := fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  parameters:
  - {name: replicas, type: int, default: 3}
  actions:
  - name: scale
    type: HTTP
    when: "params.replicas > '2'"
    http: {url: "http://127.0.0.1:1/"}
`, ns)
	want := `spec.actions[0].when: Invalid value: "params.replicas > '2'": ERROR: <input>:1:17: found no matching overload for '_>_' applied to '(int, string)'`
	assert.Contains(t, kubectlFails(t, workflow, "apply", "-f", "-"), `The DRWorkflow "wf" is invalid: `+want, "the webhook refuses it")
	withoutWebhook(t) // as when the webhook is down: the controller still finds it
	kubectlApply(t, workflow)
	kubectlApply(t, planYAML(ns, "p", "wf"))
	wf := waitWorkflowPhase(t, ns, "wf", drv1.WorkflowInvalid)
	assert.Contains(t, wf.Status.Message, want)
	p := waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Contains(t, p.Status.Message, "DRWorkflow "+ns+"/wf is Invalid")
}

// TestHTTPSuccessCondition decides HTTP calls by a CEL condition over the JSON answer.
func TestHTTPSuccessCondition(t *testing.T) {
	ns := newNamespace(t, "success")
	rec := newRecorder(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  failurePolicy: Continue
  actions:
  - name: ready
    type: HTTP
    http: {url: %[2]q, successCondition: "response.code == 200 && response.json.ok == true && response.json.path == '/ready'"}
  - name: not-yet
    type: HTTP
    http: {url: %[3]q, successCondition: "response.json.path == '/ready'"}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  workflowRef: {name: wf}
`, ns, rec.URL("/ready"), rec.URL("/other")))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	createExecution(t, ns, "run", "p")
	e := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	assert.Equal(t, drv1.StepSucceeded, e.Status.ActionStatuses[0].Phase)
	assert.Equal(t, drv1.StepFailed, e.Status.ActionStatuses[1].Phase)
	assert.Contains(t, e.Status.ActionStatuses[1].Message, `answered 200; successCondition "response.json.path == '/ready'" is false`)
}

// TestWaitFor holds a KubernetesResource action until the Deployment it created reports enough
// ready replicas (the test plays the deployment controller by writing the status), and fails
// another whose condition stays false past its timeout.
func TestWaitFor(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "waitfor")
	deployment := func(name string) string {
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec: {containers: [{name: app, image: busybox:1.36}]}
`, name)
	}
	manifest := func(name string) string {
		return strings.ReplaceAll(deployment(name), "\n", "\n        ")
	}
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  parameters: [{name: replicas, type: int, default: 3}]
  actions:
  - name: scale-up
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        %[2]s
    waitFor: {condition: "has(object.status.readyReplicas) && object.status.readyReplicas >= params.replicas", timeout: 30s}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: slow, namespace: %[1]s}
spec:
  actions:
  - name: never-ready
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        %[3]s
    waitFor: {condition: "has(object.status.readyReplicas)", timeout: 2s}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  workflowRef: {name: wf}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: q, namespace: %[1]s}
spec:
  workflowRef: {name: slow}
`, ns, manifest("app"), manifest("laggard")))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	waitPlanPhase(t, ns, "q", drv1.PlanReady)
	createExecution(t, ns, "run", "p")
	createExecution(t, ns, "slow-run", "q")

	waitFor(t, "the action to report what it waits for", func() (*drv1.DRPlanExecution, error) {
		return env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "run", metav1.GetOptions{})
	}, func(e *drv1.DRPlanExecution) (bool, string) {
		if len(e.Status.ActionStatuses) == 0 {
			return false, "no status yet"
		}
		m := e.Status.ActionStatuses[0].Message
		return strings.HasPrefix(m, `Waiting for "has(object.status.readyReplicas) && object.status.readyReplicas >= params.replicas": false`), m
	})
	// Play the deployment controller: 2 ready (not enough), then 3.
	for _, ready := range []int32{2, 3} {
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d, err := env.Kube.AppsV1().Deployments(ns).Get(ctx, "app", metav1.GetOptions{})
			if err != nil {
				return err
			}
			d.Status.Replicas, d.Status.ReadyReplicas = ready, ready
			_, err = env.Kube.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
			return err
		}))
	}
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	assert.Contains(t, e.Status.ActionStatuses[0].Message, `is true`)

	e = waitExecution(t, ns, "slow-run", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, `Action 'never-ready' failed: waitFor "has(object.status.readyReplicas)" still not true after 2s (last: false)`)
}
