package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
)

// A Revert undoes one Execute, its target (runplan.Revert plans how). Here is what reads and
// writes the API: finding the target, and marking it reverted once the Revert succeeded.

// revertTarget finds the execution a Revert undoes and asks RevertEligible whether it may.
func (c *Controller) revertTarget(ctx context.Context, exec *drv1.DRPlanExecution, plan *drv1.DRPlan) (*drv1.DRPlanExecution, string, error) {
	execs, err := c.inf.ExecutionsForPlan(plan.Namespace, plan.Name)
	if err != nil {
		return nil, "", err
	}
	// Read live: a Revert that just ended may have marked the target reverted already.
	name, target, err := rules.ChooseRevertTarget(exec, execs, func(name string) (*drv1.DRPlanExecution, error) {
		t, err := c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return t, err
	})
	if err != nil {
		return nil, "", err
	}
	ok, msg, err := c.rules.RevertEligible.Decide(ctx, rules.RevertVars(plan, exec, name, target), false)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return nil, "Cannot revert: " + msg, nil
	}
	return target, "", nil
}

// prepareRevertOf prepares the Revert exec of target (runplan.Revert), reading target's
// snapshot and the Secrets its parameters name as the plan's ServiceAccount.
func (c *Controller) prepareRevertOf(ctx context.Context, exec, target *drv1.DRPlanExecution) (*runplan.Prepared, string, *authority, error) {
	data, err := runplan.ReadSnapshot(target.Status.Snapshot)
	if err != nil {
		return nil, "", nil, fmt.Errorf("execution %s: %w", target.Name, err)
	}
	who := c.identity(data.Namespace, &data.Plan)
	auth, err := c.authorityOf(exec, data.Namespace, data.PlanName, &data.Plan)
	if err != nil {
		return nil, "", nil, err
	}
	execs, err := c.inf.ExecutionsForPlan(target.Namespace, target.Spec.PlanRef.Name)
	if err != nil {
		return nil, "", nil, err
	}
	prep, err := runplan.Revert(exec.Name, rules.Chain(target, execs), data, c.secretReader(ctx, data.Namespace, who, auth), c.rules, exec.Spec.FailurePolicy)
	return prep, who, auth, err
}

// markReverted records on a Revert's target, and on every run of its retry chain, that it was
// reverted, and by which execution, so that it is not reverted twice and its plan is Ready
// again. Idempotent.
func (c *Controller) markReverted(ctx context.Context, revert *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus) error {
	if revert.Spec.Operation != drv1.OperationRevert || st.Phase != drv1.ExecutionSucceeded || st.Snapshot == nil || st.Snapshot.RevertOf == "" {
		return nil
	}
	names := []string{st.Snapshot.RevertOf}
	if t, ok := c.inf.GetExecution(revert.Namespace, st.Snapshot.RevertOf); ok {
		execs, err := c.inf.ExecutionsForPlan(t.Spec.PlanRef.NamespaceOr(t.Namespace), t.Spec.PlanRef.Name)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, e := range rules.Chain(t, execs) {
			names = append(names, e.Name)
		}
	}
	for _, name := range names {
		if err := c.markOneReverted(ctx, revert, st, name); err != nil {
			return err
		}
	}
	return nil
}

// markOneReverted marks the execution name reverted by revert.
func (c *Controller) markOneReverted(ctx context.Context, revert *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus, name string) error {
	marked := func(t *drv1.DRPlanExecution) bool { return t.Status.RevertedBy == revert.Name && rules.Reverted(t) }
	if t, ok := c.inf.GetExecution(revert.Namespace, name); ok && marked(t) {
		return nil // every sync of an ended Revert passes here: no read of the API server once done
	}
	at := metav1.NewTime(c.now())
	if st.CompletionTime != nil {
		at = *st.CompletionTime
	}
	_, err := c.markExecution(ctx, revert.Namespace, name, marked, func(t *drv1.DRPlanExecution) error {
		t.Status.RevertedBy = revert.Name
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue,
			Reason: "Reverted", Message: "Reverted by execution " + revert.Name, LastTransitionTime: at, ObservedGeneration: t.Generation})
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// markExecution records a mark on the execution name (Retried, Reverted: a condition and the
// field naming the run that made it), read live, retrying a conflict. marked says it is there
// already (nothing is written); mark sets it on a copy, or refuses. It returns the execution as
// written (nil when nothing was).
func (c *Controller) markExecution(ctx context.Context, namespace, name string, marked func(*drv1.DRPlanExecution) bool,
	mark func(*drv1.DRPlanExecution) error) (*drv1.DRPlanExecution, error) {
	execs := c.dr.DrV1alpha1().DRPlanExecutions(namespace)
	var written *drv1.DRPlanExecution
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		t, err := execs.Get(ctx, name, metav1.GetOptions{})
		if err != nil || marked(t) {
			return err
		}
		t = t.DeepCopy()
		if err := mark(t); err != nil {
			return err
		}
		updated, err := updateStatus(ctx, execs, t)
		if err == nil {
			written = updated
		}
		return err
	})
	return written, err
}
