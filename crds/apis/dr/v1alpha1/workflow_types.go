package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=drwf,categories=dr
// +kubebuilder:printcolumn:name="Actions",type=integer,JSONPath=`.status.actionCount`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// DRWorkflow is a reusable, parameterised list of actions that a DRPlan runs in one of its stages.
type DRWorkflow struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DRWorkflowSpec   `json:"spec"`
	Status DRWorkflowStatus `json:"status,omitempty"`
}

// DRWorkflowSpec declares a workflow's parameters and its ordered actions.
type DRWorkflowSpec struct {
	// Description says what the workflow does.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`

	// Parameters the workflow's templates may use as {{ .params.<name> }}. Values come, from lowest to
	// highest precedence, from a parameter's default, the plan's globalParams, the stage workflow's
	// params and the execution's params.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=256
	Parameters []Parameter `json:"parameters,omitempty"`

	// FailurePolicy governs the workflow's actions: Stop (default) ends the workflow at the first
	// failed action; Continue runs the remaining actions and still reports the workflow Failed.
	// +optional
	// +kubebuilder:default=Stop
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// Actions run in order. Revert undoes them in reverse order.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=200
	Actions []Action `json:"actions"`
}

// FailurePolicy says what happens after a failure.
// +kubebuilder:validation:Enum=Stop;Continue
type FailurePolicy string

const (
	// FailurePolicyStop stops at the first failure.
	FailurePolicyStop FailurePolicy = "Stop"
	// FailurePolicyContinue keeps going after a failure; the run still ends Failed.
	FailurePolicyContinue FailurePolicy = "Continue"
)

// ParameterType is the declared type of a workflow parameter.
// +kubebuilder:validation:Enum=string;int;bool
type ParameterType string

const (
	ParameterTypeString ParameterType = "string"
	ParameterTypeInt    ParameterType = "int"
	ParameterTypeBool   ParameterType = "bool"
)

// Parameter declares one input of a workflow.
type Parameter struct {
	// Name is how templates refer to the parameter: {{ .params.<name> }}.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// Type of the value: string (default), int or bool. Values are checked and converted to it.
	// +optional
	// +kubebuilder:default=string
	Type ParameterType `json:"type,omitempty"`

	// Required parameters must get a value from a default, the plan or the execution.
	// +optional
	Required bool `json:"required,omitempty"`

	// Default is used when nobody supplies a value. Any scalar (3, "3306", true, a URL) is accepted
	// when it converts to the declared type.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:pruning:PreserveUnknownFields
	Default *apiextensionsv1.JSON `json:"default,omitempty"`

	// Description says what the parameter is for.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Description string `json:"description,omitempty"`
}

// Action is one named step of a workflow, with an optional rollback that Revert runs instead of the
// automatic undo.
// +kubebuilder:validation:XValidation:rule="!has(self.localization) || self.localization.operation != 'Patch' || has(self.rollback)",message="a Localization Patch needs an explicit rollback: Revert cannot undo a patch by itself"
// +kubebuilder:validation:XValidation:rule="!has(self.subscription) || self.subscription.operation != 'Patch' || has(self.rollback)",message="a Subscription Patch needs an explicit rollback: Revert cannot undo a patch by itself"
// +kubebuilder:validation:XValidation:rule="!has(self.resource) || !(self.resource.operation in ['Patch', 'Apply']) || has(self.rollback)",message="a KubernetesResource Patch or Apply needs an explicit rollback: Revert cannot undo it by itself"
// +kubebuilder:validation:XValidation:rule="!has(self.waitFor) || self.type == 'Job' || (self.type == 'KubernetesResource' && has(self.resource) && self.resource.operation != 'Delete') || (self.type == 'Localization' && has(self.localization) && self.localization.operation != 'Delete') || (self.type == 'Subscription' && has(self.subscription) && self.subscription.operation != 'Delete')",message="waitFor is for actions that make or change an object (KubernetesResource, Job, Localization, Subscription; not a Delete or an HTTP call)"
type Action struct {
	// Name identifies the action in status, events and outputs; unique within the workflow.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Name string `json:"name"`

	// When is a CEL guard evaluated when the action would start; false skips it. It sees params,
	// actions (earlier actions of the workflow by name: phase, message, outputs), workflow, stage,
	// stages, plan, execution, operation and now (docs/rules.md).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	When string `json:"when,omitempty"`

	ActionBody `json:",inline"`

	// WaitFor holds a KubernetesResource action, after its operation succeeded, until a condition
	// over the object it made or changed is true.
	// +optional
	WaitFor *WaitFor `json:"waitFor,omitempty"`

	// Rollback is what Revert runs for this action. Without it, Revert deletes what a Create made
	// and skips HTTP calls and Deletes; Patch and Apply must define one.
	// +optional
	Rollback *RollbackAction `json:"rollback,omitempty"`
}

// WaitFor is a condition to wait for on the object an action made or changed.
type WaitFor struct {
	// Condition is a CEL expression over object (the object as the API server returns it) and
	// params, re-evaluated each time the object changes: "object.status.readyReplicas >= params.replicas".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Condition string `json:"condition"`

	// Timeout after which the action fails if the condition is still false.
	// +optional
	// +kubebuilder:default="5m"
	Timeout Duration `json:"timeout,omitempty"`
}

// RollbackAction is an action body run by Revert: no name of its own, no nested rollback.
type RollbackAction struct {
	ActionBody `json:",inline"`
}

// ActionBody is what an action does: its type and the one configuration block of that type.
// +kubebuilder:validation:XValidation:rule="self.type != 'HTTP' || has(self.http)",message="type HTTP needs an http block"
// +kubebuilder:validation:XValidation:rule="self.type != 'Job' || has(self.job)",message="type Job needs a job block"
// +kubebuilder:validation:XValidation:rule="self.type != 'Localization' || has(self.localization)",message="type Localization needs a localization block"
// +kubebuilder:validation:XValidation:rule="self.type != 'Subscription' || has(self.subscription)",message="type Subscription needs a subscription block"
// +kubebuilder:validation:XValidation:rule="self.type != 'KubernetesResource' || has(self.resource)",message="type KubernetesResource needs a resource block"
// +kubebuilder:validation:XValidation:rule="[has(self.http), has(self.job), has(self.localization), has(self.subscription), has(self.resource)].filter(b, b).size() <= 1",message="set only the block of the action's type (http, job, localization, subscription or resource), not several"
type ActionBody struct {
	// Type of the action; the block of the same name (http, job, localization, subscription, or
	// resource for KubernetesResource) configures it.
	Type ActionType `json:"type"`

	// HTTP calls an external endpoint.
	// +optional
	HTTP *HTTPAction `json:"http,omitempty"`

	// Job creates a Kubernetes Job and waits for it to finish.
	// +optional
	Job *JobAction `json:"job,omitempty"`

	// Localization creates, patches or deletes a Clusternet Localization.
	// +optional
	Localization *LocalizationAction `json:"localization,omitempty"`

	// Subscription creates, patches or deletes a Clusternet Subscription.
	// +optional
	Subscription *SubscriptionAction `json:"subscription,omitempty"`

	// Resource creates, applies, patches or deletes any Kubernetes object from a manifest.
	// +optional
	Resource *ResourceAction `json:"resource,omitempty"`
}

// ActionType names what an action does.
// +kubebuilder:validation:Enum=HTTP;Job;Localization;Subscription;KubernetesResource
type ActionType string

const (
	ActionTypeHTTP               ActionType = "HTTP"
	ActionTypeJob                ActionType = "Job"
	ActionTypeLocalization       ActionType = "Localization"
	ActionTypeSubscription       ActionType = "Subscription"
	ActionTypeKubernetesResource ActionType = "KubernetesResource"
)

// HTTPAction calls an HTTP endpoint. Every string field is a template.
type HTTPAction struct {
	// URL to call.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=8192
	URL string `json:"url"`

	// Method of the request.
	// +optional
	// +kubebuilder:default=POST
	// +kubebuilder:validation:Enum=GET;POST;PUT;PATCH;DELETE;HEAD
	Method string `json:"method,omitempty"`

	// Headers to send.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 256 && size(self[k]) <= 8192)",message="a header name must be at most 256 characters and a value at most 8192"
	Headers map[string]string `json:"headers,omitempty"`

	// Body to send.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	Body string `json:"body,omitempty"`

	// Timeout of one request, as a duration ("30s", "2m").
	// +optional
	// +kubebuilder:default="30s"
	Timeout Duration `json:"timeout,omitempty"`

	// ExpectedStatusCodes the call must answer with; any 2xx when empty.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Minimum=100
	// +kubebuilder:validation:items:Maximum=599
	ExpectedStatusCodes []int32 `json:"expectedStatusCodes,omitempty"`

	// SuccessCondition, a CEL expression over response (code, headers, body, and json when the
	// body is JSON), decides whether the call succeeded, instead of expectedStatusCodes:
	// "response.code == 200 && response.json.status == 'ready'".
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	SuccessCondition string `json:"successCondition,omitempty"`

	// Retry retries a call that failed to connect, timed out, or answered 429 or 5xx. Without it
	// a call is made once: an HTTP call is not assumed to be safe to repeat.
	// +optional
	Retry *HTTPRetry `json:"retry,omitempty"`
}

// HTTPRetry says how often and how fast to retry a failed HTTP call.
type HTTPRetry struct {
	// Limit is the number of retries after the first attempt.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=20
	Limit int32 `json:"limit"`

	// Interval before the first retry.
	// +optional
	// +kubebuilder:default="1s"
	Interval Duration `json:"interval,omitempty"`

	// BackoffFactor multiplies the interval after each retry.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	BackoffFactor int32 `json:"backoffFactor,omitempty"`

	// MaxInterval caps the interval between retries.
	// +optional
	// +kubebuilder:default="30s"
	MaxInterval Duration `json:"maxInterval,omitempty"`
}

// JobAction creates a Job and waits for it to complete or fail.
// +kubebuilder:validation:XValidation:rule="has(self.name) != has(self.generateName)",message="set exactly one of name and generateName"
type JobAction struct {
	// Namespace of the Job.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Namespace string `json:"namespace"`

	// Name of the Job.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// GenerateName is a name prefix; the suffix is fixed per execution and action so a retry or a
	// controller restart finds the Job it made instead of making a second one.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	GenerateName string `json:"generateName,omitempty"`

	// Template is the Job's pod template (metadata and spec, as in a Job's spec.template).
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Template runtime.RawExtension `json:"template"`

	// BackoffLimit is the Job's number of retries before it is Failed.
	// +optional
	// +kubebuilder:validation:Minimum=0
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`

	// Timeout after which an unfinished Job is deleted and the action fails, as a duration
	// ("600s", "10m"). Empty: no timeout.
	// +optional
	Timeout Duration `json:"timeout,omitempty"`
}

// Duration is a Go duration string such as 30s, 5m or 1h30m. It is kept as text so that a typo is
// refused by the API server with a clear message instead of breaking every client's decoding.
// Every Duration is an action's timing (a timeout, a retry interval), at most MaxActionDuration
// (24h); a field that needs another bound needs another type.
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$')",message="must be a duration such as 30s, 5m or 1h30m"
// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || duration(self) <= duration('24h')",message="must be at most 24h"
type Duration string

// ResourceOperation is what to do with a Kubernetes object.
// +kubebuilder:validation:Enum=Create;Apply;Patch;Delete
type ResourceOperation string

const (
	OperationCreate ResourceOperation = "Create"
	OperationApply  ResourceOperation = "Apply"
	OperationPatch  ResourceOperation = "Patch"
	OperationDelete ResourceOperation = "Delete"
)

// ClusternetOperation is what to do with a Clusternet object.
// +kubebuilder:validation:Enum=Create;Patch;Delete
type ClusternetOperation string

// LocalizationAction manages a Clusternet Localization (apps.clusternet.io/v1alpha1), which
// customises the resources distributed to one ManagedCluster.
type LocalizationAction struct {
	// Operation: Create (Revert deletes it), Patch (needs a rollback) or Delete (not undone).
	Operation ClusternetOperation `json:"operation"`

	// Name of the Localization.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Namespace of the Localization: the ManagedCluster's namespace (clusternet-xxxxx).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Namespace string `json:"namespace,omitempty"`

	// ClusterNamespace is an older spelling of namespace, accepted for the guide's parameterised
	// example. Use namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterNamespace string `json:"clusterNamespace,omitempty"`

	// Priority orders several Localizations of one feed; higher wins.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Priority *int32 `json:"priority,omitempty"`

	// OverridePolicy: ApplyNow or ApplyLater (Clusternet's default).
	// +optional
	// +kubebuilder:validation:Enum=ApplyNow;ApplyLater
	OverridePolicy string `json:"overridePolicy,omitempty"`

	// Feed is the resource the Localization customises.
	// +optional
	Feed *Feed `json:"feed,omitempty"`

	// Overrides to apply to the feed. A Create makes the Localization with these. A Patch
	// changes only the overrides it names, by name, and keeps the Localization's others: an
	// override of a name the Localization has replaces it in its place, a new one is added at the
	// end, and one with remove: true takes the Localization's override of that name away. Every
	// override of a Patch needs a name, once.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Overrides []Override `json:"overrides,omitempty"`
}

// Feed refers to a resource on the hub cluster.
type Feed struct {
	// APIVersion of the resource, e.g. apps/v1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=320
	APIVersion string `json:"apiVersion"`
	// Kind of the resource, e.g. Deployment.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Kind string `json:"kind"`
	// Name of the resource.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the resource; empty for cluster-scoped resources.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Namespace string `json:"namespace,omitempty"`
}

// Override is one Clusternet override: a JSON patch, a merge patch or Helm values; or, in a
// Patch, the removal of the Localization's override of that name (remove: true).
type Override struct {
	// Name of the override: how a Patch finds the Localization's override to replace or remove.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// Remove, in a Patch, takes the Localization's override of this name away (if it has none,
	// there is nothing to do). Such an entry has only name and remove: a rollback removes with
	// it an override its action added.
	// +optional
	Remove bool `json:"remove,omitempty"`

	// Type of the patch in value.
	// +optional
	// +kubebuilder:validation:Enum=JSONPatch;MergePatch;Helm
	Type string `json:"type,omitempty"`

	// Value is the patch, as YAML or JSON text.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	Value string `json:"value,omitempty"`

	// Path is the shorthand of the guide's parameterised example: with path and value and no type,
	// the override replaces the value at this JSON pointer.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Path string `json:"path,omitempty"`
}

// SubscriptionAction manages a Clusternet Subscription (apps.clusternet.io/v1alpha1), which
// distributes feeds to the clusters its subscribers select.
type SubscriptionAction struct {
	// Operation: Create (Revert deletes it), Patch (needs a rollback) or Delete (not undone).
	Operation ClusternetOperation `json:"operation"`

	// Name of the Subscription.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// Namespace of the Subscription.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Namespace string `json:"namespace,omitempty"`

	// SchedulingStrategy: Replication copies the feeds to every selected cluster; Dividing splits
	// replicas between them.
	// +optional
	// +kubebuilder:validation:Enum=Replication;Dividing
	SchedulingStrategy string `json:"schedulingStrategy,omitempty"`

	// DividingScheduling configures the Dividing strategy (Clusternet's dividingScheduling).
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	DividingScheduling *runtime.RawExtension `json:"dividingScheduling,omitempty"`

	// Feeds are the resources to distribute.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Feeds []Feed `json:"feeds,omitempty"`

	// Subscribers select the target clusters.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Subscribers []Subscriber `json:"subscribers,omitempty"`
}

// Subscriber selects clusters by label.
type Subscriber struct {
	// ClusterAffinity selects ManagedClusters by their labels.
	ClusterAffinity *metav1.LabelSelector `json:"clusterAffinity"`

	// Weight of these clusters under the Dividing strategy.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Weight int32 `json:"weight,omitempty"`
}

// ResourceAction creates, applies, patches or deletes any object the API server knows.
type ResourceAction struct {
	// Operation: Create (Revert deletes it), Apply (server-side apply; needs a rollback), Patch
	// (merge patch; needs a rollback) or Delete (already gone counts as done; not undone).
	Operation ResourceOperation `json:"operation"`

	// Manifest is one object as YAML (a template), with apiVersion, kind and metadata.name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=262144
	Manifest string `json:"manifest"`
}

// WorkflowPhase is a workflow's validity.
// +kubebuilder:validation:Enum=Ready;Invalid
type WorkflowPhase string

const (
	WorkflowReady   WorkflowPhase = "Ready"
	WorkflowInvalid WorkflowPhase = "Invalid"
)

// DRWorkflowStatus says whether the workflow is usable.
type DRWorkflowStatus struct {
	// Phase is Ready or Invalid.
	// +optional
	Phase WorkflowPhase `json:"phase,omitempty"`

	// Message says why the workflow is Invalid.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// ActionCount is the number of actions (the ACTIONS column).
	// +optional
	ActionCount int32 `json:"actionCount,omitempty"`

	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true

// DRWorkflowList is a list of DRWorkflows.
type DRWorkflowList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DRWorkflow `json:"items"`
}
