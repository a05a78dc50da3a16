package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
)

// A retry (spec.retryOf) goes on from where an earlier run stopped; runplan/retry.go says how.
// Here is what reads and writes the API: finding the run retried and its chain, preparing the
// retry as the chain's first run, and marking the run retried.

// retrySource is what a retry starts from.
type retrySource struct {
	prev  *drv1.DRPlanExecution   // the run retried
	chain []*drv1.DRPlanExecution // prev's chain, first run first
}

// retryOf finds the run exec retries and checks that it may (runplan.RetryProblem); refused
// says why not.
func (c *Controller) retryOf(ctx context.Context, exec *drv1.DRPlanExecution, plan *drv1.DRPlan) (src retrySource, refused string, err error) {
	// Read live: the run may have been marked retried, or reverted, a moment ago.
	prev, err := c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Get(ctx, exec.Spec.RetryOf, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return src, fmt.Sprintf("Cannot retry: execution %s does not exist", exec.Spec.RetryOf), nil
	}
	if err != nil {
		return src, "", err
	}
	execs, err := c.inf.ExecutionsForPlan(plan.Namespace, plan.Name)
	if err != nil {
		return src, "", err
	}
	src = retrySource{prev: prev, chain: rules.Chain(prev, execs)}
	if problem := runplan.RetryProblem(exec, prev, execs, string(plan.UID)); problem != "" {
		return src, "Cannot retry: " + problem, nil
	}
	return src, "", nil
}

// runAs is the identity a run acts as: its own, or the first run of its chain for a retry.
func runAs(exec *drv1.DRPlanExecution) *drv1.DRPlanExecution {
	id := exec.Status.Snapshot
	if id == nil || id.RunAs == nil {
		return exec
	}
	as := exec.DeepCopy()
	as.Name, as.UID, as.Status.StartTime = id.RunAs.Name, types.UID(id.RunAs.UID), id.RunAs.StartTime.DeepCopy()
	return as
}

// identityOf is the identity of the chain's first run, which every run of the chain acts as.
func identityOf(chain []*drv1.DRPlanExecution) *drv1.ExecutionIdentity {
	first := chain[0]
	if s := first.Status.Snapshot; s != nil && s.RunAs != nil {
		return s.RunAs.DeepCopy() // chains built without the webhook may not start at the first run
	}
	start := first.CreationTimestamp
	if first.Status.StartTime != nil {
		start = *first.Status.StartTime
	}
	return &drv1.ExecutionIdentity{Name: first.Name, UID: string(first.UID), StartTime: start}
}

// prepareRetry prepares exec, a retry of src.prev: an Execute from prev's snapshot as the chain's
// first run; a Revert as prev was (what it undoes, from its own target).
func (c *Controller) prepareRetry(ctx context.Context, exec *drv1.DRPlanExecution, src retrySource) (*drv1.ExecutionSnapshot, *runplan.Prepared, string, *authority, error) {
	snap := src.prev.Status.Snapshot.DeepCopy()
	snap.RunAs = identityOf(src.chain)
	as := exec.DeepCopy()
	as.Status.Snapshot = snap
	if snap.RevertOf != "" {
		target, err := c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Get(ctx, snap.RevertOf, metav1.GetOptions{})
		if err != nil {
			return nil, nil, "", nil, fmt.Errorf("execution %s, which the Revert undoes: %w", snap.RevertOf, err)
		}
		prep, who, auth, err := c.prepareRevertOf(ctx, exec, target)
		return snap, prep, who, auth, err
	}
	data, err := runplan.ReadSnapshot(snap)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("execution %s: %w", src.prev.Name, err)
	}
	who := c.identity(data.Namespace, &data.Plan)
	auth, err := c.authorityOf(exec, data.Namespace, data.PlanName, &data.Plan)
	if err != nil {
		return nil, nil, "", nil, err
	}
	prep, err := c.prepareAsFirst(ctx, as, data, who, auth)
	return snap, prep, who, auth, err
}

// prepareAsFirst prepares a retry of an Execute (its snapshot's runAs set) as the first run of its
// chain: that run's name, start and parameters (a retry has none of its own).
func (c *Controller) prepareAsFirst(ctx context.Context, exec *drv1.DRPlanExecution, data *runplan.Snapshot, who string, auth *authority) (*runplan.Prepared, error) {
	id := exec.Status.Snapshot.RunAs
	first, ok := c.inf.GetExecution(exec.Namespace, id.Name)
	if !ok || string(first.UID) != id.UID {
		return nil, fmt.Errorf("execution %s, the first run of this retry's chain, is gone: its parameters are not known", id.Name)
	}
	if first.Spec.RetryOf != "" || first.Spec.PlanRef.Name != exec.Spec.PlanRef.Name || first.Spec.Operation != exec.Spec.Operation {
		return nil, fmt.Errorf("execution %s is not the first run of this retry's chain (status.snapshot.runAs)", id.Name)
	}
	as := runAs(exec)
	as.Spec.Params = first.Spec.Params
	return runplan.Prepare(as, data, c.secretReader(ctx, data.Namespace, who, auth), as.Status.StartTime.Time, c.rules)
}

// carryOver lays out the retry's first status from the run it retries (runplan.CarryOver), and
// marks that run retried; refused says why it cannot.
func (c *Controller) carryOver(ctx context.Context, exec *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus, prev *drv1.DRPlanExecution) (refused string, err error) {
	skip, err := runplan.SkipIndexes(prev.Status.ActionStatuses, exec.Spec.SkipActions)
	if err != nil {
		return "Cannot retry: " + err.Error(), nil
	}
	requester, _ := drv1.RequesterOf(exec.Annotations)
	if err := runplan.CarryOver(st, prev, skip, requester.Username); err != nil {
		return "Cannot retry: " + err.Error(), nil
	}
	return "", c.markRetried(ctx, prev, exec)
}

// markRetried records on prev that exec retries it. Idempotent.
func (c *Controller) markRetried(ctx context.Context, prev, exec *drv1.DRPlanExecution) error {
	marked := func(t *drv1.DRPlanExecution) bool { return t.Status.RetriedBy == exec.Name }
	written, err := c.markExecution(ctx, prev.Namespace, prev.Name, marked, func(t *drv1.DRPlanExecution) error {
		if other, ok := c.inf.GetExecution(t.Namespace, t.Status.RetriedBy); ok && other.Spec.RetryOf == t.Name &&
			(other.Status.Snapshot != nil || !rules.ExecutionEnded(&other.Status)) {
			return fmt.Errorf("execution %s was retried by %s meanwhile", prev.Name, t.Status.RetriedBy)
		} // else that retry is gone, or ended without running: this one takes its place
		t.Status.RetriedBy = exec.Name
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: drv1.ConditionRetried, Status: metav1.ConditionTrue,
			Reason: "Retried", Message: "Retried by execution " + exec.Name, LastTransitionTime: metav1.NewTime(c.now()), ObservedGeneration: t.Generation})
		return nil
	})
	if written != nil {
		c.event(written, true, "ExecutionRetried", "Retried by execution "+exec.Name)
	}
	return err
}
