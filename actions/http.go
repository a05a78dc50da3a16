package actions

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bkbcs/drplan-controller/backoff"
	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// Defaults and limits of HTTP actions. The defaults apply when a field is empty or zero (the CRD
// sets most of them, but a runner must not depend on defaulting having run).
const (
	DefaultHTTPTimeout          = 30 * time.Second
	DefaultHTTPRetryInterval    = time.Second
	DefaultHTTPRetryBackoff     = 2
	DefaultHTTPRetryMaxInterval = 30 * time.Second

	// httpReadLimit bounds how much of a response body is read: enough to let the connection be
	// reused after an ordinary reply, small enough that a huge or endless body cannot exhaust
	// memory.
	httpReadLimit = 64 << 10
	// httpRecordedBody is how much of the body is kept in the action's status, and
	// httpBodyInMessage how much a failure message quotes.
	httpRecordedBody  = 1024
	httpBodyInMessage = 256
	httpMaxRedirects  = 10
	httpTruncated     = "… (truncated)"
	httpUserAgent     = "drplan-controller"
)

// HTTPRunner runs HTTP actions: one request per attempt, each bounded by the action's timeout.
// A call is made once unless the action has a retry policy, and then retried only for failures a
// retry can fix: no connection, a timeout, 429 or 5xx. Messages never contain request headers,
// URL passwords or query values, which may hold tokens.
type HTTPRunner struct {
	client *http.Client
	// env compiles successConditions: the process's CEL environment, with its cache and limits.
	env *rules.Env
	// sleep waits between attempts and returns early with ctx's error; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

var _ Runner = (*HTTPRunner)(nil)

// NewHTTPRunner returns a runner that sends requests with client and compiles successConditions
// in env. A nil client is NewHTTPClient(EgressPolicy{}): nothing refused.
func NewHTTPRunner(env *rules.Env, client *http.Client) *HTTPRunner {
	if client == nil {
		client = NewHTTPClient(EgressPolicy{})
	}
	return &HTTPRunner{client: client, env: env, sleep: backoff.Sleep}
}

// NewHTTPClient is the client of HTTP actions: a transport of its own (proxy from the
// environment, bounded dial and TLS handshake, HTTP/2) that connects only where egress allows
// (every connection attempt, to the resolved address; the host of every request, redirect hops
// included), and that follows a redirect only if it keeps the method: a POST answered by 301, 302
// or 303 is not silently turned into a GET, it fails with the 3xx status instead.
func NewHTTPClient(egress EgressPolicy) *http.Client {
	transport := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: newEgressDialer(&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}, egress).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    10,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	if egress.Empty() {
		return &http.Client{Transport: transport, CheckRedirect: redirectKeepingMethod}
	}
	return &http.Client{Transport: &egressTransport{policy: egress, next: transport}, CheckRedirect: redirectKeepingMethod}
}

func redirectKeepingMethod(req *http.Request, via []*http.Request) error {
	if len(via) >= httpMaxRedirects {
		return fmt.Errorf("stopped after %d redirects", httpMaxRedirects)
	}
	if req.Method != via[0].Method {
		return http.ErrUseLastResponse
	}
	return nil
}

// Run calls the endpoint. On failure it returns the error together with a Result that holds the
// retries made and the response to the last attempt, if one came.
func (r *HTTPRunner) Run(ctx context.Context, req Request) (Result, error) {
	if req.Body.Type != drv1.ActionTypeHTTP {
		return Result{}, fmt.Errorf("the HTTP runner cannot run an action of type %q", req.Body.Type)
	}
	if req.Body.HTTP == nil {
		return Result{}, errors.New("type HTTP needs an http block")
	}
	call, err := newHTTPCall(r.env, req.Body.HTTP)
	if err != nil {
		return Result{}, err
	}
	call.redact = req.Redact

	var res Result
	for attempt := 1; ; attempt++ {
		out := r.attempt(ctx, call)
		res.HTTPResponse = out.resp
		res.MayHaveActed = res.MayHaveActed || out.sent
		if out.err == nil {
			res.Message = fmt.Sprintf("HTTP request completed with status %d", out.resp.StatusCode)
			return res, nil
		}
		if ctx.Err() != nil {
			return res, call.cancelled(ctx, fmt.Sprintf("during attempt %d", attempt))
		}
		switch {
		case call.retry == nil:
			return res, fmt.Errorf("%s: %w", call.target, out.err)
		case !out.retryable:
			return res, fmt.Errorf("%s: %w; not retried after %s: only failures to connect, timeouts, 429 and 5xx are",
				call.target, out.err, httpAttempts(attempt))
		case attempt > call.retry.limit:
			return res, fmt.Errorf("%s: %w; gave up after %s", call.target, out.err, httpAttempts(attempt))
		}
		if err := r.sleep(ctx, call.retry.wait(attempt)); err != nil {
			return res, call.cancelled(ctx, fmt.Sprintf("waiting to retry after %s", httpAttempts(attempt)))
		}
		res.Retries++
	}
}

func httpAttempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// httpCall is an HTTP action with defaults applied and durations parsed.
type httpCall struct {
	method   string
	url      string
	target   string // method and redacted URL: the prefix of every failure message
	headers  map[string]string
	body     string
	timeout  time.Duration
	expected []int32
	success  *rules.Program   // when set, decides success instead of expected
	retry    *httpRetryPolicy // nil: a single attempt
	redact   *strings.Replacer
}

// shown is what the call reports of a response body: redacted, before any cut.
func (c *httpCall) shown(body []byte) []byte {
	if c.redact == nil {
		return body
	}
	return []byte(c.redact.Replace(string(body)))
}

func newHTTPCall(env *rules.Env, spec *drv1.HTTPAction) (*httpCall, error) {
	u, err := url.Parse(spec.URL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its text repeats the URL, which may hold a token
		}
		return nil, fmt.Errorf("http.url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http.url: must be an absolute http or https URL, got %q", redactHTTPURL(u))
	}
	c := &httpCall{
		method:   HTTPMethod(spec),
		url:      spec.URL,
		headers:  spec.Headers,
		body:     spec.Body,
		expected: spec.ExpectedStatusCodes,
	}
	c.target = c.method + " " + redactHTTPURL(u)
	if c.timeout, err = httpDurationOr(spec.Timeout, DefaultHTTPTimeout); err != nil {
		return nil, fmt.Errorf("http.timeout: %w", err)
	}
	if spec.Retry != nil {
		if c.retry, err = newHTTPRetryPolicy(spec.Retry); err != nil {
			return nil, err
		}
	}
	if spec.SuccessCondition != "" {
		if c.success, err = env.CompileGuard(spec.SuccessCondition, []drv1.Parameter{}); err != nil {
			return nil, fmt.Errorf("http.successCondition: %w", err)
		}
	}
	return c, nil
}

// succeeded decides an answer: by the successCondition when there is one, else by the status
// code. msg says why not.
func (c *httpCall) succeeded(ctx context.Context, resp *http.Response, body []byte) (ok bool, msg string) {
	if c.success == nil {
		if c.expects(resp.StatusCode) {
			return true, ""
		}
		return false, fmt.Sprintf("answered %d, expected %s", resp.StatusCode, c.expectation())
	}
	headers := map[string]any{}
	for k, v := range resp.Header {
		headers[k] = strings.Join(v, ", ")
	}
	response := map[string]any{"code": int64(resp.StatusCode), "headers": headers, "body": string(body)}
	var parsed any
	if json.Unmarshal(body, &parsed) == nil {
		response["json"] = parsed
	}
	ok, err := c.success.Eval(ctx, map[string]any{rules.VarResponse: response})
	switch {
	case err != nil:
		return false, fmt.Sprintf("answered %d; successCondition %q could not be evaluated: %v", resp.StatusCode, c.success.Expression, err)
	case !ok:
		return false, fmt.Sprintf("answered %d; successCondition %q is false", resp.StatusCode, c.success.Expression)
	}
	return true, ""
}

// httpDurationOr parses d; empty, zero or negative gives def.
func httpDurationOr(d drv1.Duration, def time.Duration) (time.Duration, error) {
	v, err := d.Parse()
	if err != nil {
		return 0, err
	}
	if v <= 0 {
		return def, nil
	}
	return v, nil
}

// redactHTTPURL is u for messages: password and query values masked, fragment dropped.
func redactHTTPURL(u *url.URL) string {
	r := *u
	r.Fragment, r.RawFragment = "", ""
	if r.RawQuery != "" {
		q := r.Query()
		for _, vs := range q {
			for i := range vs {
				vs[i] = "xxxxx"
			}
		}
		r.RawQuery = q.Encode()
	}
	return r.Redacted()
}

func (c *httpCall) newRequest(ctx context.Context) (*http.Request, error) {
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", httpUserAgent)
	for k, v := range c.headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v // the client ignores a Host entry in Header
			continue
		}
		req.Header.Set(k, v)
	}
	return req, nil
}

func (c *httpCall) expects(code int) bool {
	if len(c.expected) == 0 {
		return code >= 200 && code <= 299
	}
	for _, e := range c.expected {
		if int(e) == code {
			return true
		}
	}
	return false
}

func (c *httpCall) expectation() string {
	if len(c.expected) == 0 {
		return "2xx"
	}
	return fmt.Sprintf("one of %v", c.expected)
}

// cancelled says that ctx ended the call; the error wraps ctx.Err() for errors.Is.
func (c *httpCall) cancelled(ctx context.Context, when string) error {
	return fmt.Errorf("%s: cancelled %s: %w", c.target, when, ctx.Err())
}

// httpOutcome is one attempt: err is nil on success; resp is set whenever a status was received.
type httpOutcome struct {
	resp      *drv1.HTTPResponse
	err       error // without the method and URL
	retryable bool
	sent      bool // no answer came, but the request may have reached the server
}

func (r *HTTPRunner) attempt(ctx context.Context, c *httpCall) httpOutcome {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(ctx)
	if err != nil {
		return httpOutcome{err: fmt.Errorf("invalid request: %w", err)}
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return c.transportFailure(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, httpReadLimit))
	recorded := &drv1.HTTPResponse{
		StatusCode: int32(resp.StatusCode),
		Body:       truncateHTTPBody(c.shown(body), httpRecordedBody),
	}
	if err != nil {
		// The answer is incomplete, so the call is not known to have completed.
		out := c.transportFailure(ctx, fmt.Errorf("reading the response with status %d: %w", resp.StatusCode, err))
		out.resp = recorded
		return out
	}
	ok, msg := c.succeeded(ctx, resp, body)
	if ok {
		return httpOutcome{resp: recorded}
	}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		if u, err := resp.Request.URL.Parse(loc); err == nil {
			msg += " (redirect to " + redactHTTPURL(u) + ")"
		}
	}
	if snippet := strings.TrimSpace(truncateHTTPBody(c.shown(body), httpBodyInMessage)); snippet != "" {
		msg += fmt.Sprintf(" (body: %q)", snippet)
	}
	return httpOutcome{
		resp:      recorded,
		err:       errors.New(msg),
		retryable: resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500,
	}
}

// transportFailure classifies an error raised before a complete answer arrived; ctx is the
// attempt's context.
func (c *httpCall) transportFailure(ctx context.Context, err error) httpOutcome {
	var refused *EgressRefusedError
	if errors.As(err, &refused) {
		// Not transient: a retry would be refused alike.
		msg := refused.Error()
		var uerr *url.Error
		if errors.As(err, &uerr) && uerr.URL != c.url {
			if u, perr := url.Parse(uerr.URL); perr == nil {
				msg += " (redirect to " + redactHTTPURL(u) + ")"
			}
		}
		return httpOutcome{err: errors.New(msg)}
	}
	sent := maybeSent(err)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return httpOutcome{err: fmt.Errorf("timed out after %s", c.timeout), retryable: true, sent: sent}
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // its text repeats the method and URL
	}
	var certErr *tls.CertificateVerificationError
	return httpOutcome{
		err:       fmt.Errorf("request failed: %w", err),
		retryable: !errors.As(err, &certErr), // a retry does not fix a certificate
		sent:      sent,
	}
}

// maybeSent says whether a request that got no answer may have reached the server: anything
// but a failure to resolve, connect or agree on TLS, which happen before a byte of it is sent.
func maybeSent(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	var certErr *tls.CertificateVerificationError
	var alert tls.AlertError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &op) && op.Op == "dial", errors.As(err, &dns), errors.As(err, &certErr), errors.As(err, &alert), errors.As(err, &recordErr):
		return false
	}
	return true
}

// httpRetryPolicy is an HTTPRetry with defaults applied.
type httpRetryPolicy struct {
	limit   int
	backoff backoff.Policy // interval, backoffFactor, maxInterval
}

func newHTTPRetryPolicy(spec *drv1.HTTPRetry) (*httpRetryPolicy, error) {
	p := &httpRetryPolicy{limit: max(int(spec.Limit), 0), backoff: backoff.Policy{Factor: int64(spec.BackoffFactor)}}
	var err error
	if p.backoff.Initial, err = httpDurationOr(spec.Interval, DefaultHTTPRetryInterval); err != nil {
		return nil, fmt.Errorf("http.retry.interval: %w", err)
	}
	if p.backoff.Max, err = httpDurationOr(spec.MaxInterval, DefaultHTTPRetryMaxInterval); err != nil {
		return nil, fmt.Errorf("http.retry.maxInterval: %w", err)
	}
	if p.backoff.Factor < 1 {
		p.backoff.Factor = DefaultHTTPRetryBackoff
	}
	return p, nil
}

// wait is the pause after the given failed attempt (1-based): interval, interval*factor, ...,
// capped at maxInterval.
func (p *httpRetryPolicy) wait(attempt int) time.Duration {
	return p.backoff.Delay(attempt - 1)
}

// truncateHTTPBody returns b as text, cut to at most limit bytes on a rune boundary and marked when
// cut.
func truncateHTTPBody(b []byte, limit int) string {
	if len(b) <= limit {
		return string(b)
	}
	cut := limit
	for cut > 0 && cut > limit-utf8.UTFMax && !utf8.RuneStart(b[cut]) {
		cut--
	}
	if !utf8.RuneStart(b[cut]) {
		cut = limit // not UTF-8 text: cut anywhere
	}
	return string(b[:cut]) + httpTruncated
}
