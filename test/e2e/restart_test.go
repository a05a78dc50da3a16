package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bkbcs/drplan-controller/cmd/drplan-controller/app"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// TestRestartMidRun stops the controller while an action is in flight and starts a new one. The
// run resumes from its status: what succeeded is not run again, an idempotent action in flight
// (an HTTP GET) is retried, and a POST in flight is reported, never repeated.
func TestRestartMidRun(t *testing.T) {
	// Not parallel with other tests: it stops the one controller of the suite.
	tests := []struct {
		name       string
		heldMethod string
		phase      drv1.ExecutionPhase
		heldCalls  int // completed calls to the held path the recorder saw
		afterCalls int
		heldPhase  drv1.StepPhase
		heldMsg    string
	}{
		{name: "idempotent action in flight is retried", heldMethod: "GET", phase: drv1.ExecutionSucceeded,
			heldCalls: 1, afterCalls: 1, heldPhase: drv1.StepSucceeded, heldMsg: "HTTP request completed with status 200"},
		{name: "POST in flight is reported, not repeated", heldMethod: "POST", phase: drv1.ExecutionFailed,
			heldCalls: 0, afterCalls: 0, heldPhase: drv1.StepFailed,
			heldMsg: "Interrupted: the controller restarted while this action was in flight; it is not repeated because it may not be safe to repeat (an HTTP POST call)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, "restart")
			rec := newRecorder(t)
			release := rec.hold("/held")
			defer release()
			kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - {name: before, type: HTTP, http: {url: %[2]q}}
  - {name: held, type: HTTP, http: {url: %[3]q, method: %[4]s}}
  - {name: after, type: HTTP, http: {url: %[5]q}}
---
apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: p, namespace: %[1]s}
spec:
  workflowRef: {name: wf}
`, ns, rec.URL("/before"), rec.URL("/held"), tc.heldMethod, rec.URL("/after")))
			waitPlanPhase(t, ns, "p", drv1.PlanReady)
			createExecution(t, ns, "run", "p")
			eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })

			require.NoError(t, env.StopController())
			// The stopped controller's connection is gone: the recorder must not count that call.
			eventually(t, "the abandoned call to be dropped", func() (bool, string) { return rec.Aborted("/held") == 1, "" })
			env.StartController(defaultGrace)
			if tc.heldMethod == "GET" {
				eventually(t, "the held call to be made again", func() (bool, string) {
					return rec.Arrived("/held") == 2, fmt.Sprint(rec.Arrived("/held"))
				})
			}
			release()
			e := waitExecution(t, ns, "run", tc.phase)

			assert.Len(t, rec.CallsTo("/before"), 1, "a succeeded call is never made again")
			assert.Len(t, rec.CallsTo("/held"), tc.heldCalls)
			assert.Len(t, rec.CallsTo("/after"), tc.afterCalls)
			held := e.Status.ActionStatuses[1]
			assert.Equal(t, tc.heldPhase, held.Phase)
			assert.Equal(t, tc.heldMsg, held.Message)
			if tc.heldMethod == "GET" {
				assert.EqualValues(t, 1, held.RetryCount)
			} else {
				assert.True(t, strings.HasPrefix(e.Status.Message, "Action 'held' failed: Interrupted"), e.Status.Message)
			}
			waitLockReleased(t, ns, "p")
			// Either way the first call took effect: the plan has something to revert.
			waitPlanPhase(t, ns, "p", drv1.PlanExecuted)
		})
	}
}

// TestGracefulStopLetsTheCallFinish stops the controller while a POST is in flight and the call
// answers within the shutdown grace: its result is recorded, nothing new starts, and the next
// controller carries on without reporting it interrupted.
func TestGracefulStopLetsTheCallFinish(t *testing.T) {
	ns := newNamespace(t, "graceful")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	require.NoError(t, env.StopController())
	env.StartController(10 * time.Second)
	defer func() {
		require.NoError(t, env.StopController())
		env.StartController(defaultGrace)
	}()
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/held", "/after"))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })

	stopped := make(chan error, 1)
	draining := drainingSignal(t)
	go func() { stopped <- env.StopController() }()
	draining()
	release()
	require.NoError(t, <-stopped)
	assert.Empty(t, rec.CallsTo("/after"), "nothing new starts while stopping")
	e := waitExecution(t, ns, "run", drv1.ExecutionRunning)
	assert.Equal(t, drv1.StepSucceeded, e.Status.ActionStatuses[0].Phase, "the result of the call in flight was written")
	assert.Equal(t, drv1.StepPending, e.Status.ActionStatuses[1].Phase)

	env.StartController(10 * time.Second)
	e = waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	assert.Len(t, rec.CallsTo("/held"), 1)
	assert.Len(t, rec.CallsTo("/after"), 1)
}

// TestScaleDownStartsNothingNew plays a scale-down whose SIGTERMs come apart (another node, a busy
// kubelet): both replicas' Pods are being deleted, the leader gets its SIGTERM first, lets the
// call in flight finish and releases the lease while the standby has not got its own yet. The
// standby takes the lease and hands it back without leading: nothing new starts, and the next
// controller carries on. The replicas run in this process, each naming a Pod object that only
// stands for its Pod (it never runs, and a finalizer keeps it while it is being deleted).
func TestScaleDownStartsNothingNew(t *testing.T) {
	withoutWebhooks(t) // the replicas in this process serve no webhook
	ctx := context.Background()
	ns := newNamespace(t, "scaledown")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/held", "/after"))
	applyPlan(t, ns, "p", "wf")
	require.NoError(t, env.StopController())
	t.Cleanup(func() { env.StartController(defaultGrace) }) // once the replicas below have stopped

	const finalizer = "dr.bkbcs.tencent.com/e2e-stands-for-a-replica"
	// The Pods' ServiceAccount (the local backend runs no controller to make it).
	_, err := env.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	require.True(t, err == nil || apierrors.IsAlreadyExists(err), "%v", err)
	for _, pod := range []string{"replica-a", "replica-b"} {
		_, err := env.Kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Finalizers: []string{finalizer}},
			Spec: corev1.PodSpec{SchedulerName: "drplan-e2e-none", // never scheduled: it only stands for a replica's Pod
				Containers: []corev1.Container{{Name: "controller", Image: nodeImage}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		t.Cleanup(func() {
			_, _ = env.Kube.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		})
	}
	type replica struct {
		stop context.CancelFunc
		done chan struct{}
		err  error
	}
	start := func(name, pod string) *replica {
		ctx, cancel := context.WithCancel(ctx)
		r := &replica{stop: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			r.err = app.RunWithConfig(ctx, env.Config, app.Options{Workers: 2, ShutdownGrace: 10 * time.Second,
				LeaderElection: &app.LeaderElectionOptions{Namespace: ns, Name: "drplan-leader", Identity: name, Pod: pod,
					LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond}})
		}()
		t.Cleanup(func() { cancel(); <-r.done })
		return r
	}
	// stop plays the replica's SIGTERM and waits until it has drained and ended.
	stop := func(r *replica) {
		r.stop()
		<-r.done
		require.NoError(t, r.err)
	}
	lease := func() (holder string, transitions int32) {
		l, err := env.Kube.CoordinationV1().Leases(ns).Get(ctx, "drplan-leader", metav1.GetOptions{})
		if err != nil {
			return "", -1
		}
		if l.Spec.HolderIdentity != nil {
			holder = *l.Spec.HolderIdentity
		}
		if l.Spec.LeaseTransitions != nil {
			transitions = *l.Spec.LeaseTransitions
		}
		return holder, transitions
	}
	a := start("a", "replica-a")
	eventually(t, "a to lead", func() (bool, string) { h, _ := lease(); return h == "a", h })
	b := start("b", "replica-b")
	createExecution(t, ns, "run", "p")
	eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })
	_, transitions := lease()

	// The scale-down: both Pods are being deleted; a gets its SIGTERM, b not yet.
	for _, pod := range []string{"replica-a", "replica-b"} {
		require.NoError(t, env.Kube.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{}))
	}
	a.stop()
	release()
	stop(a)
	eventually(t, "b to take the released lease and hand it back (or to start what follows)", func() (bool, string) {
		h, n := lease()
		return h == "" && n > transitions || rec.Arrived("/after") > 0, fmt.Sprintf("holder %q, %d transitions", h, n)
	})
	stop(b)
	assert.Empty(t, rec.CallsTo("/after"), "nothing new starts while stopping")
	e := waitExecution(t, ns, "run", drv1.ExecutionRunning)
	assert.Equal(t, drv1.StepSucceeded, e.Status.ActionStatuses[0].Phase, "the result of the call in flight was written")
	assert.Equal(t, drv1.StepPending, e.Status.ActionStatuses[1].Phase)

	c := start("c", "") // the next controller, after the scale-down
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	stop(c)
	assert.Len(t, rec.CallsTo("/held"), 1)
	assert.Len(t, rec.CallsTo("/after"), 1)
}

// TestStartCutShortBeforeTheLock plays a controller that died after writing an execution's first
// status but before it took the plan's lock: a Running status, a POST marked in flight, and a
// free lock. Nothing ran then (actions only run under the lock), so the next controller starts
// the run afresh instead of reporting the POST interrupted.
func TestStartCutShortBeforeTheLock(t *testing.T) {
	withoutWebhooks(t) // the execution is created while the controller, and so its webhook, is down
	ctx := context.Background()
	ns := newNamespace(t, "cutshort")
	rec := newRecorder(t)
	kubectlApply(t, httpWorkflow(ns, "wf", rec, "", "/call"))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "done", "p")
	done := waitExecution(t, ns, "done", drv1.ExecutionSucceeded)
	waitLockReleased(t, ns, "p")
	require.Len(t, rec.CallsTo("/call"), 1)

	require.NoError(t, env.StopController())
	createExecution(t, ns, "cut", "p")
	cut, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(ctx, "cut", metav1.GetOptions{})
	require.NoError(t, err)
	cut.Status = *done.Status.DeepCopy()
	cut.Status.Phase, cut.Status.CompletionTime, cut.Status.Conditions, cut.Status.Outputs = drv1.ExecutionRunning, nil, nil, nil
	cut.Status.ActionStatuses[0].Phase, cut.Status.ActionStatuses[0].CompletionTime = drv1.StepRunning, nil
	_, err = asController(t).DrV1alpha1().DRPlanExecutions(ns).UpdateStatus(ctx, cut, metav1.UpdateOptions{}) // as the controller left it
	require.NoError(t, err)
	env.StartController(defaultGrace)

	e := waitExecution(t, ns, "cut", drv1.ExecutionSucceeded)
	assert.Equal(t, "HTTP request completed with status 200", e.Status.ActionStatuses[0].Message)
	assert.Len(t, rec.CallsTo("/call"), 2, "the cut-short run made its call once")
}

// drainingSignal returns a function that waits until the stop just requested has reached the
// leading controller. In this process that is at once (a short pause lets it begin); in a pod it
// is when the kubelet's SIGTERM arrives, seen as its health endpoint going away.
func drainingSignal(t *testing.T) func() {
	if !env.InCluster {
		return func() { time.Sleep(200 * time.Millisecond) }
	}
	ctx := context.Background()
	pod, _, _ := strings.Cut(env.Leader(ctx), "_")
	p, err := env.Kube.CoreV1().Pods("drplan-system").Get(ctx, pod, metav1.GetOptions{})
	require.NoError(t, err)
	healthz := "http://" + p.Status.PodIP + ":8080/healthz"
	return func() {
		eventually(t, "the leader to get SIGTERM", func() (bool, string) {
			r, err := http.Get(healthz)
			if err != nil {
				return true, ""
			}
			r.Body.Close()
			return false, r.Status
		})
	}
}
