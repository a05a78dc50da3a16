package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// httpWorkflow is a workflow of HTTP POST calls to the recorder, one per path.
func httpWorkflow(ns, name string, rec *recorder, policy string, paths ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: %s, namespace: %s}\nspec:\n", name, ns)
	if policy != "" {
		fmt.Fprintf(&b, "  failurePolicy: %s\n", policy)
	}
	b.WriteString("  actions:\n")
	for i, p := range paths {
		fmt.Fprintf(&b, "  - name: call-%d\n    type: HTTP\n    http:\n      url: %q\n      body: '{\"plan\": \"{{ .planName }}\", \"at\": \"{{ .timestamp }}\"}'\n", i, rec.URL(p))
	}
	return b.String()
}

// callThenConfigMap is a workflow "wf" of an HTTP call to url, then a ConfigMap configMap
// created: a test holds the call to act while the run is between the two.
func callThenConfigMap(ns, url, configMap string) string {
	return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - {name: call, type: HTTP, http: {url: %[2]q}}
  - name: config
    type: KubernetesResource
    resource: {operation: Create, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %[3]s}\n"}
`, ns, url, configMap)
}

func createExecution(t *testing.T, ns, name, plan string) {
	t.Helper()
	runOf(t, ns, name, plan, "", false)
}

// TestQuickstartRuns runs the guide's quickstart, with the notification URL pointing at a local
// recorder, to Succeeded, and checks what the guide shows of it.
func TestQuickstartRuns(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "quickstart")
	rec := newRecorder(t)
	raw, err := os.ReadFile(example("quickstart/simple-workflow.yaml"))
	require.NoError(t, err)
	wf := strings.ReplaceAll(string(raw), "https://notify.example.com/webhook", rec.URL("/webhook"))
	wf = strings.ReplaceAll(wf, "namespace: default", "namespace: "+ns)
	kubectlApply(t, wf)
	for _, f := range []string{"quickstart/simple-plan.yaml", "quickstart/execute-plan.yaml"} {
		raw, err := os.ReadFile(example(f))
		require.NoError(t, err)
		kubectlApply(t, strings.ReplaceAll(string(raw), "namespace: default", "namespace: "+ns))
	}
	out := kubectl(t, "wait", "drplanexecution/my-first-execution", "-n", ns, "--for=condition=Complete", "--timeout=30s")
	assert.Contains(t, out, "condition met")
	e := waitExecution(t, ns, "my-first-execution", drv1.ExecutionSucceeded)

	calls := rec.CallsTo("/webhook")
	require.Len(t, calls, 1)
	assert.Equal(t, "POST", calls[0].Method)
	assert.Contains(t, calls[0].Body, `"message": "容灾预案已触发"`)
	assert.Contains(t, calls[0].Body, `"timestamp": "`+e.Status.StartTime.UTC().Format(time.RFC3339)+`"`)

	require.Len(t, e.Status.ActionStatuses, 1)
	a := e.Status.ActionStatuses[0]
	assert.Equal(t, drv1.StepSucceeded, a.Phase)
	assert.Equal(t, "HTTP request completed with status 200", a.Message)
	// The plan label is added by its own write, which may land after the run ended.
	eventually(t, "the execution to carry its plan's label", func() (bool, string) {
		l := getExecution(t, ns, "my-first-execution").Labels[drv1.LabelPlan]
		return l == "my-first-plan", l
	})
	require.Len(t, e.Status.Outputs, 1)
	assert.EqualValues(t, 200, e.Status.Outputs[0].HTTPResponse.StatusCode)
	assert.NotNil(t, e.Status.Snapshot)
	assert.Equal(t, &drv1.ExecutionSummary{TotalStages: 1, CompletedStages: 1, TotalWorkflows: 1, CompletedWorkflows: 1}, e.Status.Summary)
	assert.True(t, meta.IsStatusConditionTrue(e.Status.Conditions, drv1.ConditionComplete))

	waitPlanPhase(t, ns, "my-first-plan", drv1.PlanExecuted)
	p := waitLockReleased(t, ns, "my-first-plan")
	require.NotNil(t, p.Status.LastSuccessfulExecution)
	assert.Equal(t, "my-first-execution", p.Status.LastSuccessfulExecution.Name)
	assert.Equal(t, drv1.OperationExecute, p.Status.LastSuccessfulExecution.Operation)

	out = kubectl(t, "get", "drplanexecution", "-n", ns, "-l", "dr.bkbcs.tencent.com/plan=my-first-plan",
		"--sort-by=.metadata.creationTimestamp", "-o", "jsonpath={.items[-1].metadata.name}")
	assert.Equal(t, "my-first-execution", out)
	out = kubectl(t, "get", "drplanexecution", "my-first-execution", "-n", ns)
	assertColumns(t, out, []string{"NAME", "PLAN", "OPERATION", "PHASE", "AGE"}, []string{"my-first-execution", "my-first-plan", "Execute", "Succeeded"})
	eventually(t, "the execution's events", func() (bool, string) {
		out := kubectl(t, "describe", "drplanexecution", "my-first-execution", "-n", ns)
		for _, want := range []string{"ExecutionStarted", "Execution started for plan my-first-plan", "ActionStarted",
			"Action send-notification started", "ActionSucceeded", "Action send-notification completed successfully in",
			"ExecutionSucceeded", "Execution completed successfully in"} {
			if !strings.Contains(out, want) {
				return false, "missing " + want + " in\n" + out
			}
		}
		return true, ""
	})
	_ = ctx
}

// TestStagesRunInOrderAndInParallel runs a parallel stage of three workflows, each making a call
// that takes 200ms, then a dependent stage, and checks the order and the overlap from the
// recorded request times.
func TestStagesRunInOrderAndInParallel(t *testing.T) {
	ns := newNamespace(t, "stages")
	rec := newRecorder(t)
	for i := range 3 {
		kubectlApply(t, httpWorkflow(ns, fmt.Sprintf("infra-%d", i), rec, "", fmt.Sprintf("/infra-%d?delay=200ms", i)))
	}
	kubectlApply(t, httpWorkflow(ns, "apps", rec, "", "/apps"))
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: three-stage, namespace: %s}
spec:
  stages:
  - name: infrastructure
    parallel: true
    workflows:
    - workflowRef: {name: infra-0}
    - workflowRef: {name: infra-1}
    - workflowRef: {name: infra-2}
  - name: applications
    dependsOn: [infrastructure]
    workflows:
    - workflowRef: {name: apps}
  - name: validation
    dependsOn: [applications]
    workflows:
    - workflowRef: {name: apps}
`, ns))
	waitPlanPhase(t, ns, "three-stage", drv1.PlanReady)
	createExecution(t, ns, "run", "three-stage")
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)

	var infra []call
	for i := range 3 {
		c := rec.CallsTo(fmt.Sprintf("/infra-%d", i))
		require.Len(t, c, 1)
		infra = append(infra, c[0])
	}
	apps := rec.CallsTo("/apps")
	require.Len(t, apps, 2)
	latestStart, earliestEnd, latestEnd := infra[0].Start, infra[0].End, infra[0].End
	for _, c := range infra {
		latestStart = later(latestStart, c.Start)
		latestEnd = later(latestEnd, c.End)
		if c.End.Before(earliestEnd) {
			earliestEnd = c.End
		}
	}
	assert.True(t, latestStart.Before(earliestEnd), "the three workflows of the parallel stage overlap")
	assert.True(t, apps[0].Start.After(latestEnd), "the dependent stage starts after the parallel stage ends")
	assert.True(t, apps[1].Start.After(apps[0].End), "validation runs after applications")

	infraStage := e.Status.StageStatuses[0]
	assert.Equal(t, drv1.StepSucceeded, infraStage.Phase)
	assert.True(t, infraStage.Parallel)
	for _, w := range infraStage.WorkflowExecutions {
		assert.Equal(t, "1/1 actions completed", w.Progress)
		assert.NotEmpty(t, w.Duration)
	}
	assert.Equal(t, []string{"infrastructure"}, e.Status.StageStatuses[1].DependsOn)
	out := kubectl(t, "get", "drplanexecution", "run", "-n", ns, "-o", `jsonpath={.status.stageStatuses[?(@.name=="infrastructure")].phase}`)
	assert.Equal(t, "Succeeded", out)
	out = kubectl(t, "get", "drplanexecution", "run", "-n", ns, "-o", "jsonpath={.status.actionStatuses[*].phase}")
	assert.Equal(t, "Succeeded Succeeded Succeeded Succeeded Succeeded", out)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TestFailurePolicies checks Stop (the default) against Continue, at the workflow and plan level.
func TestFailurePolicies(t *testing.T) {
	ns := newNamespace(t, "failure")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "stop", rec, "", "/stop-a", "/stop-b?status=500", "/stop-c"))
	kubectlApply(t, httpWorkflow(ns, "cont", rec, "Continue", "/cont-a", "/cont-b?status=500", "/cont-c"))
	kubectlApply(t, httpWorkflow(ns, "after", rec, "", "/after"))
	plan := func(name, policy, wf string) string {
		return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: %s, namespace: %s}
spec:
  failurePolicy: %s
  stages:
  - {name: first, workflows: [{workflowRef: {name: %s}}]}
  - {name: second, dependsOn: [first], workflows: [{workflowRef: {name: after}}]}
  - {name: independent, workflows: [{workflowRef: {name: after}}]}
`, name, ns, policy, wf)
	}
	kubectlApply(t, plan("p-stop", "Stop", "stop"))
	kubectlApply(t, plan("p-cont", "Continue", "cont"))
	waitPlanPhase(t, ns, "p-stop", drv1.PlanReady)
	waitPlanPhase(t, ns, "p-cont", drv1.PlanReady)

	createExecution(t, ns, "stop-run", "p-stop")
	e := waitExecution(t, ns, "stop-run", drv1.ExecutionFailed)
	assert.True(t, strings.HasPrefix(e.Status.Message, "Action 'call-1' failed: POST "+rec.URL("/stop-b")), e.Status.Message)
	assert.Contains(t, e.Status.Message, "answered 500")
	assert.Empty(t, rec.CallsTo("/stop-c"), "workflow Stop: no action after the failure")
	phases := map[string]drv1.StepPhase{}
	for _, a := range e.Status.ActionStatuses {
		phases[a.Stage+"/"+a.Name] = a.Phase
	}
	assert.Equal(t, drv1.StepPending, phases["first/call-2"])
	assert.Equal(t, drv1.StepPending, phases["second/call-0"], "plan Stop: the dependent stage does not start")
	assert.Equal(t, drv1.StepPending, e.Status.StageStatuses[1].Phase)

	createExecution(t, ns, "cont-run", "p-cont")
	e = waitExecution(t, ns, "cont-run", drv1.ExecutionFailed)
	assert.Len(t, rec.CallsTo("/cont-c"), 1, "workflow Continue: later actions still run")
	assert.Equal(t, drv1.StepSkipped, e.Status.StageStatuses[1].Phase, "plan Continue: a stage depending on a failed one is skipped")
	assert.Equal(t, `Skipped: stage "first" it depends on did not succeed`, e.Status.StageStatuses[1].Message)
	assert.Equal(t, drv1.StepSucceeded, e.Status.StageStatuses[2].Phase, "plan Continue: independent stages run")
	assert.Equal(t, int32(1), e.Status.Summary.FailedStages)
	eventually(t, "a Warning ActionFailed event", func() (bool, string) {
		out := kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=cont-run,type=Warning", "-o", "jsonpath={.items[*].reason}")
		return strings.Contains(out, "ActionFailed") && strings.Contains(out, "ExecutionFailed"), out
	})
}

// TestWorkflowEditedMidRunChangesNothing edits a workflow while its execution runs: the run uses
// its snapshot.
func TestWorkflowEditedMidRunChangesNothing(t *testing.T) {
	ns := newNamespace(t, "snapshot")
	rec := newRecorder(t)
	release := rec.hold("/first")
	defer release()
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/first", "/second"))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	eventually(t, "the first call to arrive", func() (bool, string) { return rec.Arrived("/first") == 1, "" })

	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/first", "/edited"))
	waitWorkflowPhase(t, ns, "wf", drv1.WorkflowReady)
	release()
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	assert.Len(t, rec.CallsTo("/second"), 1)
	assert.Empty(t, rec.CallsTo("/edited"))
}

// TestOneExecutionAtATime creates two executions of one plan together, with no admission
// webhook: the plan's lock lets exactly one run at a time.
func TestOneExecutionAtATime(t *testing.T) {
	withoutWebhook(t)
	ns := newNamespace(t, "lock")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/slow?delay=300ms"))
	applyPlan(t, ns, "p", "wf")
	done := make(chan struct{})
	go func() { createExecution(t, ns, "a", "p"); done <- struct{}{} }()
	createExecution(t, ns, "b", "p")
	<-done

	eventually(t, "one execution to wait for the other", func() (bool, string) {
		var msgs []string
		for _, name := range []string{"a", "b"} {
			e, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), name, metav1.GetOptions{})
			require.NoError(t, err)
			if e.Status.Phase == drv1.ExecutionPending && strings.HasPrefix(e.Status.Message, "Waiting for execution ") {
				return true, ""
			}
			msgs = append(msgs, string(e.Status.Phase)+": "+e.Status.Message)
		}
		return false, strings.Join(msgs, "; ")
	})
	waitExecution(t, ns, "a", drv1.ExecutionSucceeded)
	waitExecution(t, ns, "b", drv1.ExecutionSucceeded)
	calls := rec.CallsTo("/slow")
	require.Len(t, calls, 2)
	assert.True(t, calls[1].Start.After(calls[0].End), "the second run starts after the first ends")
	waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
	waitLockReleased(t, ns, "p")
}

// TestDeletingTheRunningExecutionFreesThePlan deletes an execution mid-run while another waits
// for the plan's lock (admitted with the webhook off): the run stops (its call in flight is
// abandoned) and the waiting one runs.
func TestDeletingTheRunningExecutionFreesThePlan(t *testing.T) {
	withoutWebhook(t)
	ctx := context.Background()
	ns := newNamespace(t, "delete")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/held"))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "first", "p")
	eventually(t, "the first run's call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })
	createExecution(t, ns, "second", "p")
	e := waitExecution(t, ns, "second", drv1.ExecutionPending)
	assert.Equal(t, "Waiting for execution first to finish: a plan runs one execution at a time", e.Status.Message)

	require.NoError(t, env.DR.DrV1alpha1().DRPlanExecutions(ns).Delete(ctx, "first", metav1.DeleteOptions{}))
	eventually(t, "the abandoned call to be dropped", func() (bool, string) { return rec.Aborted("/held") == 1, "" })
	eventually(t, "the second run's call to arrive", func() (bool, string) { return rec.Arrived("/held") == 2, "" })
	release()
	waitExecution(t, ns, "second", drv1.ExecutionSucceeded)
	assert.Len(t, rec.CallsTo("/held"), 1, "only the second run's call completed")
	p := waitLockReleased(t, ns, "p")
	assert.Equal(t, "second", p.Status.LastSuccessfulExecution.Name)
}

// TestParametersAndTemplates checks the precedence of parameter values (default < globalParams <
// stage params < execution params), per-workflow resolvedParams, toJson, and that a required
// parameter without a value fails the run before any side effect.
func TestParametersAndTemplates(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "params")
	rec := newRecorder(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  parameters:
  - {name: replicas, type: int, default: 3}
  - {name: region, default: primary}
  - {name: message, required: true}
  - {name: service, required: true}
  actions:
  - name: notify
    type: HTTP
    http:
      url: %[2]q
      body: '{"replicas": {{ .params.replicas }}, "region": {{ toJson .params.region }}, "message": {{ toJson .params.message }}, "service": "{{ .params.service }}", "run": "{{ .executionName }}", "ns": "{{ .namespace }}"}'
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  globalParams:
  - {name: region, value: dr-region}
  - {name: message, value: 'say "failover"'}
  stages:
  - name: s
    parallel: true
    workflows:
    - workflowRef: {name: wf}
      params: [{name: service, value: order}, {name: replicas, value: "5"}]
    - workflowRef: {name: wf}
      params: [{name: service, value: pay}]
`, ns, rec.URL("/notify")))
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "run"},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"},
			Params: []drv1.ParamValue{{Name: "region", Value: "dr-east"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	var bodies []string
	for _, c := range rec.CallsTo("/notify") {
		bodies = append(bodies, c.Body)
	}
	assert.ElementsMatch(t, []string{
		fmt.Sprintf(`{"replicas": 5, "region": "dr-east", "message": "say \"failover\"", "service": "order", "run": "run", "ns": "%s"}`, ns),
		fmt.Sprintf(`{"replicas": 3, "region": "dr-east", "message": "say \"failover\"", "service": "pay", "run": "run", "ns": "%s"}`, ns),
	}, bodies)
	assert.Equal(t, map[string]string{"region": "dr-east", "message": `say "failover"`}, e.Status.ResolvedParams)
	wfs := e.Status.StageStatuses[0].WorkflowExecutions
	assert.Equal(t, map[string]string{"service": "order", "replicas": "5"}, wfs[0].ResolvedParams)
	assert.Equal(t, map[string]string{"service": "pay", "replicas": "3"}, wfs[1].ResolvedParams)

	// A second plan leaves the required "service" to each execution (spec.executionParams); an
	// execution does not give it.
	planQ := "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: %s, namespace: %s}\nspec:\n  globalParams: [{name: message, value: m}]\n  workflowRef: {name: wf}\n"
	kubectlApply(t, fmt.Sprintf(planQ+"  executionParams: [service]\n", "q", ns))
	waitPlanPhase(t, ns, "q", drv1.PlanReady)
	calls := len(rec.Calls())
	// The webhook refuses it at once; without the webhook, the controller fails it before any
	// side effect.
	stderr := kubectlFails(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: missing, namespace: %s}\nspec: {planRef: {name: q}}\n", ns), "apply", "-f", "-")
	assert.Contains(t, stderr, fmt.Sprintf(`The DRPlanExecution "missing" is invalid: spec.params: Required value: DRPlan %s/q names service in spec.executionParams: every execution must give it a value in its spec.params`, ns))
	withoutWebhook(t)
	createExecution(t, ns, "missing", "q")
	e = waitExecution(t, ns, "missing", drv1.ExecutionFailed)
	assert.Equal(t, fmt.Sprintf(`Cannot start: DRPlan %s/q names service in spec.executionParams: every execution must give it a value in its spec.params`, ns), e.Status.Message)
	waitLockReleased(t, ns, "q")

	// A plan that leaves it without a value at all is Invalid (the webhook would refuse it);
	// stored without the webhook and run anyway, its run fails before any side effect.
	kubectlApply(t, fmt.Sprintf(planQ, "r", ns))
	waitPlanPhase(t, ns, "r", drv1.PlanInvalid)
	createExecution(t, ns, "unset", "r")
	e = waitExecution(t, ns, "unset", drv1.ExecutionFailed)
	assert.Equal(t, fmt.Sprintf(`Cannot start: stage "default", workflow 0 (DRWorkflow %s/wf): required parameter service has no value: set it in the plan's globalParams, the stage's params or the execution's spec.params`, ns), e.Status.Message)
	assert.Len(t, rec.Calls(), calls, "no side effect")
	waitLockReleased(t, ns, "r")
}
