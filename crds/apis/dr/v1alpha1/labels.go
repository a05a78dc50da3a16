package v1alpha1

// Labels, annotations, condition types and reasons that users and tools rely on.
const (
	// LabelPlan is set on every execution (and every object an action creates) to its plan's name.
	LabelPlan = GroupName + "/plan"
	// LabelExecution is set on every object an action creates to the execution's name.
	LabelExecution = GroupName + "/execution"

	// AnnotationTrigger on a plan starts an execution: execute, revert or cancel.
	AnnotationTrigger = GroupName + "/trigger"
	// AnnotationCancel=true on an execution cancels it.
	AnnotationCancel = GroupName + "/cancel"

	// ConditionReady is true when a workflow or plan can run.
	ConditionReady = "Ready"
	// ConditionParametersComplete is false when a plan leaves a required parameter without a
	// value; an execution may still supply it.
	ConditionParametersComplete = "ParametersComplete"
	// ConditionComplete is true once an execution has ended, however it ended.
	ConditionComplete = "Complete"
)
