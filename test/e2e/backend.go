package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/actions"
	"github.com/bkbcs/drplan-controller/admission"
	"github.com/bkbcs/drplan-controller/cmd/drplan-controller/app"
	"github.com/bkbcs/drplan-controller/controlplane"
	"github.com/bkbcs/drplan-controller/crds"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/deploy"
)

// Env is what a test sees of the backend: clients, kubectl and where the repository is.
type Env struct {
	Config  *rest.Config
	DR      versioned.Interface
	Kube    kubernetes.Interface
	Kubectl func(ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error)
	Root    string // repository root, for examples/
	// StopController stops the controller as SIGTERM would: actions in flight get the shutdown
	// grace the controller was started with, then are abandoned. StartController starts a
	// fresh one with the given grace (tests that play a kill use a tiny one).
	StopController  func() error
	StartController func(shutdownGrace time.Duration)
	// ControllerWrites counts the controller's mutating API requests so far: to objects
	// (including status) and to events.
	ControllerWrites func() (objects, events int64)
	// ServerCPU is the CPU time the API server and etcd have used so far; zero where the
	// backend cannot see their processes.
	ServerCPU func() time.Duration
	// SetPolicy restarts the controller under another policy (--plans-without-service-account,
	// --refuse-cross-namespace-workflows); nil where the backend cannot (the chart's pods).
	SetPolicy func(access.Policy) error
	// SetHTTPEgress restarts the controller under another HTTP egress policy (--http-deny-cidrs
	// and its kin); the suite's controller starts with none, its recorders listening on loopback.
	// Nil where the backend cannot (the chart's pods).
	SetHTTPEgress func(actions.EgressPolicy) error
	// SetWebhookRateLimit restarts the controller with the webhook's own client-side rate limit
	// (--webhook-kube-api-qps, --webhook-kube-api-burst; 0: the defaults). Nil where the backend
	// cannot (the chart's pods).
	SetWebhookRateLimit func(qps float32, burst int) error
	// SetWebhook registers (true: both) or unregisters (false: the validating one) the
	// controller's admission webhooks; they are registered while the suite runs unless a test
	// turns them off. SetMutatingWebhook does it for the mutating one alone.
	SetWebhook         func(on bool) error
	SetMutatingWebhook func(on bool) error
	// ControllerUser is the controller's own user: the only one the webhook lets write a status
	// or another user's records.
	ControllerUser string
	// MetricsURLs are the running controller replicas' metrics endpoints (http://.../metrics);
	// none where the backend cannot reach them.
	MetricsURLs func() []string
	// SetLeaderElection restarts the controller with leader election on (as the chart runs it:
	// the Lease drplan-system/drplan-controller, client-go's default durations) or off (the
	// suite's default). Nil where the backend cannot (the chart's pods always elect).
	SetLeaderElection func(on bool) error
	// SetJobTimeout restarts the controller with another default timeout of Job actions without
	// one (--default-job-timeout; 0: the default). Nil where the backend cannot (the chart's pods).
	SetJobTimeout func(d time.Duration) error
	// KillAPIServer SIGKILLs kube-apiserver (etcd and the rest keep running), and
	// RestartAPIServer starts it again as it was, returning once /readyz answers OK. Nil where
	// the backend cannot.
	KillAPIServer    func() error
	RestartAPIServer func(ctx context.Context) error
	// Pods: a kubelet runs pods, so Jobs run for real (else a test plays the job controller).
	Pods bool
	// InCluster: the controller runs as the chart's pods. Leader is the leader Lease's holder
	// ("<pod>_<process id>"); KillController SIGKILLs the controller process of a pod.
	InCluster      bool
	Leader         func(ctx context.Context) string
	KillController func(ctx context.Context, pod string) error
}

// Backend starts and stops the cluster the suite runs against, and the controller in it.
type Backend interface {
	Name() string
	Start(ctx context.Context, progress io.Writer) (*Env, error)
	Stop() error
}

// SelectBackend returns the backend named by E2E_BACKEND ("" means local).
func SelectBackend(name string) (Backend, error) {
	switch name {
	case "", "local":
		return &localBackend{}, nil
	case "kind":
		return &kindBackend{}, nil
	case "node":
		return &nodeBackend{}, nil
	default:
		return nil, fmt.Errorf("unknown E2E_BACKEND %q: use local, node (a real node on this host, as root) or kind (on a machine with Docker)", name)
	}
}

// localBackend is a real etcd + kube-apiserver on loopback, with the controller running in this
// process.
type localBackend struct {
	writes writeCounter
	// The webhook: the controller serves it on webhookAddr, registered by URL.
	webhookAddr, webhookCertDir, webhookURL string
	kube                                    kubernetes.Interface
	metricsAddr                             atomic.Value // of the running controller
	// controllerConfig authenticates the controller as the chart's ServiceAccount.
	controllerConfig *rest.Config
	cp               *controlplane.ControlPlane
	cancel           context.CancelFunc
	done             sync.WaitGroup
	runErr           error
	// custom is the policy a test set (SetPolicy); the protected objects are always the suite's.
	custom access.Policy
	// egress is the HTTP egress policy a test set (SetHTTPEgress); zero: nothing refused.
	egress actions.EgressPolicy
	// webhookQPS and webhookBurst are the webhook's rate limit a test set (SetWebhookRateLimit).
	webhookQPS   float32
	webhookBurst int
	// leaderElection is whether the controller elects a leader, as a test set (SetLeaderElection).
	leaderElection bool
	// jobTimeout is the default Job timeout a test set (SetJobTimeout).
	jobTimeout time.Duration
}

// policy is what the suite's controller runs plans under: as the chart's (its namespace, its
// ClusterRole), with the suite's webhook configurations, and what a test set.
func (b *localBackend) policy() access.Policy {
	p := b.custom
	p.Protected = access.Protected{Namespace: chartNamespace, WebhookConfiguration: webhookConfigName, ClusterRole: "drplan-controller"}
	p.UnrecordedNamespaces = admission.SystemNamespaces // the suite's webhook configurations exclude them
	return p
}

// restart stops the controller, applies change to what it starts with, and starts it again. With
// lostLeaseOK, a controller that had lost its lease (and so ended, as the chart's process exits
// to be restarted) is started again like any other.
func (b *localBackend) restart(change func(), lostLeaseOK bool) error {
	if err := b.stopController(); err != nil && !(lostLeaseOK && errors.Is(err, app.ErrLostLeadership)) {
		return err
	}
	change()
	b.startController(defaultGrace)
	return b.runErr
}

// setPolicy restarts the controller under p.
func (b *localBackend) setPolicy(p access.Policy) error {
	return b.restart(func() { b.custom = p }, false)
}

// setHTTPEgress restarts the controller under the HTTP egress policy p.
func (b *localBackend) setHTTPEgress(p actions.EgressPolicy) error {
	return b.restart(func() { b.egress = p }, false)
}

// setLeaderElection restarts the controller with leader election on or off.
func (b *localBackend) setLeaderElection(on bool) error {
	return b.restart(func() { b.leaderElection = on }, true)
}

// setJobTimeout restarts the controller with the default Job timeout d.
func (b *localBackend) setJobTimeout(d time.Duration) error {
	return b.restart(func() { b.jobTimeout = d }, false)
}

// setWebhookRateLimit restarts the controller with the webhook's rate limit qps, burst.
func (b *localBackend) setWebhookRateLimit(qps float32, burst int) error {
	return b.restart(func() { b.webhookQPS, b.webhookBurst = qps, burst }, false)
}

func (b *localBackend) Name() string { return "local" }

func (b *localBackend) Start(ctx context.Context, progress io.Writer) (*Env, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	b.cp, err = controlplane.Start(ctx, controlplane.Options{
		CRDs:     append(crds.YAML(), crds.ClusternetYAML()...),
		Progress: progress,
	})
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(b.cp.RESTConfig)
	cfg.QPS, cfg.Burst = 200, 400
	dr, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, errors.Join(err, b.cp.Stop())
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, errors.Join(err, b.cp.Stop())
	}
	ln, certDir, url, err := b.cp.WebhookServing("")
	if err != nil {
		return nil, errors.Join(err, b.cp.Stop())
	}
	b.webhookAddr, b.webhookCertDir, b.webhookURL, b.kube = ln.Addr().String(), certDir, url, kube
	if err := ln.Close(); err != nil { // each controller start listens again on this address
		return nil, errors.Join(err, b.cp.Stop())
	}
	if b.controllerConfig, err = installChart(ctx, b.cp, kube); err != nil {
		return nil, errors.Join(err, b.cp.Stop())
	}
	b.startController(defaultGrace)
	if err := b.setWebhook(true); err != nil {
		return nil, errors.Join(err, b.Stop())
	}
	return &Env{
		Config: cfg, DR: dr, Kube: kube, Root: root,
		Kubectl: func(ctx context.Context, stdin string, args ...string) (string, string, error) {
			return b.cp.KubectlInput(ctx, stdin, args...)
		},
		StopController:      b.stopController,
		StartController:     b.startController,
		ControllerWrites:    b.writes.counts,
		ServerCPU:           b.cp.CPUTime,
		SetWebhook:          b.setWebhook,
		SetMutatingWebhook:  b.setMutatingWebhook,
		ControllerUser:      chartControllerUser,
		SetPolicy:           b.setPolicy,
		SetHTTPEgress:       b.setHTTPEgress,
		SetWebhookRateLimit: b.setWebhookRateLimit,
		SetLeaderElection:   b.setLeaderElection,
		SetJobTimeout:       b.setJobTimeout,
		KillAPIServer:       b.cp.KillAPIServer,
		RestartAPIServer:    b.cp.RestartAPIServer,
		MetricsURLs:         func() []string { return []string{"http://" + b.metricsAddr.Load().(string) + "/metrics"} },
	}, nil
}

// defaultGrace is the suite's shutdown grace: short, so that stopping the controller mid-action
// plays a kill.
const defaultGrace = 50 * time.Millisecond

// startController runs a controller in this process, as a fresh start would: new informers,
// new queues, nothing remembered.
func (b *localBackend) startController(grace time.Duration) {
	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.runErr = nil
	b.done.Add(1)
	ready := make(chan struct{})
	var readyOnce sync.Once
	markReady := func() { readyOnce.Do(func() { close(ready) }) }
	go func() {
		defer b.done.Done()
		defer markReady() // ended before it was ready
		ln, err := net.Listen("tcp", b.webhookAddr)
		if err != nil {
			b.runErr = fmt.Errorf("webhook listener: %w", err)
			return
		}
		metrics, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.runErr = fmt.Errorf("metrics listener: %w", err)
			return
		}
		b.metricsAddr.Store(metrics.Addr().String())
		cfg := rest.CopyConfig(b.controllerConfig)
		cfg.Wrap(b.writes.wrap)
		opts := app.Options{Workers: 4, ShutdownGrace: grace, JobTimeout: b.jobTimeout,
			Ready: markReady, MetricsListener: metrics, Policy: b.policy(), HTTPEgress: b.egress,
			Webhook: &app.WebhookOptions{Listener: ln, CertDir: b.webhookCertDir, QPS: b.webhookQPS, Burst: b.webhookBurst}}
		if b.leaderElection { // the chart's Lease, with client-go's default durations
			opts.LeaderElection = &app.LeaderElectionOptions{Namespace: chartNamespace, Name: chartLease}
		}
		b.runErr = app.RunWithConfig(runCtx, cfg, opts)
	}()
	// Return once the caches have synced, as a started pod becomes ready: the webhook refuses
	// requests until then.
	select {
	case <-ready:
	case <-time.After(time.Minute):
	}
}

// webhookConfigName names the suite's webhook configurations (validating and mutating).
const webhookConfigName = "drplan-e2e"

func (b *localBackend) setWebhook(on bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if on {
		client := admissionregistrationv1.WebhookClientConfig{URL: &b.webhookURL, CABundle: b.cp.CACertPEM}
		err = admission.Register(ctx, b.kube, admission.WebhookConfiguration(webhookConfigName, client, chartControllerUser),
			admission.MutatingWebhookConfiguration(webhookConfigName, client, chartControllerUser))
	} else {
		err = admission.UnregisterValidating(ctx, b.kube, webhookConfigName)
	}
	if err != nil {
		return err
	}
	dr, err := versioned.NewForConfig(b.cp.RESTConfig)
	if err != nil {
		return err
	}
	return waitWebhook(ctx, dr, on)
}

func (b *localBackend) setMutatingWebhook(on bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if on {
		err = admission.Register(ctx, b.kube, nil, admission.MutatingWebhookConfiguration(webhookConfigName,
			admissionregistrationv1.WebhookClientConfig{URL: &b.webhookURL, CABundle: b.cp.CACertPEM}, chartControllerUser))
	} else {
		err = admission.UnregisterMutating(ctx, b.kube, webhookConfigName)
	}
	if err != nil {
		return err
	}
	dr, err := versioned.NewForConfig(b.cp.RESTConfig)
	if err != nil {
		return err
	}
	return waitMutatingWebhook(ctx, dr, on)
}

// webhookProbe is a dry-run create of an execution of a plan that does not exist: the validating
// webhook refuses it, for want of a requester when the mutating webhook is not called, else for
// the plan.
func webhookProbe(ctx context.Context, dr versioned.Interface) error {
	_, err := dr.DrV1alpha1().DRPlanExecutions("default").Create(ctx, &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "webhook-probe"},
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "no-such-plan"}},
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// waitWebhook waits until the API server acts on the webhooks being registered (on) or not: it
// picks changes up from its own informer, and a registered webhook may still be starting.
func waitWebhook(ctx context.Context, dr versioned.Interface, on bool) error {
	return waitProbe(ctx, dr, "the webhooks being turned "+onOff(on), func(err error) bool {
		refused := err != nil && strings.Contains(err.Error(), "does not exist")
		return refused == on
	})
}

// waitMutatingWebhook waits until the API server calls the mutating webhook (on), or no more,
// with the validating one registered.
func waitMutatingWebhook(ctx context.Context, dr versioned.Interface, on bool) error {
	return waitProbe(ctx, dr, "the mutating webhook being turned "+onOff(on), func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "does not exist") == on &&
			strings.Contains(err.Error(), drv1.NoRequesterMessage) == !on
	})
}

func waitProbe(ctx context.Context, dr versioned.Interface, what string, done func(error) bool) error {
	for {
		err := webhookProbe(ctx, dr)
		if done(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server did not act on %s: last answer %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func onOff(on bool) string { return map[bool]string{true: "on", false: "off"}[on] }

// stopController cancels the controller and waits for it: running actions see their context
// end and their results are dropped, as if the process had been killed mid-run.
func (b *localBackend) stopController() error {
	b.cancel()
	b.done.Wait()
	b.cancel = nil
	if b.runErr != nil && !errors.Is(b.runErr, context.Canceled) {
		return b.runErr
	}
	return nil
}

func (b *localBackend) Stop() error {
	var errs []error
	if b.cancel != nil {
		if err := b.stopController(); err != nil {
			errs = append(errs, fmt.Errorf("controller: %w", err))
		}
	}
	if b.cp != nil {
		errs = append(errs, b.cp.Stop())
	}
	return errors.Join(errs...)
}

// writeCounter counts mutating requests passing through a client's transport.
type writeCounter struct {
	objects, events atomic.Int64
}

func (w *writeCounter) counts() (int64, int64) { return w.objects.Load(), w.events.Load() }

func (w *writeCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		switch req.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if strings.Contains(req.URL.Path, "/events") {
				w.events.Add(1)
			} else {
				w.objects.Add(1)
			}
		}
		return rt.RoundTrip(req)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			return "", fmt.Errorf("cannot find the repository root: %w", err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	return filepath.Join(filepath.Dir(file), "..", ".."), nil
}

// installChart installs the Helm chart (rendered with the Helm library, as `helm install` would)
// and returns a client config authenticated as the chart's ServiceAccount with a TokenRequest
// token: the suite's controller then has exactly the chart's rights, which proves them
// sufficient. No kubelet runs here, so the chart's Deployment never starts a pod, and its webhook
// configurations (which call the pods' Service) are removed: the suite registers the webhooks of
// its own controller by URL.
func installChart(ctx context.Context, cp *controlplane.ControlPlane, kube kubernetes.Interface) (*rest.Config, error) {
	manifest, err := deploy.Render(nil)
	if err != nil {
		return nil, err
	}
	if _, stderr, err := cp.KubectlInput(ctx, manifest, "apply", "--server-side", "--force-conflicts", "-f", "-"); err != nil {
		return nil, fmt.Errorf("apply the chart: %w: %s", err, stderr)
	}
	if err := admission.Unregister(ctx, kube, chartWebhook); err != nil {
		return nil, err
	}
	expiry := int64((24 * time.Hour).Seconds())
	tr, err := kube.CoreV1().ServiceAccounts(chartNamespace).CreateToken(ctx, "drplan-controller",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("a token of the chart's ServiceAccount: %w", err)
	}
	return &rest.Config{Host: cp.RESTConfig.Host, BearerToken: tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.RESTConfig.TLSClientConfig.CAData}}, nil
}
