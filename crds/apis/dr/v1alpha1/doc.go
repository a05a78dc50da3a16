// Package v1alpha1 holds the API of drplan-controller: DRWorkflow (a reusable, parameterised list
// of actions), DRPlan (stages of workflows forming a DAG) and DRPlanExecution (one run of a plan,
// Execute or Revert).
//
// +k8s:deepcopy-gen=package
// +groupName=dr.bkbcs.tencent.com
package v1alpha1
