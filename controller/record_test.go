package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// ran is a run of plan p created minute minutes after 3 a.m.: ended in phase (or still
// running: phase ""), having acted or not, reverted or not.
func ran(name string, op drv1.Operation, phase drv1.ExecutionPhase, acted, reverted bool, minute int) *drv1.DRPlanExecution {
	at := metav1.NewTime(time.Date(2026, 11, 29, 3, minute, 0, 0, time.UTC))
	e := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod", CreationTimestamp: at, UID: types.UID("uid-" + name)},
		Spec:   drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: op},
		Status: drv1.DRPlanExecutionStatus{Phase: phase, Snapshot: &drv1.ExecutionSnapshot{}}} // they ran
	if phase == "" {
		e.Status.Phase = drv1.ExecutionRunning
	} else {
		e.Status.CompletionTime = &at
	}
	if acted {
		e.Status.ActionStatuses = []drv1.ActionStatus{{Name: "a", Phase: drv1.StepSucceeded}}
	}
	if reverted {
		e.Status.Conditions = []metav1.Condition{{Type: drv1.ConditionReverted, Status: metav1.ConditionTrue}}
	}
	return e
}

func names(execs []*drv1.DRPlanExecution) []string {
	out := []string{}
	for _, e := range execs {
		out = append(out, e.Name)
	}
	return out
}

func TestPruned(t *testing.T) {
	ex, rv := drv1.OperationExecute, drv1.OperationRevert
	ok, failed := drv1.ExecutionSucceeded, drv1.ExecutionFailed
	// Ten Executes reverted by ten Reverts, oldest first, around what history never touches.
	var history []*drv1.DRPlanExecution
	for i := range 10 {
		history = append(history, ran(fmt.Sprintf("x%d", i), ex, ok, true, true, 2*i), ran(fmt.Sprintf("r%d", i), rv, ok, true, false, 2*i+1))
	}
	inEffect := ran("in-effect", ex, ok, true, false, 0)
	failedFirst := ran("failed-first", ex, failed, false, false, 1) // retried by in-effect: its chain
	inEffect.Spec.RetryOf = failedFirst.Name
	leftObjects := ran("left-objects", ex, failed, true, false, 2)
	running := ran("running", rv, "", false, false, 3)
	running.Spec.RevertExecutionRef = &drv1.LocalReference{Name: "target"}
	target := ran("target", ex, failed, false, false, 4) // what the running Revert reads
	lastSuccess := ran("last-success", rv, ok, false, false, 5)
	deleting := ran("deleting", ex, failed, false, false, 6)
	deleting.DeletionTimestamp = &metav1.Time{}
	other := ran("other-namespace", ex, failed, false, false, 7)
	other.Namespace = "elsewhere"
	never := []*drv1.DRPlanExecution{inEffect, failedFirst, leftObjects, running, target, lastSuccess, deleting, other}
	plan := func(limit *int32) *drv1.DRPlan {
		return &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}, Spec: drv1.DRPlanSpec{ExecutionHistoryLimit: limit},
			Status: drv1.DRPlanStatus{LastSuccessfulExecution: &drv1.ExecutionReference{Name: "last-success"}}}
	}
	all := append(append([]*drv1.DRPlanExecution{}, never...), history...)
	for _, tc := range []struct {
		name  string
		limit *int32
		want  []string
	}{
		{"the default keeps 10", nil, []string{"x0", "r0", "x1", "r1", "x2", "r2", "x3", "r3", "x4", "r4"}},
		{"limit 18", ptr.To[int32](18), []string{"x0", "r0"}},
		{"limit 20: nothing", ptr.To[int32](20), []string{}},
		{"limit 0: every finished run not kept", ptr.To[int32](0), names(history)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, names(pruned(plan(tc.limit), all)))
		})
	}
}

// finalizerPatches are the finalizers each execution was patched to, by name.
func finalizerPatches(t *testing.T, f *fixture) map[string][]string {
	out := map[string][]string{}
	for _, a := range f.client.Actions() {
		p, ok := a.(clienttesting.PatchAction)
		if !ok || a.GetResource().Resource != "drplanexecutions" {
			continue
		}
		var body struct {
			Metadata struct {
				Finalizers []string `json:"finalizers"`
			} `json:"metadata"`
		}
		require.NoError(t, json.Unmarshal(p.GetPatch(), &body))
		out[p.GetName()] = body.Metadata.Finalizers
	}
	return out
}

func TestRecordFinalizer(t *testing.T) {
	ex, rv := drv1.OperationExecute, drv1.OperationRevert
	plan := func(annotations map[string]string) *drv1.DRPlan {
		return &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod", Annotations: annotations},
			Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
	}
	held := func(e *drv1.DRPlanExecution) *drv1.DRPlanExecution {
		e.Finalizers = []string{"other", drv1.FinalizerRecord}
		return e
	}
	inEffect := func() *drv1.DRPlanExecution { return ran("x2", ex, drv1.ExecutionSucceeded, true, false, 2) }
	reverted := func() *drv1.DRPlanExecution { return held(ran("x1", ex, drv1.ExecutionSucceeded, true, true, 0)) }
	revert := func() *drv1.DRPlanExecution { return ran("r1", rv, drv1.ExecutionSucceeded, true, false, 1) }
	allow := map[string]string{drv1.AnnotationAllowDelete: "true"}
	for _, tc := range []struct {
		name  string
		objs  []runtime.Object
		want  map[string][]string
		event string
	}{
		{"kept while in effect, let go once reverted", []runtime.Object{plan(nil), reverted(), revert(), inEffect()},
			map[string][]string{"x2": {drv1.FinalizerRecord}, "x1": {"other"}}, ""},
		{"let go with allow-delete", []runtime.Object{plan(allow), held(inEffect())},
			map[string][]string{"x2": {"other"}}, ""},
		{"let go once the plan is gone", []runtime.Object{held(inEffect())},
			map[string][]string{"x2": {"other"}}, ""},
		{"a delete waits", []runtime.Object{plan(nil), func() runtime.Object {
			e := held(inEffect())
			e.DeletionTimestamp = &metav1.Time{}
			return e
		}()}, map[string][]string{},
			"Warning DeletionBlocked execution x2 is the failover in effect of plan p: revert it first, or annotate the plan dr.bkbcs.tencent.com/allow-delete=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.objs...)
			require.NoError(t, f.c.syncPlan(context.Background(), "prod", "p"))
			assert.Equal(t, tc.want, finalizerPatches(t, f))
			if tc.event != "" {
				assert.Contains(t, []string{f.event(), f.event()}, tc.event)
			}
		})
	}
}

func TestPruneHistoryDeletesWithAnEvent(t *testing.T) {
	objs := []runtime.Object{&drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
		Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}, ExecutionHistoryLimit: ptr.To[int32](1)}}}
	for i := range 3 {
		objs = append(objs, ran(fmt.Sprintf("f%d", i), drv1.OperationExecute, drv1.ExecutionFailed, false, false, i))
	}
	f := newFixture(t, objs...)
	require.NoError(t, f.c.syncPlan(context.Background(), "prod", "p"))
	var deleted []string
	for _, a := range f.client.Actions() {
		if d, ok := a.(clienttesting.DeleteAction); ok {
			deleted = append(deleted, d.GetName())
		}
	}
	assert.Equal(t, []string{"f0", "f1"}, deleted)
	events := []string{f.event(), f.event()}
	assert.Contains(t, events, "Normal HistoryPruned Deleted the finished executions beyond spec.executionHistoryLimit (1), oldest first: f0, f1")
}

// TestPrunedKeepsChainsWhole: a retry renders as the first run of its chain and reads what it did,
// so a chain is pruned at once or not at all.
func TestPrunedKeepsChainsWhole(t *testing.T) {
	ex, failed := drv1.OperationExecute, drv1.ExecutionFailed
	first, retry, newer := ran("first", ex, failed, false, false, 1), ran("retry", ex, failed, false, false, 2), ran("newer", ex, failed, false, false, 3)
	retry.Spec.RetryOf = "first"
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"}, Spec: drv1.DRPlanSpec{ExecutionHistoryLimit: ptr.To[int32](2)}}
	assert.Empty(t, names(pruned(plan, []*drv1.DRPlanExecution{first, retry, newer})), "first alone is beyond the limit: its chain is not")
	plan.Spec.ExecutionHistoryLimit = ptr.To[int32](1)
	assert.Equal(t, []string{"first", "retry"}, names(pruned(plan, []*drv1.DRPlanExecution{first, retry, newer})))
}
