package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// DefaultExecutionHistoryLimit is the history a plan keeps without spec.executionHistoryLimit
// (one stored before the field had its default).
const DefaultExecutionHistoryLimit = 10

// pruneHistory deletes the plan's finished executions beyond its executionHistoryLimit, oldest
// first (pruned), with an event on the plan naming them.
func (c *Controller) pruneHistory(ctx context.Context, plan *drv1.DRPlan, execs []*drv1.DRPlanExecution) error {
	var deleted []string
	for _, e := range pruned(plan, execs) {
		err := c.dr.DrV1alpha1().DRPlanExecutions(e.Namespace).Delete(ctx, e.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &e.UID}})
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			continue // gone already, or a namesake made since
		case err != nil:
			return err
		}
		deleted = append(deleted, e.Name)
	}
	if len(deleted) > 0 {
		klog.FromContext(ctx).Info("Deleted the history beyond the plan's executionHistoryLimit", "deleted", deleted)
		c.event(plan, true, "HistoryPruned", fmt.Sprintf("Deleted the finished executions beyond spec.executionHistoryLimit (%d), oldest first: %s",
			historyLimit(plan), strings.Join(deleted, ", ")))
	}
	return nil
}

func historyLimit(plan *drv1.DRPlan) int {
	if l := plan.Spec.ExecutionHistoryLimit; l != nil {
		return int(*l)
	}
	return DefaultExecutionHistoryLimit
}

// pruned are the executions of plan (of execs, its executions) beyond its history limit, oldest
// first: of the finished ones that are not kept (kept), all but the newest limit, but a run whose
// retry chain is not pruned whole. Those being deleted are not counted.
func pruned(plan *drv1.DRPlan, execs []*drv1.DRPlanExecution) []*drv1.DRPlanExecution {
	keep := kept(plan, execs)
	var history []*drv1.DRPlanExecution
	for _, e := range execs {
		if e.Namespace == plan.Namespace && e.DeletionTimestamp == nil && rules.ExecutionEnded(&e.Status) && !keep[e.Name] {
			history = append(history, e)
		}
	}
	limit := historyLimit(plan)
	if len(history) <= limit {
		return nil
	}
	slices.SortFunc(history, func(a, b *drv1.DRPlanExecution) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return wholeChains(history[:len(history)-limit], execs)
}

// wholeChains keeps of prune only the runs whose whole retry chain is pruned with them: a later
// run of a chain renders as its first and reads what it did, so a chain goes at once or not at
// all.
func wholeChains(prune, execs []*drv1.DRPlanExecution) []*drv1.DRPlanExecution {
	going := map[string]bool{}
	for _, e := range prune {
		going[e.Name] = true
	}
	return slices.DeleteFunc(prune, func(e *drv1.DRPlanExecution) bool {
		return slices.ContainsFunc(rules.Chain(e, execs), func(m *drv1.DRPlanExecution) bool { return !going[m.Name] })
	})
}

// kept names the executions of the plan that history never counts nor deletes: its record
// (rules.Record), the runs not finished and those the plan's status names (its lock, its last
// success), each with its retry chain, and the target of a Revert not finished.
func kept(plan *drv1.DRPlan, execs []*drv1.DRPlanExecution) map[string]bool {
	keep := map[string]bool{}
	for name := range rules.Record(plan.Name, execs) {
		keep[name] = true
	}
	named := map[string]bool{}
	for _, ref := range []*drv1.ExecutionReference{plan.Status.CurrentExecution, plan.Status.LastSuccessfulExecution} {
		if ref != nil {
			named[ref.Name] = true
		}
	}
	for _, e := range execs {
		if rules.ExecutionEnded(&e.Status) && !named[e.Name] {
			continue
		}
		for _, m := range rules.Chain(e, execs) {
			keep[m.Name] = true
		}
		if ref := e.Spec.RevertExecutionRef; ref != nil && !rules.ExecutionEnded(&e.Status) {
			keep[ref.Name] = true
		}
	}
	return keep
}
