package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bkbcs/drplan-controller/controlplane"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// apiServerDown is how long the test keeps kube-apiserver down before starting it again: well
// under the leader Lease's renew deadline (10 s), with its start-up (about 2.5 s) on top.
const apiServerDown = 3 * time.Second

// briefOutage bounds an outage the leader rides out for sure: the Lease's renew deadline (10 s)
// less the period between two renewals (2 s).
const briefOutage = 8 * time.Second

// TestAPIServerOutage kills kube-apiserver while a run is between two actions, with the
// controller electing a leader as the chart runs it, and starts it again 3 s later: the action
// that starts meanwhile retries its API calls until the API server is back and says so in its
// message, the leader keeps its lease, the run ends Succeeded, and nothing is done twice (each
// object made once, each HTTP call made once).
//
// On a machine so loaded that kube-apiserver takes longer than briefOutage to be ready again,
// the leader may lose its lease and its process end (docs/operations.md): the test then starts
// the controller again, as Kubernetes restarts the container, and checks what is promised for
// that case (the run still Succeeded, every object made once, the POST made once; the GET in
// flight may be made again), and says so.
func TestAPIServerOutage(t *testing.T) {
	if env.KillAPIServer == nil || env.RestartAPIServer == nil || env.SetLeaderElection == nil {
		t.Skip("this backend cannot kill and restart kube-apiserver, or run the controller in this process with leader election (the chart's pods)")
	}
	// Not parallel with other tests: it takes the API server away from all of them.
	require.NoError(t, env.SetLeaderElection(true))
	t.Cleanup(func() { require.NoError(t, env.SetLeaderElection(false)) })
	holder, transitions := leaseHolder(t)
	ns := newNamespace(t, "outage")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, outageWorkflow(ns, rec))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })

	brief := playOutage(t, release) < briefOutage
	if !brief {
		t.Logf("the outage outlasted %s (a loaded machine): the leader may have lost its lease; starting the controller again, as Kubernetes restarts its container", briefOutage)
		require.NoError(t, env.SetLeaderElection(true))
	}
	job := waitOutageJob(t, ns)
	if !env.Pods {
		finishJob(t, job, batchv1.JobComplete) // no kubelet here: the test plays the job controller
	}
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	waitLockReleased(t, ns, "p")
	assertOutageRun(t, ns, e, rec, brief)
	if brief {
		now, nowTransitions := leaseHolder(t)
		assert.Equal(t, holder, now, "the leader kept its lease through the outage")
		assert.Equal(t, transitions, nowTransitions, "the lease never changed hands")
	}
}

// playOutage kills kube-apiserver, lets the held call answer while it is down (the next action
// starts then), starts it again apiServerDown later and returns the outage: from the kill to
// /readyz OK.
func playOutage(t *testing.T, release func()) time.Duration {
	t.Helper()
	killed := time.Now()
	require.NoError(t, env.KillAPIServer())
	release()
	time.Sleep(apiServerDown)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, env.RestartAPIServer(ctx))
	outage := time.Since(killed)
	t.Logf("kube-apiserver outage: %s from SIGKILL to /readyz OK (restarted after %s)", outage.Round(time.Millisecond), apiServerDown)
	return outage
}

// assertOutageRun checks the run that lived through the outage: every action Succeeded, every
// object made once, the POST made once; after a brief outage the action that started during it
// retried and says so, and the GET in flight at the kill was made once.
func assertOutageRun(t *testing.T, ns string, e *drv1.DRPlanExecution, rec *recorder, brief bool) {
	t.Helper()
	var retries int32
	for _, a := range e.Status.ActionStatuses {
		assert.Equal(t, drv1.StepSucceeded, a.Phase, a.Name)
		retries += a.RetryCount
		t.Logf("action %s: retryCount %d, %q", a.Name, a.RetryCount, a.Message)
	}
	t.Logf("%d retries in all", retries)
	assertMadeOnce(t, ns, e)
	assert.Len(t, rec.CallsTo("/notify"), 1, "the POST after the outage was made once")
	if !brief {
		assert.LessOrEqual(t, len(rec.CallsTo("/held")), 2, "the GET in flight is made again at most once, by the next leader")
		return
	}
	assert.Len(t, rec.CallsTo("/held"), 1, "the GET in flight at the kill was made once")
	second := e.Status.ActionStatuses[2]
	assert.Positive(t, second.RetryCount, "the action started during the outage retried")
	assert.Regexp(t, `^ConfigMap `+ns+`/second-[a-z0-9]{5} created \(after [0-9]+ retr(y|ies) over [0-9.]+m?s: the API server was .+\)$`, second.Message)
}

// outageWorkflow creates ConfigMaps before and after a held GET, a Job, another ConfigMap, and
// ends with a POST.
func outageWorkflow(ns string, rec *recorder) string {
	configMap := func(action, meta string) string {
		return fmt.Sprintf(`  - name: %s
    type: KubernetesResource
    resource:
      operation: Create
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {%s}
        data: {action: %s}
`, action, meta, action)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRWorkflow\nmetadata: {name: wf, namespace: %s}\nspec:\n  actions:\n", ns)
	b.WriteString(configMap("first", "name: first"))
	fmt.Fprintf(&b, "  - {name: held, type: HTTP, http: {url: %q, method: GET}}\n", rec.URL("/held"))
	b.WriteString(configMap("second", "generateName: second-"))
	b.WriteString(configMap("third", "name: third"))
	fmt.Fprintf(&b, `  - name: job
    type: Job
    job:
      namespace: %[2]s
      generateName: outage-
      backoffLimit: 0
      template:
        spec:
          containers: [{name: c, image: %[1]s, command: [sh, -c, "exit 0"]}]
`, controlplane.BusyboxImage, ns)
	b.WriteString(configMap("fourth", "name: fourth"))
	fmt.Fprintf(&b, "  - {name: notify, type: HTTP, http: {url: %q}}\n", rec.URL("/notify"))
	return b.String()
}

// waitOutageJob waits for the run's Job to be created: up to 2 minutes, for a new leader may
// first wait out the old one's Lease (15 s).
func waitOutageJob(t *testing.T, ns string) *batchv1.Job {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list, err := env.Kube.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err == nil && len(list.Items) == 1 {
			return &list.Items[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run's Job was not created within 2m: %v, %v", list, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertMadeOnce checks that the run's ConfigMaps exist once each, as the objects its outputs
// name (same UID): none was made twice, under another name or after a delete.
func assertMadeOnce(t *testing.T, ns string, e *drv1.DRPlanExecution) {
	t.Helper()
	list, err := env.Kube.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{LabelSelector: drv1.LabelExecution + "=run"})
	require.NoError(t, err)
	uids := map[string]string{}
	for _, cm := range list.Items {
		uids[cm.Name] = string(cm.UID)
	}
	assert.Len(t, uids, 4, "first, second-*, third, fourth: %v", uids)
	outputs := 0
	for _, o := range e.Status.Outputs {
		switch {
		case o.ResourceRef != nil:
			outputs++
			assert.Equal(t, uids[o.ResourceRef.Name], o.ResourceRef.UID, "the ConfigMap %s made by %s", o.ResourceRef.Name, o.ActionName)
		case o.JobRef != nil:
			outputs++
		}
	}
	assert.Equal(t, 5, outputs, "an output for each object made")
}

// leaseHolder is the holder and transitions of the chart's leader Lease.
func leaseHolder(t *testing.T) (holder string, transitions int32) {
	t.Helper()
	l := waitFor(t, "the leader Lease to be held", func() (*coordinationv1.Lease, error) {
		return env.Kube.CoordinationV1().Leases(chartNamespace).Get(context.Background(), chartLease, metav1.GetOptions{})
	}, func(l *coordinationv1.Lease) (bool, string) {
		return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "", "no holder"
	})
	if l.Spec.LeaseTransitions != nil {
		transitions = *l.Spec.LeaseTransitions
	}
	return *l.Spec.HolderIdentity, transitions
}
