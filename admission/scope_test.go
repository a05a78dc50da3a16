package admission_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/test/fixtures"
)

// crossAnswers are the answers alice (with grants) gets about plan "cross" of prod, whose stages
// run the workflows shared/wf and shared/broken: writing it, setting its execute trigger, creating
// an execution of it with a misspelt parameter. exist says whether those workflows exist (wf
// declares "region" and "secretParam"; broken is Invalid with a message of its own).
func crossAnswers(t *testing.T, exist bool, grants ...string) []string {
	d := fixture(t)
	s := d.State.(*state)
	if exist {
		s.workflows[key("shared", "wf")] = &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "wf", Namespace: "shared"}, Spec: drv1.DRWorkflowSpec{
			Parameters: []drv1.Parameter{{Name: "region", Required: true}, fixtures.Param("secretParam", "int", "1")},
			Actions:    []drv1.Action{fixtures.HTTPAction("call", "https://x/{{ .params.region }}", "")}}}
		s.workflows[key("shared", "broken")] = &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: "broken", Namespace: "shared"},
			Status: drv1.DRWorkflowStatus{Phase: drv1.WorkflowInvalid, Message: "the secret sauce is missing"}}
	}
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "cross", Namespace: "prod"}, Spec: drv1.DRPlanSpec{Stages: []drv1.Stage{{Name: "s",
		Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "wf", Namespace: "shared"}, Params: []drv1.ParamValue{{Name: "regoin", Value: "x"}}}}}, {
		Name: "t", Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "broken", Namespace: "shared"}}}}}}}
	s.plans[key("prod", "cross")] = plan
	d.Access = &access.Authorizer{Reviewer: access.NewReviewer(rbac{grants: grants}, time.Minute), Mapper: mapper()}
	d.User = drv1.Requester{Username: "alice"}
	ctx := context.Background()
	var out []string
	record := func(what string, got admission.Decision) {
		out = append(out, fmt.Sprintf("%s: %v %q", what, got.Err, got.Warnings))
	}
	record("written", d.Plan(ctx, plan, nil))
	triggered := plan.DeepCopy()
	triggered.Annotations = map[string]string{drv1.AnnotationTrigger: "execute"}
	record("triggered", d.Plan(ctx, triggered, plan))
	record("executed", d.Execution(ctx, &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod"},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "cross"}, Operation: drv1.OperationExecute,
			Params: []drv1.ParamValue{{Name: "secretParan", Value: "2"}}}}, nil))
	return out
}

// TestAnswersSayNothingOfOtherNamespaces: to a user who may not get the workflows a plan runs in
// another namespace, every answer is the same whether they exist or not, and shows nothing of them.
func TestAnswersSayNothingOfOtherNamespaces(t *testing.T) {
	executor := []string{"alice create drplanexecutions prod", "alice update drplans prod"}
	hidden := crossAnswers(t, true, executor...)
	assert.Equal(t, crossAnswers(t, false, executor...), hidden, "the same answers whether the workflows exist or not")
	all := strings.Join(hidden, "\n")
	for _, secret := range []string{"region", "secretParam", "secret sauce", "Invalid:"} {
		assert.NotContains(t, all, secret)
	}
	assert.Contains(t, all, `user "alice" may not get drworkflows.dr.bkbcs.tencent.com "wf" in namespace "shared"`)

	// Whoever may read them is told what is wrong with them, as before.
	shown := strings.Join(crossAnswers(t, true, append(executor, "alice get drworkflows shared")...), "\n")
	for _, told := range []string{`DRWorkflow shared/wf declares no parameter "regoin" (did you mean "region"?)`, "the secret sauce is missing"} {
		assert.Contains(t, shown, told)
	}
}

// TestInProgressNamesNoExecutionElsewhere: an execution of another namespace naming the plan
// (made while the webhook was bypassed; it never runs) neither holds the plan nor is named.
func TestInProgressNamesNoExecutionElsewhere(t *testing.T) {
	elsewhere := execution("theirs", drv1.OperationExecute, drv1.ExecutionRunning, func(e *drv1.DRPlanExecution) {
		e.Namespace, e.Spec.PlanRef.Namespace = "other", "prod"
	})
	d := fixture(t, elsewhere)
	got := d.Execution(context.Background(), execution("mine", drv1.OperationExecute, "", func(e *drv1.DRPlanExecution) {
		e.Spec.Params = []drv1.ParamValue{{Name: "region", Value: "dr"}}
	}), nil)
	require.True(t, got.Allowed(), "%v", got.Err)

	mineRunning := execution("running", drv1.OperationExecute, drv1.ExecutionRunning, nil)
	d = fixture(t, elsewhere, mineRunning)
	got = d.Execution(context.Background(), execution("mine", drv1.OperationExecute, "", func(e *drv1.DRPlanExecution) {
		e.Spec.Params = []drv1.ParamValue{{Name: "region", Value: "dr"}}
	}), nil)
	require.False(t, got.Allowed())
	assert.Equal(t, "Plan has an execution in progress: running", got.Err.Error())
}

// TestScopeRetriesAReviewNotMade: a review of what to show that cannot be made is a "retry", not
// an answer on a guess.
func TestScopeRetriesAReviewNotMade(t *testing.T) {
	d := fixture(t)
	d.Access = &access.Authorizer{Reviewer: access.NewReviewer(rbac{err: fmt.Errorf("connection refused")}, time.Minute), Mapper: mapper()}
	d.User = drv1.Requester{Username: "alice"}
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "cross", Namespace: "prod"},
		Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf", Namespace: "shared"}}}
	got := d.Plan(context.Background(), plan, nil)
	require.False(t, got.Allowed())
	assert.EqualValues(t, 503, got.Err.ErrStatus.Code)
	assert.Contains(t, got.Err.Error(), "could not check rights")
}
