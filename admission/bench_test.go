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

	"github.com/bkbcs/drplan-controller/access"
	"github.com/bkbcs/drplan-controller/admission"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/test/fixtures"
)

// benchReview measures one AdmissionReview at a time through a webhook's HTTP handler (JSON in
// and out included) and reports the median and 99th percentile.
func benchReview(b *testing.B, h http.Handler, req *admissionv1.AdmissionRequest) {
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: req})
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

// validating is the validating webhook over the fixture, with a 50-action workflow "big".
func validating(b testing.TB) *admission.Webhook {
	d := fixture(b)
	d.State.(*state).workflows[key("prod", "big")] = fixtures.Workflow("prod", "big", 50)
	return &admission.Webhook{Decider: d, Controller: controllerUser, Ready: func() bool { return true }}
}

func request(b *testing.B, kind string, op admissionv1.Operation, user drv1.Requester, obj, old any) *admissionv1.AdmissionRequest {
	req := &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Group: drv1.GroupName, Version: "v1alpha1", Kind: kind},
		Operation: op, UserInfo: userInfo(user)}
	for raw, o := range map[*runtime.RawExtension]any{&req.Object: obj, &req.OldObject: old} {
		if o == nil {
			continue
		}
		j, err := json.Marshal(o)
		if err != nil {
			b.Fatal(err)
		}
		raw.Raw = j
	}
	return req
}

func BenchmarkReview50ActionWorkflow(b *testing.B) {
	benchReview(b, validating(b), request(b, "DRWorkflow", admissionv1.Create, alice, fixtures.Workflow("prod", "w", 50), nil))
}

func BenchmarkReview10StagePlan(b *testing.B) {
	benchReview(b, validating(b), request(b, "DRPlan", admissionv1.Create, alice, fixtures.ChainPlan("prod", "plan", "big", 10), nil))
}

// finished100 is a finished execution of 100 actions with its status, as the engine writes it.
func finished100() *drv1.DRPlanExecution {
	e := execution("run", drv1.OperationExecute, drv1.ExecutionSucceeded, func(e *drv1.DRPlanExecution) {
		e.Annotations = map[string]string{drv1.AnnotationRequester: alice.Encode()}
	})
	now := metav1.NewTime(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	for i := range 100 {
		e.Status.ActionStatuses = append(e.Status.ActionStatuses, drv1.ActionStatus{Name: fmt.Sprintf("cm-%d", i), Stage: "default",
			Phase: drv1.StepSucceeded, StartTime: &now, CompletionTime: &now, Message: fmt.Sprintf("ConfigMap prod/seq-run-%d created", i)})
		e.Status.Outputs = append(e.Status.Outputs, drv1.ActionOutput{ActionName: fmt.Sprintf("cm-%d", i), Stage: "default",
			ResourceRef: &drv1.ResourceReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "prod", Name: fmt.Sprintf("seq-run-%d", i), UID: "0b8a9d1e-8a36-4f6e-9e51-5a8f3c1d2e4f"}})
	}
	return e
}

// BenchmarkReviewExecutionStatus: what the validating webhook adds to each of the controller's
// status writes (a finished 100-action execution, object and old object): it decodes the review
// and compares one user name.
func BenchmarkReviewExecutionStatus(b *testing.B) {
	e := finished100()
	req := request(b, "DRPlanExecution", admissionv1.Update, controller, e, e)
	req.SubResource = "status"
	benchReview(b, validating(b), req)
}

// BenchmarkMutateExecutionCreate: the mutating webhook recording the requester of a new
// execution.
func BenchmarkMutateExecutionCreate(b *testing.B) {
	e := execution("new", drv1.OperationExecute, "", nil)
	benchReview(b, &admission.Mutator{Controller: controllerUser}, request(b, "DRPlanExecution", admissionv1.Create, alice, e, nil))
}

// BenchmarkMutateCancel: the mutating webhook appending a decision to a 100-action execution's
// list of 20.
func BenchmarkMutateCancel(b *testing.B) {
	old := finished100()
	old.Status.Phase = drv1.ExecutionRunning
	var ds []drv1.Decision
	for range 20 {
		ds = append(ds, drv1.Decision{User: bob, Annotation: drv1.GroupName + "/approve", Value: "yes", Time: decidedAt})
	}
	old.Annotations[drv1.AnnotationDecisions] = drv1.EncodeDecisions(ds)
	e := old.DeepCopy()
	e.Annotations[drv1.AnnotationCancel] = "true"
	benchReview(b, &admission.Mutator{Controller: controllerUser}, request(b, "DRPlanExecution", admissionv1.Update, alice, e, old))
}

// BenchmarkReviewExecution150Actions: admitting an execution of a 3-stage plan of the 50-action
// workflow checks its requester's rights on every rendered action (docs/security.md); the
// answers are kept, as between the requests of a busy tenant.
func BenchmarkReviewExecution150Actions(b *testing.B) {
	h := validating(b)
	h.Decider.State.(*state).plans[key("prod", "chain")] = fixtures.ChainPlan("prod", "chain", "big", 3)
	h.Decider.Access = &access.Authorizer{Reviewer: access.NewReviewer(rbac{grants: []string{
		"alice create configmaps prod", "alice get configmaps prod", "alice patch deployments prod", "alice create deployments prod",
		"alice list deployments prod", "alice watch deployments prod"}}, time.Minute), Mapper: mapper()}
	e := &drv1.DRPlanExecution{ObjectMeta: metav1.ObjectMeta{Name: "run", Namespace: "prod",
		Annotations: map[string]string{drv1.AnnotationRequester: alice.Encode()}}, // as the mutating webhook recorded it
		Spec: drv1.DRPlanExecutionSpec{PlanRef: drv1.ObjectReference{Name: "chain"}, Operation: drv1.OperationExecute}}
	benchReview(b, h, request(b, "DRPlanExecution", admissionv1.Create, alice, e, nil))
}
