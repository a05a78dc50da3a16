package runplan

import (
	"fmt"
	"slices"
	"strings"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// A retry goes on from where an earlier run of the same plan and operation stopped: the same
// snapshot and parameters, acting as the first run of the chain (status.snapshot.runAs). What
// succeeded is carried over, with its outputs; the rest runs; what the requester marked done by
// hand (spec.skipActions) is skipped.

// FindAction finds the action a user names among a run's actions: "<stage>/<workflowIndex>/
// <action>", or a bare action name where it is unique in the plan.
func FindAction(actions []drv1.ActionStatus, name string) (int, error) {
	var found []int
	for i, a := range actions {
		if a.ID() == name {
			return i, nil
		}
		if a.Name == name {
			found = append(found, i)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return -1, fmt.Errorf("no action %q in the plan (name one as <stage>/<workflowIndex>/<action>, or by its name where it is unique)", name)
	}
	ids := make([]string, 0, min(len(found), 5))
	for _, i := range found[:min(len(found), 5)] {
		ids = append(ids, actions[i].ID())
	}
	more := ""
	if len(found) > 5 {
		more = fmt.Sprintf(" and %d more", len(found)-5)
	}
	return -1, fmt.Errorf("action %q is in the plan %d times: name one as %s%s", name, len(found), strings.Join(ids, ", "), more)
}

// SkippedByHand is the message of an action a retry's spec.skipActions names.
func SkippedByHand(requester string) string {
	return "Skipped: marked done by " + requester + " (spec.skipActions); a Revert does not undo it"
}

// IsSkippedByHand says whether an action was marked done by hand.
func IsSkippedByHand(a drv1.ActionStatus) bool {
	return a.Phase == drv1.StepSkipped && strings.HasPrefix(a.Message, "Skipped: marked done by ")
}

// carriedOver is the message of an action a retry did not run again.
func carriedOver(from string) string { return "Succeeded (carried over from " + from + ")" }

// SkipIndexes finds the actions skip names, refusing a name that is unknown, ambiguous, or of an
// action prev already succeeded in.
func SkipIndexes(prev []drv1.ActionStatus, skip []string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, name := range skip {
		i, err := FindAction(prev, name)
		if err != nil {
			return nil, fmt.Errorf("spec.skipActions: %w", err)
		}
		if prev[i].Phase == drv1.StepSucceeded {
			return nil, fmt.Errorf("spec.skipActions: %s already succeeded: it is carried over", prev[i].ID())
		}
		out[i] = true
	}
	return out, nil
}

// CarryOver lays out a retry's first status: st, the plan's initial status from the snapshot
// prev ran, with every action prev succeeded in Succeeded (its times, retries and outputs kept)
// and the actions skip names Skipped by hand. prev must have run the same actions in the same
// order.
func CarryOver(st *drv1.DRPlanExecutionStatus, prev *drv1.DRPlanExecution, skip map[int]bool, requester string) error {
	was := prev.Status.ActionStatuses
	if len(was) != len(st.ActionStatuses) {
		return fmt.Errorf("execution %s ran %d actions, its snapshot %d: it cannot be retried", prev.Name, len(was), len(st.ActionStatuses))
	}
	carried := map[string]bool{}
	for i := range st.ActionStatuses {
		a, p := &st.ActionStatuses[i], was[i]
		if a.ID() != p.ID() {
			return fmt.Errorf("execution %s ran %s where its snapshot has %s: it cannot be retried", prev.Name, p.ID(), a.ID())
		}
		switch {
		case p.Phase == drv1.StepSucceeded:
			*a = p
			if !strings.HasPrefix(p.Message, "Succeeded (carried over from ") {
				a.Message = carriedOver(prev.Name)
			}
			carried[a.ID()] = true
		case skip[i]:
			a.Phase, a.Message = drv1.StepSkipped, SkippedByHand(requester)
		case IsSkippedByHand(p):
			a.Phase, a.Message = p.Phase, p.Message // marked done by hand earlier in the chain: still done
		}
	}
	for _, o := range prev.Status.Outputs {
		if carried[(drv1.ActionStatus{Name: o.ActionName, Stage: o.Stage, WorkflowIndex: o.WorkflowIndex}).ID()] {
			st.Outputs = append(st.Outputs, *o.DeepCopy())
		}
	}
	return nil
}

// Interrupted lists the actions that may have acted without succeeding in a run of chain (an
// HTTP call interrupted, or failed after it was sent) and have not succeeded nor been marked done
// by hand since: a retry of the chain runs them again unless skip names them.
func Interrupted(chain []*drv1.DRPlanExecution, skip map[int]bool) []string {
	acted := map[int]string{}
	for _, e := range chain {
		for i, a := range e.Status.ActionStatuses {
			switch {
			case a.Phase == drv1.StepSucceeded || IsSkippedByHand(a):
				delete(acted, i)
			case a.MayHaveActed:
				acted[i] = a.ID()
			}
		}
	}
	var out []string
	for i, id := range acted {
		if !skip[i] {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// RetryProblem says why retry may not retry prev (empty: it may): prev must be a run of the
// same plan (the same object: planUID) and operation that ended Failed or Cancelled after it
// started, the latest of its chain (rules.Chain of prev among execs, the plan's executions), with
// no run of the chain reverted. A chain of Executes that a Revert has undone in part cannot be
// retried (retry that Revert, or revert the chain); a Revert whose target was reverted since by
// another Revert cannot be either.
func RetryProblem(retry, prev *drv1.DRPlanExecution, execs []*drv1.DRPlanExecution, planUID string) string {
	name := "execution " + prev.Name
	chain := rules.Chain(prev, execs)
	switch {
	case prev.Spec.PlanRef.NamespaceOr(prev.Namespace) != retry.Spec.PlanRef.NamespaceOr(retry.Namespace) || prev.Spec.PlanRef.Name != retry.Spec.PlanRef.Name:
		return fmt.Sprintf("%s ran plan %s, not %s", name, prev.Spec.PlanRef.Name, retry.Spec.PlanRef.Name)
	case prev.Spec.Operation != retry.Spec.Operation:
		return fmt.Sprintf("%s is a %s: a retry of it is a %s too", name, prev.Spec.Operation, prev.Spec.Operation)
	case prev.Status.Phase == drv1.ExecutionSucceeded:
		return name + " succeeded: there is nothing to retry"
	case !rules.ExecutionEnded(&prev.Status):
		return fmt.Sprintf("%s has not ended (%s): cancel it or wait for it to end", name, phaseOr(prev.Status.Phase))
	case prev.Status.Snapshot == nil:
		return name + " ended before it started: run the plan anew"
	case planUID != "" && prev.Status.Snapshot.PlanUID != "" && prev.Status.Snapshot.PlanUID != planUID:
		return fmt.Sprintf("%s ran an earlier plan %s, deleted since: Execute anew", name, prev.Spec.PlanRef.Name)
	}
	if last := chain[len(chain)-1]; last.Name != prev.Name && last.Name != retry.Name {
		return fmt.Sprintf("%s was already retried by %s: retry the latest run of the chain", name, last.Name)
	}
	if i := slices.IndexFunc(chain, func(e *drv1.DRPlanExecution) bool { return rules.Reverted(e) }); i >= 0 {
		return fmt.Sprintf("execution %s was reverted (by %s): Execute anew", chain[i].Name, chain[i].Status.RevertedBy)
	}
	if prev.Spec.Operation == drv1.OperationRevert {
		return revertRetryProblem(prev, execs)
	}
	return undoneInPart(chain, execs)
}

// undoneInPart says which Revert undid part of chain, if one did.
func undoneInPart(chain, execs []*drv1.DRPlanExecution) string {
	members := map[string]bool{}
	for _, e := range chain {
		members[e.Name] = true
	}
	for _, r := range execs {
		if r.Spec.Operation == drv1.OperationRevert && r.Status.Snapshot != nil && members[r.Status.Snapshot.RevertOf] && rules.TookEffect(r) {
			return fmt.Sprintf("execution %s, a Revert of this chain, undid part of it: retry that Revert to finish undoing it, or revert the chain again", r.Name)
		}
	}
	return ""
}

// revertRetryProblem says why a retry of the Revert prev may not run: its target was reverted
// since by another Revert.
func revertRetryProblem(prev *drv1.DRPlanExecution, execs []*drv1.DRPlanExecution) string {
	target := prev.Status.Snapshot.RevertOf
	for _, t := range execs {
		if t.Name == target && rules.Reverted(t) {
			reverts := rules.Chain(prev, execs)
			if !slices.ContainsFunc(reverts, func(r *drv1.DRPlanExecution) bool { return r.Name == t.Status.RevertedBy }) {
				return fmt.Sprintf("execution %s, which it undoes, was reverted since by %s: there is nothing left for it to undo", target, t.Status.RevertedBy)
			}
		}
	}
	return ""
}

func phaseOr(p drv1.ExecutionPhase) string {
	if p == "" {
		return "Pending"
	}
	return string(p)
}
