package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=drp,categories=dr
// +kubebuilder:printcolumn:name="Stages",type=integer,JSONPath=`.status.stageCount`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Execution",type=string,JSONPath=`.status.currentExecution.name`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// DRPlan is a disaster-recovery runbook: stages of workflows, ordered by dependsOn, with the
// parameters they run with. Run it by creating a DRPlanExecution or by annotating the plan with
// dr.bkbcs.tencent.com/trigger=execute.
type DRPlan struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DRPlanSpec   `json:"spec"`
	Status DRPlanStatus `json:"status,omitempty"`
}

// DRPlanSpec declares the stages of a plan and their parameters.
// +kubebuilder:validation:XValidation:rule="has(self.workflowRef) != has(self.stages)",message="set exactly one of spec.workflowRef (a plan of one workflow) and spec.stages"
type DRPlanSpec struct {
	// Description says what the plan is for.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`

	// WorkflowRef is the shorthand for a plan of one stage running one workflow. Use stages
	// instead for more.
	// +optional
	WorkflowRef *ObjectReference `json:"workflowRef,omitempty"`

	// GlobalParams are passed to every workflow of the plan; a stage workflow's params and the
	// execution's params override them.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	GlobalParams []ParamValue `json:"globalParams,omitempty"`

	// FailurePolicy governs the plan's workflows and stages: Stop (default) starts no new workflow
	// or stage after a failure, lets workflows already running finish and ends the run Failed;
	// Continue runs everything it still can and ends the run Failed if anything failed.
	// +optional
	// +kubebuilder:default=Stop
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// Stages of the plan. A stage starts when every stage it dependsOn has succeeded.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	Stages []Stage `json:"stages,omitempty"`

	// ServiceAccountName, when set, is the ServiceAccount (in the plan's namespace) whose rights
	// every API side effect of this plan's executions is made with. Empty: the controller's own.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// ExecutionParams names parameters (of the plan's workflows) every execution must give in its
	// spec.params: a required parameter that neither its default nor the plan gives a value makes
	// the plan Invalid unless it is named here. The webhook refuses an Execute that does not give
	// each (and the execute trigger, which gives none); without it, the run fails at start.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=128
	ExecutionParams []string `json:"executionParams,omitempty"`

	// ExecutionHistoryLimit is how many finished executions of the plan are kept; older ones are
	// deleted, oldest first. Never counted, never deleted: the record of the failover (the Execute
	// in effect, a failed or cancelled Execute that took effect and is not reverted, the runs of
	// their retry chains), runs not finished, and the executions the plan's status names.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	ExecutionHistoryLimit *int32 `json:"executionHistoryLimit,omitempty"`
}

// ObjectReference names an object by name and namespace.
type ObjectReference struct {
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Namespace of the object; the referring object's namespace when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// ParamValue gives a parameter a value, written out or read from a Secret.
// +kubebuilder:validation:XValidation:rule="!(has(self.value) && has(self.valueFrom))",message="set value or valueFrom, not both"
type ParamValue struct {
	// Name of the parameter, as the workflow declares it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`

	// Value, as a string; it is converted to the parameter's declared type (int, bool or string).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`

	// ValueFrom reads the value from a Secret key in the plan's namespace, for passwords and
	// tokens. Such values are shown as (redacted) in status, events and logs.
	// +optional
	ValueFrom *ParamValueSource `json:"valueFrom,omitempty"`
}

// ParamValueSource is where a parameter's value comes from.
type ParamValueSource struct {
	// SecretKeyRef selects a key of a Secret in the plan's namespace.
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef"`
}

// SecretKeySelector selects a key of a Secret.
type SecretKeySelector struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// Stage is a step of a plan: one or more workflows run one after another, or all at once when
// parallel is true.
type Stage struct {
	// Name of the stage, unique in the plan.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Description says what the stage does.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`

	// DependsOn names the stages that must succeed before this one starts.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	DependsOn []string `json:"dependsOn,omitempty"`

	// Parallel runs the stage's workflows at once; otherwise they run in order.
	// +optional
	Parallel bool `json:"parallel,omitempty"`

	// When is a CEL guard evaluated when the stage would start; false skips the stage (its
	// dependents still run). It sees params (the plan's and the execution's values), stage,
	// stages, plan, execution, operation and now (docs/rules.md).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	When string `json:"when,omitempty"`

	// Workflows the stage runs. The same workflow may appear several times with other params.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	Workflows []StageWorkflow `json:"workflows"`
}

// StageWorkflow is one workflow of a stage with its parameters.
type StageWorkflow struct {
	// WorkflowRef names the DRWorkflow to run.
	WorkflowRef ObjectReference `json:"workflowRef"`

	// Params override the plan's globalParams for this workflow.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Params []ParamValue `json:"params,omitempty"`

	// When is a CEL guard evaluated when the workflow would start; false skips it. It sees
	// params (this workflow's values), workflow, stage, stages, plan, execution, operation and now.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	When string `json:"when,omitempty"`
}

// PlanPhase is the state of a plan.
// +kubebuilder:validation:Enum=Ready;Invalid;Executed
type PlanPhase string

const (
	// PlanReady: valid, and nothing executed that is not reverted.
	PlanReady PlanPhase = "Ready"
	// PlanInvalid: a referenced workflow is missing or invalid, or the stages are wrong.
	PlanInvalid PlanPhase = "Invalid"
	// PlanExecuted: an Execute took effect and is not reverted yet.
	PlanExecuted PlanPhase = "Executed"
)

// DRPlanStatus is what the controller knows of a plan.
type DRPlanStatus struct {
	// Phase: Ready, Invalid or Executed.
	// +optional
	Phase PlanPhase `json:"phase,omitempty"`

	// Message says why the plan is Invalid.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// StageCount is the number of stages (the STAGES column); 1 for the workflowRef shorthand.
	// +optional
	StageCount int32 `json:"stageCount,omitempty"`

	// CurrentExecution is the execution that holds the plan's lock, if any.
	// +optional
	CurrentExecution *ExecutionReference `json:"currentExecution,omitempty"`

	// LastSuccessfulExecution is the latest execution, Execute or Revert, that succeeded.
	// +optional
	LastSuccessfulExecution *ExecutionReference `json:"lastSuccessfulExecution,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (the plan can run), ParametersComplete (the plan alone gives every
	// parameter its value: false with reason RequiredParameterMissing when the plan is Invalid
	// for it, or ExecutionParams when spec.executionParams leaves values to each execution).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ExecutionReference points at a DRPlanExecution.
type ExecutionReference struct {
	// Name of the execution.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the execution.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// Operation of the execution: Execute or Revert.
	// +optional
	Operation Operation `json:"operation,omitempty"`
	// StartTime of the execution.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime of the execution.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:MaxLength=64
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// DRPlanList is a list of DRPlans.
type DRPlanList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DRPlan `json:"items"`
}
