package admission

import (
	"context"
	"errors"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// The record of a failover cannot be lost (docs/execution.md): deleting an execution that is part
// of it (rules.Record) is refused while its plan is there without allow-delete. The controller's
// FinalizerRecord keeps the same executions where this webhook is down or bypassed.

// reviewDelete decides a DELETE of an execution. The controller's own (the history beyond a
// plan's limit, which never holds the record) are admitted.
func (w *Webhook) reviewDelete(ctx context.Context, req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) *admissionv1.AdmissionResponse {
	if isControllerUser(req.UserInfo, w.Controller, w.ControllerUID) {
		return resp
	}
	if st := w.starting(); st != nil {
		return refuse(resp, *st)
	}
	var exec drv1.DRPlanExecution
	if err := decode(req.OldObject.Raw, &exec); err != nil {
		return refuse(resp, decodeError(req, err))
	}
	decider := w.decider(ctx, req)
	return answer(resp, decider, decider.ExecutionDelete(&exec))
}

// ExecutionDelete admits deleting exec unless it is part of the record of its plan's failover
// (rules.Record), judged on exec as it is now among the plan's other executions, and the plan is
// there without AnnotationAllowDelete=true.
func (d *Decider) ExecutionDelete(exec *drv1.DRPlanExecution) Decision {
	if exec.Spec.PlanRef.NamespaceOr(exec.Namespace) != exec.Namespace {
		return Decision{} // it never ran (an execution runs a plan of its own namespace)
	}
	plan, ok := d.State.GetPlan(exec.Namespace, exec.Spec.PlanRef.Name)
	if !ok || plan.Annotations[drv1.AnnotationAllowDelete] == "true" {
		return Decision{}
	}
	execs, err := d.State.ExecutionsForPlan(plan.Namespace, plan.Name)
	if err != nil {
		return Decision{Err: apierrors.NewInternalError(err)}
	}
	execs = slices.DeleteFunc(slices.Clone(execs), func(e *drv1.DRPlanExecution) bool {
		return e.Namespace == exec.Namespace && e.Name == exec.Name
	})
	why, kept := rules.Record(plan.Name, append(execs, exec))[exec.Name]
	if !kept {
		return Decision{}
	}
	return Decision{Err: apierrors.NewForbidden(schema.GroupResource{Group: drv1.GroupName, Resource: "drplanexecutions"}, exec.Name,
		errors.New(rules.RecordMessage(exec.Name, why)))}
}
