package rules

import (
	"fmt"
	"slices"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Record is the record of plan's failover among execs (its executions): what a Revert needs and
// the plan's Executed phase stands on, so that it may not be deleted. By name, each with why:
// every Execute in effect (InEffect: it took effect, a Failed or Cancelled one included, and is
// not reverted), the latest first (the one a Revert undoes by default), every run of the
// retry chain of one, and the runs a retry that has not ended retries. The webhook refuses deleting them and the controller keeps them with
// drv1.FinalizerRecord, unless the plan is gone or carries drv1.AnnotationAllowDelete=true.
func Record(plan string, execs []*drv1.DRPlanExecution) map[string]string {
	var effective []*drv1.DRPlanExecution
	for _, e := range execs {
		if InEffect(e) {
			effective = append(effective, e)
		}
	}
	slices.SortFunc(effective, func(a, b *drv1.DRPlanExecution) int {
		if later(a, b) {
			return -1
		}
		return 1
	})
	why := map[string]string{}
	for i, e := range effective {
		switch {
		case i == 0:
			why[e.Name] = "is the failover in effect of plan " + plan
		case e.Status.Phase == drv1.ExecutionSucceeded:
			why[e.Name] = "is an Execute of plan " + plan + " in effect (not reverted)"
		default:
			why[e.Name] = fmt.Sprintf("is an Execute of plan %s that took effect and is not reverted (%s, what it did still stands)", plan, e.Status.Phase)
		}
	}
	for _, e := range effective {
		for _, m := range Chain(e, execs) {
			if _, ok := why[m.Name]; !ok {
				why[m.Name] = fmt.Sprintf("is a run of the retry chain of %s, in effect in plan %s", e.Name, plan)
			}
		}
	}
	// A retry that has not ended acts as its chain's first run and renders from its parameters:
	// the runs it retries stay (itself not: deleting a run stops it).
	for _, e := range execs {
		if ExecutionEnded(&e.Status) {
			continue
		}
		for _, m := range Chain(e, execs) {
			if _, ok := why[m.Name]; !ok && m.Name != e.Name {
				why[m.Name] = fmt.Sprintf("is a run of the retry chain of %s, which has not ended", e.Name)
			}
		}
	}
	return why
}

// RecordMessage says why the execution name, part of its plan's record for why (Record), may not
// be deleted, and what to do: the webhook's refusal and the controller's DeletionBlocked event.
func RecordMessage(name, why string) string {
	return fmt.Sprintf("execution %s %s: revert it first, or annotate the plan %s=true", name, why, drv1.AnnotationAllowDelete)
}
