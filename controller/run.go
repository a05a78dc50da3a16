package controller

import (
	"context"
	"fmt"
	"net"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/actions"
	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/informers"
	"github.com/bkbcs/drplan-controller/metrics"
	"github.com/bkbcs/drplan-controller/rules"
)

// Default client-side limits of the controller's API requests.
const (
	DefaultQPS   = 500
	DefaultBurst = 1000
)

// Options configure the controller process.
type Options struct {
	// QPS and Burst limit the controller's API requests on the client side (default 500/1000).
	QPS   float32
	Burst int
	// Workers is the number of objects synced at once.
	Workers int
	// ActionWorkers is the number of actions run at once, across all executions.
	ActionWorkers int
	// Ready, if set, is called once the informer caches have synced and the workers start.
	Ready func()
	// RequireServiceAccount refuses to run a plan without spec.serviceAccountName, so that every
	// side effect is bounded by a ServiceAccount's RBAC rather than the controller's own rights.
	RequireServiceAccount bool
	// ShutdownGrace is how long actions in flight may finish once ctx ends (default 20s); then
	// they are abandoned and a restart decides.
	ShutdownGrace time.Duration
	// Rules replace the built-in CEL rules (rules.LoadRules); nil keeps them.
	Rules *rules.Rules
	// Webhook, when set, serves the validating admission webhook from this process: it decides
	// from the controller's own caches and rules.
	Webhook *WebhookOptions
	// LeaderElection, when set, runs the controller only while this process holds the Lease;
	// every replica serves the webhook and metrics.
	LeaderElection *LeaderElectionOptions
	// MetricsListener, when set, serves /metrics, /healthz and /readyz (docs/metrics.md).
	MetricsListener net.Listener
}

// WebhookOptions say where the admission webhook listens and where its certificate comes from.
type WebhookOptions struct {
	// Listener is where it serves.
	Listener net.Listener
	// CertDir holds tls.crt and tls.key (the local run's files, or a mounted Secret), re-read when
	// they change. When empty, the certificate is self-managed: a CA and certificate kept in the
	// Secret SecretName of Namespace for the Service ServiceName, with the CA bundle of the
	// ValidatingWebhookConfiguration ConfigName kept current (admission.CertManager).
	CertDir                                        string
	Namespace, SecretName, ServiceName, ConfigName string
	// RenewCheck is how often a self-managed certificate is checked for renewal (default 1h).
	RenewCheck time.Duration
}

// RunWithConfig builds the clients, informers and event recorder from cfg and runs the controller
// until ctx is done. This is the whole wiring of the process, listed in one place.
func RunWithConfig(ctx context.Context, cfg *rest.Config, opts Options) error {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "drplan-controller"
	// A runbook creates objects as fast as the API server takes them: client-go's default limit
	// (5/s) would make a plan of 200 actions take a minute. The API server's own priority and
	// fairness protects it.
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = DefaultQPS, DefaultBurst
	}
	dr, err := versioned.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building the DR client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building the Kubernetes client: %w", err)
	}
	inf, err := informers.New(dr, 0)
	if err != nil {
		return err
	}
	recorder, stopRecorder := NewRecorder(ctx, kube)
	defer stopRecorder()
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.ActionWorkers < 1 {
		opts.ActionWorkers = 64
	}
	clients, err := actions.NewClientFactory(cfg)
	if err != nil {
		return err
	}
	resources := actions.NewResourceRunner(clients)
	clusternet := actions.NewClusternetRunner(resources)
	runners := map[drv1.ActionType]actions.Runner{
		drv1.ActionTypeHTTP:               actions.NewHTTPRunner(nil),
		drv1.ActionTypeKubernetesResource: resources,
		drv1.ActionTypeJob:                actions.NewJobRunner(resources),
		drv1.ActionTypeLocalization:       clusternet,
		drv1.ActionTypeSubscription:       clusternet,
	}
	c := New(clients, dr, inf, recorder, runners)
	c.ready = opts.Ready
	c.metrics = metrics.NewMetrics()
	rules.SetObserver(c.metrics.CELEvaluated)
	c.metrics.WatchQueue("sync", c.queue.Stats)
	c.metrics.WatchQueue("actions", c.engine.queue.Stats)
	if le := opts.LeaderElection; le != nil {
		if c.elect, err = leaderElection(kube, *le, c.metrics); err != nil {
			return err
		}
	}
	// The servers below stop with ctx; an error return before c.Run must stop them too, or the
	// deferred waits would hang the process instead of letting it exit with the error.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opts.MetricsListener != nil {
		served := make(chan error, 1)
		go func() { served <- c.metrics.Serve(ctx, opts.MetricsListener, c.synced.Load) }()
		defer func() {
			cancel()
			if err := <-served; err != nil {
				klog.FromContext(ctx).Error(err, "The metrics server stopped")
			}
		}()
	}
	c.requireServiceAccount = opts.RequireServiceAccount
	if opts.ShutdownGrace > 0 {
		c.shutdownGrace = opts.ShutdownGrace
	}
	if opts.Rules != nil {
		c.rules = opts.Rules
	}
	if w := opts.Webhook; w != nil {
		getCert := admission.FileCertificate(w.CertDir)
		if w.CertDir == "" {
			m := &admission.CertManager{Client: kube, Namespace: w.Namespace, SecretName: w.SecretName,
				ServiceName: w.ServiceName, WebhookConfigName: w.ConfigName}
			renew := w.RenewCheck
			if renew == 0 {
				renew = time.Hour
			}
			if err := m.Start(ctx, renew); err != nil {
				return fmt.Errorf("the webhook's certificate: %w", err)
			}
			getCert = m.GetCertificate
		}
		hook := &admission.Webhook{Decider: &admission.Decider{Rules: c.rules}, Ready: c.synced.Load, Observe: c.metrics.WebhookDecided,
			State: func(ctx context.Context) admission.State { return &admissionState{Informers: inf, dr: dr, ctx: ctx} }}
		served := make(chan error, 1)
		go func() { served <- admission.Serve(ctx, w.Listener, hook, getCert) }()
		defer func() {
			cancel()
			if err := <-served; err != nil {
				klog.FromContext(ctx).Error(err, "The admission webhook stopped")
			}
		}()
	}
	return c.Run(ctx, opts.Workers, opts.ActionWorkers)
}
