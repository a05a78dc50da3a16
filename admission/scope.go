package admission

import (
	"context"
	"sync"

	"github.com/bkbcs/drplan-controller/access"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// What an answer may tell of other namespaces. A plan may run workflows of other namespaces (its
// author and requesters need get on them); everything else a request concerns is in its own
// namespace. The decisions read through a scoped State, so that no refusal, warning or "did you
// mean" tells a user anything of an object elsewhere they may not read: not whether it exists, not
// its parameters, actions or status.

// scoped is a request's view of State from namespace: a workflow of another namespace is there only
// when the user may get it (without Access, when no rights are checked, always; where
// cross-namespace workflows are refused, never), and otherwise "not found", whether it exists or
// not; plans and executions of other namespaces are never there.
type scoped struct {
	State
	ctx       context.Context
	namespace string
	user      drv1.Requester
	access    *access.Authorizer

	mu       sync.Mutex
	readable map[string]bool // namespace/name of workflows elsewhere: may the user get it
	err      error           // the first review that could not be made
}

// scope returns d deciding from namespace through a scoped State, and that State, whose Err says
// whether a review could not be made (then no decision is taken on what it hid).
func (d *Decider) scope(ctx context.Context, namespace string) (*Decider, *scoped) {
	s := &scoped{State: d.State, ctx: ctx, namespace: namespace, user: d.User, access: d.Access, readable: map[string]bool{}}
	in := *d
	in.State = s
	return &in, s
}

// unless is decision, or the 503 "retry" of kind name when a review of what to show could not be
// made.
func (s *scoped) unless(decision Decision, kind, name string) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return Decision{Err: forbidden(kind, name, s.err)}
	}
	return decision
}

func (s *scoped) GetWorkflow(namespace, name string) (*drv1.DRWorkflow, bool) {
	if namespace != s.namespace && !s.mayRead(namespace, name) {
		return nil, false
	}
	return s.State.GetWorkflow(namespace, name)
}

func (s *scoped) GetPlan(namespace, name string) (*drv1.DRPlan, bool) {
	if namespace != s.namespace {
		return nil, false
	}
	return s.State.GetPlan(namespace, name)
}

func (s *scoped) GetExecution(namespace, name string) (*drv1.DRPlanExecution, bool) {
	if namespace != s.namespace {
		return nil, false
	}
	return s.State.GetExecution(namespace, name)
}

// ExecutionsForPlan lists the plan's executions of its own namespace: one elsewhere naming it
// (made while the webhook was bypassed) never runs, and its name is not this request's to learn.
func (s *scoped) ExecutionsForPlan(namespace, name string) ([]*drv1.DRPlanExecution, error) {
	if namespace != s.namespace {
		return nil, nil
	}
	all, err := s.State.ExecutionsForPlan(namespace, name)
	var own []*drv1.DRPlanExecution
	for _, e := range all {
		if e.Namespace == s.namespace {
			own = append(own, e)
		}
	}
	return own, err
}

// mayRead reports whether the user may get the workflow namespace/name, asking once per request.
func (s *scoped) mayRead(namespace, name string) bool {
	switch {
	case s.access == nil:
		return true
	case s.access.Policy.RefuseCrossNamespaceWorkflows:
		return false
	}
	key := namespace + "/" + name
	s.mu.Lock()
	ok, asked := s.readable[key]
	s.mu.Unlock()
	if asked {
		return ok
	}
	err := s.access.Reviewer.Check(s.ctx, s.user, []access.Need{{Verb: "get", Group: drv1.GroupName, Resource: "drworkflows",
		Namespace: namespace, Name: name, For: "a workflowRef to another namespace"}})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil && !access.IsRefused(err) && s.err == nil {
		s.err = err
	}
	s.readable[key] = err == nil
	return err == nil
}
