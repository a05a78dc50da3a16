package templates_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/templates"
	"github.com/bkbcs/drplan-controller/test/fixtures"
)

// BenchmarkRenderBody50Actions renders every action of the 50-action fixture, as a run's start
// does.
func BenchmarkRenderBody50Actions(b *testing.B) {
	wf := fixtures.Workflow("prod", "big", 50)
	data := templates.TemplateData{Params: map[string]any{"region": "dr-east", "replicas": int64(3), "notify": true},
		PlanName: "plan", ExecutionName: "exec", Namespace: "prod", Timestamp: "2026-01-30T10:00:00Z"}
	b.ReportAllocs()
	for b.Loop() {
		for i := range wf.Spec.Actions {
			if _, err := templates.RenderBody(wf.Spec.Actions[i].ActionBody, data); err != nil {
				b.Fatal(err)
			}
		}
	}
}

const benchManifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: prod\n  labels: {app: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        ports: [{containerPort: 80}]\n"

// BenchmarkCheckManifest checks a typical Deployment, as the webhook and the runner do.
func BenchmarkCheckManifest(b *testing.B) {
	path := field.NewPath("resource", "manifest")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := templates.CheckManifest(path, benchManifest, drv1.OperationApply); err != nil {
			b.Fatal(err)
		}
	}
}
