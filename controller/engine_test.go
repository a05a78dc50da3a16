package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// patchedStatus is the execution status a status patch writes.
func patchedStatus(t *testing.T, a clienttesting.Action) (drv1.DRPlanExecutionStatus, bool) {
	p, ok := a.(clienttesting.PatchAction)
	if !ok || a.GetSubresource() != "status" || a.GetResource().Resource != "drplanexecutions" {
		return drv1.DRPlanExecutionStatus{}, false
	}
	var ops []struct {
		Value json.RawMessage `json:"value"`
	}
	require.NoError(t, json.Unmarshal(p.GetPatch(), &ops))
	var st drv1.DRPlanExecutionStatus
	require.NoError(t, json.Unmarshal(ops[len(ops)-1].Value, &st))
	return st, true
}

// firstActionWritten lists the phase of the first action in each execution status written.
func firstActionWritten(t *testing.T, f *fixture) []drv1.StepPhase {
	var out []drv1.StepPhase
	for _, a := range f.client.Actions() {
		if st, ok := patchedStatus(t, a); ok {
			require.Len(t, st.ActionStatuses, 1)
			out = append(out, st.ActionStatuses[0].Phase)
		}
	}
	return out
}

// TestNothingStartsOnceTheActionQueueIsShutDown plays a stop that reaches the action queue before
// the engine's draining flag (both follow the end of the engine's context): before a run's
// advance, or while it writes ahead that its POST starts. Either way the POST never starts and is
// written back Pending, so that no restart takes it for a call interrupted in flight.
func TestNothingStartsOnceTheActionQueueIsShutDown(t *testing.T) {
	for _, during := range []bool{false, true} {
		t.Run(map[bool]string{false: "before the advance", true: "during the write-ahead"}[during], func(t *testing.T) {
			wf := workflow("wf", 1) // one POST
			wf.Status.Phase = drv1.WorkflowReady
			plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
				Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
			exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod", UID: "u1",
				Labels: map[string]string{drv1.LabelPlan: "p"}, Annotations: map[string]string{drv1.AnnotationRequester: alice.Encode()}},
				Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute}}
			f := newFixture(t, wf, plan, exec)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f.c.engine.bind(ctx)
			if during {
				f.client.PrependReactor("patch", "drplanexecutions", func(a clienttesting.Action) (bool, runtime.Object, error) {
					if st, ok := patchedStatus(t, a); ok && st.ActionStatuses[0].Phase == drv1.StepRunning {
						f.c.engine.queue.ShutDown()
					}
					return false, nil, nil
				})
			} else {
				f.c.engine.queue.ShutDown()
			}
			require.NoError(t, f.c.syncExecution(ctx, "prod", "run"))
			r := f.c.engine.running(types.NamespacedName{Namespace: "prod", Name: "run"})
			require.NotNil(t, r)
			if during {
				require.Eventually(t, func() bool {
					w := firstActionWritten(t, f)
					return len(w) >= 2 && w[len(w)-2] == drv1.StepRunning && w[len(w)-1] == drv1.StepPending
				}, 10*time.Second, 10*time.Millisecond, "written Running ahead, then Pending: %v", firstActionWritten(t, f))
			} else {
				r.advance(false) // as the run's own first advance does, but done when it returns
				require.NoError(t, r.writer.Flush(ctx))
				for i, phase := range firstActionWritten(t, f) {
					assert.Equal(t, drv1.StepPending, phase, "write %d", i)
				}
			}
			assert.Equal(t, drv1.StepPending, r.copyStatus().(*drv1.DRPlanExecutionStatus).ActionStatuses[0].Phase)
			assert.True(t, f.c.engine.stopping())
		})
	}
}
