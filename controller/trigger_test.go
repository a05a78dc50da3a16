package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clienttesting "k8s.io/client-go/testing"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

var alice = drv1.Requester{Username: "alice", Groups: []string{"dr-operators", "system:authenticated"}}

// createdExecutions returns the executions the sync created.
func createdExecutions(f *fixture) []*drv1.DRPlanExecution {
	var out []*drv1.DRPlanExecution
	for _, a := range f.client.Actions() {
		if c, ok := a.(clienttesting.CreateAction); ok && a.GetResource().Resource == "drplanexecutions" {
			out = append(out, c.GetObject().(*drv1.DRPlanExecution))
		}
	}
	return out
}

// TestTriggerCarriesItsRequester: the trigger's requester moves to the pending marker in the same
// write that takes the trigger, and from there onto the execution created; a trigger without
// one, or a marker from before the records, creates nothing.
func TestTriggerCarriesItsRequester(t *testing.T) {
	plan := func(annotations map[string]string) *drv1.DRPlan {
		return &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod", UID: "pu", Annotations: annotations},
			Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
	}
	f := newFixture(t, plan(map[string]string{drv1.AnnotationTrigger: "execute", drv1.AnnotationRequester: alice.Encode()}))
	p, err := f.client.DrV1alpha1().DRPlans("prod").Get(context.Background(), "p", metav1.GetOptions{})
	require.NoError(t, err)
	_, err = f.c.syncTrigger(context.Background(), p)
	require.NoError(t, err)
	created := createdExecutions(f)
	require.Len(t, created, 1)
	assert.Equal(t, alice.Encode(), created[0].Annotations[drv1.AnnotationRequester])
	after, err := f.client.DrV1alpha1().DRPlans("prod").Get(context.Background(), "p", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Empty(t, after.Annotations, "trigger, requester and marker all gone")

	for name, annotations := range map[string]map[string]string{
		"a trigger without a requester": {drv1.AnnotationTrigger: "execute"},
		"a marker from before":          {drv1.AnnotationTriggerPending: "Execute/p-execute-1"},
	} {
		f := newFixture(t, plan(annotations))
		p, err := f.client.DrV1alpha1().DRPlans("prod").Get(context.Background(), "p", metav1.GetOptions{})
		require.NoError(t, err)
		_, err = f.c.syncTrigger(context.Background(), p)
		require.NoError(t, err)
		assert.Empty(t, createdExecutions(f), name)
		assert.Contains(t, f.event(), "no requester recorded: the admission webhook was not called", name)
	}
}

// TestPlanCancelRecordsTheTriggersRequester: trigger=cancel appends the plan trigger's requester
// to the execution's decisions, next to the cancel annotation, conditioned on what was read.
func TestPlanCancelRecordsTheTriggersRequester(t *testing.T) {
	bob := drv1.Requester{Username: "bob"}
	at := metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	earlier := []drv1.Decision{{User: alice, Annotation: "dr.bkbcs.tencent.com/approve", Value: "yes", Time: at}}
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod",
		Annotations: map[string]string{drv1.AnnotationTrigger: "cancel", drv1.AnnotationRequester: bob.Encode()}}}
	exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod", ResourceVersion: "7",
		Annotations: map[string]string{drv1.AnnotationRequester: alice.Encode(), drv1.AnnotationDecisions: drv1.EncodeDecisions(earlier)}},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}}, Status: drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionRunning}}
	f := newFixture(t, plan, exec)
	f.c.clock = func() time.Time { return at.Time }
	_, err := f.c.syncTrigger(context.Background(), plan)
	require.NoError(t, err)
	var patched map[string]map[string]any
	for _, a := range f.client.Actions() {
		if p, ok := a.(clienttesting.PatchAction); ok && a.GetResource().Resource == "drplanexecutions" {
			require.NoError(t, json.Unmarshal(p.GetPatch(), &patched))
		}
	}
	require.NotNil(t, patched, "the execution was patched")
	assert.Equal(t, "7", patched["metadata"]["resourceVersion"], "on the execution as read: an append never loses another")
	annotations := patched["metadata"]["annotations"].(map[string]any)
	assert.Equal(t, "true", annotations[drv1.AnnotationCancel])
	decisions, err := drv1.ParseDecisions(annotations[drv1.AnnotationDecisions].(string))
	require.NoError(t, err)
	want := append(earlier, drv1.Decision{User: bob, Annotation: drv1.AnnotationCancel, Value: "true", Time: at})
	assert.Equal(t, drv1.EncodeDecisions(want), drv1.EncodeDecisions(decisions))
}

// TestTriggerFindsItsNameTaken: after a restart the controller finds the execution's name taken.
// It is its own only with its token and the trigger's requester: an execution carrying the token
// but another requester does not absorb the trigger.
func TestTriggerFindsItsNameTaken(t *testing.T) {
	bob := drv1.Requester{Username: "bob", Groups: []string{"system:authenticated"}}
	for _, tc := range []struct {
		name      string
		token     string
		requester drv1.Requester
		refused   bool
	}{
		{name: "its own", token: "pu/Execute/p-execute-1", requester: alice},
		{name: "another token", token: "other", requester: alice, refused: true},
		{name: "the token, another requester", token: "pu/Execute/p-execute-1", requester: bob, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod", UID: "pu", Annotations: map[string]string{
				drv1.AnnotationTriggerPending: "Execute/p-execute-1", drv1.AnnotationTriggerPendingRequester: alice.Encode()}},
				Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
			taken := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "p-execute-1", Namespace: "prod", Annotations: map[string]string{
				drv1.AnnotationTriggerToken: tc.token, drv1.AnnotationRequester: tc.requester.Encode()}},
				Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}}}
			f := newFixture(t, plan, taken)
			p, err := f.client.DrV1alpha1().DRPlans("prod").Get(context.Background(), "p", metav1.GetOptions{})
			require.NoError(t, err)
			_, err = f.c.syncTrigger(context.Background(), p)
			require.NoError(t, err)
			ev := f.event()
			if tc.refused {
				assert.Contains(t, ev, "an execution named p-execute-1 exists already; annotate again in a second")
			} else {
				assert.NotContains(t, ev, "TriggerRefused")
			}
			after, err := f.client.DrV1alpha1().DRPlans("prod").Get(context.Background(), "p", metav1.GetOptions{})
			require.NoError(t, err)
			assert.Empty(t, after.Annotations, "the marker is cleared either way")
		})
	}
}
