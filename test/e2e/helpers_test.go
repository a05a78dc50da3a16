package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
)

const waitTimeout = 30 * time.Second

var nsCounter atomic.Int64

// newNamespace creates a namespace of its own for one test. Without kube-controller-manager a
// deleted namespace would stay Terminating, so they are left; every control plane is fresh.
func newNamespace(t testing.TB, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, nsCounter.Add(1))
	createNamespace(t, name)
	return name
}

func createNamespace(t testing.TB, name string) {
	t.Helper()
	_, err := env.Kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// kubectl runs kubectl and fails the test on error.
func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := env.Kubectl(context.Background(), "", args...)
	require.NoError(t, err, "kubectl %s: %s", strings.Join(args, " "), errOut)
	return out
}

// kubectlFails runs kubectl, expects it to fail and returns its stderr.
func kubectlFails(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := env.Kubectl(context.Background(), stdin, args...)
	require.Error(t, err, "kubectl %s should have failed; it printed %s", strings.Join(args, " "), out)
	return errOut
}

// eventually polls cond until it returns true or the timeout passes; the last message explains
// a failure.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last string
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", waitTimeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls get until done says the object is as wanted, and returns it.
func waitFor[T any](t testing.TB, what string, get func() (T, error), done func(T) (bool, string)) T {
	t.Helper()
	var obj T
	eventually(t, what, func() (bool, string) {
		var err error
		if obj, err = get(); err != nil {
			return false, err.Error()
		}
		return done(obj)
	})
	return obj
}

func waitWorkflowPhase(t testing.TB, ns, name string, phase drv1.WorkflowPhase) *drv1.DRWorkflow {
	t.Helper()
	return waitFor(t, fmt.Sprintf("DRWorkflow %s/%s to be %s", ns, name, phase),
		func() (*drv1.DRWorkflow, error) {
			return env.DR.DrV1alpha1().DRWorkflows(ns).Get(context.Background(), name, metav1.GetOptions{})
		},
		func(wf *drv1.DRWorkflow) (bool, string) {
			return wf.Status.Phase == phase && wf.Status.ObservedGeneration == wf.Generation,
				fmt.Sprintf("phase %q message %q", wf.Status.Phase, wf.Status.Message)
		})
}

func waitPlanPhase(t testing.TB, ns, name string, phase drv1.PlanPhase) *drv1.DRPlan {
	t.Helper()
	return waitFor(t, fmt.Sprintf("DRPlan %s/%s to be %s", ns, name, phase), getPlan(ns, name),
		func(p *drv1.DRPlan) (bool, string) {
			return p.Status.Phase == phase && p.Status.ObservedGeneration == p.Generation,
				fmt.Sprintf("phase %q message %q", p.Status.Phase, p.Status.Message)
		})
}

// waitLockReleased waits until the plan's lock is free and returns the plan.
func waitLockReleased(t testing.TB, ns, name string) *drv1.DRPlan {
	t.Helper()
	return waitFor(t, fmt.Sprintf("DRPlan %s/%s's lock to be released", ns, name), getPlan(ns, name),
		func(p *drv1.DRPlan) (bool, string) {
			return p.Status.CurrentExecution == nil, fmt.Sprintf("held by %+v", p.Status.CurrentExecution)
		})
}

func waitExecution(t testing.TB, ns, name string, phase drv1.ExecutionPhase) *drv1.DRPlanExecution {
	t.Helper()
	return waitFor(t, fmt.Sprintf("DRPlanExecution %s/%s to be %s", ns, name, phase),
		func() (*drv1.DRPlanExecution, error) {
			return env.DR.DrV1alpha1().DRPlanExecutions(ns).Get(context.Background(), name, metav1.GetOptions{})
		},
		func(e *drv1.DRPlanExecution) (bool, string) {
			return e.Status.Phase == phase, fmt.Sprintf("phase %q message %q", e.Status.Phase, e.Status.Message)
		})
}

func getPlan(ns, name string) func() (*drv1.DRPlan, error) {
	return func() (*drv1.DRPlan, error) {
		return env.DR.DrV1alpha1().DRPlans(ns).Get(context.Background(), name, metav1.GetOptions{})
	}
}

// updatePlan re-reads the plan and applies mutate until the update does not conflict (the
// controller writes the status of the same object).
func updatePlan(t *testing.T, ns, name string, mutate func(*drv1.DRPlan)) {
	t.Helper()
	updateObject(t, env.DR.DrV1alpha1().DRPlans(ns), name, mutate)
}

// updateWorkflow is updatePlan for workflows.
func updateWorkflow(t *testing.T, ns, name string, mutate func(*drv1.DRWorkflow)) {
	t.Helper()
	updateObject(t, env.DR.DrV1alpha1().DRWorkflows(ns), name, mutate)
}

type getUpdater[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

func updateObject[T any](t *testing.T, client getUpdater[T], name string, mutate func(T)) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(obj)
		_, err = client.Update(ctx, obj, metav1.UpdateOptions{})
		return err
	}))
}

// applyPlan applies a plan of one workflow (the workflowRef shorthand) and waits until it is
// Ready.
func applyPlan(t testing.TB, ns, plan, workflow string) {
	t.Helper()
	kubectlApply(t, planYAML(ns, plan, workflow))
	waitPlanPhase(t, ns, plan, drv1.PlanReady)
}

// planYAML is a plan of the one workflow.
func planYAML(ns, plan, workflow string) string {
	return fmt.Sprintf("apiVersion: dr.bkbcs.tencent.com/v1alpha1\nkind: DRPlan\nmetadata: {name: %s, namespace: %s}\nspec:\n  workflowRef: {name: %s}\n", plan, ns, workflow)
}

// withoutWebhook unregisters the validating admission webhook until the test ends: the test
// checks what the controller (or the CRD schema) does on its own, as when that webhook is down,
// bypassed or older than an RBAC change. The mutating one still records who asks (a test that
// needs it gone too says so: env.SetMutatingWebhook).
func withoutWebhook(t testing.TB) {
	t.Helper()
	require.NoError(t, env.SetWebhook(false))
	t.Cleanup(func() { require.NoError(t, env.SetWebhook(true)) })
}

// withoutWebhooks unregisters both admission webhooks until the test ends: for a test that stops
// the suite's controller, whose process serves them (with them registered and nothing serving
// them, every write of our kinds would be refused), and writes what they would have recorded
// itself (requested).
func withoutWebhooks(t testing.TB) {
	t.Helper()
	// The mutating one first: turning it off is seen by the validating one's refusals.
	require.NoError(t, env.SetMutatingWebhook(false))
	t.Cleanup(func() { require.NoError(t, env.SetMutatingWebhook(true)) })
	withoutWebhook(t)
}

// requesterOf is the record of a user as the API server authenticated them.
func requesterOf(u authenticationv1.UserInfo) drv1.Requester {
	r := drv1.Requester{Username: u.Username, UID: u.UID, Groups: u.Groups}
	for k, v := range u.Extra {
		if r.Extra == nil {
			r.Extra = map[string][]string{}
		}
		r.Extra[k] = v
	}
	return r
}

var (
	adminOnce   sync.Once
	adminRecord drv1.Requester
	adminErr    error
)

// adminRequester is the suite's own user (env's), as the API server authenticates it: the
// requester the webhook records for what the suite creates.
func adminRequester(t testing.TB) drv1.Requester {
	t.Helper()
	adminOnce.Do(func() {
		r, err := env.Kube.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		adminRecord, adminErr = requesterOf(r.Status.UserInfo), err
	})
	require.NoError(t, adminErr)
	return adminRecord
}

// requested returns meta with the suite's own requester record: what the mutating webhook writes
// for the suite's creates, written by the suite itself for when the webhooks are off
// (withoutWebhook). With them on, the webhook overwrites it with the same record.
func requested(t testing.TB, meta metav1.ObjectMeta) metav1.ObjectMeta {
	t.Helper()
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[drv1.AnnotationRequester] = adminRequester(t).Encode()
	return meta
}

// asUser returns clients that act as user in groups (impersonation: the suite runs as a cluster
// admin). The API server adds system:authenticated to the groups.
func asUser(t testing.TB, user string, groups ...string) (versioned.Interface, kubernetes.Interface) {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	dr, err := versioned.NewForConfig(cfg)
	require.NoError(t, err)
	kube, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return dr, kube
}

// asController returns a client acting as the controller's own user: the only one whose status
// writes the webhook admits.
// A ServiceAccount's UID is impersonated too: the webhooks compare the UID the controller learned
// from SelfSubjectReview (the local backend's controller is a certificate user, without one).
func asController(t testing.TB) versioned.Interface {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: env.ControllerUser}
	if subject, ok := strings.CutPrefix(env.ControllerUser, "system:serviceaccount:"); ok {
		ns, name, _ := strings.Cut(subject, ":")
		sa, err := env.Kube.CoreV1().ServiceAccounts(ns).Get(context.Background(), name, metav1.GetOptions{})
		require.NoError(t, err)
		cfg.Impersonate.UID = string(sa.UID)
		cfg.Impersonate.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}
	}
	dr, err := versioned.NewForConfig(cfg)
	require.NoError(t, err)
	return dr
}
