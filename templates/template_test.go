package templates_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
)

func TestRender(t *testing.T) {
	data := templates.TemplateData{
		Params:        map[string]any{"replicas": int64(5), "message": `say "hi"`, "enabled": true},
		PlanName:      "app-dr-plan",
		ExecutionName: "exec-1",
		Namespace:     "production",
		Timestamp:     "2026-01-30T10:00:00Z",
	}
	tests := []struct {
		name, text, want, err string
	}{
		{name: "plain text untouched", text: "no templates", want: "no templates"},
		{name: "param int", text: "value: {{ .params.replicas }}", want: "value: 5"},
		{name: "all top-level keys", text: "{{ .planName }}/{{ .executionName }}/{{ .namespace }}@{{ .timestamp }}",
			want: "app-dr-plan/exec-1/production@2026-01-30T10:00:00Z"},
		{name: "toJson escapes", text: `{"m": {{ toJson .params.message }}}`, want: `{"m": "say \"hi\""}`},
		{name: "toJson bool", text: `{{ toJson .params.enabled }}`, want: `true`},
		{name: "missing param is an error", text: "{{ .params.nope }}", err: `map has no entry for key "nope"`},
		{name: "parse error", text: "{{ .params.x ", err: "unclosed action"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := templates.Render(tc.text, data)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCheckTemplate(t *testing.T) {
	declared := []string{"targetCluster", "replicas"}
	tests := []struct {
		name, text, err string
	}{
		{name: "no template", text: "https://x"},
		{name: "declared params and keys", text: "{{ .params.targetCluster }} {{ .planName }} {{ toJson .params.replicas }}"},
		{name: "undeclared param with suggestion", text: "{{ .params.targetClustr }}",
			err: `template uses .params.targetClustr, which the workflow does not declare (did you mean "targetCluster"?)`},
		{name: "unknown top-level key", text: "{{ .planNme }}",
			err: `template uses .planNme, which does not exist (did you mean "planName"?) (use .executionName, .namespace, .params, .planName, .timestamp)`},
		{name: "toJson of a field, with trim markers", text: "{{- toJson .planName -}} and {{/* a comment */}}"},
		{name: "if", text: "a {{ if .params.replicas }}x{{ end }}", err: `template at 1:8: "{{if .params.replicas}}x{{end}}" is not a reference`},
		{name: "range, the loop bomb", text: "{{ range 20000000 }}x{{ end }}", err: "is not a reference"},
		{name: "with", text: "{{ with .planName }}{{ . }}{{ end }}", err: "is not a reference"},
		{name: "define and template: recursion", text: `{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`, err: "is not a reference"},
		{name: "block", text: `{{ block "b" .planName }}x{{ end }}`, err: "is not a reference"},
		{name: "a variable", text: "{{ $x := .planName }}{{ $x }}", err: "is not a reference"},
		{name: "a pipe", text: "{{ .planName | toJson }}", err: "is not a reference"},
		{name: "another function", text: `{{ printf "%s" .planName }}`, err: "is not a reference"},
		{name: "index", text: `{{ index .params "replicas" }}`, err: "is not a reference"},
		{name: "a constant", text: `{{ "x" }}`, err: "is not a reference"},
		{name: "toJson of a constant", text: `{{ toJson "x" }}`, err: "is not a reference"},
		{name: "parse error", text: "{{ .params.x", err: "template does not parse"},
		{name: "all the parameters", text: "{{ .params }}", err: "template uses .params: name one parameter, .params.<name>"},
		{name: "a parameter's field", text: "{{ toJson .params.replicas.x }}", err: "template uses .params.replicas.x: name one parameter, .params.<name>"},
		{name: "a name's field", text: "{{ .planName.x }}", err: "template uses .planName.x: .planName is a value of its own, with no fields"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := templates.CheckTemplate(tc.text, declared)
			if tc.err == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestRenderBody(t *testing.T) {
	data := templates.TemplateData{Params: map[string]any{"ns": "prod", "host": `db "primary"`, "replicas": int64(3)}, PlanName: "p"}
	body := drv1.ActionBody{Type: drv1.ActionTypeJob, Job: &drv1.JobAction{
		Namespace: "{{ .params.ns }}", GenerateName: "backup-{{ .planName }}-",
		Template: runtime.RawExtension{Raw: []byte(`{"spec":{"containers":[{"name":"b","args":["--host={{ .params.host }}","--n={{ .params.replicas }}"]}]}}`)},
	}}
	got, err := templates.RenderBody(body, data)
	require.NoError(t, err)
	assert.Equal(t, "prod", got.Job.Namespace)
	assert.Equal(t, "backup-p-", got.Job.GenerateName)
	assert.JSONEq(t, `{"spec":{"containers":[{"name":"b","args":["--host=db \"primary\"","--n=3"]}]}}`, string(got.Job.Template.Raw))
	assert.Equal(t, "{{ .params.ns }}", body.Job.Namespace, "the input is not changed")

	_, err = templates.RenderBody(drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{URL: "{{ .params.nope }}"}}, data)
	assert.ErrorContains(t, err, `http.url: template "{{ .params.nope }}": map has no entry for key "nope"`)
}

func TestCheckBody(t *testing.T) {
	body := &drv1.ActionBody{Type: drv1.ActionTypeJob, Job: &drv1.JobAction{
		Namespace: "{{ .params.nss }}", Name: "backup",
		Template: runtime.RawExtension{Raw: []byte(`{"spec":{"containers":[{"name":"b","args":["--host={{ .params.host }}","--n={{ .params.replica }}"]}]}}`)},
	}}
	errs := templates.CheckBody(field.NewPath("spec", "actions").Index(2), body, []string{"ns", "host", "replicas"})
	var got []string
	for _, e := range errs {
		got = append(got, e.Field)
	}
	assert.Equal(t, []string{"spec.actions[2].job.namespace", "spec.actions[2].job.template.spec.containers[0].args[1]"}, got,
		"every error, each at its field, in a fixed order")
	assert.ErrorContains(t, errs[1], `template uses .params.replica, which the workflow does not declare (did you mean "replicas"?)`)
}

// TestRenderRefusesWhatAdmissionRefuses: a template stored before the checks (or while the webhook
// was down) is refused when rendered too, in no time; and no rendering grows past its cap.
func TestRenderRefusesWhatAdmissionRefuses(t *testing.T) {
	data := templates.TemplateData{Params: map[string]any{"big": strings.Repeat("x", templates.MaxRenderedBytes)}, PlanName: "p"}
	for _, bomb := range []string{"{{ range 20000000 }}xxxxxxxxxx{{ end }}", `{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`} {
		start := time.Now()
		_, err := templates.Render(bomb, data)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is not a reference")
		assert.Less(t, time.Since(start), time.Second)
	}
	_, err := templates.Render("{{ .params.big }}!", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("the rendered text would exceed %d bytes", templates.MaxRenderedBytes))
	out, err := templates.Render("{{ .params.big }}", data)
	require.NoError(t, err, "up to the cap")
	assert.Len(t, out, templates.MaxRenderedBytes)
}

// FuzzTemplate: any text either is refused or renders, within the cap, without panicking; what
// CheckTemplate admits, Render renders.
func FuzzTemplate(f *testing.F) {
	for _, seed := range []string{"plain", "{{ .params.x }}", "{{ toJson .params.x }}-{{ .planName }}", "{{ range 9 }}x{{ end }}",
		`{{ define "a" }}{{ template "a" }}{{ end }}`, "{{ .params.x | toJson }}", "{{- .timestamp -}}", "{{/* c */}}", "{{ .params.x.y.z }}", "{{",
		// Structured texts (FuzzStructured has more): a templated key, an alias, deep JSON.
		"{{ .params.x }}: v\n", `{"{{ .params.x }}": 1}`, "a: &a [x]\nb: *a\nc: {{ .params.x }}\n", strings.Repeat("[", 1000) + "{{ .params.x }}"} {
		f.Add(seed)
	}
	data := templates.TemplateData{Params: map[string]any{"x": `v"\n`}, PlanName: "p", ExecutionName: "e", Namespace: "n", Timestamp: "t"}
	f.Fuzz(func(t *testing.T, text string) {
		checked := templates.CheckTemplate(text, []string{"x"})
		out, err := templates.Render(text, data)
		if err == nil && len(out) > templates.MaxRenderedBytes {
			t.Fatalf("rendered %d bytes", len(out))
		}
		if checked == nil && err != nil && !strings.Contains(err.Error(), "map has no entry") && !strings.Contains(err.Error(), "can't evaluate field") {
			t.Fatalf("admitted %q but rendering failed: %v", text, err)
		}
	})
}
