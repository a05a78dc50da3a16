package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/crds/generated/clientset/versioned/fake"
	"github.com/bkbcs/drplan-controller/informers"
	"github.com/bkbcs/drplan-controller/rules"
)

// fixture seeds the listers directly (no informer runs) and records what the sync writes.
type fixture struct {
	t      *testing.T
	client *fake.Clientset
	inf    *informers.Informers
	events *record.FakeRecorder
	c      *Controller
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	client := fake.NewSimpleClientset(objs...)
	inf, err := informers.New(client, 0)
	require.NoError(t, err)
	for _, o := range objs {
		switch o := o.(type) {
		case *drv1.DRWorkflow:
			require.NoError(t, inf.Workflows.GetIndexer().Add(o))
		case *drv1.DRPlan:
			require.NoError(t, inf.Plans.GetIndexer().Add(o))
		case *drv1.DRPlanExecution:
			require.NoError(t, inf.Executions.GetIndexer().Add(o))
		}
	}
	events := record.NewFakeRecorder(10)
	client.ClearActions()
	return &fixture{t: t, client: client, inf: inf, events: events,
		c: New(Config{DR: client, Informers: inf, Recorder: events, Rules: newRules(t)})}
}

// newRules are the built-in rules in a CEL environment of the test's own, as the process builds
// them once at start-up.
func newRules(t testing.TB) *rules.Rules {
	r, err := rules.New(rules.Options{})
	require.NoError(t, err)
	return r
}

// statusUpdates returns the objects written through the status subresource.
func (f *fixture) statusUpdates() []runtime.Object {
	var out []runtime.Object
	for _, a := range f.client.Actions() {
		if u, ok := a.(clienttesting.UpdateAction); ok && a.GetSubresource() == "status" {
			out = append(out, u.GetObject())
		}
	}
	return out
}

func (f *fixture) event() string {
	select {
	case e := <-f.events.Events:
		return e
	default:
		return ""
	}
}

func workflow(name string, gen int64, params ...drv1.Parameter) *drv1.DRWorkflow {
	return &drv1.DRWorkflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod", Generation: gen},
		Spec: drv1.DRWorkflowSpec{Parameters: params, Actions: []drv1.Action{{Name: "notify",
			ActionBody: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/{{ .planName }}"}}}}},
	}
}

func TestSyncWorkflow(t *testing.T) {
	broken := workflow("broken", 2)
	broken.Spec.Actions[0].HTTP.Body = "{{ .params.nope }}"
	tests := []struct {
		name      string
		wf        *drv1.DRWorkflow
		phase     drv1.WorkflowPhase
		message   string
		event     string
		noWrite   bool
		condition metav1.ConditionStatus
	}{
		{name: "valid workflow becomes Ready", wf: workflow("ok", 1), phase: drv1.WorkflowReady,
			event: "Normal Ready ok is Ready", condition: metav1.ConditionTrue},
		{name: "template naming an undeclared parameter makes it Invalid", wf: broken, phase: drv1.WorkflowInvalid,
			message:   `spec.actions[0].http.body: Invalid value: "{{ .params.nope }}": template uses .params.nope, which the workflow does not declare`,
			event:     "Warning Invalid spec.actions[0].http.body",
			condition: metav1.ConditionFalse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.wf)
			require.NoError(t, f.c.syncWorkflow(context.Background(), "prod", tc.wf.Name))
			writes := f.statusUpdates()
			require.Len(t, writes, 1)
			got := writes[0].(*drv1.DRWorkflow)
			assert.Equal(t, tc.phase, got.Status.Phase)
			assert.Equal(t, tc.message, got.Status.Message)
			assert.Equal(t, tc.wf.Generation, got.Status.ObservedGeneration)
			assert.EqualValues(t, 1, got.Status.ActionCount)
			cond := meta.FindStatusCondition(got.Status.Conditions, drv1.ConditionReady)
			require.NotNil(t, cond)
			assert.Equal(t, tc.condition, cond.Status)
			assert.True(t, strings.HasPrefix(f.event(), tc.event), "event")

			// Synced again from the written object: nothing changes, nothing is written.
			f2 := newFixture(t, got)
			require.NoError(t, f2.c.syncWorkflow(context.Background(), "prod", tc.wf.Name))
			assert.Empty(t, f2.statusUpdates(), "an unchanged status is not written again")
			assert.Empty(t, f2.event())
		})
	}
}

func TestSyncGoneObjectsIsANoOp(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, f.c.syncWorkflow(context.Background(), "prod", "gone"))
	require.NoError(t, f.c.syncPlan(context.Background(), "prod", "gone"))
	assert.Empty(t, f.client.Actions())
}

func TestSyncPlan(t *testing.T) {
	ready := workflow("wf", 1, drv1.Parameter{Name: "token", Required: true})
	ready.Status.Phase = drv1.WorkflowReady
	invalid := workflow("bad", 1)
	invalid.Status = drv1.DRWorkflowStatus{Phase: drv1.WorkflowInvalid, Message: "spec.actions[0]: broken"}
	plan := func(ref string, executionParams ...string) *drv1.DRPlan {
		return &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod", Generation: 3},
			Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: ref}, ExecutionParams: executionParams}}
	}
	succeeded := func(op drv1.Operation, reverted bool) *drv1.DRPlanExecution {
		e := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "e", Namespace: "prod"},
			Spec:   drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: op},
			Status: drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionSucceeded}}
		if reverted {
			e.Status.Conditions = []metav1.Condition{{Type: "Reverted", Status: metav1.ConditionTrue}}
		}
		return e
	}
	failedAfter := func(first drv1.StepPhase) *drv1.DRPlanExecution {
		e := succeeded(drv1.OperationExecute, false)
		e.Status.Phase = drv1.ExecutionFailed
		e.Status.ActionStatuses = []drv1.ActionStatus{{Name: "a", Phase: first}, {Name: "b", Phase: drv1.StepFailed}}
		return e
	}
	tests := []struct {
		name    string
		objs    []runtime.Object
		phase   drv1.PlanPhase
		reason  string
		message string
		params  metav1.ConditionStatus
	}{
		{name: "ready, with a required parameter left to each execution", objs: []runtime.Object{plan("wf", "token"), ready},
			phase: drv1.PlanReady, reason: ReasonValid, params: metav1.ConditionFalse},
		{name: "a required parameter without a value makes it Invalid", objs: []runtime.Object{plan("wf"), ready},
			phase: drv1.PlanInvalid, reason: ReasonInvalidSpec, params: metav1.ConditionFalse,
			message: `spec.globalParams: Required value: required parameter token (stage "default", DRWorkflow prod/wf) has no value: set it in spec.globalParams, or name it in spec.executionParams so that every execution gives it in spec.params`},
		{name: "missing workflow", objs: []runtime.Object{plan("nope")},
			phase: drv1.PlanInvalid, reason: ReasonWorkflowUnresolved, message: "DRWorkflow prod/nope not found", params: metav1.ConditionTrue},
		{name: "invalid workflow", objs: []runtime.Object{plan("bad"), invalid},
			phase: drv1.PlanInvalid, reason: ReasonWorkflowUnresolved, message: "DRWorkflow prod/bad is Invalid: spec.actions[0]: broken", params: metav1.ConditionTrue},
		{name: "an Execute in effect makes it Executed", objs: []runtime.Object{plan("wf", "token"), ready, succeeded(drv1.OperationExecute, false)},
			phase: drv1.PlanExecuted, reason: ReasonValid, params: metav1.ConditionFalse},
		{name: "a reverted Execute does not", objs: []runtime.Object{plan("wf", "token"), ready, succeeded(drv1.OperationExecute, true)},
			phase: drv1.PlanReady, reason: ReasonValid, params: metav1.ConditionFalse},
		{name: "a failed Execute that took effect makes it Executed", objs: []runtime.Object{plan("wf", "token"), ready, failedAfter(drv1.StepSucceeded)},
			phase: drv1.PlanExecuted, reason: ReasonValid, params: metav1.ConditionFalse},
		{name: "a failed Execute that did nothing does not", objs: []runtime.Object{plan("wf", "token"), ready, failedAfter(drv1.StepFailed)},
			phase: drv1.PlanReady, reason: ReasonValid, params: metav1.ConditionFalse},
		{name: "Executed wins over Invalid", objs: []runtime.Object{plan("nope"), succeeded(drv1.OperationExecute, false)},
			phase: drv1.PlanExecuted, reason: ReasonWorkflowUnresolved, message: "DRWorkflow prod/nope not found", params: metav1.ConditionTrue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.objs...)
			require.NoError(t, f.c.syncPlan(context.Background(), "prod", "p"))
			writes := f.statusUpdates()
			require.Len(t, writes, 1)
			got := writes[0].(*drv1.DRPlan)
			assert.Equal(t, tc.phase, got.Status.Phase)
			assert.Equal(t, tc.message, got.Status.Message)
			assert.EqualValues(t, 1, got.Status.StageCount)
			assert.EqualValues(t, 3, got.Status.ObservedGeneration)
			r := meta.FindStatusCondition(got.Status.Conditions, drv1.ConditionReady)
			require.NotNil(t, r)
			assert.Equal(t, tc.reason, r.Reason)
			p := meta.FindStatusCondition(got.Status.Conditions, drv1.ConditionParametersComplete)
			require.NotNil(t, p)
			assert.Equal(t, tc.params, p.Status)
		})
	}
}

func TestTruncateKeepsRunes(t *testing.T) {
	long := strings.Repeat("容灾", 400) // 3 bytes a rune
	got := truncate(long)
	assert.LessOrEqual(t, len(got), maxMessage)
	assert.True(t, strings.HasSuffix(got, "... (truncated)"))
	assert.True(t, strings.ToValidUTF8(got, "?") == got, "cut on a rune boundary")
	assert.Equal(t, "short", truncate("short"))
}
