package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bkbcs/drplan-controller/admission"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/deploy"
)

// The chart's names, as the in-cluster backends (kind, node) find the controller.
const (
	chartNamespace  = "drplan-system"
	chartDeployment = "drplan-controller"
	chartSelector   = "app=drplan-controller"
	chartWebhook    = "drplan-controller"
	chartLease      = "drplan-controller"
	chartReplicas   = 2
	// chartControllerUser is the controller's own user: its ServiceAccount.
	chartControllerUser = "system:serviceaccount:" + chartNamespace + ":drplan-controller"
)

// inCluster is the controller as users run it: installed by the chart, two replicas electing a
// leader, the webhook reached through its Service. The kind and node backends share it.
type inCluster struct {
	kube    kubernetes.Interface
	dr      versioned.Interface
	kubectl func(ctx context.Context, stdin string, args ...string) (string, string, error)
	// values are the chart values of the backend (image, environment); the shutdown grace and
	// the replicas are set per start.
	values map[string]any
}

// env is what a test sees of an in-cluster backend; the backend fills in what differs
// (ServerCPU, MetricsURLs, KillController).
func (c *inCluster) env(name string, cfg *rest.Config, root string) *Env {
	return &Env{
		Config: cfg, DR: c.dr, Kube: c.kube, Root: root, Kubectl: c.kubectl,
		Pods: true, InCluster: true,
		StopController: c.stop,
		StartController: func(grace time.Duration) {
			if err := c.start(grace); err != nil {
				fmt.Fprintf(os.Stderr, "%s: starting the controller: %v\n", name, err)
			}
		},
		ControllerWrites:   func() (int64, int64) { return 0, 0 }, // not observable from outside the pods
		ServerCPU:          func() time.Duration { return 0 },
		SetWebhook:         c.setWebhook,
		SetMutatingWebhook: c.setMutatingWebhook,
		ControllerUser:     chartControllerUser,
		MetricsURLs:        c.metricsURLs,
		Leader:             c.leader,
	}
}

// render renders the chart with the backend's values, the shutdown grace and the replicas.
func (c *inCluster) render(grace time.Duration, replicas int) (string, error) {
	values := map[string]any{"shutdownGrace": grace.String(), "replicas": replicas}
	for k, v := range c.values {
		values[k] = v
	}
	return deploy.Render(values)
}

// apply applies the rendered chart, or only its document holding marker ("kind: Deployment").
func (c *inCluster) apply(ctx context.Context, grace time.Duration, marker string) error {
	manifest, err := c.render(grace, chartReplicas)
	if err != nil {
		return err
	}
	if marker != "" {
		if manifest, err = chartDocument(manifest, marker); err != nil {
			return err
		}
	}
	if _, stderr, err := c.kubectl(ctx, manifest, "apply", "--server-side", "--force-conflicts", "-f", "-"); err != nil {
		return fmt.Errorf("apply the chart (%s): %w: %s", cmp.Or(marker, "all of it"), err, stderr)
	}
	return nil
}

// install applies the whole chart and waits for its replicas and its webhook.
func (c *inCluster) install(ctx context.Context, grace time.Duration) error {
	if err := c.apply(ctx, grace, ""); err != nil {
		return err
	}
	if err := c.waitPods(ctx, chartReplicas); err != nil {
		return err
	}
	return waitWebhook(ctx, c.dr, true)
}

// start runs the replicas again (after stop) with the given shutdown grace: the Deployment is
// re-applied from the chart, so its pods are new ones.
func (c *inCluster) start(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.apply(ctx, grace, "kind: Deployment"); err != nil {
		return err
	}
	if err := c.waitPods(ctx, chartReplicas); err != nil {
		return err
	}
	if _, err := c.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, chartWebhook, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil // a test turned the webhook off
	}
	return waitWebhook(ctx, c.dr, true)
}

// stop scales the Deployment to zero and waits until its pods are gone: each got SIGTERM and
// its shutdown grace, as in a rollout.
func (c *inCluster) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c.followLogs()
	if _, err := c.kube.AppsV1().Deployments(chartNamespace).Patch(ctx, chartDeployment, "application/merge-patch+json",
		[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("stop the controller: %w", err)
	}
	return c.waitPods(ctx, 0)
}

// waitPods waits until the Deployment has rolled out n pods of its current template, all Ready,
// and no other pod of it is left (terminating ones included).
func (c *inCluster) waitPods(ctx context.Context, n int) error {
	last := ""
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := c.kube.AppsV1().Deployments(chartNamespace).Get(ctx, chartDeployment, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		pods, err := c.kube.CoreV1().Pods(chartNamespace).List(ctx, metav1.ListOptions{LabelSelector: chartSelector})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ready := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				ready++
			}
		}
		last = fmt.Sprintf("%d pods, %d ready; deployment generation %d observed %d, updated %d", len(pods.Items), ready,
			d.Generation, d.Status.ObservedGeneration, d.Status.UpdatedReplicas)
		return d.Status.ObservedGeneration >= d.Generation && int(d.Status.UpdatedReplicas) == n &&
			len(pods.Items) == n && ready == n, nil
	})
	if err != nil {
		return fmt.Errorf("wait for %d controller pods: %w (last: %s)", n, err, last)
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// setWebhook re-applies or deletes the chart's webhook configurations, and waits until the API
// server acts on it.
func (c *inCluster) setWebhook(on bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !on {
		if err := admission.UnregisterValidating(ctx, c.kube, chartWebhook); err != nil {
			return err
		}
		return waitWebhook(ctx, c.dr, false)
	}
	for _, kind := range []string{"kind: MutatingWebhookConfiguration", "kind: ValidatingWebhookConfiguration"} {
		if err := c.apply(ctx, defaultGrace, kind); err != nil {
			return err
		}
	}
	return waitWebhook(ctx, c.dr, true)
}

// setMutatingWebhook re-applies or deletes the chart's mutating webhook configuration alone.
func (c *inCluster) setMutatingWebhook(on bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if on {
		err = c.apply(ctx, defaultGrace, "kind: MutatingWebhookConfiguration")
	} else {
		err = admission.UnregisterMutating(ctx, c.kube, chartWebhook)
	}
	if err != nil {
		return err
	}
	return waitMutatingWebhook(ctx, c.dr, on)
}

// leader is the leader Lease's holder ("" if none): the pod's name (its hostname), "_" and a
// per-process suffix.
func (c *inCluster) leader(ctx context.Context) string {
	l, err := c.kube.CoordinationV1().Leases(chartNamespace).Get(ctx, chartLease, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// metricsURLs are the replicas' metrics endpoints, at their pod IPs.
func (c *inCluster) metricsURLs() []string {
	pods, err := c.kube.CoreV1().Pods(chartNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: chartSelector})
	if err != nil {
		return nil
	}
	var urls []string
	for _, p := range pods.Items {
		if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			urls = append(urls, "http://"+p.Status.PodIP+":8080/metrics")
		}
	}
	return urls
}

// chartDocument is the document of the rendered chart that contains marker.
func chartDocument(manifest, marker string) (string, error) {
	for _, doc := range strings.Split(manifest, "\n---\n") {
		if strings.Contains(doc, marker) {
			return doc, nil
		}
	}
	return "", errors.New("the chart has no document with " + marker)
}

// followLogs keeps the logs of the controller pods about to be stopped: a stopped pod's logs are
// gone with it. Each pod's log, to the end of its process, goes to a file in stoppedLogsDir.
func (c *inCluster) followLogs() {
	pods, err := c.kube.CoreV1().Pods(chartNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: chartSelector})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		f, err := os.Create(filepath.Join(stoppedLogsDir(), p.Name+".log"))
		if err != nil {
			return
		}
		stream, err := c.kube.CoreV1().Pods(chartNamespace).GetLogs(p.Name, &corev1.PodLogOptions{Follow: true}).Stream(context.Background())
		if err != nil {
			f.Close()
			continue
		}
		go func() {
			defer f.Close()
			defer stream.Close()
			_, _ = io.Copy(f, stream)
		}()
	}
}

var stoppedLogs = sync.OnceValue(func() string {
	dir, err := os.MkdirTemp("", "drplan-e2e-stopped-pods-")
	if err != nil {
		return os.TempDir()
	}
	fmt.Println("e2e: the logs of the controller pods stopped during the suite are in", dir)
	return dir
})

func stoppedLogsDir() string { return stoppedLogs() }
