// Package metrics holds the process's Prometheus series (docs/metrics.md) and serves them with
// the health checks; the controller, the webhook and the wiring record into it.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/bkbcs/drplan-controller/actions"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
)

// Metrics are the controller's Prometheus series (docs/metrics.md lists them). One set per
// process, on its own registry.
type Metrics struct {
	Registry *prometheus.Registry

	executions      *prometheus.CounterVec
	actionDuration  *prometheus.HistogramVec
	webhookLatency  *prometheus.HistogramVec
	webhookDecision *prometheus.CounterVec
	celEvaluations  *prometheus.CounterVec
	celCost         *prometheus.HistogramVec
	reviews         *prometheus.CounterVec
	limiterWait     *prometheus.CounterVec
	leader          prometheus.Gauge
}

const namespace = "drplan"

// NewMetrics registers every series, and the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.executions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "executions_total",
		Help: "Executions that ended, by operation (Execute, Revert) and phase (Succeeded, Failed, Cancelled)."}, []string{"operation", "phase"})
	m.actionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "action_duration_seconds",
		Help:    "Time an action took, by type (HTTP, Job, Localization, Subscription, KubernetesResource, or Undo for a Revert's delete) and result (succeeded, failed).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}}, []string{"type", "result"})
	m.webhookLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "webhook_request_duration_seconds",
		Help:    "Time the admission webhook took to decide, by kind.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1}}, []string{"kind"})
	m.webhookDecision = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "webhook_decisions_total",
		Help: "Admission decisions, by kind and whether the request was allowed."}, []string{"kind", "allowed"})
	m.celEvaluations = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "cel_evaluations_total",
		Help: "CEL evaluations, by kind (rule: the built-in or replaced decisions; guard: users' when, waitFor and successCondition) and result (ok, error)."}, []string{"kind", "result"})
	m.celCost = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "cel_evaluation_cost",
		Help:    "Cost of a CEL evaluation in CEL's cost units (the per-evaluation limit is 1,000,000).",
		Buckets: prometheus.ExponentialBuckets(1, 4, 11)}, []string{"kind"})
	m.reviews = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "subject_access_reviews_total",
		Help: "SubjectAccessReviews asked to check a requester's or an author's rights (answers kept are not counted), by result (allowed, denied, error)."}, []string{"result"})
	m.limiterWait = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "client_rate_limiter_wait_seconds_total",
		Help: "Time the process's API requests waited in their client-side rate limiter, by client (controller: the engine's reads and writes, status, leader election, events; reviews: the controller's SubjectAccessReviews; webhook: the admission webhook's reads and SubjectAccessReviews)."}, []string{"client"})
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "leader",
		Help: "1 while this replica is the leader (reconciles and runs actions), else 0. Every replica serves the webhook."})
	m.Registry.MustRegister(m.executions, m.actionDuration, m.webhookLatency, m.webhookDecision, m.celEvaluations, m.celCost, m.reviews, m.limiterWait, m.leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchQueue exports a work queue's counters under the given name ("sync" or "actions").
func (m *Metrics) WatchQueue(name string, stats func() actions.Stats) {
	labels := prometheus.Labels{"queue": name}
	gauge := func(metric, help string, value func(actions.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: metric, Help: help, ConstLabels: labels},
			func() float64 { return value(stats()) })
	}
	counter := func(metric, help string, value func(actions.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: metric, Help: help, ConstLabels: labels},
			func() float64 { return value(stats()) })
	}
	m.Registry.MustRegister(
		gauge("queue_depth", "Keys waiting for a worker.", func(s actions.Stats) float64 { return float64(s.Depth) }),
		gauge("queue_in_flight", "Keys being processed.", func(s actions.Stats) float64 { return float64(s.InFlight) }),
		gauge("queue_delayed", "Keys waiting for a retry's backoff.", func(s actions.Stats) float64 { return float64(s.Delayed) }),
		counter("queue_adds_total", "Keys added.", func(s actions.Stats) float64 { return float64(s.Adds) }),
		counter("queue_retries_total", "Keys retried with backoff.", func(s actions.Stats) float64 { return float64(s.Retries) }),
	)
}

// The recording calls but CELEvaluated are safe on a nil *Metrics: a controller built without
// metrics (unit tests) records nothing.

// ExecutionEnded counts an execution that ended.
func (m *Metrics) ExecutionEnded(op drv1.Operation, phase drv1.ExecutionPhase) {
	if m != nil {
		m.executions.WithLabelValues(string(op), string(phase)).Inc()
	}
}

// ActionDone records how long an action took (t is its type, or Undo) and whether it failed.
func (m *Metrics) ActionDone(t string, took time.Duration, err error) {
	if m == nil {
		return
	}
	result := "succeeded"
	if err != nil {
		result = "failed"
	}
	m.actionDuration.WithLabelValues(t, result).Observe(took.Seconds())
}

// WebhookDecided records one admission decision; it is the webhook's Observe hook.
func (m *Metrics) WebhookDecided(kind string, allowed bool, took time.Duration) {
	if m == nil {
		return
	}
	m.webhookLatency.WithLabelValues(kind).Observe(took.Seconds())
	a := "false"
	if allowed {
		a = "true"
	}
	m.webhookDecision.WithLabelValues(kind, a).Inc()
}

// CELEvaluated is the CEL environment's evaluation observer (rules.Options.Observer).
func (m *Metrics) CELEvaluated(kind string, cost uint64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.celEvaluations.WithLabelValues(kind, result).Inc()
	m.celCost.WithLabelValues(kind).Observe(float64(cost))
}

// Reviewed records one SubjectAccessReview (access.Reviewer's Observe hook).
func (m *Metrics) Reviewed(allowed bool, err error) {
	if m == nil {
		return
	}
	result := "denied"
	switch {
	case err != nil:
		result = "error"
	case allowed:
		result = "allowed"
	}
	m.reviews.WithLabelValues(result).Inc()
}

// RateLimiter is l, with the time each request waits in it counted under client (metrics can be
// nil: l as it is). A rest.Config's RateLimiter: every client built from that config shares it.
func (m *Metrics) RateLimiter(client string, l flowcontrol.RateLimiter) flowcontrol.RateLimiter {
	if m == nil {
		return l
	}
	return waitCounted{RateLimiter: l, waited: m.limiterWait.WithLabelValues(client)}
}

// waitCounted counts the time Wait takes, the one call client-go's requests make.
type waitCounted struct {
	flowcontrol.RateLimiter
	waited prometheus.Counter
}

func (w waitCounted) Wait(ctx context.Context) error {
	start := time.Now()
	err := w.RateLimiter.Wait(ctx)
	w.waited.Add(time.Since(start).Seconds())
	return err
}

// SetLeader says whether this replica leads.
func (m *Metrics) SetLeader(on bool) {
	if m == nil {
		return
	}
	if on {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
