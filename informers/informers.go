// Package informers builds the shared informers the controller reads from, with the indexes it
// looks objects up by. Handlers elsewhere enqueue keys; they read objects back from the listers.
package informers

import (
	"fmt"
	"time"

	"k8s.io/client-go/tools/cache"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned"
	drinformers "github.com/bkbcs/drplan-controller/crds/generated/informers/externalversions"
	drlisters "github.com/bkbcs/drplan-controller/crds/generated/listers/dr/v1alpha1"
)

const (
	// IndexPlansByWorkflow indexes plans by the "namespace/name" of every workflow they reference.
	IndexPlansByWorkflow = "plansByWorkflow"
	// IndexExecutionsByPlan indexes executions by the "namespace/name" of their plan.
	IndexExecutionsByPlan = "executionsByPlan"
)

// Informers holds the shared informers of our three kinds and their listers.
type Informers struct {
	factory drinformers.SharedInformerFactory

	Workflows  cache.SharedIndexInformer
	Plans      cache.SharedIndexInformer
	Executions cache.SharedIndexInformer

	WorkflowLister  drlisters.DRWorkflowLister
	PlanLister      drlisters.DRPlanLister
	ExecutionLister drlisters.DRPlanExecutionLister
}

// New creates the informers (not started) for every namespace. resync 0 disables resyncs: every
// decision is driven by events.
func New(client versioned.Interface, resync time.Duration) (*Informers, error) {
	f := drinformers.NewSharedInformerFactory(client, resync)
	v := f.Dr().V1alpha1()
	inf := &Informers{
		factory:         f,
		Workflows:       v.DRWorkflows().Informer(),
		Plans:           v.DRPlans().Informer(),
		Executions:      v.DRPlanExecutions().Informer(),
		WorkflowLister:  v.DRWorkflows().Lister(),
		PlanLister:      v.DRPlans().Lister(),
		ExecutionLister: v.DRPlanExecutions().Lister(),
	}
	if err := inf.Plans.AddIndexers(cache.Indexers{IndexPlansByWorkflow: plansByWorkflow}); err != nil {
		return nil, fmt.Errorf("adding plan indexer: %w", err)
	}
	if err := inf.Executions.AddIndexers(cache.Indexers{IndexExecutionsByPlan: executionsByPlan}); err != nil {
		return nil, fmt.Errorf("adding execution indexer: %w", err)
	}
	return inf, nil
}

// Start starts every informer; they stop when stop is closed.
func (i *Informers) Start(stop <-chan struct{}) { i.factory.Start(stop) }

// WaitForCacheSync waits until every informer has synced, or stop is closed.
func (i *Informers) WaitForCacheSync(stop <-chan struct{}) bool {
	for _, ok := range i.factory.WaitForCacheSync(stop) {
		if !ok {
			return false
		}
	}
	return true
}

// Shutdown waits for the informers' goroutines after stop was closed.
func (i *Informers) Shutdown() { i.factory.Shutdown() }

func plansByWorkflow(obj any) ([]string, error) {
	p, ok := obj.(*drv1.DRPlan)
	if !ok {
		return nil, nil
	}
	var keys []string
	seen := map[string]bool{}
	for _, s := range p.Spec.EffectiveStages() {
		for _, w := range s.Workflows {
			k := drv1.RefKey(w.WorkflowRef.NamespaceOr(p.Namespace), w.WorkflowRef.Name)
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys, nil
}

func executionsByPlan(obj any) ([]string, error) {
	e, ok := obj.(*drv1.DRPlanExecution)
	if !ok {
		return nil, nil
	}
	return []string{drv1.RefKey(e.Spec.PlanRef.NamespaceOr(e.Namespace), e.Spec.PlanRef.Name)}, nil
}

// PlansForWorkflow lists the plans that reference the workflow namespace/name.
func (i *Informers) PlansForWorkflow(namespace, name string) ([]*drv1.DRPlan, error) {
	objs, err := i.Plans.GetIndexer().ByIndex(IndexPlansByWorkflow, drv1.RefKey(namespace, name))
	if err != nil {
		return nil, err
	}
	out := make([]*drv1.DRPlan, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*drv1.DRPlan))
	}
	return out, nil
}

// ExecutionsForPlan lists the executions of the plan namespace/name.
func (i *Informers) ExecutionsForPlan(namespace, name string) ([]*drv1.DRPlanExecution, error) {
	objs, err := i.Executions.GetIndexer().ByIndex(IndexExecutionsByPlan, drv1.RefKey(namespace, name))
	if err != nil {
		return nil, err
	}
	out := make([]*drv1.DRPlanExecution, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*drv1.DRPlanExecution))
	}
	return out, nil
}

// GetWorkflow reads a workflow from the cache; it makes Informers an validation.WorkflowGetter.
func (i *Informers) GetWorkflow(namespace, name string) (*drv1.DRWorkflow, bool) {
	wf, err := i.WorkflowLister.DRWorkflows(namespace).Get(name)
	return wf, err == nil
}

// GetPlan reads a plan from the cache.
func (i *Informers) GetPlan(namespace, name string) (*drv1.DRPlan, bool) {
	p, err := i.PlanLister.DRPlans(namespace).Get(name)
	return p, err == nil
}

// GetExecution reads an execution from the cache.
func (i *Informers) GetExecution(namespace, name string) (*drv1.DRPlanExecution, bool) {
	e, err := i.ExecutionLister.DRPlanExecutions(namespace).Get(name)
	return e, err == nil
}
