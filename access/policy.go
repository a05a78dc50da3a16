package access

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	utilvalidation "k8s.io/apimachinery/pkg/util/validation"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/lru"
	"github.com/bkbcs/drplan-controller/runplan"
	"github.com/bkbcs/drplan-controller/validation"
)

// Policy is how this cluster lets plans act: what a plan without a ServiceAccount does, whether a
// plan may run another namespace's workflows, and the objects no action may touch.
type Policy struct {
	// WithoutServiceAccount is what a plan without spec.serviceAccountName does.
	WithoutServiceAccount WithoutServiceAccount
	// RefuseCrossNamespaceWorkflows refuses a workflowRef to another namespace outright.
	RefuseCrossNamespaceWorkflows bool
	Protected                     Protected
	// UnrecordedNamespaces are the namespaces the webhooks are not called in (the chart's
	// webhook.excludeNamespaces): no record of who asked can be trusted there, so nothing runs.
	UnrecordedNamespaces []string
}

// Recorded reports whether the webhooks record who asks in namespace.
func (p Policy) Recorded(namespace string) bool {
	return !slices.Contains(p.UnrecordedNamespaces, namespace)
}

// WithoutServiceAccount is what a plan without spec.serviceAccountName does; the zero value is
// the default, RequesterChecked.
type WithoutServiceAccount struct {
	// Refuse: such a plan never runs.
	Refuse bool
	// ActAs, when set (the lockdown), is the ServiceAccount of the plan's own namespace such a plan
	// acts as, its requester's rights still checked; unset, it acts as the controller.
	ActAs string
}

// The values of --plans-without-service-account.
const (
	RequesterChecked     = "requester"
	RefusePlans          = "refuse"
	serviceAccountPrefix = "serviceaccount:"
)

// ParseWithoutServiceAccount reads a value of --plans-without-service-account: requester,
// refuse, or serviceaccount:NAME.
func ParseWithoutServiceAccount(s string) (WithoutServiceAccount, error) {
	switch {
	case s == "" || s == RequesterChecked:
		return WithoutServiceAccount{}, nil
	case s == RefusePlans:
		return WithoutServiceAccount{Refuse: true}, nil
	case strings.HasPrefix(s, serviceAccountPrefix):
		name := strings.TrimPrefix(s, serviceAccountPrefix)
		if errs := utilvalidation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return WithoutServiceAccount{}, fmt.Errorf("%q: not a ServiceAccount name: %s", s, strings.Join(errs, "; "))
		}
		return WithoutServiceAccount{ActAs: name}, nil
	}
	return WithoutServiceAccount{}, fmt.Errorf("%q: want %s, %s or %sNAME", s, RequesterChecked, RefusePlans, serviceAccountPrefix)
}

func (w WithoutServiceAccount) String() string {
	switch {
	case w.Refuse:
		return RefusePlans
	case w.ActAs != "":
		return serviceAccountPrefix + w.ActAs
	}
	return RequesterChecked
}

// Identity is the ServiceAccount ("namespace/name") a plan of namespace acts as, or "" for the
// controller's own identity.
func (p Policy) Identity(namespace string, spec *drv1.DRPlanSpec) string {
	switch {
	case spec.ServiceAccountName != "":
		return namespace + "/" + spec.ServiceAccountName
	case p.WithoutServiceAccount.ActAs != "":
		return namespace + "/" + p.WithoutServiceAccount.ActAs
	}
	return ""
}

// RequesterCheckedPlan reports whether a plan's actions are checked for its requester: it names no
// ServiceAccount (what it acts as then is the controller, or the lockdown's ServiceAccount).
func RequesterCheckedPlan(spec *drv1.DRPlanSpec) bool { return spec.ServiceAccountName == "" }

// ownGroupWrite returns the first need that writes an object of the controller's own API group:
// acting as the controller, whom the webhooks trust to write the records of who asked, no action
// may (validation.AsControllerReason).
func ownGroupWrite(needs []Need) (Need, bool) {
	for _, n := range needs {
		if n.Group == drv1.GroupName && !n.reads() {
			return n, true
		}
	}
	return Need{}, false
}

// RefusedError is a run refused for a reason no SubjectAccessReview decides: an RBAC kind for a
// requester-checked plan, one of the controller's own objects, a cross-namespace workflow where
// they are refused.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// IsRefused reports whether err refuses the run (a *DeniedError or a *RefusedError), as opposed
// to a review that could not be made (retry).
func IsRefused(err error) bool {
	var d *DeniedError
	var r *RefusedError
	return errors.As(err, &d) || errors.As(err, &r)
}

// Authorizer asks the questions of a run: the policy's refusals, and the requester's rights.
type Authorizer struct {
	Reviewer *Reviewer
	Mapper   Mapper
	Policy   Policy

	foundOnce sync.Once
	found     *lru.Cache[[sha256.Size]byte, time.Time]
}

// Remember keeps, for DefaultTTL (as long as a review's yes), that the run under key had every
// right it needs; Found says so until then. The key is the caller's: the admission webhook's
// digest of what a run renders from.
func (a *Authorizer) Remember(key [sha256.Size]byte) {
	a.foundOnce.Do(func() { a.found = lru.New[[sha256.Size]byte, time.Time](4096) })
	a.found.Set(key, time.Now())
}

// Found reports whether the run under key was found to have its rights within DefaultTTL.
func (a *Authorizer) Found(key [sha256.Size]byte) bool {
	a.foundOnce.Do(func() { a.found = lru.New[[sha256.Size]byte, time.Time](4096) })
	at, ok := a.found.Get(key)
	return ok && time.Since(at) < DefaultTTL
}

// SecretNeed is the right to read the Secret a parameter's valueFrom names.
func SecretNeed(namespace, name string) Need {
	return Need{Verb: "get", Resource: "secrets", Namespace: namespace, Name: name, For: "a parameter's valueFrom.secretKeyRef"}
}

// TriggerNeed is the right a plan's execute or revert trigger stands in for: creating an
// execution of the plan.
func TriggerNeed(namespace, plan string) Need {
	return Need{Verb: "create", Group: drv1.GroupName, Resource: "drplanexecutions", Namespace: namespace,
		For: fmt.Sprintf("the trigger annotation of DRPlan %s/%s, which creates an execution", namespace, plan)}
}

// CancelNeed is the right a plan's cancel trigger stands in for: updating the execution name
// ("" for all of them) of the plan.
func CancelNeed(namespace, plan, name string) Need {
	return Need{Verb: "update", Group: drv1.GroupName, Resource: "drplanexecutions", Namespace: namespace, Name: name,
		For: fmt.Sprintf("the cancel trigger of DRPlan %s/%s", namespace, plan)}
}

// PlanNeeds are the rights whoever runs (or writes) a plan of namespace needs besides its actions':
// impersonating its ServiceAccount, reading the workflows of other namespaces it references. A
// cross-namespace reference where they are refused is a *RefusedError.
func (a *Authorizer) PlanNeeds(namespace, name string, spec *drv1.DRPlanSpec) ([]Need, error) {
	var needs []Need
	if sa := spec.ServiceAccountName; sa != "" {
		needs = append(needs, Need{Verb: "impersonate", Resource: "serviceaccounts", Namespace: namespace, Name: sa,
			For: fmt.Sprintf("spec.serviceAccountName of DRPlan %s/%s", namespace, name)})
	}
	for _, s := range spec.EffectiveStages() {
		for wi, sw := range s.Workflows {
			ns := sw.WorkflowRef.NamespaceOr(namespace)
			if ns == namespace {
				continue
			}
			where := fmt.Sprintf("DRPlan %s/%s stage %q workflow %d", namespace, name, s.Name, wi)
			if a.Policy.RefuseCrossNamespaceWorkflows {
				return nil, &RefusedError{Msg: fmt.Sprintf("%s: workflowRef %s/%s is in another namespace, and this controller refuses cross-namespace workflows (--refuse-cross-namespace-workflows)",
					where, ns, sw.WorkflowRef.Name)}
			}
			needs = append(needs, Need{Verb: "get", Group: drv1.GroupName, Resource: "drworkflows", Namespace: ns, Name: sw.WorkflowRef.Name,
				For: where + " (workflowRef to another namespace)"})
		}
	}
	return needs, nil
}

// Run checks a prepared run of the plan spec of namespace for user before any side effect: the
// objects it would touch are not the controller's own; and, for a requester-checked plan, no
// action needs what a review cannot decide, and user has every right the actions need. extra are
// needs found on the way (the plan's, the Secrets its parameters read), checked in every mode.
func (a *Authorizer) Run(ctx context.Context, user drv1.Requester, namespace string, spec *drv1.DRPlanSpec, prep *runplan.Prepared, extra []Need) error {
	return a.check(ctx, user, namespace, spec, RunNeeds(prep, a.Mapper, namespace), extra)
}

// Action checks action i of a prepared run just before it starts, as Run did for the whole run
// (answers up to the Reviewer's TTL old serve): a right revoked since is noticed.
func (a *Authorizer) Action(ctx context.Context, user drv1.Requester, namespace string, spec *drv1.DRPlanSpec, prep *runplan.Prepared, i int, extra []Need) error {
	needs, err := ActionNeeds(prep, i, a.Mapper, namespace)
	if err != nil {
		return err
	}
	return a.check(ctx, user, namespace, spec, needs, extra)
}

func (a *Authorizer) check(ctx context.Context, user drv1.Requester, namespace string, spec *drv1.DRPlanSpec, needs, extra []Need) error {
	if err := a.Policy.Protected.Check(needs); err != nil {
		return &RefusedError{Msg: err.Error()}
	}
	if a.Policy.Identity(namespace, spec) == "" {
		if n, ok := ownGroupWrite(needs); ok {
			return &RefusedError{Msg: fmt.Sprintf("%s (%s %s) %s", n.For, n.Verb, n.resourceName(), validation.AsControllerReason)}
		}
	}
	if !RequesterCheckedPlan(spec) {
		return a.Reviewer.Check(ctx, user, extra)
	}
	if _, why, ok := Unreviewable(needs); ok {
		return &RefusedError{Msg: why}
	}
	return a.Reviewer.Check(ctx, user, append(slices.Clip(extra), needs...))
}
