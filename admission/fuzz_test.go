package admission_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/bkbcs/drplan-controller/admission"
)

// FuzzReview: any body POSTed to the webhooks is answered (an AdmissionReview or an HTTP error),
// never a panic.
func FuzzReview(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"dr.bkbcs.tencent.com","version":"v1alpha1","kind":"DRPlanExecution"},"operation":"CREATE","userInfo":{"username":"alice"},"object":{"metadata":{"name":"x","namespace":"prod"},"spec":{"planRef":{"name":"p"}}}}}`))
	f.Add([]byte(`{"request":{"kind":{"group":"dr.bkbcs.tencent.com","kind":"DRWorkflow"},"operation":"UPDATE","subResource":"status","object":{},"oldObject":{}}}`))
	f.Add([]byte(`not json`))
	validate := validating(f)
	mutate := &admission.Mutator{Controller: controllerUser}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range []http.Handler{validate, mutate} {
			rw := httptest.NewRecorder()
			h.ServeHTTP(rw, httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(body)))
			if rw.Code == 0 {
				t.Fatal("no answer")
			}
		}
	})
}
