package controller

import (
	"context"
	"encoding/json"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// The record of a failover (rules.Record: the Execute in effect, the runs of its retry chain, a
// failed run that took effect) cannot be lost: the webhook refuses deleting it, and
// FinalizerRecord keeps it where the webhook is down or bypassed. Both let go once the plan is
// gone or carries AnnotationAllowDelete=true.

// syncRecord keeps FinalizerRecord on exactly the plan's executions that are part of its record
// (plan nil: it is gone, and they are the record of nothing), says why one being deleted waits,
// and then deletes the history beyond the plan's limit.
func (c *Controller) syncRecord(ctx context.Context, namespace, name string, plan *drv1.DRPlan, execs []*drv1.DRPlanExecution) error {
	var record map[string]string
	if plan != nil && plan.Annotations[drv1.AnnotationAllowDelete] != "true" {
		record = rules.Record(name, execs)
	}
	for _, e := range execs {
		if e.Namespace != namespace {
			continue // never run (an execution runs a plan of its own namespace): no record
		}
		why, want := record[e.Name]
		if err := c.syncRecordFinalizer(ctx, e, want, why); err != nil {
			return err
		}
	}
	if plan == nil {
		return nil
	}
	return c.pruneHistory(ctx, plan, execs)
}

// syncRecordFinalizer keeps FinalizerRecord on exec exactly while want, as syncFinalizer does
// FinalizerExecuted on a plan; an execution being deleted with it says why it waits.
func (c *Controller) syncRecordFinalizer(ctx context.Context, exec *drv1.DRPlanExecution, want bool, why string) error {
	has := slices.Contains(exec.Finalizers, drv1.FinalizerRecord)
	if exec.DeletionTimestamp != nil && want && has {
		c.event(exec, false, "DeletionBlocked", rules.RecordMessage(exec.Name, why))
		return nil
	}
	if want == has || (want && exec.DeletionTimestamp != nil) {
		return nil // a finalizer cannot be added to an object being deleted
	}
	finalizers := slices.DeleteFunc(slices.Clone(exec.Finalizers), func(f string) bool { return f == drv1.FinalizerRecord })
	if want {
		finalizers = append(finalizers, drv1.FinalizerRecord)
	}
	// The resourceVersion makes the patch conditional: another finalizer written meanwhile is
	// not lost (a conflict brings the newer object back here).
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": finalizers, "resourceVersion": exec.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = c.dr.DrV1alpha1().DRPlanExecutions(exec.Namespace).Patch(ctx, exec.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: actions.FieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
