package rules

import (
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Chain is the retry chain e belongs to among execs (the executions of e's plan, e among them),
// first run first: the run e retries (spec.retryOf), the one that retried, and so on back to
// the first, then e and the runs that retry it. Only runs of e's operation count, and not a
// retry that ended without running (refused, or cancelled before it started: it has no
// snapshot). Links are followed at most len(execs) times, so that a cycle written without the
// webhook (which refuses one) ends. Of two retries of one run (only without the webhook, or
// created in the same moment), the one the run names in status.retriedBy (the controller marks
// it as the retry starts) continues the chain, else the one created first; the other is left
// out.
func Chain(e *drv1.DRPlanExecution, execs []*drv1.DRPlanExecution) []*drv1.DRPlanExecution {
	byName := make(map[string]*drv1.DRPlanExecution, len(execs))
	next := map[string]*drv1.DRPlanExecution{} // by the name of the run retried
	for _, x := range execs {
		if x.Namespace != e.Namespace || x.Spec.Operation != e.Spec.Operation || neverRan(x) && x.Name != e.Name {
			continue
		}
		byName[x.Name] = x
		if r := x.Spec.RetryOf; r != "" {
			if cur, ok := next[r]; !ok || older(x, cur) {
				next[r] = x
			}
		}
	}
	for name, x := range byName { // the link the controller confirmed wins
		if r, ok := byName[x.Status.RetriedBy]; ok && r.Spec.RetryOf == name {
			next[name] = r
		}
	}
	seen := map[string]bool{e.Name: true}
	var back []*drv1.DRPlanExecution
	for cur := e; cur.Spec.RetryOf != ""; {
		prev, ok := byName[cur.Spec.RetryOf]
		if !ok || seen[prev.Name] || next[prev.Name] != cur {
			break
		}
		seen[prev.Name] = true
		back = append(back, prev)
		cur = prev
	}
	chain := make([]*drv1.DRPlanExecution, 0, len(back)+1)
	for i := len(back) - 1; i >= 0; i-- {
		chain = append(chain, back[i])
	}
	chain = append(chain, e)
	for cur := next[e.Name]; cur != nil && !seen[cur.Name]; cur = next[cur.Name] {
		seen[cur.Name] = true
		chain = append(chain, cur)
	}
	return chain
}

// older orders executions by creation, then name.
func older(a, b *drv1.DRPlanExecution) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// neverRan says whether an execution ended without running: it has no snapshot.
func neverRan(e *drv1.DRPlanExecution) bool {
	return e.Status.Snapshot == nil && ExecutionEnded(&e.Status)
}
