package runplan_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/runplan"
)

func TestFindAction(t *testing.T) {
	actions := []drv1.ActionStatus{{Stage: "db", WorkflowIndex: 0, Name: "promote"},
		{Stage: "apps", WorkflowIndex: 0, Name: "scale"}, {Stage: "apps", WorkflowIndex: 1, Name: "scale"}}
	for _, tc := range []struct {
		name string
		want int
		err  string
	}{
		{name: "promote", want: 0},
		{name: "apps/1/scale", want: 2},
		{name: "db/0/promote", want: 0},
		{name: "scale", want: -1, err: `action "scale" is in the plan 2 times: name one as apps/0/scale, apps/1/scale`},
		{name: "nope", want: -1, err: `no action "nope" in the plan (name one as <stage>/<workflowIndex>/<action>, or by its name where it is unique)`},
		{name: "apps/2/scale", want: -1, err: `no action "apps/2/scale"`},
	} {
		i, err := runplan.FindAction(actions, tc.name)
		assert.Equal(t, tc.want, i, tc.name)
		if tc.err != "" {
			assert.ErrorContains(t, err, tc.err)
		} else {
			assert.NoError(t, err)
		}
	}
}

func TestRetryProblem(t *testing.T) {
	exec := func(name string, op drv1.Operation, phase drv1.ExecutionPhase) *drv1.DRPlanExecution {
		e := execution(name, op)
		e.Status.Phase, e.Status.Snapshot = phase, &drv1.ExecutionSnapshot{}
		return e
	}
	retry := exec("second", drv1.OperationExecute, "")
	retry.Spec.RetryOf = "first"
	reverted := exec("first", drv1.OperationExecute, drv1.ExecutionFailed)
	reverted.Status.RevertedBy, reverted.Status.Conditions = "back", []metav1.Condition{{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue}}
	otherPlan := exec("first", drv1.OperationExecute, drv1.ExecutionFailed)
	otherPlan.Spec.PlanRef.Name = "q"
	noSnapshot := exec("first", drv1.OperationExecute, drv1.ExecutionFailed)
	noSnapshot.Status.Snapshot = nil
	for _, tc := range []struct {
		prev *drv1.DRPlanExecution
		want string
	}{
		{exec("first", drv1.OperationExecute, drv1.ExecutionFailed), ""},
		{exec("first", drv1.OperationExecute, drv1.ExecutionCancelled), ""},
		{exec("first", drv1.OperationExecute, drv1.ExecutionSucceeded), "execution first succeeded: there is nothing to retry"},
		{exec("first", drv1.OperationExecute, drv1.ExecutionRunning), "execution first has not ended (Running): cancel it or wait for it to end"},
		{exec("first", drv1.OperationRevert, drv1.ExecutionFailed), "execution first is a Revert: a retry of it is a Revert too"},
		{otherPlan, "execution first ran plan q, not p"},
		{reverted, "execution first was reverted (by back): Execute anew"},
		{noSnapshot, "execution first ended before it started: run the plan anew"},
	} {
		assert.Equal(t, tc.want, runplan.RetryProblem(retry, tc.prev, []*drv1.DRPlanExecution{tc.prev}, ""), "%s %s", tc.prev.Spec.Operation, tc.prev.Status.Phase)
	}

	// A chain a Revert undid in part: retry the Revert instead.
	failed := exec("first", drv1.OperationExecute, drv1.ExecutionFailed)
	partly := exec("back", drv1.OperationRevert, drv1.ExecutionFailed)
	partly.Status.Snapshot.RevertOf = "first"
	partly.Status.ActionStatuses = []drv1.ActionStatus{{Name: "a", Phase: drv1.StepSucceeded}}
	assert.Equal(t, "execution back, a Revert of this chain, undid part of it: retry that Revert to finish undoing it, or revert the chain again",
		runplan.RetryProblem(retry, failed, []*drv1.DRPlanExecution{failed, partly}, ""))
	// A Revert whose target another Revert has reverted since: nothing left to undo.
	revertRetry := exec("back-2", drv1.OperationRevert, "")
	revertRetry.Spec.RetryOf = "back"
	done := exec("first", drv1.OperationExecute, drv1.ExecutionSucceeded)
	done.Status.RevertedBy, done.Status.Conditions = "other", []metav1.Condition{{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue}}
	assert.Equal(t, "execution first, which it undoes, was reverted since by other: there is nothing left for it to undo",
		runplan.RetryProblem(revertRetry, partly, []*drv1.DRPlanExecution{done, partly}, ""))
	// The plan was deleted and made again since.
	failed.Status.Snapshot.PlanUID = "old"
	assert.Equal(t, "execution first ran an earlier plan p, deleted since: Execute anew",
		runplan.RetryProblem(retry, failed, []*drv1.DRPlanExecution{failed}, "new"))
	// Retry the latest run of the chain.
	other := exec("other", drv1.OperationExecute, drv1.ExecutionFailed)
	other.Spec.RetryOf = "first"
	assert.Equal(t, "execution first was already retried by other: retry the latest run of the chain",
		runplan.RetryProblem(retry, failed, []*drv1.DRPlanExecution{failed, other}, ""))
	// A retry that ended before it ran does not continue the chain: another may take its place.
	dead := exec("dead", drv1.OperationExecute, drv1.ExecutionFailed)
	dead.Spec.RetryOf, dead.Status.Snapshot = "first", nil
	failed.Status.Snapshot.PlanUID = ""
	assert.Empty(t, runplan.RetryProblem(retry, failed, []*drv1.DRPlanExecution{failed, dead}, ""))
}

// TestRetryAndRevertAChain: a run fails at its third of five actions, the one that failed having
// made its object; its retry runs only actions 3-5 (the first two carried over with their
// outputs), and a Revert of the chain undoes what either run made, once; an action marked done
// by hand is not undone.
func TestRetryAndRevertAChain(t *testing.T) {
	decide := newRules(t)
	wf := drv1.DRWorkflowSpec{Actions: []drv1.Action{create("a"), call("b"), create("c"), create("d"), call("e")}}
	snap := snapshotOf(drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "w"}}, map[string]drv1.DRWorkflowSpec{"w": wf})
	first := execution("failover", drv1.OperationExecute)
	p, err := runplan.Prepare(first, snap, noSecrets, started, decide)
	require.NoError(t, err)
	batches, st := run(t, p, "default/w/c")
	assert.Equal(t, [][]string{{"default/w/a"}, {"default/w/b"}, {"default/w/c"}}, batches)
	// c made its ConfigMap, then its waitFor failed: the object is recorded, and left behind.
	st.Outputs = append(st.Outputs, drv1.ActionOutput{ActionName: "c", Stage: "default", ResourceRef: &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Name: "c", UID: "uid-c"}})
	first.Status = *st
	first.Status.Phase = drv1.ExecutionFailed

	second := execution("failover-retry", drv1.OperationExecute)
	second.Spec.RetryOf, second.Spec.SkipActions = "failover", []string{"d"}
	skip, err := runplan.SkipIndexes(first.Status.ActionStatuses, second.Spec.SkipActions)
	require.NoError(t, err)
	_, err = runplan.SkipIndexes(first.Status.ActionStatuses, []string{"a"})
	assert.EqualError(t, err, "spec.skipActions: default/0/a already succeeded: it is carried over")
	rst := &drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionRunning}
	rst.StageStatuses, rst.ActionStatuses = p.Plan.InitialStatus()
	require.NoError(t, runplan.CarryOver(rst, first, skip, "alice"))
	assert.Equal(t, "Succeeded (carried over from failover)", rst.ActionStatuses[0].Message)
	assert.Equal(t, drv1.StepSucceeded, rst.ActionStatuses[1].Phase)
	assert.Equal(t, drv1.StepPending, rst.ActionStatuses[2].Phase, "what failed runs again")
	assert.Equal(t, "Skipped: marked done by alice (spec.skipActions); a Revert does not undo it", rst.ActionStatuses[3].Message)
	require.Len(t, rst.Outputs, 1, "the outputs of what is carried over")
	assert.Equal(t, "uid-a", rst.Outputs[0].ResourceRef.UID)

	batches, rst = runFrom(t, p, rst)
	assert.Equal(t, [][]string{{"default/w/c"}, {"default/w/e"}}, batches, "only what did not succeed, but d, marked done")
	assert.Equal(t, drv1.ExecutionSucceeded, rst.Phase)
	second.Status = *rst

	back, err := runplan.Revert("back", []*drv1.DRPlanExecution{first, second}, snap, noSecrets, decide, "")
	require.NoError(t, err)
	undone, _ := run(t, back)
	assert.Equal(t, [][]string{{"default/w/e"}, {"default/w/c"}, {"default/w/b"}, {"default/w/a"}}, undone,
		"c once (made by either run), the calls' rollbacks, a; not d, marked done")
	w := back.Plan.Stages[0].Workflows[0]
	assert.Equal(t, []string{"e", "d", "c", "b", "a"}, w.Actions)
	assert.Equal(t, "Not undone: marked done by hand in execution failover-retry (spec.skipActions)", w.ActionSkip[1])
	assert.Equal(t, drv1.FailurePolicyContinue, w.FailurePolicy, "a Revert undoes as much as it can")
	assert.Equal(t, "failover", back.MadeBy.Name)
}
