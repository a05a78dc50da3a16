package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/bkbcs/drplan-controller/metrics"
)

// waited is the time client's requests waited in its rate limiter, from m.
func waited(t *testing.T, m *metrics.Metrics, client string) float64 {
	families, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "drplan_client_rate_limiter_wait_seconds_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			if s.GetLabel()[0].GetValue() == client {
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestWebhookHasItsOwnRateLimit: the webhook's reads wait in a limiter of their own; the
// controller's requests, made at the same time, do not wait behind them.
func TestWebhookHasItsOwnRateLimit(t *testing.T) {
	api := httptest.NewServer(http.NotFoundHandler())
	defer api.Close()
	m := metrics.NewMetrics()
	cl, err := newClients(&rest.Config{Host: api.URL}, Options{Webhook: &WebhookOptions{QPS: 20, Burst: 1}}.withDefaults(), m)
	require.NoError(t, err)
	ctx := context.Background()
	for range 5 { // the webhook's burst, then four waits of 50 ms
		_, err := cl.hookDR.DrV1alpha1().DRPlans("a").Get(ctx, "p", metav1.GetOptions{})
		require.Error(t, err)
		_, err = cl.dr.DrV1alpha1().DRPlans("a").Get(ctx, "p", metav1.GetOptions{})
		require.Error(t, err)
		_, err = cl.hookReviews.Create(ctx, &authorizationv1.SubjectAccessReview{}, metav1.CreateOptions{})
		require.Error(t, err)
	}
	assert.Greater(t, waited(t, m, "webhook"), 0.4, "reads and reviews share the webhook's limit: 14 waits of 50 ms")
	assert.Less(t, waited(t, m, "controller"), 0.05, "the controller's own limit is untouched")
}
