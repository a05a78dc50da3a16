// Package admission is the validating admission webhook for DRWorkflow, DRPlan and
// DRPlanExecution: the decisions (decide.go), which apply package validation's static checks and
// the CEL rules, the HTTPS server and its certificates, and the webhook's registration.
package admission
