package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bkbcs/drplan-controller/cmd/drplan-controller/app"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/deploy"
)

// TestMetrics reads the controller's metrics endpoint after runs: the documented series are
// there with non-zero values.
func TestMetrics(t *testing.T) {
	if len(env.MetricsURLs()) == 0 {
		t.Skip("the backend's controller runs out of reach (kind: in a pod inside Docker's network)")
	}
	ns := newNamespace(t, "metrics")
	rec := newRecorder(t)
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - {name: call, type: HTTP, when: "operation == 'Execute'", http: {url: %[2]q}}
  - name: config
    type: KubernetesResource
    resource: {operation: Create, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\n"}
`, ns, rec.URL("/ok")))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	// Each replica counts what it did: the leader the executions, any of them the webhook's
	// decisions. Sum over the replicas.
	var texts []string
	for _, url := range env.MetricsURLs() {
		resp, err := http.Get(url)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		texts = append(texts, string(body))
		for _, path := range []string{"/healthz", "/readyz"} {
			r, err := http.Get(strings.TrimSuffix(url, "/metrics") + path)
			require.NoError(t, err)
			r.Body.Close()
			assert.Equal(t, http.StatusOK, r.StatusCode, path)
		}
	}
	for _, series := range []string{
		`drplan_executions_total{operation="Execute",phase="Succeeded"}`,
		`drplan_action_duration_seconds_count{result="succeeded",type="HTTP"}`,
		`drplan_action_duration_seconds_count{result="succeeded",type="KubernetesResource"}`,
		`drplan_queue_adds_total{queue="sync"}`,
		`drplan_queue_adds_total{queue="actions"}`,
		`drplan_webhook_decisions_total{allowed="true",kind="DRWorkflow"}`,
		`drplan_webhook_request_duration_seconds_count{kind="DRPlan"}`,
		`drplan_cel_evaluations_total{kind="guard",result="ok"}`,
		`drplan_cel_evaluations_total{kind="rule",result="ok"}`,
		`drplan_cel_evaluation_cost_count{kind="rule"}`,
	} {
		found, sum := false, 0.0
		for _, text := range texts {
			if v := seriesValue(text, series); v != "" {
				f, err := strconv.ParseFloat(v, 64)
				require.NoError(t, err, series)
				found, sum = true, sum+f
			}
		}
		assert.True(t, found, "series %s missing", series)
		assert.NotZero(t, sum, "series %s is zero", series)
	}
}

// seriesValue finds a series' value in Prometheus text output ("" when absent).
func seriesValue(text, series string) string {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// oneHeldThree is a workflow of three HTTP calls, /one, /held (a GET) and /three, the first and
// last made with method.
func oneHeldThree(ns string, rec *recorder, method string) string {
	return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - {name: one, type: HTTP, http: {url: %[2]q, method: %[5]s}}
  - {name: held, type: HTTP, http: {url: %[3]q, method: GET}}
  - {name: three, type: HTTP, http: {url: %[4]q, method: %[5]s}}
`, ns, rec.URL("/one"), rec.URL("/held"), rec.URL("/three"), method)
}

// TestLeaderElection runs two controllers with leader election against the control plane (the
// suite's own is stopped meanwhile): exactly one leads; stopping it mid-action, the other takes
// over and finishes the run, and no action that had succeeded runs again.
func TestLeaderElection(t *testing.T) {
	withoutWebhooks(t)
	ns := newNamespace(t, "leader")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, oneHeldThree(ns, rec, "GET"))
	applyPlan(t, ns, "p", "wf")
	require.NoError(t, env.StopController())
	defer env.StartController(defaultGrace)

	type replica struct {
		name string
		stop context.CancelFunc
		done chan error
	}
	start := func(name string) *replica {
		ctx, cancel := context.WithCancel(context.Background())
		r := &replica{name: name, stop: cancel, done: make(chan error, 1)}
		go func() {
			r.done <- app.RunWithConfig(ctx, env.Config, app.Options{Workers: 2, ShutdownGrace: 50 * time.Millisecond,
				LeaderElection: &app.LeaderElectionOptions{Namespace: ns, Name: "drplan-leader", Identity: name,
					LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond}})
		}()
		return r
	}
	replicas := map[string]*replica{"a": start("a"), "b": start("b")}
	var once sync.Once
	defer once.Do(func() {
		for _, r := range replicas {
			r.stop()
			<-r.done
		}
	})
	holder := func() string {
		l, err := env.Kube.CoordinationV1().Leases(ns).Get(context.Background(), "drplan-leader", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	eventually(t, "a leader", func() (bool, string) { return holder() != "", "" })
	leader := holder()

	createExecution(t, ns, "run", "p")
	eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })
	assert.Equal(t, leader, holder(), "one leader all along")
	replicas[leader].stop()
	err := <-replicas[leader].done
	assert.True(t, err == nil || errors.Is(err, context.Canceled), "%v", err)
	delete(replicas, leader)
	eventually(t, "the abandoned call to be dropped", func() (bool, string) { return rec.Aborted("/held") == 1, "" })

	eventually(t, "the standby to lead", func() (bool, string) { h := holder(); return h != "" && h != leader, h })
	eventually(t, "the held call to be made again by the new leader", func() (bool, string) { return rec.Arrived("/held") == 2, "" })
	release()
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	assert.Len(t, rec.CallsTo("/one"), 1, "a succeeded action is not repeated")
	assert.Len(t, rec.CallsTo("/held"), 1, "the call in flight was abandoned, then made once by the new leader (a GET may be repeated)")
	assert.Len(t, rec.CallsTo("/three"), 1)
	assert.EqualValues(t, 1, e.Status.ActionStatuses[1].RetryCount, "the status says it ran again")
}

// TestChartRightsBoundTheController: the suite's controller runs with the chart's RBAC (a
// TokenRequest token of its ServiceAccount), so an action needing a right the chart does not
// grant fails with the API server's Forbidden, naming the identity and the right.
func TestChartRightsBoundTheController(t *testing.T) {
	ns := newNamespace(t, "chart-rbac")
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %s}
spec:
  actions:
  - name: isolate
    type: KubernetesResource
    resource:
      operation: Create
      manifest: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all}\nspec: {podSelector: {}}\n"
`, ns))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	e := waitExecution(t, ns, "run", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, `networkpolicies.networking.k8s.io is forbidden: User "system:serviceaccount:drplan-system:drplan-controller" cannot create resource "networkpolicies" in API group "networking.k8s.io"`)
}

// TestInstallManifests: the plain manifest applies as shipped, and the chart renders and applies
// with other values (server-side dry runs: the suite's install stays as it is).
func TestInstallManifests(t *testing.T) {
	out := kubectl(t, "apply", "--dry-run=server", "-f", filepath.Join(env.Root, "deploy", "install.yaml"))
	for _, want := range []string{"namespace/drplan-system", "deployment.apps/drplan-controller", "validatingwebhookconfiguration.admissionregistration.k8s.io/drplan-controller",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/drplan-controller",
		"clusterrole.rbac.authorization.k8s.io/drplan-controller", "customresourcedefinition.apiextensions.k8s.io/drplans.dr.bkbcs.tencent.com"} {
		assert.Contains(t, out, want)
	}
	manifest, err := deploy.Render(map[string]any{"replicas": 3, "metrics": map[string]any{"enabled": false},
		"webhook": map[string]any{"failurePolicy": "Ignore"}, "plansWithoutServiceAccount": "refuse", "image": map[string]any{"repository": "registry.example.com/drplan", "tag": "1.2.3"}})
	require.NoError(t, err)
	assert.Contains(t, manifest, "replicas: 3")
	assert.Contains(t, manifest, "failurePolicy: Ignore")
	assert.Contains(t, manifest, "- --plans-without-service-account=refuse")
	assert.Contains(t, manifest, `image: "registry.example.com/drplan:1.2.3"`)
	assert.NotContains(t, manifest, "readinessProbe", "no probes without the metrics port")
	_, stderr, err := env.Kubectl(context.Background(), manifest, "apply", "--dry-run=server", "-f", "-")
	assert.NoError(t, err, stderr)
}

// TestLeaderPodKilled kills the leading controller pod's process (SIGKILL: no drain, no lease
// release) while an action is in flight: the other replica takes the Lease over when it expires
// and finishes the execution. The POST that had succeeded is not made again (a result of a call
// that is not safe to repeat is made durable before the next action starts); the GET the dead
// leader had in flight is made again and completes once.
func TestLeaderPodKilled(t *testing.T) {
	if !env.InCluster {
		t.Skip("the controller runs in the test process on this backend: TestLeaderElection covers two replicas")
	}
	ctx := context.Background()
	ns := newNamespace(t, "leader-killed")
	rec := newRecorder(t)
	release := rec.hold("/held")
	defer release()
	kubectlApply(t, oneHeldThree(ns, rec, "POST"))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	eventually(t, "the held call to arrive", func() (bool, string) { return rec.Arrived("/held") == 1, "" })
	leader := env.Leader(ctx)
	require.NotEmpty(t, leader)
	pod, _, _ := strings.Cut(leader, "_")
	require.NoError(t, env.KillController(ctx, pod))
	defer env.StartController(defaultGrace) // waits for both replicas to be ready again
	eventually(t, "the dead leader's call to be dropped", func() (bool, string) { return rec.Aborted("/held") == 1, "" })
	eventually(t, "another process to lead", func() (bool, string) { l := env.Leader(ctx); return l != "" && l != leader, l })
	eventually(t, "the held call to be made again by the new leader", func() (bool, string) { return rec.Arrived("/held") == 2, "" })
	release()
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	assert.Len(t, rec.CallsTo("/one"), 1, "the POST that succeeded before the kill is not repeated")
	assert.Len(t, rec.CallsTo("/held"), 1, "the call in flight died with the leader, then was made once by the new one")
	assert.Len(t, rec.CallsTo("/three"), 1)
	for _, a := range e.Status.ActionStatuses {
		assert.Equal(t, drv1.StepSucceeded, a.Phase, a.Name)
	}
}
