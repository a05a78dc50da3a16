package admission_test

import (
	"bytes"
	"encoding/json"
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
	"github.com/bkbcs/drplan-controller/test/fixtures"
)

// benchReview measures one AdmissionReview at a time through the webhook's HTTP handler (JSON
// in and out included) and reports the median and 99th percentile.
func benchReview(b *testing.B, kind string, obj any) {
	d := fixture(b)
	d.State.(*state).workflows[key("prod", "big")] = fixtures.Workflow("prod", "big", 50)
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

func BenchmarkReview50ActionWorkflow(b *testing.B) {
	benchReview(b, "DRWorkflow", fixtures.Workflow("prod", "w", 50))
}

func BenchmarkReview10StagePlan(b *testing.B) {
	benchReview(b, "DRPlan", fixtures.ChainPlan("prod", "plan", "big", 10))
}
