package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/runplan"
)

// bigStatus is the status of a finished run of n actions in 10 stages, each with a message and,
// every other one, an HTTP body of textLen bytes of text, and the other a created object.
func bigStatus(n, textLen int, text string) *drv1.DRPlanExecutionStatus {
	now := metav1.NewTime(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC))
	long := strings.Repeat(text, textLen/len(text))
	st := &drv1.DRPlanExecutionStatus{Phase: drv1.ExecutionSucceeded, Message: "the run's own message",
		ResolvedParams: map[string]string{"region": long}, Snapshot: &drv1.ExecutionSnapshot{Hash: "h", Data: []byte("snapshot")}}
	for s := range 10 {
		st.StageStatuses = append(st.StageStatuses, drv1.StageStatus{Name: fmt.Sprintf("stage-%d", s), Phase: drv1.StepSucceeded, Message: long,
			WorkflowExecutions: []drv1.WorkflowExecutionStatus{{WorkflowRef: drv1.ObjectReference{Name: "wf"}, Message: long}}})
	}
	for i := range n {
		a := drv1.ActionStatus{Name: fmt.Sprintf("action-%04d", i), Stage: fmt.Sprintf("stage-%d", i%10), Phase: drv1.StepSucceeded,
			StartTime: &now, CompletionTime: &now, Message: long}
		st.ActionStatuses = append(st.ActionStatuses, a)
		out := drv1.ActionOutput{ActionName: a.Name, Stage: a.Stage}
		if i%2 == 0 {
			out.HTTPResponse = &drv1.HTTPResponse{StatusCode: 200, Body: long}
		} else {
			out.ResourceRef = &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Name: a.Name, Namespace: "team-a", UID: "0b6c2e4e-8a47-4a35-9b57-b7e3d8c4e0f1"}
		}
		st.Outputs = append(st.Outputs, out)
	}
	return st
}

func TestFitStatus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		st        *drv1.DRPlanExecutionStatus
		budget    int
		untouched bool // fits as it is
		fits      bool
	}{
		{name: "a small run is written whole", st: bigStatus(20, 1000, "x"), budget: statusBudget, untouched: true, fits: true},
		{name: "2,000 actions with 1 KiB messages and bodies", st: bigStatus(2000, 1024, "x"), budget: statusBudget, fits: true},
		{name: "texts that JSON escapes six times over", st: bigStatus(2000, 1024, "<&>"), budget: statusBudget, fits: true},
		{name: "multi-byte runes", st: bigStatus(2000, 1020, "容灾"), budget: statusBudget, fits: true},
		{name: "names and references alone over budget", st: bigStatus(2000, 100, "x"), budget: 200 << 10, fits: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.st.DeepCopy()
			whole, err := json.Marshal(before)
			require.NoError(t, err)
			raw, fits, err := fitStatus(tc.st, tc.budget)
			require.NoError(t, err)
			assert.Equal(t, tc.fits, fits)
			again, err := json.Marshal(tc.st)
			require.NoError(t, err)
			assert.Equal(t, string(again), string(raw), "the JSON returned is st's")
			if tc.untouched {
				assert.Equal(t, string(whole), string(raw))
				return
			}
			t.Logf("%d bytes cut to %d (budget %d); an action's message now %d bytes", len(whole), len(raw), tc.budget, len(tc.st.ActionStatuses[0].Message))
			if fits {
				assert.LessOrEqual(t, len(raw), tc.budget)
				assert.Greater(t, len(raw), tc.budget*9/10, "the cap is the largest that fits, not much less")
			}
			// What people read is cut, all to one cap; what a Revert reads is whole.
			assert.Equal(t, before.Message, tc.st.Message)
			for i, a := range tc.st.ActionStatuses {
				assert.Equal(t, before.ActionStatuses[i].Name, a.Name)
				assert.Equal(t, before.ActionStatuses[i].Phase, a.Phase)
				assert.Equal(t, len(tc.st.ActionStatuses[0].Message), len(a.Message), "one cap for every message")
				assert.True(t, strings.ToValidUTF8(a.Message, "?") == a.Message, "cut on a rune boundary")
			}
			for i, o := range tc.st.Outputs {
				assert.Equal(t, before.Outputs[i].ResourceRef, o.ResourceRef)
				if o.HTTPResponse != nil {
					assert.LessOrEqual(t, len(o.HTTPResponse.Body), len(before.Outputs[i].HTTPResponse.Body))
				}
			}
			assert.Equal(t, before.Snapshot, tc.st.Snapshot)
		})
	}
}

func TestLeanStatusKeepsWhatARevertReads(t *testing.T) {
	st := bigStatus(10, 100, "x")
	lean := leanStatus(st)
	assert.NotEmpty(t, st.ActionStatuses[0].Message, "the status given is left alone")
	assert.Empty(t, lean.ResolvedParams["region"])
	for i, a := range lean.ActionStatuses {
		assert.Empty(t, a.Message)
		assert.Equal(t, st.ActionStatuses[i].Phase, a.Phase)
	}
	for i, o := range lean.Outputs {
		assert.Equal(t, st.Outputs[i].ResourceRef, o.ResourceRef)
		if o.HTTPResponse != nil {
			assert.Empty(t, o.HTTPResponse.Body)
			assert.EqualValues(t, 200, o.HTTPResponse.StatusCode)
		}
	}
	assert.Equal(t, st.Snapshot, lean.Snapshot)
}

func TestTooLarge(t *testing.T) {
	gr := schema.GroupResource{Group: drv1.SchemeGroupVersion.Group, Resource: "drplanexecutions"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{apierrors.NewRequestEntityTooLargeError("limit is 3145728"), true},
		{apierrors.NewInternalError(fmt.Errorf("etcdserver: request is too large")), true},
		{apierrors.NewConflict(gr, "x", fmt.Errorf("changed")), false},
		{apierrors.NewInternalError(fmt.Errorf("etcdserver: leader changed")), false},
		{nil, false},
	} {
		assert.Equal(t, tc.want, tooLarge(tc.err), "%v", tc.err)
	}
}

func TestStatusFloor(t *testing.T) {
	run := func(n int, name, stage string) (*drv1.DRPlanExecutionStatus, []drv1.ActionBody) {
		st := &drv1.DRPlanExecutionStatus{Snapshot: &drv1.ExecutionSnapshot{Data: make([]byte, runplan.MaxSnapshotStored)}}
		for s := range 10 {
			st.StageStatuses = append(st.StageStatuses, drv1.StageStatus{Name: fmt.Sprintf("%s-%d", stage, s),
				WorkflowExecutions: []drv1.WorkflowExecutionStatus{{WorkflowRef: drv1.ObjectReference{Name: "wf"}}}})
		}
		bodies := make([]drv1.ActionBody, n)
		for i := range n {
			st.ActionStatuses = append(st.ActionStatuses, drv1.ActionStatus{Name: fmt.Sprintf("%s-%04d", name, i), Stage: stage, Phase: drv1.StepPending, Message: "waiting"})
			bodies[i] = drv1.ActionBody{Type: drv1.ActionTypeHTTP}
			if i%2 == 1 {
				bodies[i] = drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate,
					Manifest: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dr-config-%04d}\n", i)}}
			}
		}
		return st, bodies
	}
	for _, tc := range []struct {
		name        string
		n           int
		action, stg string
		overBudget  bool
	}{
		{name: "2,000 actions of sensible names", n: 2000, action: "scale-deployment", stg: "promote-standby", overBudget: false},
		{name: "2,000 actions of the longest names", n: 2000, action: strings.Repeat("a", 123), stg: strings.Repeat("s", 63), overBudget: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, bodies := run(tc.n, tc.action, tc.stg)
			floor, err := statusFloor(st, bodies, "team-a")
			require.NoError(t, err)
			t.Logf("floor %d bytes (budget %d)", floor, statusBudget)
			assert.Equal(t, tc.overBudget, floor > statusBudget)
			assert.Equal(t, "waiting", st.ActionStatuses[0].Message, "st is left alone")
		})
	}
	ref := madeRef(drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate,
		Manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {generateName: web-, namespace: apps}\n"}}, "team-a")
	assert.Equal(t, drv1.ResourceReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web-xxxxx", Namespace: "apps", UID: "00000000-0000-0000-0000-000000000000"}, *ref)
}

func TestMadeMaybe(t *testing.T) {
	create := drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate}}
	patch := drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationPatch}}
	gr := schema.GroupResource{Resource: "configmaps"}
	unavailable := apierrors.NewServiceUnavailable("the API server is starting")
	assert.True(t, madeMaybe(create, unavailable), "a Create that went on failing for a moment")
	assert.True(t, madeMaybe(create, context.DeadlineExceeded))
	assert.False(t, madeMaybe(create, apierrors.NewForbidden(gr, "x", fmt.Errorf("no"))), "refused: nothing was made")
	assert.False(t, madeMaybe(create, apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "x", nil)))
	assert.False(t, madeMaybe(patch, unavailable), "a Patch makes nothing")
	assert.False(t, madeMaybe(drv1.ActionBody{Type: drv1.ActionTypeHTTP}, unavailable))
}
