package deploy

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/bkbcs/drplan-controller/actions"
	"github.com/bkbcs/drplan-controller/admission"
)

// decodeKind decodes, strictly, the one document of the rendered manifest whose kind is kind.
func decodeKind(t *testing.T, manifest, kind string, into any) {
	t.Helper()
	found := 0
	for _, doc := range strings.Split(manifest, "\n---\n") {
		if strings.Contains(doc, "\nkind: "+kind+"\n") {
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), into))
			found++
		}
	}
	require.Equal(t, 1, found, "documents of kind %s", kind)
}

// TestChartRegistersTheWebhooksAsTheControllerDoes: the chart's two webhook configurations have
// exactly the shape of the controller's own registration (the local run's and the e2e suite's),
// so that what is tested is what is installed.
func TestChartRegistersTheWebhooksAsTheControllerDoes(t *testing.T) {
	manifest, err := Render(nil)
	require.NoError(t, err)
	var validating admissionregistrationv1.ValidatingWebhookConfiguration
	var mutating admissionregistrationv1.MutatingWebhookConfiguration
	decodeKind(t, manifest, "ValidatingWebhookConfiguration", &validating)
	decodeKind(t, manifest, "MutatingWebhookConfiguration", &mutating)
	client := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "drplan-system", Name: "drplan-webhook"}}
	assert.Equal(t, admission.WebhookConfiguration("drplan-controller", client, "system:serviceaccount:drplan-system:drplan-controller").Webhooks, validating.Webhooks)
	assert.Equal(t, admission.MutatingWebhookConfiguration("drplan-controller", client, "system:serviceaccount:drplan-system:drplan-controller").Webhooks, mutating.Webhooks)
	assert.Equal(t, "drplan-controller", validating.Name)
	assert.Equal(t, "drplan-controller", mutating.Name)
	ignore, err := Render(map[string]any{"webhook": map[string]any{"failurePolicy": "Ignore"}})
	require.NoError(t, err)
	m := strings.Index(ignore, "kind: MutatingWebhookConfiguration")
	v := strings.Index(ignore, "kind: ValidatingWebhookConfiguration")
	assert.Contains(t, ignore[m:v], "failurePolicy: Fail", "the mutating webhook is always Fail")
	assert.NotContains(t, ignore[m:v], "failurePolicy: Ignore")
	assert.Contains(t, ignore[v:], "failurePolicy: Ignore", "the validating one takes the value")
	assert.Less(t, strings.Index(manifest, "kind: MutatingWebhookConfiguration"), strings.Index(manifest, "kind: ValidatingWebhookConfiguration"),
		"the mutating webhook is installed first: no create meets the validating one without its records")
}

// TestChartPlansWithoutServiceAccount: the one switch for plans without a ServiceAccount, the
// cross-namespace refusal and the protected ClusterRole reach the controller's flags; the old
// requireServiceAccount value and an unknown mode fail the render.
func TestChartPlansWithoutServiceAccount(t *testing.T) {
	manifest, err := Render(nil)
	require.NoError(t, err)
	assert.Contains(t, manifest, "- --plans-without-service-account=requester\n")
	assert.Contains(t, manifest, "- --cluster-role=drplan-controller\n")
	assert.NotContains(t, manifest, "--refuse-cross-namespace-workflows")
	assert.NotContains(t, manifest, "--require-service-account")

	locked, err := Render(map[string]any{"plansWithoutServiceAccount": "serviceaccount:drplan-runner", "refuseCrossNamespaceWorkflows": true})
	require.NoError(t, err)
	assert.Contains(t, locked, "- --plans-without-service-account=serviceaccount:drplan-runner\n")
	assert.Contains(t, locked, "- --refuse-cross-namespace-workflows\n")

	_, err = Render(map[string]any{"requireServiceAccount": true})
	require.ErrorContains(t, err, "requireServiceAccount was replaced by plansWithoutServiceAccount: refuse")
	_, err = Render(map[string]any{"requireServiceAccount": false})
	require.NoError(t, err, "the old value set false changes nothing")
	for _, bad := range []string{"controller", "serviceaccount:", "ServiceAccount:x"} {
		_, err = Render(map[string]any{"plansWithoutServiceAccount": bad})
		require.ErrorContains(t, err, "plansWithoutServiceAccount must be requester, refuse or serviceaccount:NAME", bad)
	}
}

// TestChartRBAC: the rights the controller's checks need, and names where the object is known.
func TestChartRBAC(t *testing.T) {
	manifest, err := Render(nil)
	require.NoError(t, err)
	var role rbacv1.Role
	var clusterRole rbacv1.ClusterRole
	decodeKind(t, manifest, "ClusterRole", &clusterRole)
	decodeKind(t, manifest, "Role", &role)
	assert.Contains(t, clusterRole.Rules, rbacv1.PolicyRule{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}})
	for _, r := range clusterRole.Rules {
		assert.NotContains(t, r.Resources, "*")
		assert.NotContains(t, r.Verbs, "*")
		for _, res := range r.Resources {
			if strings.HasSuffix(res, "webhookconfigurations") {
				assert.Equal(t, []string{"drplan-controller"}, r.ResourceNames, "only its own webhook configurations")
			}
		}
	}
	for _, r := range role.Rules {
		switch {
		case slices.Equal(r.Resources, []string{"pods"}):
			// Its own Pod, whose name the chart cannot know: read only.
			assert.Equal(t, []string{"get"}, r.Verbs)
		case !slices.Equal(r.Verbs, []string{"create"}):
			assert.NotEmpty(t, r.ResourceNames, "in its namespace, everything but a create is by name: %v", r)
		}
	}
	empty, err := Render(map[string]any{"resourceRules": []any{}})
	require.NoError(t, err)
	assert.Contains(t, empty, "kind: ClusterRole\n")
}

// TestChartHTTPEgress: the chart's default egress policy is the binary's (loopback, link-local
// and the metadata addresses refused), and its values reach the flags.
func TestChartHTTPEgress(t *testing.T) {
	manifest, err := Render(nil)
	require.NoError(t, err)
	assert.Contains(t, manifest, "- --http-deny-cidrs="+actions.DefaultHTTPDenyCIDRs+"\n")
	assert.Contains(t, manifest, "- --http-allow-cidrs=\n")
	custom, err := Render(map[string]any{"httpEgress": map[string]any{"denyCIDRs": []any{"0.0.0.0/0", "::/0"}, "allowCIDRs": []any{"10.0.0.0/8"},
		"denyHosts": []any{"*.internal"}, "allowHosts": []any{"ok.internal", "hooks.internal"}}})
	require.NoError(t, err)
	for _, flag := range []string{"--http-deny-cidrs=0.0.0.0/0,::/0", "--http-allow-cidrs=10.0.0.0/8", "--http-deny-hosts=*.internal", "--http-allow-hosts=ok.internal,hooks.internal"} {
		assert.Contains(t, custom, "- "+flag+"\n")
	}
	_, err = actions.ParseEgressPolicy("0.0.0.0/0,::/0", "10.0.0.0/8", "*.internal", "ok.internal,hooks.internal")
	require.NoError(t, err)
}
