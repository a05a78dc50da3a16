// Package app wires the drplan-controller process: clients, informers, the controller, leader
// election, and the metrics and webhook servers, all from Options. main and the e2e suite run it.
package app

import (
	"context"
	"fmt"
	"net"
	"time"

	"k8s.io/client-go/kubernetes"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/actions"
	"github.com/bkbcs/drplan-controller/admission"
	"github.com/bkbcs/drplan-controller/controller"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/informers"
	"github.com/bkbcs/drplan-controller/metrics"
	"github.com/bkbcs/drplan-controller/rules"
)

// Default client-side limits of the controller's API requests, and of the admission webhook's.
const (
	DefaultQPS          = 500
	DefaultBurst        = 1000
	DefaultWebhookQPS   = 100
	DefaultWebhookBurst = 200
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
	// Policy says what plans without a ServiceAccount act as, whether workflows of other
	// namespaces may be run, and the controller's own objects no action may touch
	// (docs/security.md). Every run's rights are checked under it, by the webhook and the
	// controller alike.
	Policy access.Policy
	// ShutdownGrace is how long actions in flight may finish once ctx ends (default 20s); then
	// they are abandoned and a restart decides.
	ShutdownGrace time.Duration
	// APIRetryTimeout is how long the API calls of an action without a timeout of its own (and
	// the plan lock's writes, and the rights check before an action) retry transient errors:
	// 429, 5xx, timeouts, refused or dropped connections (default 2m,
	// actions.DefaultAPIRetryTimeout).
	APIRetryTimeout time.Duration
	// JobTimeout is how long a Job action without a timeout of its own may run (0:
	// actions.DefaultJobTimeout).
	JobTimeout time.Duration
	// RulesFile, when set, names a YAML list of rules replacing built-in CEL rules by name
	// (docs/rules.md); it is read once, at start-up, and a rule that does not compile stops the
	// process.
	RulesFile string
	// Webhook, when set, serves the admission webhooks from this process: the validating one
	// decides from the controller's own caches and rules; the mutating one records who asks.
	Webhook *WebhookOptions
	// LeaderElection, when set, runs the controller only while this process holds the Lease;
	// every replica serves the webhook and metrics.
	LeaderElection *LeaderElectionOptions
	// MetricsListener, when set, serves /metrics, /healthz and /readyz (docs/metrics.md).
	MetricsListener net.Listener
	// HTTPEgress says where HTTP actions may connect (--http-deny-cidrs and its kin); the zero
	// policy refuses nothing, as the local run and the e2e suite need (their sinks and recorders
	// listen on loopback).
	HTTPEgress actions.EgressPolicy
}

// WebhookOptions say where the admission webhook listens and where its certificate comes from.
type WebhookOptions struct {
	// Listener is where it serves.
	Listener net.Listener
	// CertDir holds tls.crt and tls.key (the local run's files, or a mounted Secret), re-read when
	// they change. When empty, the certificate is self-managed: a CA and certificate kept in the
	// Secret SecretName of Namespace for the Service ServiceName, with the CA bundle of the
	// validating and mutating webhook configurations ConfigName kept current
	// (admission.CertManager).
	CertDir                                        string
	Namespace, SecretName, ServiceName, ConfigName string
	// RenewCheck is how often a self-managed certificate is checked for renewal (default 1h).
	RenewCheck time.Duration
	// QPS and Burst limit the webhook's own API requests (its reads of objects not in the caches
	// yet, and its SubjectAccessReviews) on the client side, apart from the controller's
	// (default 100/200): a flood of admission reviews waits in this limiter, never in the one of
	// the engine's status writes and leader election.
	QPS   float32
	Burst int
}

// RunWithConfig builds the clients, informers and event recorder from cfg and runs the controller
// until ctx is done, with the servers opts asks for. This is the whole wiring of the process,
// listed in one place.
func RunWithConfig(ctx context.Context, cfg *rest.Config, opts Options) error {
	opts = opts.withDefaults()
	m := metrics.NewMetrics()
	decide, err := newRules(opts.RulesFile, m)
	if err != nil {
		return err
	}
	cl, err := newClients(cfg, opts, m)
	if err != nil {
		return err
	}
	recorder, stopRecorder := controller.NewRecorder(ctx, cl.kube)
	defer stopRecorder()
	// One cache of answers for the webhook and the controller (they ask the same questions),
	// asked through a client each: a flood of reviews does not delay a running failover's checks.
	reviewer := access.NewReviewer(cl.reviews, access.DefaultTTL)
	reviewer.Observe = m.Reviewed
	az := &access.Authorizer{Reviewer: reviewer,
		Mapper: cl.actions.RESTMapper(), Policy: opts.Policy}
	c := newController(cl, opts, decide, az, recorder, m)
	// The servers stop with ctx; an error return before c.Run must stop them too, or the
	// deferred waits would hang the process instead of letting it exit with the error.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ln := opts.MetricsListener; ln != nil {
		defer serve(ctx, cancel, "The metrics server", func(ctx context.Context) error { return m.Serve(ctx, ln, c.Synced) })()
	}
	if w := opts.Webhook; w != nil {
		me, err := selfUser(ctx, cl.kube, cfg)
		if err != nil {
			return err
		}
		klog.FromContext(ctx).Info("The webhook admits status writes, and records of other users, only from the controller's own user", "user", me.Username, "uid", me.UID)
		getCert, err := webhookCertificate(ctx, cl.kube, *w)
		if err != nil {
			return fmt.Errorf("the webhook's certificate: %w", err)
		}
		hookAz := &access.Authorizer{Reviewer: reviewer.With(cl.hookReviews), Mapper: az.Mapper, Policy: az.Policy}
		hook, mutate := newWebhook(cl, decide, hookAz, c.Synced, m, me), &admission.Mutator{Controller: me.Username, ControllerUID: me.UID}
		// The webhook outlives ctx until the controller has drained: the status writes of the
		// shutdown grace pass through it.
		hookCtx, stopHook := context.WithCancel(context.WithoutCancel(ctx))
		defer serve(hookCtx, stopHook, "The admission webhook", func(ctx context.Context) error {
			return admission.Serve(ctx, w.Listener, hook, mutate, getCert)
		})()
	}
	return c.Run(ctx, opts.Workers, opts.ActionWorkers)
}

// withDefaults fills in what opts leaves zero.
func (opts Options) withDefaults() Options {
	if opts.QPS == 0 {
		opts.QPS, opts.Burst = DefaultQPS, DefaultBurst
	}
	if w := opts.Webhook; w != nil && w.QPS == 0 {
		hook := *w
		hook.QPS, hook.Burst = DefaultWebhookQPS, DefaultWebhookBurst
		opts.Webhook = &hook
	}
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.ActionWorkers < 1 {
		opts.ActionWorkers = 64
	}
	return opts
}

// newRules builds the process's one CEL environment and its rules, the built-in ones or those
// of rulesFile, with m observing every evaluation. Everything that decides or compiles CEL is
// handed these: the controller, its runs, the runners and the webhook.
func newRules(rulesFile string, m *metrics.Metrics) (*rules.Rules, error) {
	opts := rules.Options{Observer: m.CELEvaluated}
	if rulesFile != "" {
		return rules.LoadRules(rulesFile, opts)
	}
	return rules.New(opts)
}

// reviewQPS limits the controller's SubjectAccessReviews (docs/security.md).
const reviewQPS = 100

// clients are the process's API clients and informers, all from one rest.Config. Each group has a
// client-side rate limiter of its own, its waits counted (drplan_client_rate_limiter_wait_seconds_total).
type clients struct {
	dr   versioned.Interface
	kube kubernetes.Interface
	// reviews asks the controller's SubjectAccessReviews, with a rate limit of its own: however
	// many rights a tenant's runs make it check, the controller's other requests (leader
	// election, status) keep theirs.
	reviews authorizationv1.SubjectAccessReviewInterface
	// hookDR and hookReviews are the admission webhook's (its reads of objects not in the caches
	// yet, its SubjectAccessReviews), sharing one rate limit apart from the controller's.
	hookDR      versioned.Interface
	hookReviews authorizationv1.SubjectAccessReviewInterface
	actions     *actions.ClientFactory
	inf         *informers.Informers
}

func newClients(cfg *rest.Config, opts Options, m *metrics.Metrics) (*clients, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "drplan-controller"
	// A runbook creates objects as fast as the API server takes them: client-go's default limit
	// (5/s) would make a plan of 200 actions take a minute. The API server's own priority and
	// fairness protects it.
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	cl := &clients{}
	var err error
	if cl.dr, err = versioned.NewForConfig(limited(cfg, opts.QPS, opts.Burst, "controller", m)); err != nil {
		return nil, fmt.Errorf("building the DR client: %w", err)
	}
	if cl.kube, err = kubernetes.NewForConfig(limited(cfg, opts.QPS, opts.Burst, "controller", m)); err != nil {
		return nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	reviews, err := kubernetes.NewForConfig(limited(cfg, reviewQPS, 2*reviewQPS, "reviews", m))
	if err != nil {
		return nil, fmt.Errorf("building the SubjectAccessReview client: %w", err)
	}
	cl.reviews = reviews.AuthorizationV1().SubjectAccessReviews()
	if w := opts.Webhook; w != nil {
		hookCfg := limited(cfg, w.QPS, w.Burst, "webhook", m)
		hookCfg.UserAgent = "drplan-controller-webhook"
		if cl.hookDR, err = versioned.NewForConfig(hookCfg); err != nil {
			return nil, fmt.Errorf("building the webhook's DR client: %w", err)
		}
		hookKube, err := kubernetes.NewForConfig(hookCfg)
		if err != nil {
			return nil, fmt.Errorf("building the webhook's SubjectAccessReview client: %w", err)
		}
		cl.hookReviews = hookKube.AuthorizationV1().SubjectAccessReviews()
	}
	if cl.inf, err = informers.New(cl.dr, 0); err != nil {
		return nil, err
	}
	if cl.actions, err = actions.NewClientFactory(cfg); err != nil {
		return nil, err
	}
	cl.actions.SetAPIRetryTimeout(opts.APIRetryTimeout)
	cl.actions.SetJobTimeout(opts.JobTimeout)
	return cl, nil
}

// limited is cfg with a rate limiter of its own (qps, burst), shared by every client built from
// it, its waits counted in m under name.
func limited(cfg *rest.Config, qps float32, burst int, name string, m *metrics.Metrics) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = qps, burst
	cfg.RateLimiter = m.RateLimiter(name, flowcontrol.NewTokenBucketRateLimiter(qps, burst))
	return cfg
}

// newController builds the controller, with leader election when opts ask for it, and exports
// its queues' counters.
func newController(cl *clients, opts Options, decide *rules.Rules, az *access.Authorizer, recorder record.EventRecorder, m *metrics.Metrics) *controller.Controller {
	cfg := controller.Config{Clients: cl.actions, DR: cl.dr, Informers: cl.inf, Recorder: recorder, Runners: newRunners(cl.actions, decide.Env, opts.HTTPEgress),
		Rules: decide, Metrics: m, Ready: opts.Ready, Access: az, ShutdownGrace: opts.ShutdownGrace}
	if le := opts.LeaderElection; le != nil {
		cfg.Elect = leaderElection(cl.kube, *le, m)
	}
	c := controller.New(cfg)
	m.WatchQueue("sync", c.SyncQueueStats)
	m.WatchQueue("actions", c.ActionQueueStats)
	return c
}

// newRunners returns a runner for every action type; those that evaluate CEL do it in env, and
// HTTP actions connect where egress allows.
func newRunners(f *actions.ClientFactory, env *rules.Env, egress actions.EgressPolicy) map[drv1.ActionType]actions.Runner {
	resources := actions.NewResourceRunner(f)
	clusternet := actions.NewClusternetRunner(resources)
	return map[drv1.ActionType]actions.Runner{
		drv1.ActionTypeHTTP:               actions.NewHTTPRunner(env, actions.NewHTTPClient(egress)),
		drv1.ActionTypeKubernetesResource: resources,
		drv1.ActionTypeJob:                actions.NewJobRunner(env, resources),
		drv1.ActionTypeLocalization:       clusternet,
		drv1.ActionTypeSubscription:       clusternet,
	}
}

// serve runs a server until ctx ends and returns the wait for it: the wait ends ctx (cancel) and
// logs why the server stopped if it failed.
func serve(ctx context.Context, cancel context.CancelFunc, name string, run func(context.Context) error) (wait func()) {
	served := make(chan error, 1)
	go func() { served <- run(ctx) }()
	return func() {
		cancel()
		if err := <-served; err != nil {
			klog.FromContext(ctx).Error(err, name+" stopped")
		}
	}
}
