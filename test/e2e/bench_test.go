package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/test/fixtures"
)

// The benchmarks run on the e2e backend (make bench): each iteration is one real execution, timed
// from the moment the DRPlanExecution is created to the moment a watch sees it end.

// runAndTime creates an execution of plan and returns how long it took to reach phase.
func runAndTime(b *testing.B, ns, name, plan string, phase drv1.ExecutionPhase) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	_, err = env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: plan}},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			b.Fatalf("watch: %v", ev.Object)
		}
		e, ok := ev.Object.(*drv1.DRPlanExecution)
		if !ok {
			continue
		}
		switch e.Status.Phase {
		case phase:
			return time.Since(start)
		case drv1.ExecutionFailed, drv1.ExecutionCancelled, drv1.ExecutionSucceeded:
			b.Fatalf("execution %s ended %s: %s", name, e.Status.Phase, e.Status.Message)
		}
	}
	b.Fatalf("watch of %s ended early", name)
	return 0
}

// configMapPlan is a plan of one workflow of n sequential ConfigMap creates.
func configMapPlan(ns, name string, n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: %s, namespace: %s}\nspec:\n  actions:\n", name, ns)
	for i := range n {
		fmt.Fprintf(&sb, "  - name: cm-%d\n    type: KubernetesResource\n    resource:\n      operation: Create\n      manifest: \"apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: %s-{{ .executionName }}-%d}\\ndata: {a: b}\\n\"\n", i, name, i)
	}
	fmt.Fprintf(&sb, "---\napiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: %s, namespace: %s}\nspec:\n  workflowRef: {name: %s}\n", name, ns, name)
	return sb.String()
}

// BenchmarkSequentialConfigMaps compares a plan of n sequential KubernetesResource ConfigMap
// creates with the same creates from a plain client-go loop, and counts the controller's API
// writes per action and the CPU the API server and etcd spend on each. One unmeasured round warms
// both paths (connections, caches, the plan's informers); the figures are medians over b.N rounds
// (make bench runs 5), each a raw loop then an execution, so that both see the same server state.
func BenchmarkSequentialConfigMaps(b *testing.B) {
	for _, n := range []int{100, 200} {
		b.Run(fmt.Sprintf("actions=%d", n), func(b *testing.B) {
			ns := newNamespace(b, "bench-cm")
			kubectlApply(b, configMapPlan(ns, "seq", n))
			waitPlanPhase(b, ns, "seq", drv1.PlanReady)
			rawLoop := func(round int) {
				for j := range n {
					if _, err := env.Kube.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("raw-%d-%d", round, j)}, Data: map[string]string{"a": "b"},
					}, metav1.CreateOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			settle := func() { time.Sleep(200 * time.Millisecond) } // the lock releases, the last events land
			rawLoop(-1)
			runAndTime(b, ns, "warm-up", "seq", drv1.ExecutionSucceeded)
			settle()
			var raw, engine, rawCPU, engineCPU, ratios []float64
			var objects, events int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c0, start := env.ServerCPU(), time.Now()
				rawLoop(i)
				raw = append(raw, ms(time.Since(start)))
				c1 := env.ServerCPU()
				rawCPU = append(rawCPU, ms(c1-c0))
				o0, e0 := env.ControllerWrites()
				took := runAndTime(b, ns, fmt.Sprintf("run-%d", i), "seq", drv1.ExecutionSucceeded)
				settle()
				engine = append(engine, ms(took))
				engineCPU = append(engineCPU, ms(env.ServerCPU()-c1))
				ratios = append(ratios, engine[i]/raw[i])
				o1, e1 := env.ControllerWrites()
				objects += o1 - o0
				events += e1 - e0
			}
			per := float64(b.N * n)
			b.ReportMetric(median(raw), "raw-ms")
			b.ReportMetric(median(engine), "engine-ms")
			b.ReportMetric(median(ratios), "ratio")
			b.ReportMetric(median(rawCPU)/float64(n), "server-cpu-ms/raw-create")
			b.ReportMetric(median(engineCPU)/float64(n), "server-cpu-ms/action")
			b.ReportMetric(float64(objects)/per, "writes/action")
			b.ReportMetric(float64(events)/per, "event-writes/action")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// median of xs (which it sorts).
func median(xs []float64) float64 {
	sort.Float64s(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// BenchmarkParallelHTTP runs one parallel stage of 20 workflows, each making one HTTP call that
// takes 200ms.
func BenchmarkParallelHTTP(b *testing.B) {
	ns := newNamespace(b, "bench-par")
	rec := newRecorder(b)
	var sb strings.Builder
	fmt.Fprintf(&sb, "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: par, namespace: %s}\nspec:\n  stages:\n  - name: all\n    parallel: true\n    workflows:\n", ns)
	for i := range 20 {
		kubectlApply(b, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: w%d, namespace: %s}\nspec:\n  actions:\n  - {name: call, type: HTTP, http: {url: %q}}\n", i, ns, rec.URL(fmt.Sprintf("/w%d?delay=200ms", i))))
		fmt.Fprintf(&sb, "    - workflowRef: {name: w%d}\n", i)
	}
	kubectlApply(b, sb.String())
	waitPlanPhase(b, ns, "par", drv1.PlanReady)
	var took []float64
	for i := 0; i < b.N; i++ {
		took = append(took, ms(runAndTime(b, ns, fmt.Sprintf("run-%d", i), "par", drv1.ExecutionSucceeded)))
		time.Sleep(100 * time.Millisecond)
	}
	b.ReportMetric(median(took), "ms-to-Succeeded")
	b.ReportMetric(slices.Max(took), "max-ms")
}

// BenchmarkFirstAction measures the time from creating an execution to its first action's HTTP
// request arriving, over 15 runs per b.N, and reports the median. The plan keeps up to 1000 of
// them (executionHistoryLimit): no deletes of history weigh on the figures.
func BenchmarkFirstAction(b *testing.B) {
	ns := newNamespace(b, "bench-first")
	rec := newRecorder(b)
	kubectlApply(b, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: w, namespace: %[1]s}\nspec:\n  actions:\n  - {name: call, type: HTTP, http: {url: %[2]q}}\n---\napiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: first, namespace: %[1]s}\nspec:\n  workflowRef: {name: w}\n  executionHistoryLimit: 1000\n", ns, rec.URL("/first")))
	waitPlanPhase(b, ns, "first", drv1.PlanReady)
	var samples []time.Duration
	for i := 0; i < b.N*15; i++ {
		before := rec.Arrived("/first")
		start := time.Now()
		_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), &drv1.DRPlanExecution{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("run-%d", i)},
			Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "first"}},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for rec.Arrived("/first") == before {
			if time.Since(start) > time.Minute {
				b.Fatal("the first action never arrived")
			}
			time.Sleep(200 * time.Microsecond)
		}
		samples = append(samples, time.Since(start))
		// Wait for the run to end and release the plan before the next one.
		for {
			p, err := env.DR.DrV1alpha1().DRPlans(ns).Get(context.Background(), "first", metav1.GetOptions{})
			if err == nil && p.Status.CurrentExecution == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkStatusWrite measures what one status write of a finished 100-action execution costs
// the API server (the engine's final write, and each interim write of a run that size): the
// floor under the sequential benchmark's ratio that no controller change removes. It writes as
// the controller's own user, the only one the webhook admits (each write passes it).
func BenchmarkStatusWrite(b *testing.B) {
	ns := newNamespace(b, "bench-status")
	kubectlApply(b, configMapPlan(ns, "seq", 100))
	waitPlanPhase(b, ns, "seq", drv1.PlanReady)
	runAndTime(b, ns, "done", "seq", drv1.ExecutionSucceeded)
	done, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), "done", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	size, err := json.Marshal(done.Status)
	if err != nil {
		b.Fatal(err)
	}
	st := done.Status.DeepCopy()
	controller := asController(b)
	const writes = 20
	var took time.Duration
	c0 := env.ServerCPU()
	b.ResetTimer()
	for i := 0; i < b.N*writes; i++ {
		st.Message = fmt.Sprintf("write %d", i) // a real change each time
		patch, err := json.Marshal([]map[string]any{{"op": "add", "path": "/status", "value": st}})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := controller.DrV1alpha1().DRPlanExecutions(ns).Patch(context.Background(), "done", types.JSONPatchType, patch,
			metav1.PatchOptions{}, "status"); err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
	}
	n := float64(b.N * writes)
	b.ReportMetric(float64(len(size))/1024, "status-KiB")
	b.ReportMetric(ms(took)/n, "latency-ms")
	b.ReportMetric(ms(env.ServerCPU()-c0)/n, "server-cpu-ms")
}

// BenchmarkAdmission measures server-side dry-run creates through the API server, with the
// webhooks registered and without the validating one, from 1 and from 20 concurrent clients: a
// 50-action workflow, a 10-stage plan, and an execution of a 3-stage plan of that workflow (150
// rendered actions, the kind of request whose admission checks grow with the plan). The
// difference between webhook=true and webhook=false is what admission adds to an apply.
func BenchmarkAdmission(b *testing.B) {
	ns := newNamespace(b, "bench-admission")
	ctx := context.Background()
	_, err := env.DR.DrV1alpha1().DRWorkflows(ns).Create(ctx, fixtures.Workflow(ns, "big", 50), metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	waitWorkflowPhase(b, ns, "big", drv1.WorkflowReady)
	if _, err := env.DR.DrV1alpha1().DRPlans(ns).Create(ctx, fixtures.ChainPlan(ns, "exec", "big", 3), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitPlanPhase(b, ns, "exec", drv1.PlanReady)
	// A client of its own without client-side rate limiting: the suite's (200 QPS) would make
	// 20 clients of a fast request wait for tokens, not for the server.
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS = -1
	dr, err := versioned.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const requests = 100
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	kinds := []struct {
		name   string
		create func(i int) error
	}{
		{"workflow-50-actions", func(i int) error {
			_, err := dr.DrV1alpha1().DRWorkflows(ns).Create(ctx, fixtures.Workflow(ns, fmt.Sprintf("w-%d", i), 50), dryRun)
			return err
		}},
		{"plan-10-stages", func(i int) error {
			_, err := dr.DrV1alpha1().DRPlans(ns).Create(ctx, fixtures.ChainPlan(ns, fmt.Sprintf("p-%d", i), "big", 10), dryRun)
			return err
		}},
		{"execution-150-actions", func(i int) error {
			_, err := dr.DrV1alpha1().DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e-%d", i)},
				Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "exec"}},
			}, dryRun)
			return err
		}},
	}
	for _, k := range kinds {
		for _, clients := range []int{1, 20} {
			for _, webhook := range []bool{true, false} {
				b.Run(fmt.Sprintf("%s/clients=%d/webhook=%v", k.name, clients, webhook), func(b *testing.B) {
					if !webhook {
						withoutWebhook(b)
					}
					b.ReportMetric(0, "ns/op")
					lat := admissionLatencies(b, clients, b.N*requests, k.create)
					b.ReportMetric(lat[len(lat)/2], "p50-ms")
					b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
				})
			}
		}
	}
}

// admissionLatencies makes n calls of create from clients goroutines and returns their
// latencies in milliseconds, sorted.
func admissionLatencies(b *testing.B, clients, n int, create func(i int) error) []float64 {
	var mu sync.Mutex
	var lat []float64
	next := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for j := range next {
				start := time.Now()
				if err := create(j); err != nil {
					b.Error(err)
					continue
				}
				mu.Lock()
				lat = append(lat, ms(time.Since(start)))
				mu.Unlock()
			}
		})
	}
	for j := range n {
		next <- j
	}
	close(next)
	wg.Wait()
	if len(lat) == 0 {
		b.Fatal("no request succeeded")
	}
	sort.Float64s(lat)
	return lat
}
