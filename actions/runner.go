package actions

import (
	"context"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Request is one rendered action to run for an execution: every template in Body has been
// rendered already.
type Request struct {
	// Body is the action to run (or the rollback to run, on Revert).
	Body drv1.ActionBody
	// Execution is the run the action belongs to.
	Execution ExecutionRef
	// ActionID identifies the action within the execution, stably across retries and controller
	// restarts ("<stage>/<workflow index>/<action name>"); runners derive deterministic names
	// from it.
	ActionID string
	// ServiceAccount, when set ("namespace/name"), is impersonated for every API call the action
	// makes; empty means the controller's own identity.
	ServiceAccount string
	// Redact, when set, scrubs the run's Secret-sourced values from what the action reports of
	// what it received (an HTTP response's body), before that is cut to size: no part of a secret
	// survives a cut.
	Redact *strings.Replacer
}

// ExecutionRef names the execution an action runs for; runners label what they create with it.
type ExecutionRef struct {
	Namespace string
	Name      string
	UID       types.UID
	PlanName  string
}

// Result is what a finished action reports. Runners return an error for a failed action; its
// text becomes the action's message ("Action 'x' failed: <error>").
type Result struct {
	// Message says what happened, e.g. "HTTP request completed with status 200".
	Message string
	// Retries is how many times the action was retried before this result.
	Retries int32
	// HTTPResponse is set by HTTP actions.
	HTTPResponse *drv1.HTTPResponse
	// ResourceRef is set by actions that create, change or delete an object.
	ResourceRef *drv1.ResourceReference
	// MayHaveActed is set on a failure after which the action may still have acted: an HTTP
	// request that may have reached the server without an answer coming back.
	MayHaveActed bool
}

// Runner runs one type of action.
type Runner interface {
	Run(ctx context.Context, req Request) (Result, error)
}

// Idempotent reports whether running the action again after a crash is safe: Kubernetes objects
// are found again by name, and GET, HEAD, PUT, DELETE and OPTIONS calls are idempotent by HTTP's own
// definition. A POST or PATCH call is not: it is recorded as started before it is made, and a
// restart that finds it in flight reports it instead of calling again.
func Idempotent(b drv1.ActionBody) bool {
	if b.Type != drv1.ActionTypeHTTP {
		return true
	}
	switch HTTPMethod(b.HTTP) {
	case "GET", "HEAD", "PUT", "DELETE", "OPTIONS":
		return true
	}
	return false
}

// HTTPMethod is the method an HTTP action uses: POST when it names none.
func HTTPMethod(h *drv1.HTTPAction) string {
	if h == nil || h.Method == "" {
		return "POST"
	}
	return h.Method
}
