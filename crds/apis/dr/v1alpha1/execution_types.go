package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=drpe;drexec,categories=dr
// +kubebuilder:printcolumn:name="Plan",type=string,JSONPath=`.spec.planRef.name`
// +kubebuilder:printcolumn:name="Operation",type=string,JSONPath=`.spec.operation`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Requester",type=string,JSONPath=`.metadata.annotations.dr\.bkbcs\.tencent\.com/requester`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// DRPlanExecution is one run of a DRPlan: Execute runs the plan's actions stage by stage, Revert
// undoes an earlier Execute in reverse order. Its spec cannot change once created.
type DRPlanExecution struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DRPlanExecutionSpec   `json:"spec"`
	Status DRPlanExecutionStatus `json:"status,omitempty"`
}

// DRPlanExecutionSpec says which plan to run and how.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable: create a new DRPlanExecution to run the plan again"
// +kubebuilder:validation:XValidation:rule="!has(self.revertExecutionRef) || self.operation == 'Revert'",message="revertExecutionRef is only for operation Revert"
// +kubebuilder:validation:XValidation:rule="!has(self.retryOf) || !has(self.params)",message="a retry runs with the parameters of the run it retries: to change them, Revert and Execute anew"
// +kubebuilder:validation:XValidation:rule="!has(self.retryOf) || !has(self.revertExecutionRef)",message="a retry of a Revert undoes what that Revert undid: leave revertExecutionRef out"
// +kubebuilder:validation:XValidation:rule="!has(self.skipActions) || has(self.retryOf)",message="skipActions is for a retry (spec.retryOf): a first run skips nothing"
type DRPlanExecutionSpec struct {
	// PlanRef names the plan to run.
	PlanRef ObjectReference `json:"planRef"`

	// Operation: Execute (default) runs the plan; Revert undoes an earlier Execute.
	// +optional
	// +kubebuilder:default=Execute
	Operation Operation `json:"operation,omitempty"`

	// RevertExecutionRef names the Execute (in this namespace) that a Revert undoes. Default: the
	// plan's latest Execute that is not reverted yet.
	// +optional
	RevertExecutionRef *LocalReference `json:"revertExecutionRef,omitempty"`

	// Params override every other value of these parameters for this run.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Params []ParamValue `json:"params,omitempty"`

	// RetryOf names an execution (in this namespace) of the same plan and operation that ended
	// Failed or Cancelled: this run goes on from where it stopped, with its snapshot, parameters
	// and identity. Actions that succeeded are carried over, not run again; objects it made are
	// adopted. Retry the latest run of a chain.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RetryOf string `json:"retryOf,omitempty"`

	// SkipActions, on a retry, names actions to mark done by hand instead of running them:
	// "<stage>/<workflowIndex>/<action>", or the action's name where it is unique in the plan.
	// A Revert does not undo them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=256
	SkipActions []string `json:"skipActions,omitempty"`

	// FailurePolicy overrides the plan's for this run: Stop starts nothing new after a failure;
	// Continue runs everything it still can. Default: the plan's for an Execute, Continue for a
	// Revert (undo as much as possible, and report every failure).
	// +optional
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`
}

// Operation is what an execution does.
// +kubebuilder:validation:Enum=Execute;Revert
type Operation string

const (
	OperationExecute Operation = "Execute"
	OperationRevert  Operation = "Revert"
)

// LocalReference names an object in the same namespace.
type LocalReference struct {
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// ExecutionPhase is the state of an execution.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Cancelled
type ExecutionPhase string

const (
	ExecutionPending   ExecutionPhase = "Pending"
	ExecutionRunning   ExecutionPhase = "Running"
	ExecutionSucceeded ExecutionPhase = "Succeeded"
	ExecutionFailed    ExecutionPhase = "Failed"
	ExecutionCancelled ExecutionPhase = "Cancelled"
)

// StepPhase is the state of a stage, a workflow or an action within an execution.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Skipped;Cancelled
type StepPhase string

const (
	StepPending   StepPhase = "Pending"
	StepRunning   StepPhase = "Running"
	StepSucceeded StepPhase = "Succeeded"
	StepFailed    StepPhase = "Failed"
	StepSkipped   StepPhase = "Skipped"
	StepCancelled StepPhase = "Cancelled"
)

// DRPlanExecutionStatus tells where a run is. Stage and workflow entries carry only their own
// state; each action's detail lives once, in actionStatuses.
type DRPlanExecutionStatus struct {
	// Phase: Pending, Running, Succeeded, Failed or Cancelled.
	// +optional
	Phase ExecutionPhase `json:"phase,omitempty"`

	// Message says why the run failed or is waiting.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Message string `json:"message,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// ResolvedParams is the snapshot of parameter values the run uses (secrets redacted). Values
	// that differ per workflow are in that workflow's entry of stageStatuses.
	// +optional
	// +kubebuilder:validation:MaxProperties=256
	ResolvedParams map[string]string `json:"resolvedParams,omitempty"`

	// StartTime is when the run took the plan's lock and started.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// CompletionTime is when the run ended.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// StageStatuses has one entry per stage, in plan order.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	StageStatuses []StageStatus `json:"stageStatuses,omitempty"`

	// ActionStatuses has one entry per action run, in order; stage and workflowIndex say where.
	// +optional
	// +kubebuilder:validation:MaxItems=2000
	ActionStatuses []ActionStatus `json:"actionStatuses,omitempty"`

	// Outputs are what the actions made: references to created objects and HTTP responses.
	// +optional
	// +kubebuilder:validation:MaxItems=2000
	Outputs []ActionOutput `json:"outputs,omitempty"`

	// Snapshot is the plan and workflows this run executes, fixed when it starts: editing them
	// later changes nothing for this run, and a Revert of it undoes exactly what it ran.
	// +optional
	Snapshot *ExecutionSnapshot `json:"snapshot,omitempty"`

	// Summary counts stages and workflows by state.
	// +optional
	Summary *ExecutionSummary `json:"summary,omitempty"`

	// RetriedBy names the execution (in this namespace) that retries this one; the Retried
	// condition says when.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RetriedBy string `json:"retriedBy,omitempty"`

	// RevertedBy names the Revert execution (in this namespace) that undid this Execute; the
	// Reverted condition says when.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RevertedBy string `json:"revertedBy,omitempty"`

	// Conditions: Complete (the run ended, however it ended), Succeeded, and Reverted on an
	// Execute that a Revert undid.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// StageStatus is the state of one stage.
type StageStatus struct {
	// Name of the stage.
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// Phase of the stage.
	// +optional
	Phase StepPhase `json:"phase,omitempty"`
	// Parallel is the stage's parallel setting.
	// +optional
	Parallel bool `json:"parallel,omitempty"`
	// DependsOn is the stage's dependsOn.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	DependsOn []string `json:"dependsOn,omitempty"`
	// StartTime of the stage.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime of the stage.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Duration of the stage, e.g. "40s".
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Duration string `json:"duration,omitempty"`
	// Message says why the stage failed or was skipped.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Message string `json:"message,omitempty"`
	// WorkflowExecutions has one entry per workflow of the stage, in order.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	WorkflowExecutions []WorkflowExecutionStatus `json:"workflowExecutions,omitempty"`
}

// WorkflowExecutionStatus is the state of one workflow of a stage.
type WorkflowExecutionStatus struct {
	// WorkflowRef names the workflow.
	WorkflowRef ObjectReference `json:"workflowRef"`
	// Phase of the workflow.
	// +optional
	Phase StepPhase `json:"phase,omitempty"`
	// StartTime of the workflow.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime of the workflow.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Duration of the workflow, e.g. "40s".
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Duration string `json:"duration,omitempty"`
	// Progress, e.g. "2/3 actions completed".
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Progress string `json:"progress,omitempty"`
	// CurrentAction is the action running now.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	CurrentAction string `json:"currentAction,omitempty"`
	// Message says why the workflow failed or was skipped.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Message string `json:"message,omitempty"`
	// ResolvedParams of this workflow, only where they differ from the execution's resolvedParams.
	// +optional
	// +kubebuilder:validation:MaxProperties=256
	ResolvedParams map[string]string `json:"resolvedParams,omitempty"`
}

// ActionStatus is the state of one action run.
type ActionStatus struct {
	// Name of the action.
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`
	// Stage the action belongs to.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Stage string `json:"stage,omitempty"`
	// WorkflowIndex is the position of the action's workflow in its stage.
	// +optional
	WorkflowIndex int32 `json:"workflowIndex,omitempty"`
	// Phase: Pending, Running, Succeeded, Failed or Skipped.
	// +optional
	Phase StepPhase `json:"phase,omitempty"`
	// StartTime of the action.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime of the action.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Message says what happened.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Message string `json:"message,omitempty"`
	// RetryCount is how many times the action was retried.
	// +optional
	RetryCount int32 `json:"retryCount,omitempty"`
	// MayHaveActed is set on an action that failed after it may have changed something: an HTTP
	// call interrupted, or that failed after its request was sent. A Revert undoes it as if it
	// had succeeded (its rollback runs).
	// +optional
	MayHaveActed bool `json:"mayHaveActed,omitempty"`
}

// ActionOutput is what one action made.
type ActionOutput struct {
	// ActionName is the action's name.
	// +kubebuilder:validation:MaxLength=128
	ActionName string `json:"actionName"`
	// Stage the action belongs to.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Stage string `json:"stage,omitempty"`
	// WorkflowIndex is the position of the action's workflow in its stage.
	// +optional
	WorkflowIndex int32 `json:"workflowIndex,omitempty"`
	// LocalizationRef is the Localization the action created or changed.
	// +optional
	LocalizationRef *ResourceReference `json:"localizationRef,omitempty"`
	// SubscriptionRef is the Subscription the action created or changed.
	// +optional
	SubscriptionRef *ResourceReference `json:"subscriptionRef,omitempty"`
	// JobRef is the Job the action created.
	// +optional
	JobRef *ResourceReference `json:"jobRef,omitempty"`
	// ResourceRef is the object the action created or changed.
	// +optional
	ResourceRef *ResourceReference `json:"resourceRef,omitempty"`
	// HTTPResponse is the response of the action's HTTP call.
	// +optional
	HTTPResponse *HTTPResponse `json:"httpResponse,omitempty"`
}

// ResourceReference identifies an object exactly.
type ResourceReference struct {
	// APIVersion of the object.
	// +optional
	// +kubebuilder:validation:MaxLength=320
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind of the object.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Kind string `json:"kind,omitempty"`
	// Name of the object.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the object.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// UID of the object, so that Revert deletes this very object and not a namesake.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	UID string `json:"uid,omitempty"`
}

// HTTPResponse is a recorded HTTP response.
type HTTPResponse struct {
	// StatusCode of the response.
	StatusCode int32 `json:"statusCode"`
	// Body of the response, truncated (to 1024 bytes and a marker).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Body string `json:"body,omitempty"`
}

// ExecutionSnapshot records what an execution runs.
type ExecutionSnapshot struct {
	// PlanGeneration is the plan's generation when the run started.
	PlanGeneration int64 `json:"planGeneration"`
	// PlanUID is the UID of the plan the run started from: a plan deleted and recreated since
	// is another plan.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	PlanUID string `json:"planUID,omitempty"`
	// Workflows are the workflows the run uses, with their generations: at most one per action.
	// +optional
	// +kubebuilder:validation:MaxItems=2000
	Workflows []SnapshotWorkflow `json:"workflows,omitempty"`
	// RevertOf, in a Revert, names the Execute (in this namespace) it undoes: the snapshot is
	// that execution's, and so is what the Revert undoes.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RevertOf string `json:"revertOf,omitempty"`
	// RunAs, in a retry, is the first run of its chain: the run renders its templates
	// (.executionName, .timestamp) and names and labels its objects as that run did.
	// +optional
	RunAs *ExecutionIdentity `json:"runAs,omitempty"`
	// Hash is the SHA-256 of the uncompressed data, in hex.
	// +kubebuilder:validation:MaxLength=64
	Hash string `json:"hash"`
	// Data is the plan's and the workflows' specs, as gzip-compressed JSON. Its bound, 3 MiB of
	// base64, is the API server's request limit: the object's own size bounds it first.
	// +kubebuilder:validation:MaxLength=3145728
	Data []byte `json:"data"`
}

// ExecutionIdentity is the execution a run acts as.
type ExecutionIdentity struct {
	// Name of the execution.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// UID of the execution.
	// +kubebuilder:validation:MaxLength=128
	UID string `json:"uid"`
	// StartTime of the execution: its templates' .timestamp.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	StartTime metav1.Time `json:"startTime"`
}

// SnapshotWorkflow names a workflow in a snapshot.
type SnapshotWorkflow struct {
	// Name of the workflow.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the workflow.
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Generation of the workflow when the run started.
	Generation int64 `json:"generation"`
}

// ExecutionSummary counts stages and workflows by state.
type ExecutionSummary struct {
	TotalStages        int32 `json:"totalStages"`
	CompletedStages    int32 `json:"completedStages"`
	RunningStages      int32 `json:"runningStages"`
	PendingStages      int32 `json:"pendingStages"`
	FailedStages       int32 `json:"failedStages"`
	TotalWorkflows     int32 `json:"totalWorkflows"`
	CompletedWorkflows int32 `json:"completedWorkflows"`
	RunningWorkflows   int32 `json:"runningWorkflows"`
	PendingWorkflows   int32 `json:"pendingWorkflows"`
	FailedWorkflows    int32 `json:"failedWorkflows"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// DRPlanExecutionList is a list of DRPlanExecutions.
type DRPlanExecutionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DRPlanExecution `json:"items"`
}
