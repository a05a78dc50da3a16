package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/validation"
)

// Condition reasons.
const (
	ReasonValid              = "Valid"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonWorkflowUnresolved = "WorkflowUnresolved"
	ReasonAllParametersSet   = "AllParametersSet"
	ReasonParameterMissing   = "RequiredParameterMissing"
	ReasonExecutionParams    = "ExecutionParams"
)

// maxMessage bounds status messages: status stays small whatever the user wrote.
const maxMessage = 1024

func (c *Controller) syncWorkflow(ctx context.Context, namespace, name string) error {
	wf, err := c.inf.WorkflowLister.DRWorkflows(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone: plans that referenced it were enqueued by the delete event
	}
	if err != nil {
		return err
	}
	status := workflowStatus(wf, validation.ValidateWorkflow(c.rules.Env, wf))
	if equality.Semantic.DeepEqual(wf.Status, status) {
		return nil
	}
	updated := wf.DeepCopy()
	updated.Status = status
	if _, err := updateStatus(ctx, c.dr.DrV1alpha1().DRWorkflows(namespace), updated); err != nil {
		return err // a conflict re-queues: the next sync reads the newer object from the cache
	}
	klog.FromContext(ctx).V(2).Info("Updated status", "phase", status.Phase)
	if wf.Status.Phase != status.Phase || wf.Status.Message != status.Message {
		c.event(wf, status.Phase == drv1.WorkflowReady, string(status.Phase), status.Message)
	}
	return nil
}

// workflowStatus is the status a workflow should have given its validation errors.
func workflowStatus(wf *drv1.DRWorkflow, errs field.ErrorList) drv1.DRWorkflowStatus {
	st := *wf.Status.DeepCopy()
	st.ObservedGeneration = wf.Generation
	st.ActionCount = int32(len(wf.Spec.Actions))
	cond := metav1.Condition{Type: drv1.ConditionReady, ObservedGeneration: wf.Generation}
	if len(errs) == 0 {
		st.Phase, st.Message = drv1.WorkflowReady, ""
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonValid, "The workflow is valid"
	} else {
		st.Phase, st.Message = drv1.WorkflowInvalid, truncate(joinErrors(errs))
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalidSpec, st.Message
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

func (c *Controller) syncPlan(ctx context.Context, namespace, name string) (err error) {
	plan, err := c.inf.PlanLister.DRPlans(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		execs, err := c.inf.ExecutionsForPlan(namespace, name)
		if err != nil {
			return err
		}
		return c.syncRecord(ctx, namespace, name, nil, execs) // gone: its executions are the record of nothing
	}
	if err != nil {
		return err
	}
	if acted, err := c.syncTrigger(ctx, plan); acted || err != nil {
		return err // the change brings the plan back here
	}
	execs, err := c.inf.ExecutionsForPlan(namespace, name)
	if err != nil {
		return err
	}
	// After the status, which must not wait for the webhook that admits these writes.
	defer func(plan *drv1.DRPlan) { err = errors.Join(err, c.syncRecord(ctx, namespace, name, plan, execs)) }(plan)
	isExecuted := executed(execs)
	// A failover still running is protected too: deleting its plan now would leave it
	// impossible to revert.
	running := slices.ContainsFunc(execs, func(e *drv1.DRPlanExecution) bool {
		return e.Spec.Operation == drv1.OperationExecute && !rules.ExecutionEnded(&e.Status)
	})
	if plan, err = c.syncFinalizer(ctx, plan, isExecuted || running); err != nil {
		return err
	}
	if plan.DeletionTimestamp != nil && len(plan.Finalizers) == 0 {
		return nil // let go of: it is gone
	}
	status := planStatus(plan, validation.ValidatePlan(c.rules.Env, plan, c.inf), isExecuted)
	if equality.Semantic.DeepEqual(plan.Status, status) {
		return nil
	}
	updated := plan.DeepCopy()
	updated.Status = status
	if _, err := updateStatus(ctx, c.dr.DrV1alpha1().DRPlans(namespace), updated); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Updated status", "phase", status.Phase)
	if plan.Status.Phase != status.Phase || plan.Status.Message != status.Message {
		c.event(plan, status.Phase != drv1.PlanInvalid, string(status.Phase), status.Message)
	}
	return nil
}

// syncFinalizer keeps FinalizerExecuted on a plan exactly while its failover is in effect and
// its deletion is not explicitly allowed. A plan being deleted with it says why it waits.
// It returns the plan as it is now.
func (c *Controller) syncFinalizer(ctx context.Context, plan *drv1.DRPlan, protect bool) (*drv1.DRPlan, error) {
	want := protect && plan.Annotations[drv1.AnnotationAllowDelete] != "true"
	has := slices.Contains(plan.Finalizers, drv1.FinalizerExecuted)
	if plan.DeletionTimestamp != nil && want && has {
		c.event(plan, false, "DeletionBlocked", fmt.Sprintf(
			"DRPlan %s has a failover in effect: revert it (kubectl annotate drplan %s %s=revert), or allow deleting it as it is (kubectl annotate drplan %s %s=true)",
			plan.Name, plan.Name, drv1.AnnotationTrigger, plan.Name, drv1.AnnotationAllowDelete))
		return plan, nil
	}
	if want == has || (want && plan.DeletionTimestamp != nil) {
		return plan, nil // a finalizer cannot be added to an object being deleted
	}
	updated := plan.DeepCopy()
	if want {
		updated.Finalizers = append(updated.Finalizers, drv1.FinalizerExecuted)
	} else {
		updated.Finalizers = slices.DeleteFunc(updated.Finalizers, func(f string) bool { return f == drv1.FinalizerExecuted })
	}
	after, err := c.dr.DrV1alpha1().DRPlans(plan.Namespace).Update(ctx, updated, metav1.UpdateOptions{FieldManager: actions.FieldManager})
	if apierrors.IsNotFound(err) && updated.DeletionTimestamp != nil {
		return updated, nil // the last finalizer went: the plan is gone
	}
	return after, err
}

// executed says whether some Execute of the plan is in effect: it took effect (succeeded, or
// ended after at least one action succeeded) and is not reverted yet.
func executed(execs []*drv1.DRPlanExecution) bool {
	return slices.ContainsFunc(execs, rules.InEffect)
}

// planStatus is the status a plan should have. Executed wins over Invalid: a plan whose failover
// is in effect must still show that it needs reverting, even if a workflow broke since; the Ready
// condition still says why it cannot run again.
func planStatus(plan *drv1.DRPlan, r validation.PlanReport, isExecuted bool) drv1.DRPlanStatus {
	st := *plan.Status.DeepCopy()
	st.ObservedGeneration = plan.Generation
	st.StageCount = int32(len(plan.Spec.EffectiveStages()))

	ready := metav1.Condition{Type: drv1.ConditionReady, ObservedGeneration: plan.Generation}
	var problems []string
	switch {
	case len(r.Errors) > 0:
		problems = append([]string{joinErrors(r.Errors)}, r.Unresolved...)
		ready.Reason = ReasonInvalidSpec
	case len(r.Unresolved) > 0:
		problems = r.Unresolved
		ready.Reason = ReasonWorkflowUnresolved
	}
	if len(problems) > 0 {
		st.Phase, st.Message = drv1.PlanInvalid, truncate(strings.Join(problems, "; "))
		ready.Status, ready.Message = metav1.ConditionFalse, st.Message
	} else {
		st.Phase, st.Message = drv1.PlanReady, ""
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, ReasonValid, "The plan and its workflows are valid"
	}
	if isExecuted {
		st.Phase = drv1.PlanExecuted
	}
	meta.SetStatusCondition(&st.Conditions, ready)

	meta.SetStatusCondition(&st.Conditions, paramsCondition(plan, r))
	return st
}

// paramsCondition is ParametersComplete: true when the plan alone gives every parameter its
// value, so an execution needs no spec.params (and the execute trigger can run it); false when a
// required parameter has no value (the plan is Invalid) or spec.executionParams leaves some to
// each execution (the plan is Ready).
func paramsCondition(plan *drv1.DRPlan, r validation.PlanReport) metav1.Condition {
	c := metav1.Condition{Type: drv1.ConditionParametersComplete, ObservedGeneration: plan.Generation, Status: metav1.ConditionFalse}
	switch {
	case len(r.MissingParams) > 0:
		c.Reason = ReasonParameterMissing
		c.Message = truncate("Required parameters without a value (give them one in the plan, or name them in spec.executionParams): " +
			joinStrings(r.MissingParams, ", "))
	case len(plan.Spec.ExecutionParams) > 0:
		c.Reason = ReasonExecutionParams
		c.Message = truncate("Every execution must give these in its spec.params (spec.executionParams): " +
			strings.Join(plan.Spec.ExecutionParams, ", "))
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, ReasonAllParametersSet, "Every required parameter has a value"
	}
	return c
}

func joinStrings[T fmt.Stringer](items []T, sep string) string {
	parts := make([]string, len(items))
	for i, x := range items {
		parts[i] = x.String()
	}
	return strings.Join(parts, sep)
}

func joinErrors(errs field.ErrorList) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// truncate cuts s to at most maxMessage bytes, on a rune boundary.
func truncate(s string) string {
	return drv1.TruncateText(s, maxMessage)
}

// event records a Normal event when ok, else a Warning.
func (c *Controller) event(obj object, ok bool, reason, message string) {
	if c.recorder == nil {
		return
	}
	kind := corev1.EventTypeNormal
	if !ok {
		kind = corev1.EventTypeWarning
	}
	if message == "" {
		message = fmt.Sprintf("%s is %s", obj.GetName(), reason)
	}
	c.recorder.Event(obj, kind, reason, message)
}

type object interface {
	runtime.Object
	metav1.Object
}
