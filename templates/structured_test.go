package templates_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/validation/field"
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

	// Whether the body is JSON is decided before rendering: a templated Content-Type, or two of
	// them, would let a value (or map order) choose, and the body go out unescaped as text.
	body := `{"message": "{{ .params.nl }}"}`
	for headers, want := range map[string]string{
		`{"Content-Type": "{{ .params.nl }}"}`:                               `spec.http.headers[Content-Type]: Invalid value: "{{ .params.nl }}": the Content-Type may not be a template`,
		`{"Content-Type": "application/json", "content-type": "text/plain"}`: `spec.http.headers: Invalid value: "content-type": Content-Type and content-type are the same header (HTTP ignores case): set it once`,
	} {
		h := map[string]string{}
		require.NoError(t, json.Unmarshal([]byte(headers), &h))
		b := drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x", Headers: h, Body: body}}
		errs := templates.CheckBody(field.NewPath("spec"), &b, []string{"nl"})
		require.Len(t, errs, 1, headers)
		assert.Contains(t, errs[0].Error(), want)
		_, err = templates.RenderBody(b, data)
		assert.ErrorContains(t, err, strings.TrimPrefix(want, "spec."), "refused when rendered too")
	}
}

const cmHead = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \"{{ .params.v }}\"}\n"

// aliasBomb is "billion laughs": ten levels of nine aliases each, 10^9 strings once expanded.
func aliasBomb(head string) string {
	var b strings.Builder
	b.WriteString(head + "data:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 10; i++ {
		p := fmt.Sprintf("*a%d", i-1)
		fmt.Fprintf(&b, "  a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(p+", ", 9), ", "))
	}
	return b.String()
}

// TestShape: what a structured text with templates may not hold is refused with its position,
// when checked (admission) and when rendered, in no time; what the guide writes is accepted.
func TestShape(t *testing.T) {
	manifest := func(m string) drv1.ActionBody {
		return drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: m}}
	}
	body := func(b string) drv1.ActionBody {
		return drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/hook", Body: b}}
	}
	override := func(v string) drv1.ActionBody {
		return drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: &drv1.LocalizationAction{Name: "l", Operation: "Create",
			Overrides: []drv1.Override{{Name: "o", Type: "MergePatch", Value: v}}}}
	}
	deep := strings.Repeat("[", 100000) + "{{ .params.v }}" + strings.Repeat("]", 100000)
	for _, tc := range []struct {
		name string
		body drv1.ActionBody
		want string // "" when accepted
	}{
		{"a value", manifest(cmHead + "data:\n  a: {{ .params.v }}\n  b: \"x-{{ .params.v }}\"\n"), ""},
		{"the guide's override", override("spec:\n  replicas: {{ .params.replicas }}\n"), ""},
		{"a JSON body", body(`{"text": {{ toJson .planName }}, "n": "{{ .params.v }}", "a": [{"k": 1}, {"k": 2}]}`), ""},
		{"empty documents", manifest("---\n# head\n---\n" + cmHead + "---\n"), ""},
		{"standard tags", manifest(cmHead + "data: {a: !!str 5, b: !!str \"{{ .params.v }}\"}\n"), ""},
		{"a templated key", manifest(cmHead + "spec:\n  {{ .params.k }}: {privileged: true}\n"),
			`resource.manifest: Invalid value: "<manifest>": template at 5:3 ("{{ .params.k }}") is in a mapping key: a value may not choose a field`},
		{"a templated part of a key", manifest(cmHead + "data:\n  x-{{ .params.k }}: v\n"), `template at 5:5 ("{{ .params.k }}") is in a mapping key`},
		{"a templated key in flow", manifest(cmHead + "data: {\"{{ .params.k }}\": v}\n"), `template at 4:9 ("{{ .params.k }}") is in a mapping key`},
		{"a templated JSON key", body("{\"a\": 1,\n \"{{ .params.k }}\": \"{{ .params.v }}\"}"),
			`http.body: Invalid value: "<body>": template at 2:3 ("{{ .params.k }}") is in an object key: a value may not choose a field`},
		{"a JSON key in an override", override(`{"spec": {"x{{ .params.k }}": 1}}`), `localization.overrides[0].value: Invalid value: "<value>": template at 1:13 ("{{ .params.k }}") is in an object key`},
		{"an unquoted JSON key", body(`{ {{ .params.k }}: 1}`), `template at 1:3 ("{{ .params.k }}") is in an object key`},
		{"an unquoted YAML key", drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/hook",
			Headers: map[string]string{"Content-Type": "application/json"}, Body: `{ {{ .params.k }}: 1, a: b}`}}, `template at 1:3 ("{{ .params.k }}") is in a mapping key`},
		{"a duplicate JSON key", body("{\"kind\": 1,\n  \"kind\": \"{{ .params.v }}\"}"), `the key "kind" at 2:3 is written twice in one object`},
		{"a duplicate YAML key", manifest(cmHead + "kind: Secret\n"), `the key "kind" at 4:1 is written twice in one mapping`},
		{"an alias bomb", manifest(aliasBomb(cmHead)), `anchor &a0 at 5:7: anchors, aliases and merge keys are not allowed`},
		{"an alias without its anchor", manifest(cmHead + "data: *x\n"), `unknown anchor 'x' referenced`},
		{"a merge key", manifest(cmHead + "data:\n  <<: {a: b}\n"), `merge key << at 5:3`},
		{"a custom tag", manifest(cmHead + "data: !foo {a: b}\n"), `tag !foo at 4:7: only the tags !!str, !!int, !!float, !!bool, !!null are allowed`},
		{"a binary tag", manifest(cmHead + "binaryData: {a: !!binary aGk=}\n"), `tag !!binary at 4:17`},
		{"two documents", manifest(cmHead + "---\n" + cmHead), `a second YAML document at 4:1: one is expected`},
		{"deep YAML", manifest(cmHead + "data: " + strings.Repeat("[", 101) + strings.Repeat("]", 101) + "\n"), `nested more than 100 levels deep (mappings, objects or lists) at 4:106`},
		{"very deep YAML", manifest(cmHead + "data: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n"), `nested more than 100 levels deep (mappings, objects or lists) at 4:107`},
		{"deep JSON", body(`{"a": ` + strings.Repeat("[", 100) + `"{{ .params.v }}"` + strings.Repeat("]", 100) + "}"), `nested more than 100 levels deep (mappings, objects or lists) at 1:106`},
		{"very deep JSON", body(deep), `http.body: Invalid value: "<body>": nested more than 100 levels deep (mappings, objects or lists) at 1:101`},
		{"too long", manifest(cmHead + "data: {a: \"" + strings.Repeat("x", templates.MaxRenderedBytes) + "\"}\n"), `bytes, over the 262144 a manifest, an override or a JSON body with templates may have`},
		{"the reserved word", body(`{"drplan-value-0-x": "{{ .params.v }}"}`), `the text holds drplan-value-, which rendering reserves`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			errs := templates.CheckBody(nil, &tc.body, []string{"v", "k", "replicas"})
			data := templates.TemplateData{Params: map[string]any{"v": "x", "k": "securityContext", "replicas": int64(3)}, PlanName: "p"}
			_, err := templates.RenderBody(tc.body, data)
			assert.Less(t, time.Since(start), time.Second)
			if tc.want == "" {
				assert.Empty(t, errs)
				assert.NoError(t, err)
				return
			}
			require.Len(t, errs, 1)
			assert.Contains(t, errs[0].Error(), tc.want, "at admission")
			require.Error(t, err, "when rendered")
			_, msg, _ := strings.Cut(tc.want, `">": `)
			assert.Contains(t, err.Error(), msg, "when rendered")
		})
	}
}

// A rendered value cannot make a text too long either.
func TestShapeRenderedSize(t *testing.T) {
	m := cmHead + "data:\n"
	for i := range 80 {
		m += fmt.Sprintf("  k%d: \"{{ .params.v }}\"\n", i)
	}
	body := drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: m}}
	_, err := templates.RenderBody(body, templates.TemplateData{Params: map[string]any{"v": strings.Repeat("x", 4096)}})
	assert.ErrorContains(t, err, "resource.manifest: the rendered text would exceed 262144 bytes")
	assert.Empty(t, templates.CheckBody(field.NewPath("spec"), &body, []string{"v"}))

	// The attacker's case: 13,000 toJson of a value of 4,096 control characters (each escaped to 6
	// bytes) in a 256 KiB text would build gigabytes before the size is known: the size is counted
	// first, and the count stops at the cap.
	m = cmHead + "data: {a: \"" + strings.Repeat("{{toJson .params.v}}", 13000) + "\"}\n"
	for _, b := range []drv1.ActionBody{
		{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: m}},
		{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x", Body: `{"a": "` + strings.Repeat("{{toJson .params.v}}", 13000) + `"}`}},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = templates.RenderBody(b, templates.TemplateData{Params: map[string]any{"v": strings.Repeat("\x01", 4096)}})
		runtime.ReadMemStats(&after)
		assert.ErrorContains(t, err, "the rendered text would exceed 262144 bytes")
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "refused before it is built")
	}
}

// FuzzStructured: any text, as a manifest and as a JSON HTTP body, is refused or rendered without
// panicking, within the cap; what the admission check (CheckBody) admits renders.
func FuzzStructured(f *testing.F) {
	for _, seed := range []string{
		cmHead + "data:\n  a: {{ .params.v }}\n  b: \"x-{{ .params.v }}\"\n  n: {{ .params.n }}\n",
		`{"text": {{ toJson .planName }}, "n": {{ .params.n }}, "m": "{{ .params.v }}"}`,
		cmHead + "spec:\n  {{ .params.v }}: {privileged: true}\n",
		`{"{{ .params.v }}": 1}`, `{ {{ .params.v }}: 1}`, `{"a": 1, "a": "{{ .params.v }}"}`, `{"n": -{{ .params.n }}}`,
		aliasBomb(cmHead), cmHead + "data:\n  <<: {a: b}\n", cmHead + "data: !foo {a: b}\n", cmHead + "---\n" + cmHead,
		`{"a": ` + strings.Repeat("[", 101) + `"{{ .params.v }}"` + strings.Repeat("]", 101) + "}",
		strings.Repeat("[", 10001) + "{{ .params.v }}", "{{- .params.v -}}", "a: {0: {{ .params }}}", `{"drplan-value-0-x": "{{ .params.v }}"}`,
	} {
		f.Add(seed)
	}
	data := templates.TemplateData{Params: map[string]any{"v": injection, "n": int64(5)}, PlanName: "p", ExecutionName: "e", Namespace: "n", Timestamp: "t"}
	f.Fuzz(func(t *testing.T, text string) {
		for _, b := range []drv1.ActionBody{
			{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate, Manifest: text}},
			{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "https://x/hook", Headers: map[string]string{"Content-Type": "application/json"}, Body: text}},
		} {
			admitted := len(templates.CheckBody(nil, &b, []string{"v", "n"})) == 0
			out, err := templates.RenderBody(b, data)
			if err != nil {
				if admitted && !strings.Contains(err.Error(), "exceed") {
					t.Fatalf("admitted %q but rendering failed: %v", text, err)
				}
				continue
			}
			if out.Resource != nil && len(out.Resource.Manifest) > templates.MaxRenderedBytes || out.HTTP != nil && len(out.HTTP.Body) > templates.MaxRenderedBytes {
				t.Fatalf("rendered over the cap")
			}
		}
	})
}

// TestOverridePathIsOneSegment: a value in a Clusternet override's path is one JSON pointer
// segment: its "/" cannot reach another field.
func TestOverridePathIsOneSegment(t *testing.T) {
	b := drv1.ActionBody{Type: drv1.ActionTypeLocalization, Localization: &drv1.LocalizationAction{
		Overrides: []drv1.Override{{Path: "/spec/template/spec/containers/{{ .params.i }}/image", Value: "nginx"}}}}
	out, err := templates.RenderBody(b, templates.TemplateData{Params: map[string]any{"i": "0/securityContext~x"}})
	require.NoError(t, err)
	assert.Equal(t, "/spec/template/spec/containers/0~1securityContext~0x/image", out.Localization.Overrides[0].Path)
	out, err = templates.RenderBody(b, templates.TemplateData{Params: map[string]any{"i": int64(2)}})
	require.NoError(t, err)
	assert.Equal(t, "/spec/template/spec/containers/2/image", out.Localization.Overrides[0].Path)
}
