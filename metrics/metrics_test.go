package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/metrics"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return rec.Code, string(body)
}

func TestHandler(t *testing.T) {
	m := metrics.NewMetrics()
	var ready atomic.Bool
	h := m.Handler(ready.Load)

	code, _ := get(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code, "healthy while the process runs")
	code, _ = get(t, h, "/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code, "not ready before the caches synced")
	ready.Store(true)
	code, _ = get(t, h, "/readyz")
	assert.Equal(t, http.StatusOK, code)

	m.ExecutionEnded(drv1.OperationExecute, drv1.ExecutionSucceeded)
	m.ActionDone("HTTP", time.Second, errors.New("refused"))
	m.WebhookDecided("DRPlan", false, time.Millisecond)
	m.CELEvaluated("rule", 3, nil)
	m.Reviewed(false, nil)
	m.Reviewed(true, errors.New("timeout"))
	m.SetLeader(true)
	m.WatchQueue("sync", func() actions.Stats { return actions.Stats{Depth: 2} })
	code, body := get(t, h, "/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, series := range []string{
		`drplan_executions_total{operation="Execute",phase="Succeeded"} 1`,
		`drplan_action_duration_seconds_count{result="failed",type="HTTP"} 1`,
		`drplan_webhook_decisions_total{allowed="false",kind="DRPlan"} 1`,
		`drplan_cel_evaluations_total{kind="rule",result="ok"} 1`,
		`drplan_subject_access_reviews_total{result="denied"} 1`,
		`drplan_subject_access_reviews_total{result="error"} 1`,
		`drplan_leader 1`,
		`drplan_queue_depth{queue="sync"} 2`,
		`go_goroutines`,
	} {
		assert.Contains(t, body, series)
	}
}

func TestRateLimiterWaitsCounted(t *testing.T) {
	m := metrics.NewMetrics()
	l := m.RateLimiter("webhook", flowcontrol.NewTokenBucketRateLimiter(20, 1))
	for range 3 { // the burst, then two waits of 50 ms
		require.NoError(t, l.Wait(context.Background()))
	}
	_, body := get(t, m.Handler(func() bool { return true }), "/metrics")
	var waited float64
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, `drplan_client_rate_limiter_wait_seconds_total{client="webhook"} `); ok {
			var err error
			waited, err = strconv.ParseFloat(v, 64)
			require.NoError(t, err)
		}
	}
	assert.Greater(t, waited, 0.05, "about 0.1 s waited")
	var none *metrics.Metrics
	assert.Equal(t, l, none.RateLimiter("webhook", l), "no metrics: the limiter as it is")
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.ExecutionEnded(drv1.OperationRevert, drv1.ExecutionFailed)
	m.ActionDone("Job", time.Second, nil)
	m.WebhookDecided("DRWorkflow", true, time.Millisecond)
	m.Reviewed(true, nil)
	m.SetLeader(false)
}
