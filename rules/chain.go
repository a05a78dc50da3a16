package rules

import (
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Chain is the retry chain e belongs to among execs (the executions of e's plan, e among them),
// first run first: the run e retries (spec.retryOf), the one that retried, and so on back to
// the first, then e and the runs that retry it. Only runs of e's operation count. Links are
// followed at most len(execs) times, so that a cycle written without the webhook (which refuses
// one) ends; of two retries of one run (also only without the webhook), the one created first
// continues the chain, the other is left out.
func Chain(e *drv1.DRPlanExecution, execs []*drv1.DRPlanExecution) []*drv1.DRPlanExecution {
	byName := make(map[string]*drv1.DRPlanExecution, len(execs))
	next := map[string]*drv1.DRPlanExecution{} // by the name of the run retried
	for _, x := range execs {
		if x.Namespace != e.Namespace || x.Spec.Operation != e.Spec.Operation {
			continue
		}
		byName[x.Name] = x
		if r := x.Spec.RetryOf; r != "" {
			if cur, ok := next[r]; !ok || older(x, cur) {
				next[r] = x
			}
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
