package runplan_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/runplan"
)

// TestRevertOrder runs a plan of each shape with rules.Advance (the target), reverts it, and
// runs the Revert: batches are the actions started together, "stage/workflow/action".
func TestRevertOrder(t *testing.T) {
	tests := []struct {
		name      string
		policy    drv1.FailurePolicy
		stages    []drv1.Stage
		workflows []string // see workflowsOf; the default is one call per stage workflow
		fail      []string
		execute   [][]string
		revert    [][]string
		listed    []string // the Revert's stageStatuses, when the row says
	}{{
		name:    "a sequential stage's workflows last first",
		stages:  []drv1.Stage{stg("first", false, nil, "a", "b", "c")},
		execute: [][]string{{"first/a/a"}, {"first/b/b"}, {"first/c/c"}},
		revert:  [][]string{{"first/c/c"}, {"first/b/b"}, {"first/a/a"}},
	}, {
		// first (a, b, c in turn) -> second (d): the plan
		name:    "a later stage first, then a sequential stage's workflows last first",
		stages:  []drv1.Stage{stg("first", false, nil, "a", "b", "c"), stg("second", false, []string{"first"}, "d")},
		execute: [][]string{{"first/a/a"}, {"first/b/b"}, {"first/c/c"}, {"second/d/d"}},
		revert:  [][]string{{"second/d/d"}, {"first/c/c"}, {"first/b/b"}, {"first/a/a"}},
		listed:  []string{"second", "first"},
	}, {
		name:    "a sequential stage's failed workflow, under Continue, is not undone; the others are, last first",
		policy:  drv1.FailurePolicyContinue,
		stages:  []drv1.Stage{stg("first", false, nil, "a", "b", "c")},
		fail:    []string{"first/b/b"},
		execute: [][]string{{"first/a/a"}, {"first/b/b"}, {"first/c/c"}},
		revert:  [][]string{{"first/c/c"}, {"first/a/a"}},
	}, {
		name:      "a workflow's actions in reverse",
		stages:    []drv1.Stage{stg("s", false, nil, "w")},
		workflows: []string{"w:x,y,z"},
		execute:   [][]string{{"s/w/x"}, {"s/w/y"}, {"s/w/z"}},
		revert:    [][]string{{"s/w/z"}, {"s/w/y"}, {"s/w/x"}},
	}, {
		name:    "a parallel stage's workflows are undone together",
		stages:  []drv1.Stage{stg("infra", true, nil, "a", "b", "c")},
		execute: [][]string{{"infra/a/a", "infra/b/b", "infra/c/c"}},
		revert:  [][]string{{"infra/a/a", "infra/b/b", "infra/c/c"}},
	}, {
		name:    "a chain of stages in reverse",
		stages:  []drv1.Stage{stg("first", false, nil, "a"), stg("second", false, []string{"first"}, "b"), stg("third", false, []string{"second"}, "c")},
		execute: [][]string{{"first/a/a"}, {"second/b/b"}, {"third/c/c"}},
		revert:  [][]string{{"third/c/c"}, {"second/b/b"}, {"first/a/a"}},
	}, {
		// declared out of order: d depends on a, declared after it
		//   x   a -> d
		name:    "stages are listed in the order they are undone, whatever their declaration order",
		stages:  []drv1.Stage{stg("d", false, []string{"a"}, "d"), stg("x", false, nil, "x"), stg("a", false, nil, "a")},
		execute: [][]string{{"a/a/a", "x/x/x"}, {"d/d/d"}},
		revert:  [][]string{{"d/d/d", "x/x/x"}, {"a/a/a"}},
		listed:  []string{"d", "a", "x"},
	}, {
		//      top
		//     /   \
		//  left   right
		//     \   /
		//     bottom
		name: "a diamond: the bottom first, the two sides together, the top last",
		stages: []drv1.Stage{stg("top", false, nil, "t"), stg("left", false, []string{"top"}, "l"),
			stg("right", false, []string{"top"}, "r"), stg("bottom", false, []string{"left", "right"}, "b")},
		execute: [][]string{{"top/t/t"}, {"left/l/l", "right/r/r"}, {"bottom/b/b"}},
		revert:  [][]string{{"bottom/b/b"}, {"left/l/l", "right/r/r"}, {"top/t/t"}},
	}, {
		//   a   b
		//    \ /
		//     c
		name:    "independent roots are undone together, after what depends on them",
		stages:  []drv1.Stage{stg("a", false, nil, "a"), stg("b", false, nil, "b"), stg("c", false, []string{"a", "b"}, "c")},
		execute: [][]string{{"a/a/a", "b/b/b"}, {"c/c/c"}},
		revert:  [][]string{{"c/c/c"}, {"a/a/a", "b/b/b"}},
	}, {
		//       root
		//      /    \
		//   left    right
		//    |
		//   tail    (Skipped: left failed)
		name:   "a failed branch and the stage skipped after it: nothing of them is undone",
		policy: drv1.FailurePolicyContinue,
		stages: []drv1.Stage{stg("root", false, nil, "a"), stg("left", false, []string{"root"}, "b"),
			stg("right", false, []string{"root"}, "c"), stg("tail", false, []string{"left"}, "d")},
		fail:    []string{"left/b/b"},
		execute: [][]string{{"root/a/a"}, {"left/b/b", "right/c/c"}},
		revert:  [][]string{{"right/c/c"}, {"root/a/a"}},
	}, {
		name:      "a run stopped by a failure: what never ran and what failed are not undone",
		stages:    []drv1.Stage{stg("first", false, nil, "w"), stg("second", false, []string{"first"}, "v")},
		workflows: []string{"w:x,y,z", "v"},
		fail:      []string{"first/w/y"},
		execute:   [][]string{{"first/w/x"}, {"first/w/y"}},
		revert:    [][]string{{"first/w/x"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			decide := newRules(t)
			workflows := tc.workflows
			for _, s := range tc.stages {
				for _, w := range s.Workflows {
					if _, given := workflowsOf(workflows...)[w.WorkflowRef.Name]; !given {
						workflows = append(workflows, w.WorkflowRef.Name)
					}
				}
			}
			snap := snapshotOf(drv1.DRPlanSpec{Stages: tc.stages, FailurePolicy: tc.policy}, workflowsOf(workflows...))
			fwd, err := runplan.Prepare(execution("failover", drv1.OperationExecute), snap, noSecrets, started, decide)
			require.NoError(t, err)
			execute, st := run(t, fwd, tc.fail...)
			assert.Equal(t, tc.execute, execute, "the Execute")

			back, err := runplan.Revert("back", []*drv1.DRPlanExecution{ran(fwd, st)}, snap, noSecrets, decide, drv1.FailurePolicyStop)
			require.NoError(t, err)
			assert.Equal(t, "back", back.Plan.ExecutionName)
			assert.Equal(t, drv1.OperationRevert, back.Plan.Operation)
			revert, rst := run(t, back)
			assert.Equal(t, tc.revert, revert, "the Revert")
			assert.Equal(t, drv1.ExecutionSucceeded, rst.Phase, rst.Message)
			if tc.listed != nil {
				var listed []string
				for _, s := range rst.StageStatuses {
					listed = append(listed, s.Name)
				}
				assert.Equal(t, tc.listed, listed)
			}
			for i, a := range rst.ActionStatuses {
				switch a.Phase {
				case drv1.StepSucceeded:
					assert.Contains(t, back.Actions[i].Body.HTTP.URL, "/back", "%s ran its rollback", a.Name)
				case drv1.StepSkipped:
					assert.Equal(t, "Nothing to undo: it did not take effect in execution failover", a.Message, a.Name)
				default:
					t.Errorf("%s/%d/%s: %s", a.Stage, a.WorkflowIndex, a.Name, a.Phase)
				}
			}
		})
	}
}

// TestRevertUndoesEachAction reverts a workflow of every kind of action, some of which failed or
// never ran: each action's undoing, or why it is skipped.
func TestRevertUndoesEachAction(t *testing.T) {
	del := func(kind, name string) string {
		return "apiVersion: " + map[string]string{"ConfigMap": "v1", "Job": "batch/v1"}[kind] + "\nkind: " + kind + "\nmetadata: {name: " + name + ", namespace: prod}\n"
	}
	localization := drv1.Action{Name: "localize", ActionBody: drv1.ActionBody{Type: drv1.ActionTypeLocalization,
		Localization: &drv1.LocalizationAction{Operation: "Create", Name: "loc", Namespace: "clusternet-x"}}}
	job := drv1.Action{Name: "check", ActionBody: drv1.ActionBody{Type: drv1.ActionTypeJob,
		Job: &drv1.JobAction{Namespace: "prod", Name: "check"}}}
	notify := call("notify")
	notify.Rollback = nil
	drop := create("drop")
	drop.Resource.Operation = drv1.OperationDelete
	apply := create("apply")
	apply.Resource.Operation = drv1.OperationApply
	wf := drv1.DRWorkflowSpec{FailurePolicy: drv1.FailurePolicyContinue,
		Actions: []drv1.Action{notify, create("make"), drop, call("switch"), apply, job, create("broken"), localization}}
	tests := []struct {
		action string
		url    string // the rollback's URL, for one that runs a rollback
		undo   string // the manifest deleted, for one that deletes what the target made
		skip   string
	}{
		{action: "notify", skip: "An HTTP call cannot be undone automatically (define a rollback to undo it)"},
		{action: "make", undo: del("ConfigMap", "make")},
		{action: "drop", skip: "A Delete cannot be undone (define a rollback to undo it)"},
		{action: "switch", url: "https://dr.example/switch/back"},
		{action: "apply", skip: "A Apply without a rollback cannot be undone"},
		{action: "check", undo: del("Job", "check")},
		{action: "broken", skip: "Nothing to undo: it did not take effect in execution failover"},
		{action: "localize", skip: "Nothing to undo: execution failover recorded no object made by it"},
	}
	decide := newRules(t)
	snap := snapshotOf(drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}, map[string]drv1.DRWorkflowSpec{"wf": wf})
	fwd, err := runplan.Prepare(execution("failover", drv1.OperationExecute), snap, noSecrets, started, decide)
	require.NoError(t, err)
	_, st := run(t, fwd, "default/wf/broken")
	back, err := runplan.Revert("back", []*drv1.DRPlanExecution{ran(fwd, st)}, snap, noSecrets, decide, drv1.FailurePolicyStop)
	require.NoError(t, err)

	w := back.Plan.Stages[0].Workflows[0]
	require.Len(t, w.Actions, len(tests))
	for i, tc := range tests {
		ai := len(tests) - 1 - i // undone in reverse
		t.Run(tc.action, func(t *testing.T) {
			a := back.Actions[w.First+ai]
			assert.Equal(t, tc.action, w.Actions[ai])
			assert.Equal(t, tc.skip, w.ActionSkip[ai])
			switch {
			case tc.url != "":
				assert.Equal(t, tc.url, a.Body.HTTP.URL)
			case tc.undo != "":
				require.NotNil(t, a.Undo)
				assert.Equal(t, "uid-"+tc.action, a.Undo.UID, "that very object")
				assert.Equal(t, drv1.OperationDelete, a.Body.Resource.Operation)
				assert.Equal(t, tc.undo, a.Body.Resource.Manifest)
			default:
				assert.Nil(t, a.Undo)
			}
		})
	}
}
