package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
)

// limiterWaits reads, from the controller's metrics, the seconds each client's requests waited in
// its client-side rate limiter (drplan_client_rate_limiter_wait_seconds_total), summed over the
// replicas.
func limiterWaits(t *testing.T) map[string]float64 {
	t.Helper()
	waits := map[string]float64{}
	for _, url := range env.MetricsURLs() {
		resp, err := http.Get(url)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		for _, client := range []string{"controller", "reviews", "webhook"} {
			if v := seriesValue(string(body), `drplan_client_rate_limiter_wait_seconds_total{client="`+client+`"}`); v != "" {
				f, err := strconv.ParseFloat(v, 64)
				require.NoError(t, err)
				waits[client] += f
			}
		}
	}
	return waits
}

// flood sends dry-run creates of executions of plans that do not exist, from workers goroutines,
// until stop is called: each makes the webhook read the API server (the plan is not in its
// cache), through its own client. It counts the reviews answered: refused for the plan, or
// "retry" when the webhook's read could not be made in time.
type flood struct {
	refused, retry, other atomic.Int64
	stop                  func()
}

func startFlood(t *testing.T, dr versioned.Interface, ns string, workers int) *flood {
	f := &flood{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				_, err := dr.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("flood-%d-%d", w, i)},
					Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: fmt.Sprintf("ghost-%d-%d", w, i)}},
				}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				switch {
				case ctx.Err() != nil:
				case err != nil && strings.Contains(err.Error(), "does not exist"):
					f.refused.Add(1)
				case err != nil && strings.Contains(err.Error(), "could not read what it decides on"):
					f.retry.Add(1)
				default:
					f.other.Add(1)
				}
			}
		})
	}
	f.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(f.stop)
	return f
}

func (f *flood) reviews() int64 { return f.refused.Load() + f.retry.Load() }

// TestWebhookFloodLeavesTheEngineUnthrottled: with the webhook's own rate limit low (5/s), a flood
// of admission reviews that read the API server waits in the webhook's limiter, while a run of
// twelve actions, started during the flood, writes its status through the controller's client
// without waiting, and succeeds.
func TestWebhookFloodLeavesTheEngineUnthrottled(t *testing.T) {
	if env.SetWebhookRateLimit == nil || len(env.MetricsURLs()) == 0 {
		t.Skip("the backend runs the controller out of the suite's reach (its options, its metrics)")
	}
	require.NoError(t, env.SetWebhookRateLimit(5, 1))
	t.Cleanup(func() { require.NoError(t, env.SetWebhookRateLimit(0, 0)) })
	before := limiterWaits(t)

	ns := newNamespace(t, "flood")
	rec := newRecorder(t)
	paths := []string{"/1", "/2", "/3", "/4", "/5", "/held", "/7", "/8", "/9", "/10", "/11", "/12"}
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", paths...))
	waitWorkflowPhase(t, ns, "wf", drv1.WorkflowReady)
	applyPlan(t, ns, "p", "wf")
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	release := rec.hold("/held")
	defer release()

	f := startFlood(t, env.DR, ns, 16)
	// The plan and the workflow are cached: admitting the run needs no read of the API server.
	createExecution(t, ns, "run", "p")
	eventually(t, "the run to reach its held action", func() (bool, string) { return rec.Arrived("/held") > 0, "" })
	eventually(t, "200 reviews during the run", func() (bool, string) {
		return f.reviews() >= 200, fmt.Sprintf("%d reviews", f.reviews())
	})
	release()
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	f.stop()
	after := limiterWaits(t)

	webhook, controller, reviews := after["webhook"]-before["webhook"], after["controller"]-before["controller"], after["reviews"]-before["reviews"]
	t.Logf("%d reviews during the run (%d refused for the plan, %d answered retry, %d other); %d actions; waited in the rate limiters: webhook %.2fs, controller %.4fs, the controller's reviews %.4fs",
		f.reviews(), f.refused.Load(), f.retry.Load(), f.other.Load(), len(e.Status.ActionStatuses), webhook, controller, reviews)
	assert.Zero(t, f.other.Load(), "every review answered by the webhook")
	assert.Greater(t, webhook, 1.0, "the flood waited in the webhook's limiter")
	assert.Less(t, controller, 0.1, "the engine's client did not wait behind the flood")
	assert.Len(t, e.Status.ActionStatuses, len(paths))
}

// TestWebhookAnswersSayNothingOfOtherNamespaces: bob may run plans in his tenant's namespace but
// may not read the workflows of another namespace a plan there runs; alice writes plans there.
// Every answer they get is the same whether that workflow exists or not, and none shows its
// parameters.
func TestWebhookAnswersSayNothingOfOtherNamespaces(t *testing.T) {
	ctx := context.Background()
	tn := newTenant(t)
	there, empty := newNamespace(t, "there"), newNamespace(t, "empty")
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: shared, namespace: %s}
spec:
  parameters: [{name: secretParam, required: true}]
  actions:
  - {name: call, type: HTTP, http: {url: "http://127.0.0.1:1/{{ .params.secretParam }}"}}
`, there))
	waitWorkflowPhase(t, there, "shared", drv1.WorkflowReady)
	answers := func(ns string) []string {
		plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "cross-" + ns, Namespace: tn.ns}, Spec: drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "s",
			Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "shared", Namespace: ns}}}}}, ExecutionParams: []string{"secretParam"}}}
		_, err := env.DR.DrV1alpha1().DRPlans(tn.ns).Create(ctx, plan, metav1.CreateOptions{}) // the admin may read it
		require.NoError(t, err)
		var out []string
		record := func(err error) {
			require.Error(t, err)
			out = append(out, strings.NewReplacer(ns, "NS", plan.Name, "PLAN").Replace(err.Error()))
		}
		record(execute(tn.bob, tn.ns, "run", plan.Name, drv1.ParamValue{Name: "secretParan", Value: "x"}))
		typo := plan.DeepCopy()
		typo.Name = "typo"
		typo.Spec.Stages[0].Workflows[0].Params = []drv1.ParamValue{{Name: "secretParan", Value: "x"}}
		_, err = tn.alice.DrV1alpha1().DRPlans(tn.ns).Create(ctx, typo, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		record(err)
		return out
	}
	hidden := answers(there)
	assert.Equal(t, answers(empty), hidden, "the same answers whether the workflow exists or not")
	t.Logf("answers: %q", hidden)
	for _, a := range hidden {
		assert.NotContains(t, a, "secretParam")
		assert.Contains(t, a, `may not get drworkflows.dr.bkbcs.tencent.com "shared" in namespace "NS"`)
	}
}
