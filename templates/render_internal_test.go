package templates

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// renderViaTree is how RenderBody rendered before it walked the typed body: through the body's
// JSON tree. The typed walk must give the same bodies and the same first error, for every string
// but the ones rendered as a whole (a manifest, an override, a JSON body, the URL: structured.go).
func renderViaTree(b drv1.ActionBody, data TemplateData) (drv1.ActionBody, error) {
	tree, err := bodyTree(&b)
	if err != nil {
		return b, err
	}
	err = eachString(nil, tree, func(p *field.Path, s string) (string, error) {
		out, err := Render(s, data)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		return out, nil
	})
	if err != nil {
		return b, err
	}
	raw, err := json.Marshal(tree)
	if err != nil {
		return b, err
	}
	var out drv1.ActionBody
	return out, json.Unmarshal(raw, &out)
}

func TestRenderBodyAsTheJSONTreeWalk(t *testing.T) {
	data := TemplateData{Params: map[string]any{"ns": "prod", "n": int64(3), "q": `a "quoted" {value}`}, PlanName: "p", ExecutionName: "e",
		Namespace: "prod", Timestamp: "2026-01-30T10:00:00Z"}
	tpl := func(field string) string { return field + "-{{ .params.ns }}-{{ .params.q }}" }
	w := int32(2)
	bodies := []drv1.ActionBody{
		{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/y", Method: "POST", Body: tpl("b"),
			Headers: map[string]string{"B": tpl("h1"), "A": tpl("h2"), "C": "plain"}, Timeout: "{{ .params.n }}s",
			SuccessCondition: "response.status == 200", Retry: &drv1.HTTPRetry{Limit: 2, Interval: "{{ .params.n }}s"}}},
		{Type: drv1.ActionTypeJob, Job: &drv1.JobAction{Name: tpl("j"), Namespace: "{{ .params.ns }}", Timeout: "5m",
			Template: runtime.RawExtension{Raw: []byte(`{"spec":{"containers":[{"name":"c","args":["{{ .params.q }}","{{ .executionName }}"]}]}}`)}}},
		{Type: drv1.ActionTypeLocalization, Localization: &drv1.LocalizationAction{Name: tpl("l"), ClusterNamespace: tpl("cn"), Operation: "Create",
			Feed: &drv1.Feed{APIVersion: "apps/v1", Kind: "Deployment", Name: tpl("f"), Namespace: "{{ .namespace }}"}}},
		{Type: drv1.ActionTypeSubscription, Subscription: &drv1.SubscriptionAction{Name: tpl("s"), Namespace: "default", Operation: "Create",
			Feeds: []drv1.Feed{{APIVersion: "v1", Kind: "Service", Name: tpl("svc")}},
			Subscribers: []drv1.Subscriber{{Weight: w, ClusterAffinity: &metav1.LabelSelector{MatchLabels: map[string]string{"region": tpl("r")},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "In", Values: []string{tpl("v1"), "v2"}}}}}},
			DividingScheduling: &runtime.RawExtension{Raw: []byte(`{"type":"{{ .planName }}"}`)}}},
	}
	for _, b := range bodies {
		want, werr := renderViaTree(b, data)
		got, gerr := RenderBody(b, data)
		require.NoError(t, werr)
		require.NoError(t, gerr)
		wantJSON, _ := json.Marshal(want)
		gotJSON, _ := json.Marshal(got)
		assert.JSONEq(t, string(wantJSON), string(gotJSON), "%s", b.Type)
	}
	// The first error, where several strings fail: the same field, by the JSON names' order.
	bad := drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x", Body: "{{ .params.nope2 }}",
		Headers: map[string]string{"Z": "{{ .params.nope3 }}", "A": "{{ .params.nope4 }}"}}}
	_, werr := renderViaTree(bad, data)
	_, gerr := RenderBody(bad, data)
	require.Error(t, gerr)
	assert.Equal(t, werr.Error(), gerr.Error())
	job := drv1.ActionBody{Type: drv1.ActionTypeJob, Job: &drv1.JobAction{Template: runtime.RawExtension{Raw: []byte(`{"spec":{"containers":[{"args":["{{ .params.nope }}"]}]}}`)}}}
	_, werr = renderViaTree(job, data)
	_, gerr = RenderBody(job, data)
	assert.Equal(t, werr.Error(), gerr.Error())
}
