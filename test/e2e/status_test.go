package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func notifyWorkflow(ns, name string, params ...drv1.Parameter) *drv1.DRWorkflow {
	return &drv1.DRWorkflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: drv1.DRWorkflowSpec{Parameters: params, Actions: []drv1.Action{{Name: "notify",
			ActionBody: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://example.com"}}}}},
	}
}

// TestPlanFollowsItsWorkflows walks a plan through Invalid -> Ready -> Invalid as the workflow it
// references appears (with a required parameter the plan leaves to each execution), breaks and
// disappears.
func TestPlanFollowsItsWorkflows(t *testing.T) {
	withoutWebhook(t) // the controller's own view: the webhook would refuse some of these objects
	ctx := context.Background()
	ns := newNamespace(t, "plan-status")
	dr := env.DR.DrV1alpha1()

	plan := &drv1.DRPlan{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec: drv1.DRPlanSpec{
			GlobalParams: []drv1.ParamValue{{Name: "replicas", Value: "5"}},
			Stages: []drv1.Stage{
				{Name: "first", Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf"}}}},
				{Name: "second", DependsOn: []string{"first"}, Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf"}}}},
			},
		},
	}
	_, err := dr.DRPlans(ns).Create(ctx, plan, metav1.CreateOptions{})
	require.NoError(t, err)
	p := waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Equal(t, fmt.Sprintf("DRWorkflow %s/wf not found", ns), p.Status.Message)
	assert.EqualValues(t, 2, p.Status.StageCount)
	ready := meta.FindStatusCondition(p.Status.Conditions, drv1.ConditionReady)
	require.NotNil(t, ready)
	assert.Equal(t, "WorkflowUnresolved", ready.Reason)

	// The workflow appears, with a required parameter the plan does not set.
	wf := notifyWorkflow(ns, "wf",
		drv1.Parameter{Name: "replicas", Type: drv1.ParameterTypeInt},
		drv1.Parameter{Name: "token", Required: true})
	_, err = dr.DRWorkflows(ns).Create(ctx, wf, metav1.CreateOptions{})
	require.NoError(t, err)
	// Invalid, naming it and where (the guide's troubleshooting 问题 1)...
	p = waitFor(t, "the plan to name the missing parameter", getPlan(ns, "p"), func(p *drv1.DRPlan) (bool, string) {
		return p.Status.Phase == drv1.PlanInvalid && strings.Contains(p.Status.Message, "token"), p.Status.Message
	})
	assert.Equal(t, fmt.Sprintf(`spec.stages[0].workflows[0].params: Required value: required parameter token (stage "first", DRWorkflow %[1]s/wf) has no value: set it here or in spec.globalParams, or name it in spec.executionParams so that every execution gives it in spec.params; `+
		`spec.stages[1].workflows[0].params: Required value: required parameter token (stage "second", DRWorkflow %[1]s/wf) has no value: set it here or in spec.globalParams, or name it in spec.executionParams so that every execution gives it in spec.params`, ns), p.Status.Message)
	params := meta.FindStatusCondition(p.Status.Conditions, drv1.ConditionParametersComplete)
	require.NotNil(t, params)
	assert.Equal(t, metav1.ConditionFalse, params.Status)
	assert.Equal(t, "RequiredParameterMissing", params.Reason)
	// ...and Ready once the plan leaves it to each execution.
	updatePlan(t, ns, "p", func(p *drv1.DRPlan) { p.Spec.ExecutionParams = []string{"token"} })
	p = waitPlanPhase(t, ns, "p", drv1.PlanReady)
	params = meta.FindStatusCondition(p.Status.Conditions, drv1.ConditionParametersComplete)
	require.NotNil(t, params)
	assert.Equal(t, metav1.ConditionFalse, params.Status, "an execution must give token")
	assert.Equal(t, "ExecutionParams", params.Reason)
	assert.Equal(t, "Every execution must give these in its spec.params (spec.executionParams): token", params.Message)

	// The plan's value stops converting to the workflow's type.
	updatePlan(t, ns, "p", func(p *drv1.DRPlan) { p.Spec.GlobalParams[0].Value = "five" })
	p = waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Contains(t, p.Status.Message, `spec.globalParams[0].value: Invalid value: "five": "five" is not an int`)
	updatePlan(t, ns, "p", func(p *drv1.DRPlan) { p.Spec.GlobalParams[0].Value = "5" })
	waitPlanPhase(t, ns, "p", drv1.PlanReady)

	// The workflow breaks: its default does not convert.
	updateWorkflow(t, ns, "wf", func(wf *drv1.DRWorkflow) {
		wf.Spec.Parameters[0].Default = &apiextensionsv1.JSON{Raw: []byte(`"three"`)}
	})
	wf = waitWorkflowPhase(t, ns, "wf", drv1.WorkflowInvalid)
	assert.Equal(t, `spec.parameters[0].default: Invalid value: "\"three\"": "three" is not an int: give a default of type int or change the parameter's type`, wf.Status.Message)
	p = waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Contains(t, p.Status.Message, fmt.Sprintf("DRWorkflow %s/wf is Invalid: spec.parameters[0].default", ns))

	// Fixed, then deleted.
	updateWorkflow(t, ns, "wf", func(wf *drv1.DRWorkflow) {
		wf.Spec.Parameters[0].Default = &apiextensionsv1.JSON{Raw: []byte(`3`)}
	})
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	require.NoError(t, dr.DRWorkflows(ns).Delete(ctx, "wf", metav1.DeleteOptions{}))
	p = waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Equal(t, fmt.Sprintf("DRWorkflow %s/wf not found", ns), p.Status.Message)

	// The plan's own mistakes: a typo in dependsOn, then a cycle.
	_, err = dr.DRWorkflows(ns).Create(ctx, notifyWorkflow(ns, "wf", drv1.Parameter{Name: "replicas", Type: drv1.ParameterTypeInt},
		drv1.Parameter{Name: "token", Required: true}), metav1.CreateOptions{})
	require.NoError(t, err)
	waitPlanPhase(t, ns, "p", drv1.PlanReady)
	updatePlan(t, ns, "p", func(p *drv1.DRPlan) { p.Spec.Stages[1].DependsOn = []string{"frist"} })
	p = waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Equal(t, `spec.stages[1].dependsOn[0]: Invalid value: "frist": unknown stage "frist" (did you mean "first"?)`, p.Status.Message)
	updatePlan(t, ns, "p", func(p *drv1.DRPlan) {
		p.Spec.Stages[0].DependsOn = []string{"second"}
		p.Spec.Stages[1].DependsOn = []string{"first"}
	})
	p = waitPlanPhase(t, ns, "p", drv1.PlanInvalid)
	assert.Equal(t, `spec.stages[0].dependsOn: Invalid value: ["second"]: dependency cycle: first -> second -> first`, p.Status.Message)

	events := kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=p", "-o", "jsonpath={range .items[*]}{.type} {.reason}{\"\\n\"}{end}")
	assert.Contains(t, events, "Warning Invalid")
	assert.Contains(t, events, "Normal Ready")
}

// TestLargeExecutionStatus writes the status of a plan of 100 workflows x 20 actions, the size the
// engine will write, and checks it fits well below etcd's 1.5 MiB object limit and that the
// guide's jsonpath queries work on it.
func TestLargeExecutionStatus(t *testing.T) {
	withoutWebhook(t) // the controller's own view: the webhook would refuse some of these objects
	ctx := context.Background()
	ns := newNamespace(t, "large")
	dr := env.DR.DrV1alpha1()
	_, err := dr.DRPlanExecutions(ns).Create(ctx, &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: "big"},
		Spec:       drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "big-plan"}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	var e *drv1.DRPlanExecution
	now := metav1.NewTime(time.Date(2026, 2, 2, 10, 0, 5, 0, time.UTC))
	later := metav1.NewTime(now.Add(40 * time.Second))
	st := drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionSucceeded, StartTime: &now, CompletionTime: &later,
		ResolvedParams: map[string]string{"drClusterNamespace": "clusternet-dr-shanghai", "targetRegion": "dr-region"}}
	for s := range 10 {
		stage := drv1.StageStatus{Name: fmt.Sprintf("stage-%02d", s), Phase: drv1.StepSucceeded, Parallel: true,
			StartTime: &now, CompletionTime: &later, Duration: "40s"}
		if s > 0 {
			stage.DependsOn = []string{fmt.Sprintf("stage-%02d", s-1)}
		}
		for w := range 10 {
			stage.WorkflowExecutions = append(stage.WorkflowExecutions, drv1.WorkflowExecutionStatus{
				WorkflowRef: drv1.ObjectReference{Name: "service-failover", Namespace: "production"},
				Phase:       drv1.StepSucceeded, StartTime: &now, CompletionTime: &later, Duration: "40s",
				Progress: "20/20 actions completed", ResolvedParams: map[string]string{"serviceName": fmt.Sprintf("service-%d", w)},
			})
			for a := range 20 {
				name := fmt.Sprintf("action-%02d", a)
				st.ActionStatuses = append(st.ActionStatuses, drv1.ActionStatus{Name: name, Stage: stage.Name,
					WorkflowIndex: int32(w), Phase: drv1.StepSucceeded, StartTime: &now, CompletionTime: &later,
					Message: "Localization production/service-localization created"})
				st.Outputs = append(st.Outputs, drv1.ActionOutput{ActionName: name, Stage: stage.Name, WorkflowIndex: int32(w),
					// A typed reference needs no apiVersion or kind: its field says what it is.
					LocalizationRef: &drv1.ResourceReference{Name: fmt.Sprintf("service-%d-localization", w),
						Namespace: "clusternet-dr-shanghai", UID: "0b8a9d1e-8a36-4f6e-9e51-5a8f3c1d2e4f"}})
			}
		}
		st.StageStatuses = append(st.StageStatuses, stage)
	}
	// The controller fails the execution first (its plan does not exist); then the test writes
	// the status the engine would write for such a plan.
	waitExecution(t, ns, "big", drv1.ExecutionFailed)
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := dr.DRPlanExecutions(ns).Get(ctx, "big", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status = st
		e, err = asController(t).DrV1alpha1().DRPlanExecutions(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{}) // as the engine would
		return err
	}))
	raw, err := json.Marshal(e)
	require.NoError(t, err)
	t.Logf("status of 100 workflows x 20 actions: %d bytes (%.0f%% of 1.5 MiB)", len(raw), float64(len(raw))*100/(1.5*1024*1024))
	// Worst case: every one of the 2,000 actions made an object and has a message.
	assert.Less(t, len(raw), 900*1024, "must stay well below the 1.5 MiB object limit")

	phases := kubectl(t, "get", "drplanexecution", "big", "-n", ns, "-o", "jsonpath={.status.actionStatuses[*].phase}")
	assert.Len(t, strings.Fields(phases), 2000)
	one := kubectl(t, "get", "drplanexecution", "big", "-n", ns, "-o", `jsonpath={.status.stageStatuses[?(@.name=="stage-03")]}`)
	var stage drv1.StageStatus
	require.NoError(t, json.Unmarshal([]byte(one), &stage))
	assert.Equal(t, "stage-03", stage.Name)
	assert.Len(t, stage.WorkflowExecutions, 10)
	failed := kubectl(t, "get", "drplanexecution", "big", "-n", ns, "-o", `jsonpath={.status.actionStatuses[?(@.phase=="Failed")]}`)
	assert.Empty(t, failed)
}
