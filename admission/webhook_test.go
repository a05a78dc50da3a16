package admission_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/bkbcs/drplan-controller/admission"
)

// reviewOfSize is an AdmissionReview (of a kind the webhooks do not judge) of exactly size bytes.
func reviewOfSize(t *testing.T, size int) []byte {
	t.Helper()
	body := func(pad string) []byte {
		b, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "big", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"},
				Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(fmt.Sprintf(`{"data":{"pad":%q}}`, pad))}},
		})
		require.NoError(t, err)
		return b
	}
	b := body(strings.Repeat("a", size-len(body(""))))
	require.Len(t, b, size)
	return b
}

// TestWebhooksCapTheBody: a body over MaxReviewBytes is refused with 413 before it is decoded, by
// the validating and the mutating webhook alike; one of exactly the cap is answered.
func TestWebhooksCapTheBody(t *testing.T) {
	for name, h := range map[string]http.Handler{
		"validating": &admission.Webhook{Decider: fixture(t)},
		"mutating":   &admission.Mutator{Controller: "system:serviceaccount:drplan-system:drplan-controller"},
	} {
		t.Run(name, func(t *testing.T) {
			rw := httptest.NewRecorder()
			h.ServeHTTP(rw, httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(reviewOfSize(t, admission.MaxReviewBytes+1))))
			assert.Equal(t, http.StatusRequestEntityTooLarge, rw.Code)
			assert.Equal(t, fmt.Sprintf("the AdmissionReview is too large: over %d bytes\n", admission.MaxReviewBytes), rw.Body.String())

			rw = httptest.NewRecorder()
			h.ServeHTTP(rw, httptest.NewRequest(http.MethodPost, admission.Path, bytes.NewReader(reviewOfSize(t, admission.MaxReviewBytes))))
			require.Equal(t, http.StatusOK, rw.Code, "at the cap: answered")
			var out admissionv1.AdmissionReview
			require.NoError(t, json.Unmarshal(rw.Body.Bytes(), &out))
			assert.True(t, out.Response.Allowed)
		})
	}
}
