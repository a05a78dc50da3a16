package admission_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// bigWorkflow has 50 actions of every common kind, with templates, guards and typed parameters.
func bigWorkflow(name string) *drv1.DRWorkflow {
	wf := &drv1.DRWorkflow{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod"}, Spec: drv1.DRWorkflowSpec{
		Parameters: []drv1.Parameter{{Name: "region", Required: true}, param("replicas", "int", "3"), param("notify", "bool", "true")},
	}}
	for i := range 50 {
		a := drv1.Action{Name: fmt.Sprintf("step-%02d", i)}
		switch i % 3 {
		case 0:
			a.ActionBody = drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &drv1.HTTPAction{
				URL: "https://ops.example.com/{{ .params.region }}/hook", Body: `{"replicas": {{ .params.replicas }}, "plan": {{ toJson .planName }}}`}}
			a.When = "params.notify && params.replicas >= 2"
		case 1:
			a.ActionBody = drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationCreate,
				Manifest: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\ndata: {region: \"{{ .params.region }}\"}\n", i)}}
		default:
			a.ActionBody = drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationApply,
				Manifest: fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%d}\nspec: {replicas: {{ .params.replicas }}}\n", i)}}
			a.Rollback = &drv1.RollbackAction{ActionBody: drv1.ActionBody{Type: drv1.ActionTypeKubernetesResource, Resource: &drv1.ResourceAction{Operation: drv1.OperationDelete,
				Manifest: fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-%d}\n", i)}}}
			a.WaitFor = &drv1.WaitFor{Condition: "has(object.status.readyReplicas) && object.status.readyReplicas >= params.replicas"}
		}
		wf.Spec.Actions = append(wf.Spec.Actions, a)
	}
	return wf
}

// tenStagePlan chains ten stages, each running the 50-action workflow.
func tenStagePlan() *drv1.DRPlan {
	p := &drv1.DRPlan{ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: "prod"}, Spec: drv1.DRPlanSpec{
		GlobalParams: []drv1.ParamValue{{Name: "region", Value: "dr-east"}}}}
	for i := range 10 {
		s := drv1.Stage{Name: fmt.Sprintf("stage-%d", i), Workflows: []drv1.StageWorkflow{{WorkflowRef: drv1.ObjectReference{Name: "big"},
			Params: []drv1.ParamValue{{Name: "replicas", Value: "4"}}}}}
		if i > 0 {
			s.DependsOn = []string{fmt.Sprintf("stage-%d", i-1)}
			s.When = fmt.Sprintf("stages['stage-%d'].phase == 'Succeeded'", i-1)
		}
		p.Spec.Stages = append(p.Spec.Stages, s)
	}
	return p
}

// benchReview measures one AdmissionReview at a time through the webhook's HTTP handler (JSON
// in and out included) and reports the median and 99th percentile.
func benchReview(b *testing.B, kind string, obj any) {
	d := fixture()
	d.State.(*state).workflows[key("prod", "big")] = bigWorkflow("big")
	h := &admission.Webhook{Decider: d, Ready: func() bool { return true }}
	raw, err := json.Marshal(obj)
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: kind},
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}})
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(body)))
		lat = append(lat, time.Since(start))
		if rw.Code != http.StatusOK || !bytes.Contains(rw.Body.Bytes(), []byte(`"allowed":true`)) {
			b.Fatalf("not admitted: %d %s", rw.Code, rw.Body.String())
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func BenchmarkReview50ActionWorkflow(b *testing.B) { benchReview(b, "DRWorkflow", bigWorkflow("w")) }

func BenchmarkReview10StagePlan(b *testing.B) { benchReview(b, "DRPlan", tenStagePlan()) }
