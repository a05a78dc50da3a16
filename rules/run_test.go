package rules_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// stage builds a RunStage; each workflow is "name:action,action" with an optional "!" prefix
// for failurePolicy Continue.
func stage(name string, parallel bool, deps []string, workflows ...string) rules.RunStage {
	s := rules.RunStage{Name: name, Parallel: parallel, DependsOn: deps}
	for _, w := range workflows {
		policy := drv1.FailurePolicyStop
		if strings.HasPrefix(w, "!") {
			policy, w = drv1.FailurePolicyContinue, w[1:]
		}
		wfName, acts, _ := strings.Cut(w, ":")
		s.Workflows = append(s.Workflows, rules.RunWorkflow{Ref: drv1.ObjectReference{Name: wfName},
			FailurePolicy: policy, Actions: strings.Split(acts, ",")})
	}
	return s
}

// newRules are the built-in rules in a CEL environment of the test's own, as a process builds
// them once at start-up.
func newRules(t testing.TB) *rules.Rules {
	r, err := rules.New(rules.Options{})
	require.NoError(t, err)
	return r
}

func newRun(t *testing.T, policy drv1.FailurePolicy, stages ...rules.RunStage) (*rules.RunPlan, *drv1.DRPlanExecutionStatus) {
	nodes := make([]rules.Node, len(stages))
	for i, s := range stages {
		nodes[i] = rules.Node{Name: s.Name, DependsOn: s.DependsOn}
	}
	dag, errs := rules.NewDAG(field.NewPath("spec", "stages"), nodes)
	require.Empty(t, errs)
	p := rules.NewRunPlan(newRules(t), policy, dag, stages)
	st := &drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionRunning}
	st.StageStatuses, st.ActionStatuses = p.InitialStatus()
	return p, st
}

// simulate runs the plan to its end: every action started in one Advance is a batch; it finishes
// Failed when its name is in fail, else Succeeded, and Advance is called again. cancelAfter > 0
// cancels after that many batches. It returns the batches as "stage/workflow/action" names.
func simulate(t *testing.T, p *rules.RunPlan, st *drv1.DRPlanExecutionStatus, fail map[string]bool, cancelAfter int) [][]string {
	var batches [][]string
	now := metav1.NewTime(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))
	cancelled := false
	for i := 0; i < 100; i++ {
		if cancelAfter > 0 && len(batches) == cancelAfter {
			cancelled = true
		}
		started := rules.Advance(p, st, now, cancelled)
		if len(started) == 0 {
			require.True(t, rules.ExecutionFinished(st.Phase), "nothing started but the run is %q", st.Phase)
			return batches
		}
		var names []string
		for _, a := range started {
			as := &st.ActionStatuses[a.Flat]
			require.Equal(t, drv1.StepRunning, as.Phase)
			name := fmt.Sprintf("%s/%d/%s", as.Stage, as.WorkflowIndex, as.Name)
			names = append(names, name)
			now = metav1.NewTime(now.Add(time.Second))
			as.CompletionTime = &now
			as.Phase = drv1.StepSucceeded
			if fail[name] {
				as.Phase, as.Message = drv1.StepFailed, "boom"
			}
		}
		sort.Strings(names)
		batches = append(batches, names)
	}
	t.Fatal("the run did not end")
	return nil
}

func stagePhases(st *drv1.DRPlanExecutionStatus) string {
	var out []string
	for _, s := range st.StageStatuses {
		out = append(out, s.Name+"="+string(s.Phase))
	}
	return strings.Join(out, " ")
}

func TestAdvance(t *testing.T) {
	tests := []struct {
		name        string
		policy      drv1.FailurePolicy
		stages      []rules.RunStage
		fail        []string
		cancelAfter int
		batches     [][]string
		phase       drv1.ExecutionPhase
		message     string
		stagePhases string
	}{{
		name:    "one workflow runs its actions in order",
		stages:  []rules.RunStage{stage("default", false, nil, "wf:a,b,c")},
		batches: [][]string{{"default/0/a"}, {"default/0/b"}, {"default/0/c"}},
		phase:   drv1.ExecutionSucceeded, stagePhases: "default=Succeeded",
	}, {
		// infra(parallel: m, r) -> apps(parallel: x, y) -> check(sequential: h1, h2)
		name: "parallel stages start their workflows together; dependents wait",
		stages: []rules.RunStage{
			stage("infra", true, nil, "m:a,b", "r:a"),
			stage("apps", true, []string{"infra"}, "x:a", "y:a"),
			stage("check", false, []string{"apps"}, "h1:a", "h2:a"),
		},
		batches: [][]string{{"infra/0/a", "infra/1/a"}, {"infra/0/b"}, {"apps/0/a", "apps/1/a"}, {"check/0/a"}, {"check/1/a"}},
		phase:   drv1.ExecutionSucceeded, stagePhases: "infra=Succeeded apps=Succeeded check=Succeeded",
	}, {
		//   a   b     independent roots start together
		//    \ /
		//     c
		name:    "independent stages run at once",
		stages:  []rules.RunStage{stage("a", false, nil, "w:x"), stage("b", false, nil, "w:x"), stage("c", false, []string{"a", "b"}, "w:x")},
		batches: [][]string{{"a/0/x", "b/0/x"}, {"c/0/x"}},
		phase:   drv1.ExecutionSucceeded, stagePhases: "a=Succeeded b=Succeeded c=Succeeded",
	}, {
		name:    "workflow Stop: the first failure ends the workflow and the run",
		stages:  []rules.RunStage{stage("s", false, nil, "w:a,b,c"), stage("t", false, []string{"s"}, "w:a")},
		fail:    []string{"s/0/b"},
		batches: [][]string{{"s/0/a"}, {"s/0/b"}},
		phase:   drv1.ExecutionFailed, message: "Action 'b' failed: boom", stagePhases: "s=Failed t=Pending",
	}, {
		name:    "workflow Continue runs its remaining actions, still Failed",
		stages:  []rules.RunStage{stage("s", false, nil, "!w:a,b,c"), stage("t", false, []string{"s"}, "w:a")},
		fail:    []string{"s/0/b"},
		batches: [][]string{{"s/0/a"}, {"s/0/b"}, {"s/0/c"}},
		phase:   drv1.ExecutionFailed, message: "Action 'b' failed: boom", stagePhases: "s=Failed t=Pending",
	}, {
		name:    "plan Stop: running workflows of a parallel stage finish, nothing new starts",
		stages:  []rules.RunStage{stage("p", true, nil, "x:a", "y:a,b,c"), stage("q", false, []string{"p"}, "w:a")},
		fail:    []string{"p/0/a"},
		batches: [][]string{{"p/0/a", "p/1/a"}, {"p/1/b"}, {"p/1/c"}},
		phase:   drv1.ExecutionFailed, message: "Action 'a' failed: boom", stagePhases: "p=Failed q=Pending",
	}, {
		name:    "plan Stop in a sequential stage: the next workflow does not start",
		stages:  []rules.RunStage{stage("s", false, nil, "x:a", "y:a")},
		fail:    []string{"s/0/a"},
		batches: [][]string{{"s/0/a"}},
		phase:   drv1.ExecutionFailed, message: "Action 'a' failed: boom", stagePhases: "s=Failed",
	}, {
		//  bad -> dependent -> grandchild      other (independent)
		name:   "plan Continue: dependents of a failed stage are skipped, others run",
		policy: drv1.FailurePolicyContinue,
		stages: []rules.RunStage{
			stage("bad", false, nil, "x:a", "y:a"),
			stage("dependent", false, []string{"bad"}, "w:a"),
			stage("grandchild", false, []string{"dependent"}, "w:a"),
			stage("other", false, nil, "w:a,b"),
		},
		fail:    []string{"bad/0/a"},
		batches: [][]string{{"bad/0/a", "other/0/a"}, {"bad/1/a", "other/0/b"}},
		phase:   drv1.ExecutionFailed, message: "Action 'a' failed: boom",
		stagePhases: "bad=Failed dependent=Skipped grandchild=Skipped other=Succeeded",
	}, {
		name:        "cancel: nothing new starts; not-started actions stay Pending",
		stages:      []rules.RunStage{stage("s", true, nil, "x:a,b", "y:a,b"), stage("t", false, []string{"s"}, "w:a")},
		cancelAfter: 1,
		batches:     [][]string{{"s/0/a", "s/1/a"}},
		phase:       drv1.ExecutionCancelled, message: "Execution cancelled by user", stagePhases: "s=Cancelled t=Pending",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			policy := tc.policy
			if policy == "" {
				policy = drv1.FailurePolicyStop
			}
			p, st := newRun(t, policy, tc.stages...)
			fail := map[string]bool{}
			for _, f := range tc.fail {
				fail[f] = true
			}
			assert.Equal(t, tc.batches, simulate(t, p, st, fail, tc.cancelAfter))
			assert.Equal(t, tc.phase, st.Phase)
			assert.Equal(t, tc.message, st.Message)
			assert.Equal(t, tc.stagePhases, stagePhases(st))
			assert.NotNil(t, st.CompletionTime)
			// Finished runs stay finished.
			assert.Empty(t, rules.Advance(p, st, metav1.Now(), false))
		})
	}
}

func TestAdvanceStatusDetail(t *testing.T) {
	p, st := newRun(t, drv1.FailurePolicyStop,
		stage("infra", true, nil, "mysql:a,b,c", "redis:a"),
		stage("apps", false, []string{"infra"}, "svc:a"))
	now := metav1.NewTime(time.Date(2026, 2, 2, 10, 0, 5, 0, time.UTC))
	started := rules.Advance(p, st, now, false)
	require.Len(t, started, 2)
	// mysql's first action succeeds 40s later; redis still runs.
	later := metav1.NewTime(now.Add(40 * time.Second))
	st.ActionStatuses[0].Phase = drv1.StepSucceeded
	started = rules.Advance(p, st, later, false)
	require.Len(t, started, 1)

	infra := st.StageStatuses[0]
	assert.Equal(t, drv1.StepRunning, infra.Phase)
	assert.Equal(t, "1/3 actions completed", infra.WorkflowExecutions[0].Progress)
	assert.Equal(t, "b", infra.WorkflowExecutions[0].CurrentAction)
	assert.Equal(t, "0/1 actions completed", infra.WorkflowExecutions[1].Progress)
	assert.Equal(t, &drv1.ExecutionSummary{TotalStages: 2, RunningStages: 1, PendingStages: 1,
		TotalWorkflows: 3, RunningWorkflows: 2, PendingWorkflows: 1}, st.Summary)

	// redis finishes: its duration is recorded.
	st.ActionStatuses[3].Phase = drv1.StepSucceeded
	rules.Advance(p, st, later, false)
	assert.Equal(t, drv1.StepSucceeded, st.StageStatuses[0].WorkflowExecutions[1].Phase)
	assert.Equal(t, "40s", st.StageStatuses[0].WorkflowExecutions[1].Duration)
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2100 * time.Millisecond:    "2.1s",
		40 * time.Second:           "40s",
		90*time.Second + 300e6:     "1m30s",
		1234567 * time.Microsecond: "1.2s",
		12 * time.Millisecond:      "12ms",
	} {
		assert.Equal(t, want, rules.FormatDuration(d))
	}
}

func TestCloseRunning(t *testing.T) {
	p, st := newRun(t, drv1.FailurePolicyStop, stage("s", true, nil, "x:a,b", "y:a"))
	now := metav1.NewTime(time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC))
	rules.Advance(p, st, now, false)
	st.ActionStatuses[2].Phase = drv1.StepSucceeded
	rules.CloseRunning(st, now, "Cannot resume: gone")
	assert.Equal(t, drv1.StepFailed, st.ActionStatuses[0].Phase)
	assert.Equal(t, "Cannot resume: gone", st.ActionStatuses[0].Message)
	assert.Equal(t, drv1.StepPending, st.ActionStatuses[1].Phase, "what never started stays Pending")
	assert.Equal(t, drv1.StepSucceeded, st.ActionStatuses[2].Phase)
	assert.Equal(t, drv1.StepFailed, st.StageStatuses[0].Phase)
	assert.Equal(t, drv1.StepFailed, st.StageStatuses[0].WorkflowExecutions[0].Phase)
	assert.Equal(t, drv1.StepSucceeded, st.StageStatuses[0].WorkflowExecutions[1].Phase,
		"a workflow whose actions all succeeded is Succeeded")
}

func TestAdvanceGuards(t *testing.T) {
	env := newRules(t).Env
	compile := func(expr string) *rules.Program {
		p, err := env.Compile(expr)
		require.NoError(t, err)
		return p
	}
	tests := []struct {
		name     string
		setup    func(stages []rules.RunStage)
		batches  [][]string
		phase    drv1.ExecutionPhase
		stages   string
		actionAt int
		action   string
	}{{
		name: "a stage skipped by its guard lets its dependents run",
		setup: func(s []rules.RunStage) {
			s[1].When = compile("params.mode == 'drill'")
			s[1].Params = map[string]any{"mode": "real"}
		},
		batches: [][]string{{"a/0/x"}, {"c/0/x"}},
		phase:   drv1.ExecutionSucceeded, stages: "a=Succeeded b=Skipped c=Succeeded",
	}, {
		name:    "a workflow guard skips that workflow only",
		setup:   func(s []rules.RunStage) { s[0].Workflows[0].When = compile("workflow.index > 0") },
		batches: [][]string{{"b/0/x"}, {"c/0/x"}},
		phase:   drv1.ExecutionSucceeded, stages: "a=Succeeded b=Succeeded c=Succeeded",
	}, {
		name: "an action guard reads an earlier action",
		setup: func(s []rules.RunStage) {
			s[0].Workflows[0].Actions = []string{"x", "y"}
			s[0].Workflows[0].ActionWhen = []*rules.Program{nil, compile("actions['x'].phase == 'Failed'")}
		},
		batches: [][]string{{"a/0/x"}, {"b/0/x"}, {"c/0/x"}},
		phase:   drv1.ExecutionSucceeded, stages: "a=Succeeded b=Succeeded c=Succeeded",
		actionAt: 1, action: `Skipped by its guard: when "actions['x'].phase == 'Failed'" is false`,
	}, {
		name: "a guard that fails to evaluate fails the step",
		setup: func(s []rules.RunStage) {
			s[0].Workflows[0].ActionWhen = []*rules.Program{compile("params.missing == 1")}
		},
		batches: nil,
		phase:   drv1.ExecutionFailed, stages: "a=Failed b=Pending c=Pending",
		actionAt: 0, action: `when "params.missing == 1": no such key: missing`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stages := []rules.RunStage{stage("a", false, nil, "w:x"), stage("b", false, []string{"a"}, "w:x"), stage("c", false, []string{"b"}, "w:x")}
			tc.setup(stages)
			p, st := newRun(t, drv1.FailurePolicyStop, stages...)
			assert.Equal(t, tc.batches, simulate(t, p, st, nil, 0))
			assert.Equal(t, tc.phase, st.Phase)
			assert.Equal(t, tc.stages, stagePhases(st))
			if tc.action != "" {
				assert.Equal(t, tc.action, st.ActionStatuses[tc.actionAt].Message)
			}
		})
	}
}
