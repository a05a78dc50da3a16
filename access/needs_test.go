package access

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
	"github.com/bkbcs/drplan-controller/runplan"
)

// testMapper knows the kinds the tests use.
func testMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}, meta.RESTScopeRoot)
	return m
}

// prepared is a one-stage, one-workflow run of bodies.
func prepared(bodies ...runplan.Action) *runplan.Prepared {
	w := rules.RunWorkflow{Ref: drv1.ObjectReference{Name: "esc"}}
	for i := range bodies {
		w.Actions = append(w.Actions, []string{"plant", "second", "third"}[i])
	}
	return &runplan.Prepared{Actions: bodies, Plan: &rules.RunPlan{Namespace: "tenant-a", Stages: []rules.RunStage{{Name: "s", Workflows: []rules.RunWorkflow{w}}}}}
}

func resource(op drv1.ResourceOperation, manifest string) runplan.Action {
	return runplan.Action{Body: drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: op, Manifest: manifest}}}
}

func TestActionNeeds(t *testing.T) {
	const where = `stage "s", workflow tenant-a/esc, action "plant"`
	tests := []struct {
		name   string
		action runplan.Action
		want   []string // Need.String()
		err    string
	}{{
		name:   "create in another namespace: create without a name, get with it",
		action: resource(drv1.OperationCreate, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: kube-system}\n"),
		want:   []string{`create configmaps in namespace "kube-system"`, `get configmaps "x" in namespace "kube-system"`},
	}, {
		name:   "apply without a namespace lands in the execution's",
		action: resource(drv1.OperationApply, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n"),
		want:   []string{`patch deployments.apps "app" in namespace "tenant-a"`, `create deployments.apps in namespace "tenant-a"`},
	}, {
		name:   "delete of a cluster-scoped object",
		action: resource(drv1.OperationDelete, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\n"),
		want:   []string{`delete clusterrolebindings.rbac.authorization.k8s.io "b" (cluster-scoped)`, `get clusterrolebindings.rbac.authorization.k8s.io "b" (cluster-scoped)`},
	}, {
		name: "a waitFor lists and watches the object",
		action: func() runplan.Action {
			a := resource(drv1.OperationPatch, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\n")
			a.Wait = &runplan.WaitSpec{}
			return a
		}(),
		want: []string{`patch deployments.apps "app" in namespace "tenant-a"`, `list deployments.apps "app" in namespace "tenant-a"`, `watch deployments.apps "app" in namespace "tenant-a"`},
	}, {
		name:   "a Job",
		action: runplan.Action{Body: drv1.ActionBody{Type: drv1.ActionTypeJob, Job: &drv1.JobAction{Name: "j", Namespace: "ops"}}},
		want: []string{`create jobs.batch in namespace "ops"`, `get jobs.batch "j" in namespace "ops"`, `list jobs.batch "j" in namespace "ops"`,
			`watch jobs.batch "j" in namespace "ops"`, `delete jobs.batch "j" in namespace "ops"`},
	}, {
		name:   "a Revert's undo deletes the object made",
		action: runplan.Action{Undo: &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "tenant-a", Name: "made", UID: "u"}},
		want:   []string{`delete configmaps "made" in namespace "tenant-a"`, `get configmaps "made" in namespace "tenant-a"`},
	}, {
		name:   "HTTP needs nothing",
		action: runplan.Action{Body: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x"}}},
	}, {
		name:   "a kind the server does not serve",
		action: resource(drv1.OperationCreate, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"),
		err:    where + `: the API server serves no kind Widget in example.com/v1`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			needs, err := ActionNeeds(prepared(tc.action), 0, testMapper(), "tenant-a")
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, n := range needs {
				assert.Equal(t, where, n.For)
				got = append(got, n.String())
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestUnreviewable(t *testing.T) {
	tests := []struct {
		need Need
		want bool
	}{
		{Need{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}, true},
		{Need{Verb: "get", Group: "rbac.authorization.k8s.io", Resource: "roles", Namespace: "a"}, true},
		{Need{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: "a"}, true},
		{Need{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "a"}, true},
		{Need{Verb: "update", Group: "certificates.k8s.io", Resource: "certificatesigningrequests", Subresource: "approval"}, true},
		{Need{Verb: "create", Resource: "configmaps", Namespace: "a"}, false},
		{Need{Verb: "create", Group: "example.com", Resource: "roles", Namespace: "a"}, false}, // not RBAC's
	}
	for _, tc := range tests {
		_, _, got := Unreviewable([]Need{{Verb: "get", Resource: "configmaps"}, tc.need})
		assert.Equal(t, tc.want, got, tc.need.String())
	}
}

func TestProtected(t *testing.T) {
	p := Protected{Namespace: "drplan-system", WebhookConfiguration: "drplan-controller", ClusterRole: "drplan-controller"}
	tests := []struct {
		need Need
		want bool
	}{
		{Need{Verb: "patch", Group: "apps", Resource: "deployments", Namespace: "drplan-system", Name: "drplan-controller"}, true},
		{Need{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "drplan-system", Name: "drplan-controller"}, true},
		{Need{Verb: "create", Resource: "configmaps", Namespace: "drplan-system"}, true},
		{Need{Verb: "get", Resource: "secrets", Namespace: "drplan-system", Name: "drplan-webhook-tls"}, true},
		{Need{Verb: "watch", Group: "coordination.k8s.io", Resource: "leases", Namespace: "drplan-system", Name: "x"}, false},
		{Need{Verb: "delete", Resource: "namespaces", Name: "drplan-system"}, true},
		{Need{Verb: "patch", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "drplan-controller"}, true},
		{Need{Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "drplan-controller"}, true},
		{Need{Verb: "delete", Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations", Name: "other"}, false},
		{Need{Verb: "delete", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: "drplans.dr.bkbcs.tencent.com"}, true},
		{Need{Verb: "patch", Group: "apiregistration.k8s.io", Resource: "apiservices", Name: "v1alpha1.dr.bkbcs.tencent.com"}, true},
		{Need{Verb: "delete", Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions", Name: "widgets.example.com"}, false},
		{Need{Verb: "patch", Group: "rbac.authorization.k8s.io", Resource: "clusterroles", Name: "drplan-controller"}, true},
		{Need{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings", Name: "drplan-controller"}, true},
		{Need{Verb: "create", Resource: "configmaps", Namespace: "tenant-a"}, false},
	}
	for _, tc := range tests {
		tc.need.For = `action "x"`
		err := p.Check([]Need{tc.need})
		assert.Equal(t, tc.want, err != nil, tc.need.String())
		if err != nil {
			assert.Contains(t, err.Error(), OffLimitsReason)
		}
	}
	assert.NoError(t, Protected{}.Check([]Need{{Verb: "create", Resource: "configmaps", Namespace: ""}}), "no namespace: nothing in it is protected")
}
