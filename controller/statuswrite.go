package controller

import (
	"context"
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// The controller's status writes are of two kinds, each with one writer:
//   - writeExecutionStatus replaces an execution's whole status, as its run sees it: the run is
//     its only writer, so there is no resourceVersion to conflict on, and a field cleared is
//     cleared; the UID guards against writing over a namesake.
//   - updateStatus writes a status decided from the object as it was read (a plan's, a
//     workflow's, a reverted execution's mark): the resourceVersion guards it, so that of two
//     writers deciding from the same version one gets a conflict and decides again. The plan's
//     lock relies on this.

// writeExecutionStatus replaces exec's status with st by a JSON patch on the status subresource,
// only if the object is still the one with exec's UID. A status over statusBudget is first
// shortened in place (fitStatus).
func (c *Controller) writeExecutionStatus(ctx context.Context, exec *drv1.DRPlanExecution, st *drv1.DRPlanExecutionStatus) error {
	raw, fits, err := fitStatus(st, statusBudget)
	if err != nil {
		return err
	}
	if !fits {
		klog.FromContext(ctx).Info("The execution's status is over its budget even with its messages cut; writing it anyway",
			"execution", klog.KObj(exec), "bytes", len(raw), "budget", statusBudget)
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/uid", "value": exec.UID},
		{"op": "add", "path": "/status", "value": json.RawMessage(raw)},
	})
	if err != nil {
		return err
	}
	_, err = c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Patch(ctx, exec.Name, types.JSONPatchType, patch,
		metav1.PatchOptions{FieldManager: actions.FieldManager}, "status")
	return err
}

// statusClient is the typed client of one of our kinds, as far as status writes go.
type statusClient[T any] interface {
	UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// updateStatus writes obj's status with the resourceVersion obj was read at: a conflict means
// the object changed since, and the caller decides again from the newer one.
func updateStatus[T any](ctx context.Context, client statusClient[T], obj T) (T, error) {
	return client.UpdateStatus(ctx, obj, metav1.UpdateOptions{FieldManager: actions.FieldManager})
}
