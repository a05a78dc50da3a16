package admission_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/bkbcs/drplan-controller/access"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// rbac answers SubjectAccessReviews from a list of "user verb resource namespace" grants
// (namespace "*": any).
type rbac struct {
	grants []string
	err    error
}

func (r rbac) Create(_ context.Context, sar *authorizationv1.SubjectAccessReview, _ metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	if r.err != nil {
		return nil, r.err
	}
	a := sar.Spec.ResourceAttributes
	out := sar.DeepCopy()
	for _, g := range r.grants {
		f := strings.Fields(g)
		if f[0] == sar.Spec.User && f[1] == a.Verb && f[2] == a.Resource && (f[3] == "*" || f[3] == a.Namespace) {
			out.Status.Allowed = true
		}
	}
	return out, nil
}

func mapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	return m
}

func configMapAction(name, manifest string) drv1.Action {
	return drv1.Action{Name: name, ActionBody: drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource,
		Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: manifest}}}
}

func TestDecideRights(t *testing.T) {
	alice := drv1.Requester{Username: "alice"}
	tests := []struct {
		name    string
		grants  []string
		sarErr  error
		policy  access.Policy
		actions []drv1.Action
		plan    func(*drv1.DRPlan)
		params  []drv1.ParamValue
		want    string // "" admitted
	}{{
		name:    "an action in the requester's rights",
		grants:  []string{"alice create configmaps prod", "alice get configmaps prod"},
		actions: []drv1.Action{configMapAction("plant", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")},
	}, {
		name:    "an action outside them",
		grants:  []string{"alice create configmaps prod", "alice get configmaps prod"},
		actions: []drv1.Action{configMapAction("plant", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n")},
		want:    `user "alice" may not create configmaps in namespace "kube-system" (stage "default", workflow prod/wf, action "plant")`,
	}, {
		name:    "a Secret a parameter reads",
		params:  []drv1.ParamValue{{Name: "region", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "db", Key: "k"}}}},
		want:    `user "alice" may not get secrets "db" in namespace "prod" (a parameter's valueFrom.secretKeyRef)`,
		actions: nil,
	}, {
		name:   "a ServiceAccount plan: impersonate it",
		plan:   func(p *drv1.DRPlan) { p.Spec.ServiceAccountName = "runner" },
		want:   `user "alice" may not impersonate serviceaccounts "runner" in namespace "prod" (spec.serviceAccountName of DRPlan prod/p)`,
		params: []drv1.ParamValue{{Name: "region", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "db", Key: "k"}}}},
	}, {
		name:    "a ServiceAccount plan: its actions and Secrets are the ServiceAccount's to do",
		grants:  []string{"alice impersonate serviceaccounts prod"},
		plan:    func(p *drv1.DRPlan) { p.Spec.ServiceAccountName = "runner" },
		params:  []drv1.ParamValue{{Name: "region", ValueFrom: &drv1.ParamValueSource{SecretKeyRef: &drv1.SecretKeySelector{Name: "db", Key: "k"}}}},
		actions: []drv1.Action{configMapAction("plant", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n")},
	}, {
		name:    "the controller's own objects, whoever asks",
		grants:  []string{"alice create configmaps *", "alice get configmaps *"},
		policy:  access.Policy{Protected: access.Protected{Namespace: "drplan-system"}},
		actions: []drv1.Action{configMapAction("plant", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"{{ .params.region }}\", namespace: drplan-system}\n")},
		want:    access.OffLimitsReason,
	}, {
		name:    "a kind the server does not serve is left to the controller",
		actions: []drv1.Action{configMapAction("plant", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")},
	}, {
		name:    "a review that cannot be made: retry",
		sarErr:  errors.New("connection refused"),
		actions: []drv1.Action{configMapAction("plant", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")},
		want:    "the drplan-controller webhook could not check rights: checking the rights of user \"alice\": connection refused; retry",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := fixture(t)
			wf, _ := d.State.GetWorkflow("prod", "wf")
			wf.Spec.Actions = append(wf.Spec.Actions, tc.actions...)
			plan, _ := d.State.GetPlan("prod", "p")
			if tc.plan != nil {
				tc.plan(plan)
			}
			d.Access = &access.Authorizer{Reviewer: access.NewReviewer(rbac{grants: tc.grants, err: tc.sarErr}, time.Minute), Mapper: mapper(), Policy: tc.policy}
			d.User = alice
			params := tc.params
			if params == nil {
				params = []drv1.ParamValue{{Name: "region", Value: "east"}}
			}
			got := d.Execution(context.Background(), &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod"},
				Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute, Params: params}}, nil)
			if tc.want == "" {
				require.True(t, got.Allowed(), "refused: %v", got.Err)
				return
			}
			require.False(t, got.Allowed())
			assert.Contains(t, got.Err.Error(), tc.want)
		})
	}
}

func TestDecidePlanAuthor(t *testing.T) {
	d := fixture(t)
	d.User = drv1.Requester{Username: "alice"}
	plan := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "cross", Namespace: "prod"},
		Spec: drv1.DRPlanSpec{WorkflowRef: &drv1.ObjectReference{Name: "wf", Namespace: "shared"}}}

	d.Access = &access.Authorizer{Reviewer: access.NewReviewer(rbac{}, time.Minute), Mapper: mapper()}
	got := d.Plan(context.Background(), plan, nil)
	require.False(t, got.Allowed())
	assert.Contains(t, got.Err.Error(), `user "alice" may not get drworkflows.dr.bkbcs.tencent.com "wf" in namespace "shared"`)

	d.Access = &access.Authorizer{Reviewer: access.NewReviewer(rbac{grants: []string{"alice get drworkflows shared"}}, time.Minute), Mapper: mapper(),
		Policy: access.Policy{RefuseCrossNamespaceWorkflows: true}}
	got = d.Plan(context.Background(), plan, nil)
	require.False(t, got.Allowed())
	assert.Contains(t, got.Err.Error(), "this controller refuses cross-namespace workflows (--refuse-cross-namespace-workflows)")
}

// counting counts the reviews asked of an rbac.
type counting struct {
	rbac
	n *atomic.Int32 // reviews are asked several at once
}

func (c counting) Create(ctx context.Context, sar *authorizationv1.SubjectAccessReview, o metav1.CreateOptions) (*authorizationv1.SubjectAccessReview, error) {
	c.n.Add(1)
	return c.rbac.Create(ctx, sar, o)
}

func TestDecideRightsRemembersARunFound(t *testing.T) {
	for _, tc := range []struct {
		name     string
		manifest string
		again    bool // the second execution is admitted without a review
	}{
		{"the same rendering", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", true},
		{"the execution's name read: another name is another run", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c-{{ .executionName }}}\n", false},
		{"the time read: never remembered", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {at: \"{{ .timestamp }}\"}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := fixture(t)
			wf, _ := d.State.GetWorkflow("prod", "wf")
			wf.UID, wf.ResourceVersion = types.UID("wf-"+tc.name), "1"
			wf.Spec.Actions = append(wf.Spec.Actions, configMapAction("plant", tc.manifest))
			plan, _ := d.State.GetPlan("prod", "p")
			plan.UID, plan.ResourceVersion = "p-uid", "1"
			var asked atomic.Int32
			d.Access = &access.Authorizer{Reviewer: access.NewReviewer(counting{rbac{grants: []string{"alice create configmaps prod", "alice get configmaps prod"}}, &asked}, 0),
				Mapper: mapper()}
			d.User = drv1.Requester{Username: "alice"}
			run := func(name string) {
				got := d.Execution(context.Background(), &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod"},
					Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute,
						Params: []drv1.ParamValue{{Name: "region", Value: "east"}}}}, nil)
				require.True(t, got.Allowed(), "%v", got.Err)
			}
			run("one")
			first := asked.Load()
			require.NotZero(t, first)
			run("two")
			if tc.again {
				assert.Equal(t, first, asked.Load(), "remembered (the reviewer keeps nothing here: TTL 0)")
			} else {
				assert.Greater(t, asked.Load(), first, "checked again")
			}
			d.User = drv1.Requester{Username: "bob"}
			got := d.Execution(context.Background(), &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: "prod"},
				Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "p"}, Operation: drv1.OperationExecute,
					Params: []drv1.ParamValue{{Name: "region", Value: "east"}}}}, nil)
			assert.False(t, got.Allowed(), "another user is checked")
		})
	}
}
