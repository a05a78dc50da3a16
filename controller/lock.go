package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// The plan's lock: a plan runs one execution at a time, the one its status.currentExecution
// names. Both ends of the lock are plan status writes through updateStatus, whose
// resourceVersion makes two executions racing for the lock meet a conflict (docs/execution.md).
// Both retry transient errors (lockWrite), as actions' API calls do.

// lockWrite runs write (reads and a status write of a plan) again on a conflict, as
// retry.RetryOnConflict does, and on a transient error (the API server busy or unreachable) with
// backoff until the API retry timeout: a brief outage neither fails a run's start or end nor
// sends it back to the queue.
func (c *Controller) lockWrite(ctx context.Context, write func(ctx context.Context) error) error {
	return c.clients.RetryTransient(ctx, func(ctx context.Context) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error { return write(ctx) })
	})
}

// lockLooksFree returns the plan from the cache when its lock looks free (or already ours), so
// that a start may write its first status while it takes the lock.
func (c *Controller) lockLooksFree(exec *drv1.DRPlanExecution) *drv1.DRPlan {
	plan, err := c.inf.PlanLister.DRPlans(exec.Spec.PlanRef.NamespaceOr(exec.Namespace)).Get(exec.Spec.PlanRef.Name)
	if err != nil {
		return nil
	}
	if cur := plan.Status.CurrentExecution; cur != nil && (cur.Name != exec.Name || cur.Namespace != exec.Namespace) {
		return nil
	}
	return plan
}

// acquireLock takes the plan's lock for exec: DRPlan.status.currentExecution, written with
// optimistic concurrency so that of two executions racing for it exactly one wins. Whether exec
// may take it is the PlanLock rule's decision. It returns the plan (nil if it does not exist),
// and when exec may not take the lock, the rule's message saying why (waiting); mine says the
// lock was exec's already.
func (c *Controller) acquireLock(ctx context.Context, exec *drv1.DRPlanExecution) (plan *drv1.DRPlan, waiting string, mine bool, err error) {
	ns := exec.Spec.PlanRef.NamespaceOr(exec.Namespace)
	plans := c.dr.DrV1alpha1().DRPlans(ns)
	attempt := 0
	err = c.lockWrite(ctx, func(ctx context.Context) error {
		waiting, mine = "", false
		attempt++
		// The cache is usually current: try from it first (a stale copy only costs a conflict),
		// then from the API server.
		p, err := c.inf.PlanLister.DRPlans(ns).Get(exec.Spec.PlanRef.Name)
		if attempt > 1 || err != nil {
			p, err = plans.Get(ctx, exec.Spec.PlanRef.Name, metav1.GetOptions{})
		}
		if apierrors.IsNotFound(err) {
			plan = nil
			return nil
		}
		if err != nil {
			return err
		}
		plan = p
		cur := p.Status.CurrentExecution
		if cur != nil && cur.Name == exec.Name && cur.Namespace == exec.Namespace {
			mine = true // ours already (a restart, or a retry after the status write)
			return nil
		}
		vars, err := c.lockVars(ctx, p, exec)
		if err != nil {
			return err
		}
		ok, msg, err := c.rules.PlanLock.Decide(ctx, vars, false)
		if err != nil {
			return err
		}
		if !ok {
			waiting = msg
			return nil
		}
		now := metav1.NewTime(c.now())
		p = p.DeepCopy()
		p.Status.CurrentExecution = &drv1.ExecutionReference{Name: exec.Name, Namespace: exec.Namespace,
			Operation: exec.Spec.Operation, StartTime: &now}
		plan, err = updateStatus(ctx, plans, p)
		return err
	})
	return plan, waiting, mine, err
}

// lockVars are the PlanLock rule's variables, with the execution the lock names read live: a
// stale cache must not hand the lock over.
func (c *Controller) lockVars(ctx context.Context, p *drv1.DRPlan, exec *drv1.DRPlanExecution) (map[string]any, error) {
	var holder *drv1.DRPlanExecution
	if cur := p.Status.CurrentExecution; cur != nil {
		e, err := c.dr.DrV1alpha1().DRPlanExecutions(cur.Namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, err // unsure: retry later rather than guess
		default:
			holder = e
		}
	}
	return rules.LockVars(p, exec, holder), nil
}

// releaseLock clears the plan's lock if exec holds it, and records a success.
func (c *Controller) releaseLock(ctx context.Context, exec *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus) error {
	plans := c.dr.DrV1alpha1().DRPlans(exec.Spec.PlanRef.NamespaceOr(exec.Namespace))
	return c.lockWrite(ctx, func(ctx context.Context) error {
		p, err := plans.Get(ctx, exec.Spec.PlanRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		p = p.DeepCopy()
		changed := false
		// The holder of the lock is the plan's latest run (they run one at a time); another ended
		// run's sync (any change to it brings it here) replaces the last success only if newer.
		mine := false
		if cur := p.Status.CurrentExecution; cur != nil && cur.Name == exec.Name && cur.Namespace == exec.Namespace {
			p.Status.CurrentExecution, changed, mine = nil, true, true
		}
		if last := p.Status.LastSuccessfulExecution; st.Phase == drv1.ExecutionSucceeded && st.CompletionTime != nil &&
			(last == nil || mine || newer(st, last)) && (last == nil || last.Name != exec.Name || last.Namespace != exec.Namespace) {
			p.Status.LastSuccessfulExecution = &drv1.ExecutionReference{Name: exec.Name, Namespace: exec.Namespace,
				Operation: exec.Spec.Operation, StartTime: st.StartTime, CompletionTime: st.CompletionTime}
			changed = true
		}
		if !changed {
			return nil
		}
		_, err = updateStatus(ctx, plans, p)
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile: no lock to release
		}
		return err
	})
}

// newer says whether a run that ended with st ended after last. Times have a second's precision:
// of two runs ending in the same second, the one that started later is the newer; of two that
// also started in the same second, neither (the one that held the lock last is: releaseLock).
func newer(st *drv1.DRPlanExecutionStatus, last *drv1.ExecutionReference) bool {
	switch {
	case last.CompletionTime == nil:
		return true
	case !st.CompletionTime.Equal(last.CompletionTime):
		return st.CompletionTime.After(last.CompletionTime.Time)
	case st.StartTime == nil || last.StartTime == nil:
		return true
	}
	return last.StartTime.Before(st.StartTime)
}
