// Package controller wires the informers to the decision functions and the status writers: every
// informer event becomes a key on the work queue, and each key's sync reads the current objects
// back from the listers, decides, and writes status only when it changed.
package controller

import (
	"context"
	"fmt"
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

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	"github.com/bkbcs/drplan-controller/informers"
)

// kind says which sync a key belongs to.
type kind int

const (
	kindWorkflow kind = iota
	kindPlan
)

func (k kind) String() string {
	switch k {
	case kindWorkflow:
		return "DRWorkflow"
	case kindPlan:
		return "DRPlan"
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

// Controller keeps the statuses of DRWorkflows and DRPlans true to their specs.
type Controller struct {
	dr       versioned.Interface
	inf      *informers.Informers
	queue    *actions.Queue[key]
	recorder record.EventRecorder
	now      func() time.Time
	ready    func() // called once the caches have synced; may be nil
}

// New builds a controller over the given informers (not started yet).
func New(dr versioned.Interface, inf *informers.Informers, recorder record.EventRecorder) *Controller {
	return &Controller{
		dr:       dr,
		inf:      inf,
		queue:    actions.NewQueue[key](),
		recorder: recorder,
		now:      time.Now,
	}
}

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
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartStructuredLogging(4)
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	return b.NewRecorder(Scheme(), corev1.EventSource{Component: "drplan-controller"}), b.Shutdown
}

// Run registers the event handlers, starts the informers, waits for their caches and runs
// workers until ctx is done. It returns after every worker has stopped.
func (c *Controller) Run(ctx context.Context, workers int) error {
	logger := klog.FromContext(ctx)
	if _, err := c.inf.Workflows.AddEventHandler(c.handler(c.enqueueWorkflow)); err != nil {
		return err
	}
	if _, err := c.inf.Plans.AddEventHandler(c.handler(c.enqueuePlan)); err != nil {
		return err
	}
	if _, err := c.inf.Executions.AddEventHandler(c.handler(c.enqueueExecutionPlan)); err != nil {
		return err
	}
	c.inf.Start(ctx.Done())
	defer c.inf.Shutdown()
	logger.Info("Waiting for informer caches to sync")
	if !c.inf.WaitForCacheSync(ctx.Done()) {
		return fmt.Errorf("informer caches did not sync: %w", context.Cause(ctx))
	}
	logger.Info("Controller ready", "workers", workers)
	if c.ready != nil {
		c.ready()
	}
	actions.Run(ctx, c.queue, workers, c.sync)
	return nil
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

func (c *Controller) enqueuePlan(obj any) {
	if p, ok := obj.(*drv1.DRPlan); ok {
		c.queue.Add(key{kindPlan, p.Namespace, p.Name})
	}
}

func (c *Controller) enqueueExecutionPlan(obj any) {
	if e, ok := obj.(*drv1.DRPlanExecution); ok {
		c.queue.Add(key{kindPlan, e.Spec.PlanRef.NamespaceOr(e.Namespace), e.Spec.PlanRef.Name})
	}
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
	}
	switch {
	case apierrors.IsConflict(err):
		// Our cache was behind the object we wrote: the informer brings the newer one and the
		// retry decides again from it.
		logger.V(4).Info("Conflict writing status; will retry", "err", err)
	case err != nil:
		logger.Error(err, "Sync failed; will retry")
	}
	return err
}
