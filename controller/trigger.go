package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// syncTrigger carries out the plan annotation dr.bkbcs.tencent.com/trigger. execute and revert
// create an execution, exactly once even across a restart: the trigger is first swapped for a
// pending marker naming the execution (one write, on the plan as it was read), then the
// execution is created under that name, then the marker is removed. cancel marks the plan's
// running executions cancelled. The trigger is cleared either way, so the next annotate is a new
// request (and meets the webhook's refusal while one is in progress).
//
// It reports whether it changed the plan (its next sync sees the change).
func (c *Controller) syncTrigger(ctx context.Context, plan *drv1.DRPlan) (bool, error) {
	if plan.DeletionTimestamp != nil && plan.Annotations[drv1.AnnotationTrigger] == "execute" {
		// A plan being deleted may still be reverted or cancelled (its deletion waits for the
		// revert), not executed.
		c.event(plan, false, "TriggerRefused", "Ignored "+drv1.AnnotationTrigger+"=execute: the plan is being deleted")
		return true, c.clearTrigger(ctx, plan)
	}
	if pending := plan.Annotations[drv1.AnnotationTriggerPending]; pending != "" {
		return true, c.createTriggered(ctx, plan, pending)
	}
	trigger := plan.Annotations[drv1.AnnotationTrigger]
	switch trigger {
	case "":
		return false, nil
	case "execute", "revert", "cancel":
	default:
		c.event(plan, false, "UnknownTrigger", fmt.Sprintf("Ignored %s=%q: use execute, revert or cancel", drv1.AnnotationTrigger, trigger))
		return true, c.clearTrigger(ctx, plan)
	}
	requester, err := drv1.ParseRequester(plan.Annotations[drv1.AnnotationRequester])
	if err == nil && !c.policy().Recorded(plan.Namespace) {
		err = fmt.Errorf("the webhooks are not called in namespace %s", plan.Namespace)
	}
	if err != nil {
		c.event(plan, false, "TriggerRefused", fmt.Sprintf("Ignored %s=%s: %s", drv1.AnnotationTrigger, trigger, drv1.NoRequesterMessage))
		klog.FromContext(ctx).Info("A trigger without a requester record is ignored", "trigger", trigger, "err", err)
		return true, c.clearTrigger(ctx, plan)
	}
	if trigger == "cancel" {
		return true, c.cancelTriggered(ctx, plan, requester)
	}
	op := drv1.OperationExecute
	if trigger == "revert" {
		op = drv1.OperationRevert
	}
	name := triggeredName(plan.Name, trigger, c.now().UTC().Format("20060102-150405"))
	pending := string(op) + "/" + name
	// The requester moves with the trigger: a newer trigger cannot change whose execution it is.
	plan, err = c.patchAnnotations(ctx, plan, map[string]any{drv1.AnnotationTrigger: nil, drv1.AnnotationRequester: nil,
		drv1.AnnotationTriggerPending: pending, drv1.AnnotationTriggerPendingRequester: requester.Encode()})
	if err != nil {
		return false, err
	}
	return true, c.createTriggered(ctx, plan, pending)
}

// clearTrigger removes the plan's trigger and its requester record.
func (c *Controller) clearTrigger(ctx context.Context, plan *drv1.DRPlan) error {
	_, err := c.patchAnnotations(ctx, plan, map[string]any{drv1.AnnotationTrigger: nil, drv1.AnnotationRequester: nil})
	return err
}

// triggeredName is "<plan>-<operation>-<time>", cut to fit a name.
func triggeredName(plan, op, at string) string {
	suffix := "-" + op + "-" + at
	if len(plan)+len(suffix) > 253 {
		plan = plan[:253-len(suffix)]
	}
	return plan + suffix
}

// createTriggered creates the execution a pending marker names, with the trigger's requester,
// then removes the marker.
func (c *Controller) createTriggered(ctx context.Context, plan *drv1.DRPlan, pending string) error {
	clear := map[string]any{drv1.AnnotationTriggerPending: nil, drv1.AnnotationTriggerPendingRequester: nil}
	op, name, ok := strings.Cut(pending, "/")
	if !ok {
		_, err := c.patchAnnotations(ctx, plan, clear)
		return err
	}
	requester := plan.Annotations[drv1.AnnotationTriggerPendingRequester]
	who, err := drv1.ParseRequester(requester)
	if err != nil {
		// A marker from before requesters were recorded, or written by hand.
		c.event(plan, false, "TriggerRefused", fmt.Sprintf("Did not create DRPlanExecution %s (%s): %s", name, op, drv1.NoRequesterMessage))
		_, err := c.patchAnnotations(ctx, plan, clear)
		return err
	}
	token := string(plan.UID) + "/" + pending
	exec := &drv1.DRPlanExecution{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: plan.Namespace, Labels: map[string]string{drv1.LabelPlan: drv1.LabelValue(plan.Name)},
			Annotations: map[string]string{drv1.AnnotationTriggerToken: token, drv1.AnnotationRequester: requester}},
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: plan.Name}, Operation: drv1.Operation(op)},
	}
	_, err = c.dr.DrV1alpha1().DRPlanExecutions(plan.Namespace).Create(ctx, exec, metav1.CreateOptions{FieldManager: actions.FieldManager})
	switch {
	case err == nil:
		c.event(plan, true, "ExecutionCreated", fmt.Sprintf("Created DRPlanExecution %s (%s) for %s, requested by %s", name, op, drv1.AnnotationTrigger, who.Username))
	case apierrors.IsAlreadyExists(err):
		// Created by this very trigger before a restart: done. Anyone else's is a refusal: the
		// token is the controller's alone (the webhook says so), and the requester must be the
		// trigger's too, so that an execution someone else created cannot absorb the trigger.
		existing, getErr := c.dr.DrV1alpha1().DRPlanExecutions(plan.Namespace).Get(ctx, name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if by, ok := drv1.RequesterOf(existing.Annotations); existing.Annotations[drv1.AnnotationTriggerToken] != token || !ok || !by.Equal(who) {
			c.event(plan, false, "TriggerRefused", fmt.Sprintf("%s=%s: an execution named %s exists already; annotate again in a second",
				drv1.AnnotationTrigger, strings.ToLower(op), name))
		}
	case apierrors.IsInvalid(err) || apierrors.IsConflict(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err):
		// Refused (by the webhook, the schema or RBAC): say why; the trigger is spent.
		c.event(plan, false, "TriggerRefused", fmt.Sprintf("%s=%s: %v", drv1.AnnotationTrigger, strings.ToLower(op), err))
	default:
		return err
	}
	_, err = c.patchAnnotations(ctx, plan, clear)
	return err
}

// cancelTriggered marks the plan's executions in progress cancelled, recording the trigger's
// requester in their decisions, then clears the trigger.
func (c *Controller) cancelTriggered(ctx context.Context, plan *drv1.DRPlan, requester drv1.Requester) error {
	// Read live: an execution created a moment ago (an execute trigger just before this
	// cancel) may not be in the cache yet, and must be cancelled too.
	list, err := c.dr.DrV1alpha1().DRPlanExecutions(plan.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var cancelled []string
	for i := range list.Items {
		e := &list.Items[i]
		if e.Spec.PlanRef.Name != plan.Name || e.Spec.PlanRef.NamespaceOr(e.Namespace) != plan.Namespace {
			continue
		}
		if rules.ExecutionEnded(&e.Status) || e.Annotations[drv1.AnnotationCancel] == "true" {
			continue
		}
		err := c.mayCancel(ctx, requester, plan, e.Name)
		if err == nil {
			err = c.recordCancel(ctx, e, requester)
		}
		switch {
		case access.IsRefused(err):
			c.event(plan, false, "TriggerRefused", fmt.Sprintf("%s=cancel: not cancelling %s: %v", drv1.AnnotationTrigger, e.Name, err))
			continue
		case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
			c.event(plan, false, "TriggerRefused", fmt.Sprintf("%s=cancel: could not cancel %s: %v", drv1.AnnotationTrigger, e.Name, err))
			continue
		case err != nil && !apierrors.IsNotFound(err):
			return err
		}
		cancelled = append(cancelled, e.Name)
	}
	if len(cancelled) == 0 {
		c.event(plan, true, "NothingToCancel", "No execution of the plan is in progress; cleared "+drv1.AnnotationTrigger+"=cancel")
	} else {
		c.event(plan, true, "CancelRequested", fmt.Sprintf("Cancelling %s for %s", strings.Join(cancelled, ", "), requester.Username))
	}
	return c.clearTrigger(ctx, plan)
}

// recordCancel sets the cancel annotation of the execution as it was read, with the decision
// that the requester asked for it appended to its decisions list (the controller acts on that).
func (c *Controller) recordCancel(ctx context.Context, e *drv1.DRPlanExecution, requester drv1.Requester) error {
	decisions, err := drv1.ParseDecisions(e.Annotations[drv1.AnnotationDecisions])
	if err != nil {
		return apierrors.NewForbidden(drv1.Resource("drplanexecutions"), e.Name, err)
	}
	decisions = append(decisions, drv1.Decision{User: requester, Annotation: drv1.AnnotationCancel, Value: "true",
		Time: metav1.NewTime(c.now().UTC().Truncate(time.Second))})
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": e.ResourceVersion,
		"annotations": map[string]any{drv1.AnnotationCancel: "true", drv1.AnnotationDecisions: drv1.EncodeDecisions(decisions)}}})
	if err != nil {
		return err
	}
	_, err = c.dr.DrV1alpha1().DRPlanExecutions(e.Namespace).Patch(ctx, e.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: actions.FieldManager})
	return err
}

// patchAnnotations sets (or, for nil, removes) annotations of the plan as it was read: a plan
// changed since is a conflict, and the sync runs again on the new one.
func (c *Controller) patchAnnotations(ctx context.Context, plan *drv1.DRPlan, annotations map[string]any) (*drv1.DRPlan, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": plan.ResourceVersion, "annotations": annotations}})
	if err != nil {
		return nil, err
	}
	updated, err := c.dr.DrV1alpha1().DRPlans(plan.Namespace).Patch(ctx, plan.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: actions.FieldManager})
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Updating the plan's trigger annotations failed; will retry", "err", err)
		return nil, err
	}
	return updated, nil
}
