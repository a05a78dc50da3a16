package controller

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clienttesting "k8s.io/client-go/testing"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

func TestNewer(t *testing.T) {
	at := func(s int) *metav1.Time {
		v := metav1.NewTime(time.Date(2026, 1, 30, 10, 0, s, 0, time.UTC))
		return &v
	}
	tests := []struct {
		name                           string
		start, end, lastStart, lastEnd *metav1.Time
		want                           bool
	}{
		{"ended later", at(1), at(5), at(0), at(2), true},
		{"ended earlier (an old run's sync after a restart)", at(0), at(2), at(1), at(5), false},
		{"same second: started later", at(2), at(2), at(0), at(2), true},
		{"same second: started earlier", at(0), at(2), at(2), at(2), false},
		{"same seconds, started and ended: neither (the lock's holder decides)", at(2), at(2), at(2), at(2), false},
		{"nothing recorded before", at(0), at(1), nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &drv1.DRPlanExecutionStatus{StartTime: tc.start, CompletionTime: tc.end}
			last := &drv1.ExecutionReference{StartTime: tc.lastStart, CompletionTime: tc.lastEnd}
			assert.Equal(t, tc.want, newer(st, last))
		})
	}
}

// TestLockRetriesTransientErrors takes and releases a plan's lock while the API server answers
// the plan's status writes with the table's errors first: transient ones are retried (the lock
// is taken and released), others are returned at once.
func TestLockRetriesTransientErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	plans := schema.GroupResource{Group: drv1.GroupName, Resource: "drplans"}
	for _, tc := range []struct {
		name       string
		errs       []error // the first status writes' answers (each of acquire and release)
		wantWrites int
		wantErr    func(error) bool // nil: the lock is taken and released
	}{
		{name: "no error", wantWrites: 1},
		{name: "refused connections", errs: []error{refused, refused}, wantWrites: 3},
		{name: "503", errs: []error{apierrors.NewServiceUnavailable("starting")}, wantWrites: 2},
		{name: "429", errs: []error{apierrors.NewTooManyRequests("slow down", 0)}, wantWrites: 2},
		{name: "conflict, as before", errs: []error{apierrors.NewConflict(plans, "p", errors.New("changed"))}, wantWrites: 2},
		{name: "forbidden is final", errs: []error{apierrors.NewForbidden(plans, "p", errors.New("no"))}, wantWrites: 1,
			wantErr: apierrors.IsForbidden},
		{name: "invalid is final", errs: []error{apierrors.NewBadRequest("no")}, wantWrites: 1, wantErr: apierrors.IsBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
				Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf"}}}
			exec := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod", UID: "u1"},
				Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute}}
			f := newFixture(t, plan, exec)
			var writes, failed int
			f.client.PrependReactor("update", "drplans", func(a clienttesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() != "status" {
					return false, nil, nil
				}
				writes++
				if failed < len(tc.errs) {
					failed++
					return true, nil, tc.errs[failed-1]
				}
				return false, nil, nil
			})
			ctx := context.Background()
			_, waiting, _, err := f.c.acquireLock(ctx, exec)
			assert.Equal(t, tc.wantWrites, writes, "writes to take the lock")
			if tc.wantErr != nil {
				assert.True(t, tc.wantErr(err), "the API error is kept: %v", err)
				return
			}
			require.NoError(t, err)
			require.Empty(t, waiting)
			p, err := f.client.DrV1alpha1().DRPlans("prod").Get(ctx, "p", metav1.GetOptions{})
			require.NoError(t, err)
			require.NotNil(t, p.Status.CurrentExecution, "the lock is taken")

			writes, failed = 0, 0
			require.NoError(t, f.c.releaseLock(ctx, exec, &drv1.DRPlanExecutionStatus{}))
			assert.Equal(t, tc.wantWrites, writes, "writes to release the lock")
			p, err = f.client.DrV1alpha1().DRPlans("prod").Get(ctx, "p", metav1.GetOptions{})
			require.NoError(t, err)
			assert.Nil(t, p.Status.CurrentExecution, "the lock is released")
		})
	}
}
