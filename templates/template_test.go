package templates_test

import (
	"testing"

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
		{name: "inside if", text: "{{ if .params.nope }}x{{ end }}", err: "does not declare"},
		{name: "dot inside range is not the root", text: "{{ range .params.replicas }}{{ .anything }}{{ end }}"},
		{name: "parse error", text: "{{ .params.x", err: "template does not parse"},
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
	assert.ErrorContains(t, err, `http.url: template: :1:10: executing "" at <.params.nope>: map has no entry for key "nope"`)
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
