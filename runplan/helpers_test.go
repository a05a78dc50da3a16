package runplan_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
)

// started is when every test run starts: the templates' .timestamp.
var started = time.Date(2026, 1, 30, 10, 0, 0, 0, time.UTC)

func newRules(t testing.TB) *rules.Rules {
	t.Helper()
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	r, err := rules.NewRules(env)
	require.NoError(t, err)
	return r
}

// call is an HTTP call to /<name>, undone by a call to /<name>/back.
func call(name string) drv1.Action {
	return drv1.Action{Name: name,
		ActionBody: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://dr.example/" + name}},
		Rollback: &drv1.RollbackAction{ActionBody: drv1.ActionBody{Type: drv1.ActionTypeHTTP,
			HTTP: &drv1.HTTPAction{URL: "https://dr.example/" + name + "/back"}}}}
}

// create is a KubernetesResource action that creates the ConfigMap <name>.
func create(name string) drv1.Action {
	return drv1.Action{Name: name, ActionBody: drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource,
		Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate,
			Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + "}\n"}}}
}

// stg is a stage running the workflows named, one entry each.
func stg(name string, parallel bool, deps []string, workflows ...string) drv1.Stage {
	s := drv1.Stage{Name: name, Parallel: parallel, DependsOn: deps}
	for _, w := range workflows {
		s.Workflows = append(s.Workflows, drv1.StageWorkflow{WorkflowRef: drv1.ObjectReference{Name: w}})
	}
	return s
}

// snapshotOf is the snapshot of plan p in namespace prod, with the workflows given by name.
func snapshotOf(spec drv1.DRPlanSpec, workflows map[string]drv1.DRWorkflowSpec) *runplan.Snapshot {
	s := &runplan.Snapshot{PlanName: "p", Namespace: "prod", Plan: spec, Workflows: map[string]drv1.DRWorkflowSpec{}}
	for name, w := range workflows {
		s.Workflows[drv1.RefKey("prod", name)] = w
	}
	return s
}

// workflowsOf makes each name a workflow of one call to itself, or of the calls listed after a
// colon ("w:x,y").
func workflowsOf(specs ...string) map[string]drv1.DRWorkflowSpec {
	out := map[string]drv1.DRWorkflowSpec{}
	for _, s := range specs {
		name, acts, found := strings.Cut(s, ":")
		if !found {
			acts = name
		}
		var w drv1.DRWorkflowSpec
		for _, a := range strings.Split(acts, ",") {
			w.Actions = append(w.Actions, call(a))
		}
		out[name] = w
	}
	return out
}

func execution(name string, op drv1.Operation) *drv1.DRPlanExecution {
	return &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod"},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: op}}
}

// noSecrets is the SecretReader of a plan that reads none.
func noSecrets(name, key string) (string, error) {
	return "", fmt.Errorf("no Secret %s expected", name)
}

// run drives a prepared run to its end with rules.Advance, as the engine does: the actions
// started by one Advance are a batch; each then fails if its "stage/workflow/action" name is in
// fail, else succeeds, recording what a Create made as the engine would. It returns the batches
// (sorted within) and the final status.
func run(t *testing.T, p *runplan.Prepared, fail ...string) ([][]string, *drv1.DRPlanExecutionStatus) {
	t.Helper()
	st := &drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionRunning, StartTime: &metav1.Time{Time: started}}
	st.StageStatuses, st.ActionStatuses = p.Plan.InitialStatus()
	return runFrom(t, p, st, fail...)
}

// runFrom is run from a laid out status st (a retry's, with what it carries over).
func runFrom(t *testing.T, p *runplan.Prepared, st *drv1.DRPlanExecutionStatus, fail ...string) ([][]string, *drv1.DRPlanExecutionStatus) {
	t.Helper()
	now := metav1.NewTime(started)
	var batches [][]string
	for range 100 {
		start := rules.Advance(p.Plan, st, now, false)
		if len(start) == 0 {
			require.True(t, rules.ExecutionFinished(st.Phase), "nothing started but the run is %q", st.Phase)
			return batches, st
		}
		var names []string
		for _, a := range start {
			as := &st.ActionStatuses[a.Flat]
			name := stepName(p, a)
			names = append(names, name)
			now = metav1.NewTime(now.Add(time.Second))
			as.Phase, as.CompletionTime = drv1.StepSucceeded, &now
			if slices.Contains(fail, name) {
				as.Phase, as.Message = drv1.StepFailed, "boom"
				continue
			}
			if out := made(p.Actions[a.Flat], *as); out != nil {
				st.Outputs = append(st.Outputs, *out)
			}
		}
		sort.Strings(names)
		batches = append(batches, names)
	}
	t.Fatal("the run did not end")
	return nil, nil
}

// made is the output the engine records for what an action made: a ConfigMap a resource Create
// made, or a Job (named after the action, UID "uid-<action>"). Clusternet objects are left out,
// as if the output were lost.
func made(a runplan.Action, as drv1.ActionStatus) *drv1.ActionOutput {
	out := &drv1.ActionOutput{ActionName: as.Name, Stage: as.Stage, WorkflowIndex: as.WorkflowIndex}
	ref := &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Name: as.Name, Namespace: "prod", UID: "uid-" + as.Name}
	switch {
	case a.Undo != nil:
		return nil // a Revert's delete
	case a.Body.Resource != nil && a.Body.Resource.Operation == drv1.OperationCreate:
		out.ResourceRef = ref
	case a.Body.Job != nil:
		ref.APIVersion, ref.Kind = "batch/v1", "Job"
		out.JobRef = ref
	default:
		return nil
	}
	return out
}

// stepName is "stage/workflow/action", the workflow by name.
func stepName(p *runplan.Prepared, a rules.ActionAddr) string {
	s := p.Plan.Stages[a.Stage]
	w := s.Workflows[a.Workflow]
	return s.Name + "/" + w.Ref.Name + "/" + w.Actions[a.Action]
}

// ran is the target of a Revert: the execution that ran p to st.
func ran(p *runplan.Prepared, st *drv1.DRPlanExecutionStatus) *drv1.DRPlanExecution {
	e := execution(p.Plan.ExecutionName, drv1.OperationExecute)
	e.Status = *st
	return e
}
