// Package controller reconciles and runs: every informer event becomes a key on the work queue,
// each key's sync reads the current objects back from the listers, decides, and writes status
// only when it changed; the engine runs executions. The process around it is wired by
// cmd/drplan-controller/app.
package controller

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/informers"
	"github.com/bkbcs/drplan-controller/metrics"
	"github.com/bkbcs/drplan-controller/rules"
)

// kind says which sync a key belongs to.
type kind int

const (
	kindWorkflow kind = iota
	kindPlan
	kindExecution
)

func (k kind) String() string {
	switch k {
	case kindWorkflow:
		return "DRWorkflow"
	case kindPlan:
		return "DRPlan"
	case kindExecution:
		return "DRPlanExecution"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// key is a work item: an object of one of our kinds, by name.
type key struct {
	kind      kind
	namespace string
	name      string
}

func (k key) String() string { return k.kind.String() + " " + k.namespace + "/" + k.name }

// Controller keeps the statuses of DRWorkflows and DRPlans true to their specs and runs
// DRPlanExecutions.
type Controller struct {
	clients  *actions.ClientFactory
	dr       versioned.Interface
	inf      *informers.Informers
	queue    *actions.Queue[key]
	engine   *engine
	recorder record.EventRecorder
	clock    func() time.Time
	ready    func()
	elect    Elect
	metrics  *metrics.Metrics
	synced   atomic.Bool
	// access checks rights and says how plans act (nil: no checks, as in unit tests).
	access *access.Authorizer
	// shutdownGrace is how long actions in flight may finish after the controller is told to stop.
	shutdownGrace time.Duration
	// rules take the plan-lock decision (stage decisions are taken by each run's RunPlan).
	rules *rules.Rules
}

// Elect runs lead only while this process is the leader, until ctx ends or the lead is lost;
// lead's abandon is closed when the lead is lost (the runs may be another replica's now).
type Elect func(ctx context.Context, lead func(ctx context.Context, abandon <-chan struct{})) error

// Config is what a controller is made of. DR, Informers and Rules are required; the others may
// be left zero (without Clients and Runners no action runs, as in unit tests).
type Config struct {
	// Clients are the actions' API clients; the controller also reads Secret-sourced parameters
	// and waits for waitFor conditions through them.
	Clients *actions.ClientFactory
	// DR writes our kinds: statuses, the plan's lock, triggered executions.
	DR versioned.Interface
	// Informers over our kinds, not started yet: Run starts them.
	Informers *informers.Informers
	// Recorder records events; nil records none.
	Recorder record.EventRecorder
	// Runners run the actions, by type.
	Runners map[drv1.ActionType]actions.Runner
	// Rules take the plan-lock, stage and revert decisions, and their Env compiles the users'
	// guards: the process's one set, built at start-up (rules.New).
	Rules *rules.Rules
	// Metrics record executions and actions; nil records nothing.
	Metrics *metrics.Metrics
	// Elect, when set, runs the workers only while this process leads (leader election); every
	// replica keeps its caches.
	Elect Elect
	// Ready, when set, is called once the caches have synced.
	Ready func()
	// Access checks every run's rights at start and before each action, and its Policy says what
	// plans act as (docs/security.md); nil checks nothing and runs plans without a ServiceAccount
	// as the controller (unit tests).
	Access *access.Authorizer
	// ShutdownGrace is how long actions in flight may finish once Run's ctx ends; 0 means 20s,
	// which leaves room within Kubernetes' default 30 s termination grace.
	ShutdownGrace time.Duration
}

// DefaultShutdownGrace is the ShutdownGrace of a Config that sets none.
const DefaultShutdownGrace = 20 * time.Second

// New builds a controller over the given informers (not started yet).
func New(cfg Config) *Controller {
	if cfg.Rules == nil {
		panic("controller.New: Config.Rules is required (rules.New builds them)")
	}
	c := &Controller{
		clients:       cfg.Clients,
		dr:            cfg.DR,
		inf:           cfg.Informers,
		queue:         actions.NewQueue[key](),
		recorder:      cfg.Recorder,
		clock:         time.Now,
		ready:         cfg.Ready,
		elect:         cfg.Elect,
		metrics:       cfg.Metrics,
		access:        cfg.Access,
		shutdownGrace: cfg.ShutdownGrace,
		rules:         cfg.Rules,
	}
	if c.shutdownGrace <= 0 {
		c.shutdownGrace = DefaultShutdownGrace
	}
	c.engine = newEngine(c, cfg.Runners, cfg.Clients, cfg.Metrics)
	return c
}

// now is the controller's clock.
func (c *Controller) now() time.Time { return c.clock() }

// Synced reports whether the informers' caches have synced: until then nothing may be decided
// from them (readiness, and the webhook's "starting, retry").
func (c *Controller) Synced() bool { return c.synced.Load() }

// SyncQueueStats are the counters of the queue of objects to sync.
func (c *Controller) SyncQueueStats() actions.Stats { return c.queue.Stats() }

// ActionQueueStats are the counters of the queue of actions to run.
func (c *Controller) ActionQueueStats() actions.Stats { return c.engine.queue.Stats() }

// Scheme knows client-go's kinds and ours; events about our objects need it.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(drv1.AddToScheme(s))
	return s
}

// NewRecorder returns an event recorder that writes core/v1 Events through kube, and a function
// that stops it.
func NewRecorder(ctx context.Context, kube kubernetes.Interface) (record.EventRecorder, func()) {
	// The default spam filter allows 25 events per object and type: a run of many actions would
	// lose its ExecutionSucceeded. Keyed by reason, each kind of event has its own budget of 12
	// (the first 10 of a kind are recorded one by one, then aggregated), so a long run's events
	// cost a bounded number of writes and the run's own events always get through.
	b := record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(record.CorrelatorOptions{
		BurstSize: 12,
		SpamKeyFunc: func(e *corev1.Event) string {
			return strings.Join([]string{e.Source.Component, e.InvolvedObject.Kind, e.InvolvedObject.Namespace,
				e.InvolvedObject.Name, string(e.InvolvedObject.UID), e.Type, e.Reason}, "/")
		},
	}))
	b.StartStructuredLogging(4)
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	return b.NewRecorder(Scheme(), corev1.EventSource{Component: "drplan-controller"}), b.Shutdown
}

// Run registers the event handlers, starts the informers, waits for their caches and runs
// workers (and the engine's action workers) until ctx is done. It returns after every worker has
// stopped.
func (c *Controller) Run(ctx context.Context, workers, actionWorkers int) error {
	logger := klog.FromContext(ctx)
	if _, err := c.inf.Workflows.AddEventHandler(c.handler(c.enqueueWorkflow)); err != nil {
		return err
	}
	if _, err := c.inf.Plans.AddEventHandler(c.handler(c.enqueuePlan)); err != nil {
		return err
	}
	execHandler := c.handler(c.enqueueExecution).(cache.ResourceEventHandlerFuncs)
	execHandler.DeleteFunc = func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		c.enqueueDeletedExecution(obj)
	}
	if _, err := c.inf.Executions.AddEventHandler(execHandler); err != nil {
		return err
	}
	c.inf.Start(ctx.Done())
	defer c.inf.Shutdown()
	logger.Info("Waiting for informer caches to sync")
	if !c.inf.WaitForCacheSync(ctx.Done()) {
		return fmt.Errorf("informer caches did not sync: %w", context.Cause(ctx))
	}
	c.synced.Store(true)
	logger.Info("Caches synced", "workers", workers)
	if c.ready != nil {
		c.ready()
	}
	if c.elect == nil {
		c.runWorkers(ctx, workers, actionWorkers, nil)
		return nil
	}
	// Only the leader reconciles and runs actions; every replica keeps its caches (the webhook
	// decides from them).
	return c.elect(ctx, func(lead context.Context, abandon <-chan struct{}) {
		c.runWorkers(lead, workers, actionWorkers, abandon)
	})
}

// runWorkers runs the sync workers and the engine until ctx is done, then lets actions in flight
// finish for up to the shutdown grace (their results are written, nothing new starts), or not at
// all once abandon is closed, and returns once every worker has stopped.
func (c *Controller) runWorkers(ctx context.Context, workers, actionWorkers int, abandon <-chan struct{}) {
	grace := c.shutdownGrace
	logger := klog.FromContext(ctx)
	logger.Info("Controller running", "workers", workers)
	// Runs live on past ctx by a grace period: on shutdown, actions in flight finish and their
	// results are written, nothing new starts, and a restart carries on exactly.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	c.engine.bind(work) // before any sync can start or resume a run
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		c.engine.Run(ctx, actionWorkers)
	}()
	actions.Run(ctx, c.queue, workers, c.sync)
	c.engine.draining.Store(true)
	select {
	case <-drained:
	case <-time.After(grace):
		logger.Info("Actions still running after the shutdown grace period; abandoning them", "grace", grace)
	case <-abandon:
		logger.Info("Lost the leader lease: abandoning the actions in flight")
	}
	select {
	case <-abandon: // the statuses may be the new leader's to write now
	default:
		// What finished is written before the runs stop: the next leader, or a restart,
		// carries on from there instead of doing it again.
		flush, cancel := context.WithTimeout(work, 5*time.Second)
		c.engine.flushAll(flush)
		cancel()
	}
	stopWork()
	<-drained
}

// handler adapts an enqueue function to informer events, unwrapping delete tombstones.
func (c *Controller) handler(enqueue func(obj any)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			enqueue(obj)
		},
	}
}

func (c *Controller) enqueueWorkflow(obj any) {
	wf, ok := obj.(*drv1.DRWorkflow)
	if !ok {
		return
	}
	c.queue.Add(key{kindWorkflow, wf.Namespace, wf.Name})
	// Plans that reference it decide their phase from it: look again.
	plans, _ := c.inf.PlansForWorkflow(wf.Namespace, wf.Name)
	for _, p := range plans {
		c.queue.Add(key{kindPlan, p.Namespace, p.Name})
	}
}

// enqueuePlan enqueues a plan and its unfinished executions: a change of the plan's lock lets a
// waiting execution start.
func (c *Controller) enqueuePlan(obj any) {
	p, ok := obj.(*drv1.DRPlan)
	if !ok {
		return
	}
	c.queue.Add(key{kindPlan, p.Namespace, p.Name})
	c.enqueueUnfinished(p.Namespace, p.Name)
}

// enqueueUnfinished enqueues the plan's executions that have not finished: one may be waiting
// for the lock.
func (c *Controller) enqueueUnfinished(namespace, plan string) {
	execs, _ := c.inf.ExecutionsForPlan(namespace, plan)
	for _, e := range execs {
		if !rules.ExecutionEnded(&e.Status) {
			c.queue.Add(key{kindExecution, e.Namespace, e.Name})
		}
	}
}

// enqueueExecution enqueues an execution and its plan, whose phase depends on its executions.
func (c *Controller) enqueueExecution(obj any) {
	if e, ok := obj.(*drv1.DRPlanExecution); ok {
		c.queue.Add(key{kindExecution, e.Namespace, e.Name})
		c.queue.Add(key{kindPlan, e.Spec.PlanRef.NamespaceOr(e.Namespace), e.Spec.PlanRef.Name})
	}
}

// enqueueDeletedExecution also wakes the executions waiting for the plan's lock: the deleted
// one may have held it.
func (c *Controller) enqueueDeletedExecution(obj any) {
	e, ok := obj.(*drv1.DRPlanExecution)
	if !ok {
		return
	}
	c.enqueueExecution(e)
	c.enqueueUnfinished(e.Spec.PlanRef.NamespaceOr(e.Namespace), e.Spec.PlanRef.Name)
}

// sync dispatches a key to its kind's sync. A returned error re-queues the key with backoff.
func (c *Controller) sync(ctx context.Context, k key) error {
	logger := klog.FromContext(ctx).WithValues("kind", k.kind.String(), "namespace", k.namespace, "name", k.name)
	ctx = klog.NewContext(ctx, logger)
	var err error
	switch k.kind {
	case kindWorkflow:
		err = c.syncWorkflow(ctx, k.namespace, k.name)
	case kindPlan:
		err = c.syncPlan(ctx, k.namespace, k.name)
	case kindExecution:
		err = c.syncExecution(ctx, k.namespace, k.name)
	}
	switch {
	case ctx.Err() != nil:
		// Shutting down: nothing to report.
	case apierrors.IsConflict(err):
		// Our cache was behind the object we wrote: the informer brings the newer one and the
		// retry decides again from it.
		logger.V(4).Info("Conflict writing status; will retry", "err", err)
	case err != nil:
		logger.Error(err, "Sync failed; will retry")
	}
	return err
}
