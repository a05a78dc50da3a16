package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// celBombs are workflows whose guard or condition would cost far more than the per-evaluation
// limit on inputs the schema allows, by the field that holds it.
var celBombs = map[string]struct {
	field string
	wf    func(expr string) drv1.DRWorkflowSpec
	expr  string
}{
	"nested": {field: "spec.actions[0].when", expr: "actions.all(x, actions.all(y, actions.all(z, x != z)))",
		wf: func(expr string) drv1.DRWorkflowSpec {
			return drv1.DRWorkflowSpec{Actions: []drv1.Action{{Name: "boom", When: expr, ActionBody: celBombCall("")}}}
		}},
	"regex": {field: "spec.actions[0].http.successCondition", expr: "response.body.replace('', response.body).matches('x+y')",
		wf: func(expr string) drv1.DRWorkflowSpec {
			return drv1.DRWorkflowSpec{Actions: []drv1.Action{{Name: "boom", ActionBody: celBombCall(expr)}}}
		}},
	"waitfor": {field: "spec.actions[0].waitFor.condition", expr: "object.data.all(a, object.data.all(b, a == b))",
		wf: func(expr string) drv1.DRWorkflowSpec {
			return drv1.DRWorkflowSpec{Actions: []drv1.Action{{Name: "boom", WaitFor: &drv1.WaitFor{Condition: expr},
				ActionBody: drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{
					Operation: "Create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: boom}\n"}}}}}
		}},
}

func celBombCall(successCondition string) drv1.ActionBody {
	return drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "http://127.0.0.1:1/x", SuccessCondition: successCondition}}
}

// TestCELBombs: a guard or condition whose estimated cost exceeds the limit is refused at
// admission, a server-side dry run included, in under a second, naming the field and the
// estimate; those stored without the webhook are marked Invalid by a controller that starts with
// them there and goes on running other plans.
func TestCELBombs(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "celbombs")
	t.Logf("before the bombs: %s", controllerMemory())
	workflows := env.DR.DrV1alpha1().DRWorkflows(ns)
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	for name, b := range celBombs {
		wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: b.wf(b.expr)}
		start := time.Now()
		_, err := workflows.Create(ctx, wf, dryRun)
		took := time.Since(start)
		require.Error(t, err)
		assert.Contains(t, err.Error(), fmt.Sprintf("%s: Invalid value: %q: estimated cost ", b.field, b.expr))
		assert.Contains(t, err.Error(), "exceeds the limit 1000000")
		assert.Less(t, took, time.Second, "the issue's bound, a server-side dry run included")
		t.Logf("%s: refused in %s: %v", name, took.Round(time.Millisecond), err)
	}
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "stages"}, Spec: drv1.DRPlanSpec{Stages: []drv1.Stage{{
		Name: "s", When: "stages.all(a, stages.all(b, stages[a].message.contains(stages[b].message)))",
		Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "nested"}}}}}}}
	start := time.Now()
	_, err := env.DR.DrV1alpha1().DRPlans(ns).Create(ctx, plan, dryRun)
	took := time.Since(start)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "spec.stages[0].when: Invalid value")
	assert.Contains(t, err.Error(), "exceeds the limit 1000000")
	assert.Less(t, took, time.Second)
	t.Logf("a plan's stage guard: refused in %s: %v", took.Round(time.Millisecond), err)

	// Stored as if before the checks, or while the webhook was down, and found by a controller
	// (a leader) that starts with them there.
	withoutWebhooks(t) // the stopped controller's process serves them
	require.NoError(t, env.StopController())
	started := false
	t.Cleanup(func() {
		if !started {
			env.StartController(defaultGrace)
		}
	})
	for name, b := range celBombs {
		_, err := workflows.Create(ctx, &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: b.wf(b.expr)}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err = env.DR.DrV1alpha1().DRPlans(ns).Create(ctx, plan, metav1.CreateOptions{})
	require.NoError(t, err)
	env.StartController(defaultGrace)
	started = true
	for name, b := range celBombs {
		wf := waitWorkflowPhase(t, ns, name, drv1.WorkflowInvalid)
		assert.Contains(t, wf.Status.Message, b.field+": Invalid value")
		assert.Contains(t, wf.Status.Message, "exceeds the limit 1000000")
	}
	assert.Contains(t, waitPlanPhase(t, ns, "stages", drv1.PlanInvalid).Status.Message, "spec.stages[0].when: Invalid value")

	require.NoError(t, env.SetWebhook(true)) // the validating one first: it sees the mutating one's records
	require.NoError(t, env.SetMutatingWebhook(true))
	rec := newRecorder(t) // the controller goes on: another plan runs
	kubectlApply(t, httpWorkflow(ns, "fine", rec, "", "/fine"))
	applyPlan(t, ns, "fine", "fine")
	createExecution(t, ns, "run", "fine")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	t.Logf("after the bombs: %s", controllerMemory())
}

// controllerMemory describes the memory of the process the controller runs in. On the local
// backend that is this process (the controller, its webhook and the suite; the API server and
// etcd are processes of their own): its resident set now and at its peak (VmRSS and VmHWM of
// /proc/self/status), and the Go heap in use after a collection.
func controllerMemory() string {
	if env.InCluster {
		return "not measured here: the controller runs in the chart's pods"
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := fmt.Sprintf("Go heap in use %.1f MiB", float64(ms.HeapInuse)/(1<<20))
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			out += ", " + strings.Join(strings.Fields(line), " ")
		}
	}
	return out
}
