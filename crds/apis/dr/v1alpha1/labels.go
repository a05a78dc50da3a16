package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Labels, annotations, condition types and reasons that users and tools rely on.
const (
	// LabelPlan is set on every execution (and every object an action creates) to its plan's name.
	LabelPlan = GroupName + "/plan"
	// LabelExecution is set on every object an action creates to the execution's name.
	LabelExecution = GroupName + "/execution"
	// LabelExecutionUID is set on every object an action creates to the execution's UID: a
	// namesake execution of a namesake plan in another namespace is another.
	LabelExecutionUID = GroupName + "/execution-uid"

	// AnnotationTrigger on a plan starts an execution: execute, revert or cancel.
	AnnotationTrigger = GroupName + "/trigger"
	// AnnotationCancel=true on an execution cancels it.
	AnnotationCancel = GroupName + "/cancel"
	// AnnotationTriggerPending on a plan is set by the controller while it turns a trigger into
	// an execution: "<operation>/<execution name>". It makes the trigger happen exactly once
	// across restarts, and counts as an execution in progress.
	AnnotationTriggerPending = GroupName + "/trigger-pending"
	// FinalizerExecuted keeps a plan whose failover is in effect (an Execute not reverted yet)
	// from being deleted, until it is reverted or AnnotationAllowDelete=true is set on it.
	FinalizerExecuted = GroupName + "/executed"
	// AnnotationAllowDelete=true on a plan lifts FinalizerExecuted: the plan may be deleted with
	// its failover still in effect.
	AnnotationAllowDelete = GroupName + "/allow-delete"

	// ConditionReady is true when a workflow or plan can run.
	ConditionReady = "Ready"
	// ConditionParametersComplete is true when a plan alone gives every parameter its value; false
	// when it leaves a required one without a value (the plan is Invalid) or names some in
	// spec.executionParams (each execution gives them).
	ConditionParametersComplete = "ParametersComplete"
	// ConditionComplete is true once an execution has ended, however it ended.
	ConditionComplete = "Complete"
	// ConditionReverted is true on an Execute that a Revert undid (status.revertedBy names it).
	ConditionReverted = "Reverted"
	// ConditionRetried is true on a run that a later execution retries (status.retriedBy names it).
	ConditionRetried = "Retried"
	// FinalizerRecord keeps an execution that is part of the record of a failover (the Execute in
	// effect, the runs of its retry chain, a run that left objects behind) until its plan is gone,
	// reverted, or carries AnnotationAllowDelete=true.
	FinalizerRecord = GroupName + "/record"
)

// LabelValue turns an object name into a label value: names longer than a label value may be (63
// characters) keep their first 52 characters and get a hash of the whole name, so that two long
// names never share a value.
func LabelValue(name string) string {
	const maxLen = 63
	if len(name) <= maxLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:52], "-.") + "-" + hex.EncodeToString(sum[:])[:10]
}

// MadeBy says whether an object's labels say it was made by the execution named name, with uid,
// of the plan named plan. An object made before the UID label was set is judged by the names.
func MadeBy(labels map[string]string, name, uid, plan string) bool {
	if labels[LabelExecution] != LabelValue(name) || labels[LabelPlan] != LabelValue(plan) {
		return false
	}
	got, ok := labels[LabelExecutionUID]
	return !ok || uid == "" || got == uid
}
