package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/bkbcs/drplan-controller/controlplane"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

var (
	localizations = schema.GroupVersionResource{Group: "apps.clusternet.io", Version: "v1alpha1", Resource: "localizations"}
	subscriptions = schema.GroupVersionResource{Group: "apps.clusternet.io", Version: "v1alpha1", Resource: "subscriptions"}
	jobs          = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
)

// guideUser is who applies a guide scenario's documents: the cluster admin, or a tenant.
type guideUser struct {
	ns string
	as string // kubectl's --as; "" is the suite's own admin
}

// asAdminAndTenant runs a guide scenario twice: as the cluster admin, and as alice, who has in
// the scenario's namespace exactly the example Roles' rights (deploy/examples/tenant-roles.yaml:
// author, executor, and what the scenarios' actions need, with its Localizations binding in the
// Clusternet cluster namespace, as the file's comment says).
func asAdminAndTenant(t *testing.T, prefix string, run func(t *testing.T, u guideUser)) {
	t.Run("admin", func(t *testing.T) {
		u := guideUser{ns: newNamespace(t, prefix)}
		createNamespace(t, "clusternet-dr-shanghai-"+u.ns)
		run(t, u)
	})
	t.Run("tenant", func(t *testing.T) {
		u := guideUser{ns: newNamespace(t, prefix), as: "alice"}
		locNS := "clusternet-dr-shanghai-" + u.ns
		createNamespace(t, locNS)
		raw, err := os.ReadFile(filepath.Join(env.Root, "deploy", "examples", "tenant-roles.yaml"))
		require.NoError(t, err)
		kubectlApply(t, strings.ReplaceAll(string(raw), "tenant-a", u.ns))
		kubectl(t, "create", "rolebinding", "alice-localizations", "-n", locNS, "--clusterrole=drplan-scenario-localizations", "--user=alice")
		run(t, u)
	})
}

// apply applies manifest as the user.
func (u guideUser) apply(t *testing.T, manifest string) {
	t.Helper()
	args := []string{"apply", "-f", "-"}
	if u.as != "" {
		args = append(args, "--as="+u.as)
	}
	_, errOut, err := env.Kubectl(context.Background(), manifest, args...)
	require.NoError(t, err, "kubectl apply as %q: %s", u.as, errOut)
}

// applyGuide applies the guide's documents under examples/dir, in the given order, as the user,
// with only these textual changes: the guide's namespace "production" becomes the user's (tests
// share one control plane), and each replace pair (an unreachable example.com endpoint becomes
// the test's recorder).
func (u guideUser) applyGuide(t *testing.T, dir string, files []string, replace ...string) {
	t.Helper()
	r := strings.NewReplacer(append([]string{"namespace: production", "namespace: " + u.ns}, replace...)...)
	for _, f := range files {
		raw, err := os.ReadFile(example(filepath.Join(dir, f)))
		require.NoError(t, err)
		u.apply(t, r.Replace(string(raw)))
	}
}

// playJobController stands in for the job controller (no kubelet runs here): every Job of the
// namespace gets, once, the outcome's condition with the status fields the API server requires.
func playJobController(t *testing.T, ns string, outcome batchv1.JobConditionType) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := env.Kube.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		done := map[string]bool{}
		for ev := range w.ResultChan() {
			j, ok := ev.Object.(*batchv1.Job)
			if !ok || ev.Type != watch.Added || done[j.Name] {
				continue
			}
			done[j.Name] = true
			finishJob(t, j, outcome)
		}
	})
	return func() { cancel(); w.Stop(); wg.Wait() }
}

// finishJob sets a Job's terminal condition as the job controller would.
func finishJob(t *testing.T, j *batchv1.Job, outcome batchv1.JobConditionType) {
	now := metav1.Now()
	j = j.DeepCopy()
	j.Status.StartTime = &now
	cond := func(typ batchv1.JobConditionType, reason string) batchv1.JobCondition {
		return batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: "set by the e2e test", LastProbeTime: now, LastTransitionTime: now}
	}
	if outcome == batchv1.JobComplete {
		j.Status.Succeeded, j.Status.CompletionTime = 1, &now
		j.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet, "CompletionsReached"), cond(batchv1.JobComplete, "CompletionsReached")}
	} else {
		j.Status.Failed = 1
		j.Status.Conditions = []batchv1.JobCondition{cond(batchv1.JobFailureTarget, "BackoffLimitExceeded"), cond(batchv1.JobFailed, "BackoffLimitExceeded")}
	}
	_, err := env.Kube.BatchV1().Jobs(j.Namespace).UpdateStatus(context.Background(), j, metav1.UpdateOptions{})
	assert.NoError(t, err, "set the status of Job %s", j.Name)
}

// deletions records the deletions of the named resources, in the order etcd made them: each
// DELETED event carries the revision of the delete, one counter across every resource (events
// from separate watches may arrive in any order).
type deletions struct {
	mu      sync.Mutex
	deleted []deletion
	stop    func()
}

type deletion struct {
	name     string
	revision int64
}

func watchDeletions(t *testing.T, ns string, gvrs ...schema.GroupVersionResource) *deletions {
	client, err := dynamic.NewForConfig(env.Config)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	d := &deletions{}
	var wg sync.WaitGroup
	for _, gvr := range gvrs {
		w, err := client.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{})
		if ns == "" {
			w, err = client.Resource(gvr).Watch(ctx, metav1.ListOptions{})
		}
		require.NoError(t, err)
		wg.Go(func() {
			for ev := range w.ResultChan() {
				if ev.Type == watch.Deleted {
					m, _ := ev.Object.(interface {
						GetName() string
						GetResourceVersion() string
					})
					rev, err := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
					assert.NoError(t, err)
					d.mu.Lock()
					d.deleted = append(d.deleted, deletion{gvr.Resource + "/" + m.GetName(), rev})
					d.mu.Unlock()
				}
			}
		})
	}
	d.stop = func() { cancel(); wg.Wait() }
	return d
}

func (d *deletions) list() []string {
	d.mu.Lock()
	sorted := slices.SortedFunc(slices.Values(d.deleted), func(a, b deletion) int { return cmp.Compare(a.revision, b.revision) })
	d.mu.Unlock()
	names := make([]string, len(sorted))
	for i, x := range sorted {
		names[i] = x.name
	}
	return names
}

// TestScenario1 runs the guide's single-application failover (场景 1) on the real control plane
// with Clusternet's CRDs: Execute creates the Localization, the Subscription and the health-check
// Job and calls the notification hook; Revert then deletes the Job, the Subscription and the
// Localization, in that order, and skips the HTTP calls.
func TestScenario1(t *testing.T) { asAdminAndTenant(t, "scenario1", scenario1) }

func scenario1(t *testing.T, u guideUser) {
	ctx := context.Background()
	ns := u.ns
	rec := newRecorder(t)
	clusterNS := []string{`value: "clusternet-dr-shanghai"`, `value: "clusternet-dr-shanghai-` + ns + `"`}
	if env.Pods {
		// The health check runs for real: the node mode's copy of the guide's workflow, whose
		// busybox wget calls this host (the recorder) instead of a Service.
		u.applyGuide(t, "node/scenario1", []string{"app-failover-workflow.yaml", "app-failover-plan.yaml"},
			append([]string{"http://10.244.0.1:8080/drplan-webhook", rec.URL("/hook"), "http://10.244.0.1:8080", rec.URL("")}, clusterNS...)...)
	} else {
		defer playJobController(t, ns, batchv1.JobComplete)()
		u.applyGuide(t, "scenario1", []string{"app-failover-workflow.yaml", "app-failover-plan.yaml"},
			append([]string{"https://oncall.example.com/drplan-webhook", rec.URL("/hook")}, clusterNS...)...)
	}
	waitPlanPhase(t, ns, "app-dr-plan", drv1.PlanReady)
	u.applyGuide(t, "scenario1", []string{"app-dr-exec.yaml"})
	exec := "app-dr-exec-20260130-100000"
	e := waitExecution(t, ns, exec, drv1.ExecutionSucceeded)
	require.Len(t, rec.CallsTo("/hook"), 2, "notify-start and notify-complete")
	assert.Contains(t, rec.CallsTo("/hook")[0].Body, `"event": "failover_started"`)

	// What Clusternet gets is what the guide's YAML renders to, accepted by Clusternet's schema.
	dyn, err := dynamic.NewForConfig(env.Config)
	require.NoError(t, err)
	locNS := "clusternet-dr-shanghai-" + ns
	loc, err := dyn.Resource(localizations).Namespace(locNS).Get(ctx, "app-dr-localization-app-dr-plan", metav1.GetOptions{})
	require.NoError(t, err)
	spec := loc.Object["spec"].(map[string]any)
	assert.EqualValues(t, 600, spec["priority"])
	assert.Equal(t, map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-app", "namespace": ns}, spec["feed"])
	overrides := spec["overrides"].([]any)
	require.Len(t, overrides, 3)
	assert.Equal(t, map[string]any{"name": "scale-replicas", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":5}]`}, overrides[0])
	assert.Equal(t, map[string]any{"name": "add-dr-labels", "type": "MergePatch", "value": `{"metadata":{"labels":{"dr-mode":"active","failover-plan":"app-dr-plan"}}}`}, overrides[2])
	assert.Contains(t, overrides[1].(map[string]any)["value"], `"value":"dr-mysql.shanghai.example.com"`)
	assert.Equal(t, exec, loc.GetLabels()[drv1.LabelExecution])
	sub, err := dyn.Resource(subscriptions).Namespace("default").Get(ctx, "app-dr-subscription-app-dr-plan", metav1.GetOptions{})
	require.NoError(t, err)
	subSpec := sub.Object["spec"].(map[string]any)
	assert.Equal(t, "Replication", subSpec["schedulingStrategy"])
	assert.Len(t, subSpec["feeds"], 2)
	assert.Equal(t, map[string]any{"clusterAffinity": map[string]any{"matchLabels": map[string]any{"region": "dr-region", "purpose": "disaster-recovery"}}},
		subSpec["subscribers"].([]any)[0])
	var outputs []string
	for _, o := range e.Status.Outputs {
		switch {
		case o.LocalizationRef != nil:
			outputs = append(outputs, "localization "+o.LocalizationRef.Name)
		case o.SubscriptionRef != nil:
			outputs = append(outputs, "subscription "+o.SubscriptionRef.Name)
		case o.JobRef != nil:
			outputs = append(outputs, "job "+o.JobRef.Name)
			assert.True(t, strings.HasPrefix(o.JobRef.Name, "health-check-"))
		}
	}
	require.Len(t, outputs, 3, "%v", outputs)
	jobName := strings.TrimPrefix(outputs[2], "job ")
	if env.Pods {
		assert.NotEmpty(t, rec.CallsTo("/health"), "the health-check pod called the health endpoint")
		pods := jobPods(t, ns, jobName)
		require.Len(t, pods, 1)
		assert.Equal(t, corev1.PodSucceeded, pods[0].Status.Phase)
	}

	// Revert: the latest Execute in effect, in reverse.
	gone := watchDeletions(t, "", localizations, subscriptions, jobs)
	defer gone.stop()
	u.apply(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: app-dr-revert, namespace: %s}\nspec: {planRef: {name: app-dr-plan}, operation: Revert}\n", ns))
	r := waitExecution(t, ns, "app-dr-revert", drv1.ExecutionSucceeded)
	eventually(t, "the three deletions to be seen", func() (bool, string) { return len(gone.list()) == 3, fmt.Sprint(gone.list()) })
	assert.Equal(t, []string{"jobs/" + jobName, "subscriptions/app-dr-subscription-app-dr-plan", "localizations/app-dr-localization-app-dr-plan"}, gone.list(),
		"deleted in reverse order")
	var skipped []string
	for _, a := range r.Status.ActionStatuses {
		if a.Phase == drv1.StepSkipped {
			skipped = append(skipped, a.Name)
		}
	}
	assert.Equal(t, []string{"notify-complete", "notify-start"}, skipped, "HTTP calls are not undone")
	assert.Len(t, rec.CallsTo("/hook"), 2)
	waitPlanPhase(t, ns, "app-dr-plan", drv1.PlanReady)
	eventually(t, "the Job's pods to be gone with it", func() (bool, string) {
		p := jobPods(t, ns, jobName)
		return len(p) == 0, fmt.Sprint(len(p))
	})
}

// jobPods lists the pods of a Job.
func jobPods(t *testing.T, ns, job string) []corev1.Pod {
	t.Helper()
	list, err := env.Kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	require.NoError(t, err)
	return list.Items
}

// guideJobs makes the guide's health-check Jobs runnable on this backend. With a kubelet they
// run for real: curlimages/curl becomes the node mode's offline busybox and the curl of a
// Service its wget of the recorder (no registry, cluster DNS or kube-proxy here; see
// docs/guide-readings.md). Without one the test plays the job controller: every Job completes.
func guideJobs(t *testing.T, ns string, rec *recorder) (replace []string, stop func()) {
	if env.Pods {
		return []string{"image: curlimages/curl:latest", "image: " + controlplane.BusyboxImage,
			"curl -f http://{{ .params.serviceName }}.production.svc/health", "wget -q -O- " + rec.URL("/health/") + "{{ .params.serviceName }}"}, func() {}
	}
	return nil, playJobController(t, ns, batchv1.JobComplete)
}

// TestJobOutcomes: a Job action waits for the Job's condition: Complete succeeds, Failed fails
// with the reason, and past its timeout the Job is deleted and the action fails saying so.
func TestJobOutcomes(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "jobs")
	job := func(name, timeout, script string) string {
		return fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  actions:
  - name: run
    type: Job
    job:
      namespace: %[2]s
      generateName: %[1]s-
      backoffLimit: 0
      timeout: %[3]s
      template:
        spec:
          containers: [{name: c, image: %[4]s, command: [sh, -c, %[5]q]}]
`, name, ns, timeout, controlplane.BusyboxImage, script)
	}
	// With a kubelet the pods run these scripts and the job controller sets the outcome;
	// without one the test sets it.
	for name, timeout := range map[string]string{"ok": "600s", "bad": "600s", "slow": "2s"} {
		script := map[string]string{"ok": "exit 0", "bad": "echo broken >&2; exit 1", "slow": "trap 'exit 143' TERM; sleep 600 & wait"}[name]
		kubectlApply(t, job(name, timeout, script))
		applyPlan(t, ns, name, name)
	}

	waitJob := func(prefix string) *batchv1.Job {
		var found *batchv1.Job
		eventually(t, "the Job "+prefix+"* to be created", func() (bool, string) {
			list, err := env.Kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			require.NoError(t, err)
			for i := range list.Items {
				if strings.HasPrefix(list.Items[i].Name, prefix) {
					found = &list.Items[i]
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d jobs", len(list.Items))
		})
		return found
	}

	createExecution(t, ns, "ok", "ok")
	j := waitJob("ok-")
	assert.Equal(t, "ok", j.Labels[drv1.LabelExecution])
	assert.Equal(t, corev1.RestartPolicyNever, j.Spec.Template.Spec.RestartPolicy)
	assert.EqualValues(t, 0, *j.Spec.BackoffLimit)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, drv1.ExecutionRunning, getExecution(t, ns, "ok").Status.Phase, "waits for the Job")
	if !env.Pods {
		finishJob(t, j, batchv1.JobComplete)
	}
	e := waitExecution(t, ns, "ok", drv1.ExecutionSucceeded)
	assert.Equal(t, fmt.Sprintf("Job %s/%s completed", ns, j.Name), e.Status.ActionStatuses[0].Message)
	require.NotNil(t, e.Status.Outputs[0].JobRef)
	assert.Equal(t, j.Name, e.Status.Outputs[0].JobRef.Name)
	assert.Equal(t, string(j.UID), e.Status.Outputs[0].JobRef.UID)

	if env.Pods {
		pods := jobPods(t, ns, j.Name)
		require.Len(t, pods, 1)
		assert.Equal(t, corev1.PodSucceeded, pods[0].Status.Phase, "the Job's pod ran")
	}

	createExecution(t, ns, "bad", "bad")
	bad := waitJob("bad-")
	if !env.Pods {
		finishJob(t, bad, batchv1.JobFailed)
	}
	e = waitExecution(t, ns, "bad", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, "Action 'run' failed: Job "+ns+"/bad-")
	assert.Contains(t, e.Status.Message, "failed: BackoffLimitExceeded: ")
	if env.Pods {
		pods := jobPods(t, ns, bad.Name)
		require.Len(t, pods, 1, "backoffLimit 0: one pod")
		assert.Equal(t, corev1.PodFailed, pods[0].Status.Phase)
	}

	createExecution(t, ns, "slow", "slow")
	slow := waitJob("slow-")
	e = waitExecution(t, ns, "slow", drv1.ExecutionFailed)
	assert.Contains(t, e.Status.Message, fmt.Sprintf("Job %s/%s did not finish within 2s: deleted it and its pods", ns, slow.Name))
	if env.Pods {
		assert.NotEmpty(t, jobPods(t, ns, slow.Name), "the slow Job's pod was started")
	}
	eventually(t, "the Job to be gone", func() (bool, string) {
		_, err := env.Kube.BatchV1().Jobs(ns).Get(ctx, slow.Name, metav1.GetOptions{})
		return err != nil, fmt.Sprint(err)
	})
	eventually(t, "its pods to be gone", func() (bool, string) {
		p := jobPods(t, ns, slow.Name)
		return len(p) == 0, fmt.Sprint(len(p))
	})
}

func getExecution(t *testing.T, ns, name string) *drv1.DRPlanExecution {
	t.Helper()
	e, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return e
}

// TestScenario2 runs the guide's e-commerce failover (场景 2): five stages, two of them parallel,
// one workflow reused with different parameters; then reverts it, stage by stage in reverse:
// everything a stage made is deleted before anything of the stage it depended on, the MySQL
// switches are rolled back through their rollback calls, and the notifications are skipped.
func TestScenario2(t *testing.T) { asAdminAndTenant(t, "scenario2", scenario2) }

func scenario2(t *testing.T, u guideUser) {
	ns := u.ns
	rec := newRecorder(t)
	runnable, stop := guideJobs(t, ns, rec)
	defer stop()
	u.applyGuide(t, "scenario2", []string{"notification-workflow.yaml", "mysql-failover.yaml", "service-failover.yaml", "ecommerce-dr-plan-with-stages.yaml"},
		append([]string{"https://oncall.example.com/drplan-webhook", rec.URL("/hook"),
			"https://db-admin-api.example.com", rec.URL(""),
			`value: "clusternet-dr-shanghai"`, `value: "clusternet-dr-shanghai-` + ns + `"`}, runnable...)...)
	waitPlanPhase(t, ns, "ecommerce-dr-plan", drv1.PlanReady)
	u.applyGuide(t, "scenario2", []string{"ecommerce-dr-exec.yaml"})
	e := waitExecution(t, ns, "ecommerce-dr-exec-20260202-100000", drv1.ExecutionSucceeded)
	require.Len(t, e.Status.StageStatuses, 5)
	assert.EqualValues(t, 5, e.Status.Summary.CompletedStages)
	var calls, health []call
	for _, c := range rec.Calls() {
		if strings.HasPrefix(c.Path, "/health/") {
			health = append(health, c) // the Jobs' pods
		} else {
			calls = append(calls, c)
		}
	}
	if env.Pods {
		assert.Len(t, health, 6, "each service's health-check pod called once")
	}
	require.Len(t, calls, 4, "start hook, two MySQL switches, completion hook")
	assert.Equal(t, "/hook", calls[0].Path)
	assert.Equal(t, "/failover", calls[1].Path)
	assert.Equal(t, "/failover", calls[2].Path)
	assert.Equal(t, "/hook", calls[3].Path)
	assert.Contains(t, calls[3].Body, "failover-complete")

	gone := watchDeletions(t, "", localizations, subscriptions, jobs)
	defer gone.stop()
	u.apply(t, fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlanExecution\nmetadata: {name: ecommerce-revert, namespace: %s}\nspec: {planRef: {name: ecommerce-dr-plan}, operation: Revert}\n", ns))
	r := waitExecution(t, ns, "ecommerce-revert", drv1.ExecutionSucceeded)
	var stages []string
	for _, s := range r.Status.StageStatuses {
		stages = append(stages, s.Name)
	}
	assert.Equal(t, []string{"notify-complete", "validation", "applications", "infrastructure", "notify-start"}, stages)
	assert.Len(t, rec.CallsTo("/revert"), 2, "both MySQL switches rolled back")
	assert.Len(t, rec.CallsTo("/hook"), 2, "notifications are not undone")
	// Six services, each with a Localization, a Subscription and a Job.
	eventually(t, "every object to be deleted", func() (bool, string) { return len(gone.list()) == 18, fmt.Sprint(len(gone.list())) })
	stageOf := func(name string) int {
		switch {
		case strings.Contains(name, "smoke-test"):
			return 0 // validation
		case strings.Contains(name, "kafka"):
			return 2 // infrastructure
		}
		return 1 // applications
	}
	last := 0
	for _, d := range gone.list() {
		s := stageOf(d)
		assert.GreaterOrEqual(t, s, last, "%s deleted after a later stage's objects: %v", d, gone.list())
		last = max(last, s)
	}
	waitPlanPhase(t, ns, "ecommerce-dr-plan", drv1.PlanReady)
}

// TestWaitForOnAClusternetObject: waitFor holds a Localization action until a condition over the
// Localization is true (here, an annotation that the test sets, standing in for Clusternet).
func TestWaitForOnAClusternetObject(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "waitfor-loc")
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRWorkflow
metadata: {name: wf, namespace: %[1]s}
spec:
  actions:
  - name: localize
    type: Localization
    localization:
      operation: Create
      name: loc
      namespace: %[1]s
      feed: {apiVersion: apps/v1, kind: Deployment, name: app, namespace: %[1]s}
      overrides: [{name: r, type: MergePatch, value: "spec: {replicas: 2}"}]
    waitFor:
      condition: "has(object.metadata.annotations) && 'applied' in object.metadata.annotations"
      timeout: 1m
`, ns))
	applyPlan(t, ns, "p", "wf")
	createExecution(t, ns, "run", "p")
	eventually(t, "the action to wait", func() (bool, string) {
		e := getExecution(t, ns, "run")
		if len(e.Status.ActionStatuses) == 0 {
			return false, "no status yet"
		}
		return strings.HasPrefix(e.Status.ActionStatuses[0].Message, "Waiting for "), e.Status.ActionStatuses[0].Message
	})
	dyn, err := dynamic.NewForConfig(env.Config)
	require.NoError(t, err)
	_, err = dyn.Resource(localizations).Namespace(ns).Patch(ctx, "loc", "application/merge-patch+json",
		[]byte(`{"metadata":{"annotations":{"applied":"true"}}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	e := waitExecution(t, ns, "run", drv1.ExecutionSucceeded)
	assert.Contains(t, e.Status.ActionStatuses[0].Message, `is true`)
	require.NotNil(t, e.Status.Outputs[0].LocalizationRef)
}

// The overrides of the Localization the guide's 示例 4 patches, as Clusternet stores them: those of
// its 示例 3 (scale-replicas, add-dr-label), and what 示例 4 and its rollback add.
var (
	scaleReplicas = map[string]any{"name": "scale-replicas", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":3}]`}
	addDRLabel    = map[string]any{"name": "add-dr-label", "type": "MergePatch", "value": `{"metadata":{"labels":{"dr-mode":"active"}}}`}
	scaleUp       = map[string]any{"name": "scale-up", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":5}]`}
	scaleDown     = map[string]any{"name": "scale-down", "type": "JSONPatch", "value": `[{"op":"replace","path":"/spec/replicas","value":1}]`}
)

// TestLocalizationPatchGuideExample4 runs the guide's 示例 4 (创建工作流, Localization Patch, kept in
// examples/fragments) on the real API server with Clusternet's CRDs: the Patch adds scale-up and
// keeps the Localization's other overrides; its Revert runs the rollback as the guide writes it,
// which adds scale-down and leaves scale-up (the webhook warns of it). A rollback that removes
// scale-up (remove: true) gives the Localization back its overrides exactly.
func TestLocalizationPatchGuideExample4(t *testing.T) {
	ns := newNamespace(t, "loc-patch")
	raw, err := os.ReadFile(example("fragments/localization-patch-action.yaml"))
	require.NoError(t, err)
	guide := strings.ReplaceAll(string(raw), "namespace: default", "namespace: "+ns)
	_, stderr, err := env.Kubectl(context.Background(), guide, "apply", "-f", "-")
	require.NoError(t, err, stderr)
	assert.Contains(t, stderr, `Warning: spec.actions[0] (update-replicas): its rollback leaves in place the overrides this Patch sets ("scale-up"), so a Revert keeps them`)
	resetLocalization(t, ns)
	runPatchAndRevert(t, ns, "guide", "localization-patch-action",
		[]any{scaleReplicas, addDRLabel, scaleUp}, []any{scaleReplicas, addDRLabel, scaleUp, scaleDown})

	// The rollback that undoes it: remove the override the Patch added.
	fixed := strings.Replace(guide, "name: localization-patch-action", "name: fixed", 1)
	i := strings.Index(fixed, "          overrides:\n")
	require.Positive(t, i)
	fixed = fixed[:i] + "          overrides:\n            - {name: scale-up, remove: true}\n"
	_, stderr, err = env.Kubectl(context.Background(), fixed, "apply", "-f", "-")
	require.NoError(t, err, stderr)
	assert.NotContains(t, stderr, "Warning")
	resetLocalization(t, ns)
	runPatchAndRevert(t, ns, "fixed", "fixed", []any{scaleReplicas, addDRLabel, scaleUp}, []any{scaleReplicas, addDRLabel})
}

// resetLocalization makes existing-app-localization in ns anew with the guide's 示例 3 overrides.
func resetLocalization(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	client := localizationClient(t, ns)
	if err := client.Delete(ctx, "existing-app-localization", metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		require.NoError(t, err)
	}
	_, err := client.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Localization",
		"metadata": map[string]any{"name": "existing-app-localization", "namespace": ns},
		"spec": map[string]any{"priority": int64(500), "overrides": []any{scaleReplicas, addDRLabel},
			"feed": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-app", "namespace": ns}},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// runPatchAndRevert runs plan (of workflow, with the guide's parameters) and then reverts it,
// checking the Localization's exact overrides after each.
func runPatchAndRevert(t *testing.T, ns, plan, workflow string, afterPatch, afterRevert []any) {
	t.Helper()
	kubectlApply(t, fmt.Sprintf(`apiVersion: dr.bkbcs.tencent.com/v1alpha1
kind: DRPlan
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  globalParams: [{name: drClusterNamespace, value: %[1]s}, {name: replicas, value: "5"}]
  workflowRef: {name: %[3]s}
`, ns, plan, workflow))
	waitPlanPhase(t, ns, plan, drv1.PlanReady)
	createExecution(t, ns, plan+"-run", plan)
	e := waitExecution(t, ns, plan+"-run", drv1.ExecutionSucceeded)
	assert.Equal(t, fmt.Sprintf("Localization %s/existing-app-localization patched", ns), e.Status.ActionStatuses[0].Message)
	assert.Equal(t, afterPatch, overridesOf(t, ns), "after the Patch")

	_, err := env.DR.DrV1alpha1().DRPlanExecutions(ns).Create(context.Background(), &drv1.DRPlanExecution{
		ObjectMeta: requested(t, metav1.ObjectMeta{Name: plan + "-revert"}),
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: plan}, Operation: drv1.OperationRevert},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitExecution(t, ns, plan+"-revert", drv1.ExecutionSucceeded)
	assert.Equal(t, afterRevert, overridesOf(t, ns), "after the Revert")
	waitPlanPhase(t, ns, plan, drv1.PlanReady)
}

func overridesOf(t *testing.T, ns string) []any {
	t.Helper()
	loc, err := localizationClient(t, ns).Get(context.Background(), "existing-app-localization", metav1.GetOptions{})
	require.NoError(t, err)
	overrides, _, err := unstructured.NestedSlice(loc.Object, "spec", "overrides")
	require.NoError(t, err)
	assert.EqualValues(t, 500, loc.Object["spec"].(map[string]any)["priority"], "what the Patch does not name is kept")
	return overrides
}

func localizationClient(t *testing.T, ns string) dynamic.ResourceInterface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(env.Config)
	require.NoError(t, err)
	return dyn.Resource(localizations).Namespace(ns)
}
