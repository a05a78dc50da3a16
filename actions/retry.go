package actions

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/bkbcs/drplan-controller/backoff"
	"github.com/bkbcs/drplan-controller/rules"
)

// DefaultAPIRetryTimeout is how long the API calls of an action without a timeout of its own are
// retried through transient errors (--api-retry-timeout).
const DefaultAPIRetryTimeout = 2 * time.Minute

// apiWait spaces the retries of a transient API error: 200 ms, doubling up to 5 s. A server's
// Retry-After is waited when longer, up to the same cap.
var apiWait = backoff.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second}

// apiCalls is how one action retries the transient errors of its API calls (TransientAPIError):
// with backoff, until its deadline, keeping count for the action's message. Not safe for
// concurrent use: an action makes its calls one after the other.
type apiCalls struct {
	wait     backoff.Policy
	deadline time.Time
	// ready, when set, asks whether the API server is ready: a refusal (401, 403) from one that
	// is not is retried (see starting).
	ready   func(context.Context) bool
	retries int32
	first   time.Time // when the first retried error came
	why     string    // the last retried error, in words
}

// apiCalls retries until budget from now (DefaultAPIRetryTimeout if budget is not positive),
// asking f's API server whether it is ready when it refuses a call (a nil f never asks).
func (f *ClientFactory) apiCalls(budget time.Duration) *apiCalls {
	if budget <= 0 {
		budget = DefaultAPIRetryTimeout
	}
	c := &apiCalls{wait: apiWait, deadline: time.Now().Add(budget)}
	if f != nil && f.readyz != nil {
		c.ready = f.apiServerReady
	}
	return c
}

// starting reports whether err is a refusal (401, 403) by an API server that says it is not
// ready: one starting up answers before its authenticators and authorizer have loaded what they
// need, and refuses then what it will allow once ready.
func (c *apiCalls) starting(ctx context.Context, err error) bool {
	return c.ready != nil && (apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)) && !c.ready(ctx)
}

// delay is the wait before the next try after failures retried ones: the backoff's, or the
// server's Retry-After when longer (capped likewise).
func (c *apiCalls) delay(failures int, err error) time.Duration {
	wait := c.wait.Delay(failures)
	if s, ok := apierrors.SuggestsClientDelay(err); ok && time.Duration(s)*time.Second > wait {
		wait = min(time.Duration(s)*time.Second, c.wait.Max)
	}
	return wait
}

// note is what the retries were, for a message: "" without any, else
// " (after 7 retries over 41s: the API server was unreachable)".
func (c *apiCalls) note() string {
	if c == nil || c.retries == 0 {
		return ""
	}
	retries := "retries"
	if c.retries == 1 {
		retries = "retry"
	}
	return fmt.Sprintf(" (after %d %s over %s: %s)", c.retries, retries, rules.FormatDuration(time.Since(c.first)), c.why)
}

// report puts the retries in res (their count, and the note at the end of its message or of err).
func (c *apiCalls) report(res Result, err error) (Result, error) {
	res.Retries += c.retries
	note := c.note()
	if note == "" {
		return res, err
	}
	if err != nil {
		return res, &retriedError{err: err, note: note}
	}
	res.Message += note
	return res, nil
}

// retriedError is an action's error with the note of its retries; it unwraps to the error, so
// the API error it holds can still be tested.
type retriedError struct {
	err  error
	note string
}

func (e *retriedError) Error() string { return e.err.Error() + e.note }
func (e *retriedError) Unwrap() error { return e.err }

// callAPI calls fn, retrying transient API errors (TransientAPIError) with calls' backoff, or the
// server's Retry-After if longer, while a full wait still ends before calls' deadline; fn's ctx
// ends at that deadline, so a call that hangs ends with it. Each retry is counted in calls. The
// last error is returned as is, so callers can still test it with apierrors.
func callAPI[T any](ctx context.Context, calls *apiCalls, conflictIsTransient bool, fn func(context.Context) (T, error)) (T, error) {
	callCtx, cancel := context.WithDeadline(ctx, calls.deadline)
	defer cancel()
	for failures := 0; ; failures++ {
		v, err := fn(callCtx)
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		why := ""
		switch {
		case TransientAPIError(err, conflictIsTransient):
			why = transientReason(err)
		case calls.starting(callCtx, err):
			why = "the API server was starting (not ready, it refused what it allows once ready)"
		default:
			return v, err
		}
		wait := calls.delay(failures, err)
		if time.Until(calls.deadline) < wait {
			return v, err
		}
		if calls.retries == 0 {
			calls.first = time.Now()
		}
		calls.why = why
		if backoff.Sleep(ctx, wait) != nil {
			return v, err
		}
		calls.retries++
	}
}

// RetryTransient calls fn (API calls) as an action's API calls are made: until it succeeds,
// fails for good, or f's APIRetryTimeout would pass before the next try; a nil f retries for
// DefaultAPIRetryTimeout and never asks whether a refusing API server is ready. It returns fn's
// last error, with the note of the retries appended if there were any (" (after 3 retries over
// 2.4s: the API server was unreachable)"), unwrapping to it.
func (f *ClientFactory) RetryTransient(ctx context.Context, fn func(context.Context) error) error {
	calls := f.apiCalls(f.APIRetryTimeout())
	_, err := callAPI(ctx, calls, false, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) })
	_, err = calls.report(Result{}, err)
	return err
}

// TransientAPIError reports whether err may well go away on its own: 429, a 5xx that is not one
// retrying cannot fix (501, 505, a request too large for etcd), a server or client timeout (a
// request's deadline included), a dropped or refused connection, and, where a retry reads the
// object afresh (apply, patch), a conflict. Everything else (forbidden, invalid, not found, ...)
// is final.
func TransientAPIError(err error, conflictIsTransient bool) bool {
	switch {
	case errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	case apierrors.IsConflict(err):
		return conflictIsTransient
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := int(status.Status().Code)
		switch {
		case code == http.StatusNotImplemented || code == http.StatusHTTPVersionNotSupported,
			strings.Contains(err.Error(), "request is too large"):
			return false
		case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), code >= 500:
			return true
		}
	}
	if apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) || utilnet.IsHTTP2ConnectionLost(err) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// transientReason says in words what a transient error was, for an action's message.
func transientReason(err error) string {
	var status apierrors.APIStatus
	switch {
	case apierrors.IsConflict(err):
		return "the object was changed meanwhile (conflict)"
	case apierrors.IsTooManyRequests(err):
		return "the API server asked to slow down (429)"
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return "the API server timed out"
	case apierrors.IsServiceUnavailable(err):
		return "the API server was unavailable (503)"
	case errors.As(err, &status) && status.Status().Code >= 500:
		return fmt.Sprintf("the API server answered %d", status.Status().Code)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "the API server timed out"
	}
	return "the API server was unreachable"
}
