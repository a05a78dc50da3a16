package templates_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
)

// The injection of the issue: a value that would close its string and add a key.
const injection = "x\"\n  injected: \"yes"

func TestValuesCannotChangeStructure(t *testing.T) {
	data := templates.TemplateData{Params: map[string]any{"v": injection, "replicas": int64(5), "on": true, "msg": `say "hi"}, {"evil": 1`},
		PlanName: "p", ExecutionName: "e", Namespace: "prod"}
	render := func(b drv1.ActionBody) drv1.ActionBody {
		t.Helper()
		out, err := templates.RenderBody(b, data)
		require.NoError(t, err)
		return out
	}
	manifest := func(m string) map[string]any {
		t.Helper()
		out := render(drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: m}})
		var obj map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(out.Resource.Manifest), &obj), out.Resource.Manifest)
		return obj
	}

	// A quoted string, a plain scalar, a longer scalar: the value stays in it.
	cm := manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: \"{{ .params.v }}\"\n  b: {{ .params.v }}\n  c: pre-{{ .params.v }}-post\n")
	assert.Equal(t, map[string]any{"a": injection, "b": injection, "c": "pre-" + injection + "-post"}, cm["data"], "no key injected")

	// A whole unquoted scalar takes its value's type; the Deployment gets no privileged.
	dep := manifest("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: {{ .params.replicas }}\n  paused: {{ .params.on }}\n  template:\n    spec:\n      containers:\n      - name: c\n        image: \"{{ .params.v }}\"\n")
	spec := dep["spec"].(map[string]any)
	assert.EqualValues(t, 5, spec["replicas"])
	assert.Equal(t, true, spec["paused"])
	c := spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	assert.Equal(t, map[string]any{"name": "c", "image": injection}, c)

	// toJson: one JSON value, never a mapping.
	j := manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a: {{ toJson .params.msg }}\n")
	assert.Equal(t, map[string]any{"a": `say "hi"}, {"evil": 1`}, j["data"])

	// A JSON HTTP body keeps its formatting; a value in a string is escaped for it.
	http := render(drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/hook",
		Body: `{"message": "{{ .params.msg }}", "replicas": {{ .params.replicas }}, "raw": {{ toJson .params.v }}}`}})
	var body map[string]any
	require.NoError(t, json.Unmarshal([]byte(http.HTTP.Body), &body), http.HTTP.Body)
	assert.Equal(t, map[string]any{"message": `say "hi"}, {"evil": 1`, "replicas": float64(5), "raw": injection}, body)
	assert.Contains(t, http.HTTP.Body, `"replicas": 5`, "the author's formatting is kept")

	// A JSON override value stays JSON, byte for byte where no value goes.
	loc := render(drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: &drv1.LocalizationAction{Name: "l", Operation: "Create",
		Overrides: []drv1.Override{{Name: "o", Type: "JSONPatch", Value: `[{"op":"replace","path":"/spec/replicas","value":{{ .params.replicas }}},{"op":"add","path":"/x","value":"{{ .params.v }}"}]`}}}})
	var patch []map[string]any
	require.NoError(t, json.Unmarshal([]byte(loc.Localization.Overrides[0].Value), &patch))
	assert.Len(t, patch, 2, "no operation injected")
	assert.Equal(t, injection, patch[1]["value"])
	assert.Contains(t, loc.Localization.Overrides[0].Value, `[{"op":"replace","path":"/spec/replicas","value":5}`)
}

func TestURLsAndHeaders(t *testing.T) {
	data := templates.TemplateData{Params: map[string]any{"url": "https://hooks.example.com/x?a=1", "p": "a/../b?c=d#e", "host": "evil.com/", "nl": "v\r\nX-Evil: 1"}}
	url := func(u string) (string, error) {
		out, err := templates.RenderBody(drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: u}}, data)
		return out.HTTP.URL, err
	}
	got, err := url("{{ .params.url }}")
	require.NoError(t, err)
	assert.Equal(t, "https://hooks.example.com/x?a=1", got, "a whole URL is taken as it is")
	got, err = url("https://api.example.com/{{ .params.p }}?q={{ .params.p }}")
	require.NoError(t, err)
	assert.Equal(t, "https://api.example.com/a%2F..%2Fb%3Fc=d%23e?q=a%2F..%2Fb%3Fc%3Dd%23e", got, "escaped: the host cannot change")
	_, err = url("https://{{ .params.host }}example.com/")
	assert.ErrorContains(t, err, `the value "evil.com/" cannot stand in a URL's host`)
	data.Params["url"] = "file:///etc/passwd"
	_, err = url("{{ .params.url }}")
	assert.ErrorContains(t, err, `the URL "file:///etc/passwd" is not an http(s) URL`)

	_, err = templates.RenderBody(drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x",
		Headers: map[string]string{"X-Note": "{{ .params.nl }}"}}}, data)
	assert.ErrorContains(t, err, "http.headers.X-Note: a header value may not hold a line break")
}
