package controller

import (
	"context"
	"fmt"
	"slices"

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/runplan"
)

// The rights checks of a run (docs/security.md): at start before any side effect, and before
// each action, the same questions as the admission webhook's, so that a webhook unregistered,
// bypassed or older than an RBAC change skips nothing.

// authority is whom a run answers to: its requester, and the plan spec it acts under (which says
// whether its actions are checked for the requester).
type authority struct {
	az        *access.Authorizer
	user      drv1.Requester
	spec      *drv1.DRPlanSpec
	namespace string
	// needs are the plan's own (its ServiceAccount, workflows of other namespaces) and the
	// Secrets its parameters read: checked at start and before each action.
	needs []access.Need
	// clients retry a check before an action that the API server could not answer (unreachable,
	// busy), as the actions' own calls are retried.
	clients *actions.ClientFactory
}

// policy is how plans act here (the zero Policy without an Authorizer: unit tests).
func (c *Controller) policy() access.Policy {
	if c.access == nil {
		return access.Policy{}
	}
	return c.access.Policy
}

// identity is the ServiceAccount ("namespace/name") a plan's side effects are made as, or "".
func (c *Controller) identity(namespace string, spec *drv1.DRPlanSpec) string {
	return c.policy().Identity(namespace, spec)
}

// authorityOf is whom a run of exec under the plan spec (of namespace, named plan) answers to;
// nil when nothing is checked: no Authorizer, or a run Running since before requesters were
// recorded (it finishes under the old rules).
func (c *Controller) authorityOf(exec *drv1.DRPlanExecution, namespace, plan string, spec *drv1.DRPlanSpec) (*authority, error) {
	user, ok := drv1.RequesterOf(exec.Annotations)
	if c.access == nil || !ok {
		return nil, nil
	}
	needs, err := c.access.PlanNeeds(namespace, plan, spec)
	if err != nil {
		return nil, err
	}
	if exec.Annotations[drv1.AnnotationTriggerToken] != "" {
		needs = append(needs, access.TriggerNeed(namespace, plan)) // created for a trigger: as if its user had
	}
	return &authority{az: c.access, user: user, spec: spec, namespace: namespace, needs: needs,
		clients: c.clients}, nil
}

// readSecret checks, before a parameter reads Secret name, that a requester-checked run's
// requester may read it too; the Secret is then read as the plan's identity.
func (a *authority) readSecret(ctx context.Context, name string) error {
	if a == nil || !access.RequesterCheckedPlan(a.spec) {
		return nil
	}
	need := access.SecretNeed(a.namespace, name)
	if err := a.az.Reviewer.Check(ctx, a.user, []access.Need{need}); err != nil {
		return err
	}
	if !slices.Contains(a.needs, need) { // read by every workflow entry that sets it: one need
		a.needs = append(a.needs, need)
	}
	return nil
}

// run checks a prepared run before any side effect.
func (a *authority) run(ctx context.Context, prep *runplan.Prepared) error {
	if a == nil {
		return nil
	}
	return a.az.Run(ctx, a.user, a.namespace, a.spec, prep, a.needs)
}

// action checks action i just before it starts. A check the API server could not answer for a
// transient reason is asked again, as the action's own calls would be.
func (a *authority) action(ctx context.Context, prep *runplan.Prepared, i int) error {
	if a == nil {
		return nil
	}
	err := a.clients.RetryTransient(ctx, func(ctx context.Context) error {
		return a.az.Action(ctx, a.user, a.namespace, a.spec, prep, i, a.needs)
	})
	if err != nil {
		if access.IsRefused(err) {
			return fmt.Errorf("not started: %w", err)
		}
		return fmt.Errorf("not started: could not check the requester's rights: %w", err)
	}
	return nil
}

// mayCancel checks that whoever set a plan's cancel trigger may update the execution name it
// cancels, as they would to cancel it themselves.
func (c *Controller) mayCancel(ctx context.Context, user drv1.Requester, plan *drv1.DRPlan, name string) error {
	if c.access == nil {
		return nil
	}
	return c.access.Reviewer.Check(ctx, user, []access.Need{access.CancelNeed(plan.Namespace, plan.Name, name)})
}
