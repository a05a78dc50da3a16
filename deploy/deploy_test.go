package deploy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/bkbcs/drplan-controller/admission"
)

// TestChartRegistersTheWebhooksAsTheControllerDoes: the chart's two webhook configurations have
// exactly the shape of the controller's own registration (the local run's and the e2e suite's),
// so that what is tested is what is installed.
func TestChartRegistersTheWebhooksAsTheControllerDoes(t *testing.T) {
	manifest, err := Render(nil)
	require.NoError(t, err)
	var validating admissionregistrationv1.ValidatingWebhookConfiguration
	var mutating admissionregistrationv1.MutatingWebhookConfiguration
	for _, doc := range strings.Split(manifest, "\n---\n") {
		switch {
		case strings.Contains(doc, "kind: ValidatingWebhookConfiguration"):
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &validating))
		case strings.Contains(doc, "kind: MutatingWebhookConfiguration"):
			require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &mutating))
		}
	}
	client := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "drplan-system", Name: "drplan-webhook"}}
	assert.Equal(t, admission.WebhookConfiguration("drplan-controller", client, "system:serviceaccount:drplan-system:drplan-controller").Webhooks, validating.Webhooks)
	assert.Equal(t, admission.MutatingWebhookConfiguration("drplan-controller", client).Webhooks, mutating.Webhooks)
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
