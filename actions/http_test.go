package actions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	drv1 "github.com/bkbcs/drplan-controller/crds/apis/dr/v1alpha1"
	"github.com/bkbcs/drplan-controller/rules"
)

// httpWaitLong bounds a wait that should end early; it only matters when the test is broken.
const httpWaitLong = 5 * time.Second

// httpReply is one scripted answer: the status (after delay) and the body.
type httpReply struct {
	status int
	body   string
	delay  time.Duration
}

// scriptedHTTPServer answers the nth request with replies[n], the last reply repeating, and
// counts the requests.
func scriptedHTTPServer(t testing.TB, replies ...httpReply) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(served.Add(1)) - 1
		reply := replies[min(n, len(replies)-1)]
		if reply.delay > 0 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(reply.delay):
			}
		}
		w.WriteHeader(reply.status)
		_, _ = io.WriteString(w, reply.body)
	}))
	t.Cleanup(srv.Close)
	return srv, &served
}

// recordedSleeps replaces a runner's sleep: it records each wait and returns at once.
type recordedSleeps struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *recordedSleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return ctx.Err()
}

func (s *recordedSleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waits
}

// newTestEnv is a CEL environment of the test's own, as the process builds one at start-up.
func newTestEnv(t testing.TB) *rules.Env {
	env, err := rules.NewEnv(rules.Options{})
	require.NoError(t, err)
	return env
}

func newTestHTTPRunner(t testing.TB) (*HTTPRunner, *recordedSleeps) {
	r := NewHTTPRunner(newTestEnv(t), nil)
	s := &recordedSleeps{}
	r.sleep = s.sleep
	return r, s
}

func httpRequest(a drv1.HTTPAction) Request {
	return Request{Body: drv1.ActionBody{Type: drv1.ActionTypeHTTP, HTTP: &a}, ActionID: "stage/0/notify"}
}

func TestHTTPRunnerOutcomes(t *testing.T) {
	sec := time.Second
	tests := []struct {
		name    string
		action  drv1.HTTPAction // URL is set to the server's /hook
		replies []httpReply
		down    bool // the server is closed before the call

		wantMessage  string // on success
		wantErr      string // exact, %[1]s is the action's URL
		wantErrParts []string
		wantResponse *drv1.HTTPResponse
		wantRetries  int32
		wantRequests int32
		wantWaits    []time.Duration
	}{
		{
			name:         "any 2xx by default",
			replies:      []httpReply{{status: 204}},
			wantMessage:  "HTTP request completed with status 204",
			wantResponse: &drv1.HTTPResponse{StatusCode: 204},
			wantRequests: 1,
		},
		{
			name:         "expected status codes",
			action:       drv1.HTTPAction{ExpectedStatusCodes: []int32{200, 202}},
			replies:      []httpReply{{status: 202, body: `{"queued":true}`}},
			wantMessage:  "HTTP request completed with status 202",
			wantResponse: &drv1.HTTPResponse{StatusCode: 202, Body: `{"queued":true}`},
			wantRequests: 1,
		},
		{
			name:         "a non-2xx code can be expected",
			action:       drv1.HTTPAction{ExpectedStatusCodes: []int32{404}},
			replies:      []httpReply{{status: 404}},
			wantMessage:  "HTTP request completed with status 404",
			wantResponse: &drv1.HTTPResponse{StatusCode: 404},
			wantRequests: 1,
		},
		{
			name:         "2xx outside the expected codes",
			action:       drv1.HTTPAction{ExpectedStatusCodes: []int32{200, 201, 202}},
			replies:      []httpReply{{status: 204}},
			wantErr:      "POST %[1]s: answered 204, expected one of [200 201 202]",
			wantResponse: &drv1.HTTPResponse{StatusCode: 204},
			wantRequests: 1,
		},
		{
			name:         "unexpected code quotes the body",
			replies:      []httpReply{{status: 500, body: "database down\n"}},
			wantErr:      `POST %[1]s: answered 500, expected 2xx (body: "database down")`,
			wantResponse: &drv1.HTTPResponse{StatusCode: 500, Body: "database down\n"},
			wantRequests: 1,
		},
		{
			name:         "timeout",
			action:       drv1.HTTPAction{Timeout: "50ms"},
			replies:      []httpReply{{status: 200, delay: httpWaitLong}},
			wantErr:      "POST %[1]s: timed out after 50ms",
			wantRequests: 1,
		},
		{
			name:         "no retry without a policy, even on 503",
			replies:      []httpReply{{status: 503}, {status: 200}},
			wantErr:      "POST %[1]s: answered 503, expected 2xx",
			wantResponse: &drv1.HTTPResponse{StatusCode: 503},
			wantRequests: 1,
		},
		{
			name: "retry on 503 until success",
			action: drv1.HTTPAction{Retry: &drv1.HTTPRetry{
				Limit: 3, Interval: "1s", BackoffFactor: 2, MaxInterval: "30s"}},
			replies:      []httpReply{{status: 503}, {status: 503}, {status: 200, body: "ok"}},
			wantMessage:  "HTTP request completed with status 200",
			wantResponse: &drv1.HTTPResponse{StatusCode: 200, Body: "ok"},
			wantRetries:  2,
			wantRequests: 3,
			wantWaits:    []time.Duration{sec, 2 * sec},
		},
		{
			name: "waits grow by the factor up to the cap",
			action: drv1.HTTPAction{Retry: &drv1.HTTPRetry{
				Limit: 5, Interval: "1s", BackoffFactor: 3, MaxInterval: "5s"}},
			replies:      []httpReply{{status: 502}, {status: 502}, {status: 502}, {status: 502}, {status: 502}, {status: 201}},
			wantMessage:  "HTTP request completed with status 201",
			wantResponse: &drv1.HTTPResponse{StatusCode: 201},
			wantRetries:  5,
			wantRequests: 6,
			wantWaits:    []time.Duration{sec, 3 * sec, 5 * sec, 5 * sec, 5 * sec},
		},
		{
			name:         "retries exhausted, empty fields take the defaults",
			action:       drv1.HTTPAction{Retry: &drv1.HTTPRetry{Limit: 2}},
			replies:      []httpReply{{status: 503, body: "busy"}},
			wantErr:      `POST %[1]s: answered 503, expected 2xx (body: "busy"); gave up after 3 attempts`,
			wantResponse: &drv1.HTTPResponse{StatusCode: 503, Body: "busy"},
			wantRetries:  2,
			wantRequests: 3,
			wantWaits:    []time.Duration{sec, 2 * sec},
		},
		{
			name:         "retry on 429",
			action:       drv1.HTTPAction{Retry: &drv1.HTTPRetry{Limit: 1, Interval: "100ms"}},
			replies:      []httpReply{{status: 429}, {status: 200}},
			wantMessage:  "HTTP request completed with status 200",
			wantResponse: &drv1.HTTPResponse{StatusCode: 200},
			wantRetries:  1,
			wantRequests: 2,
			wantWaits:    []time.Duration{100 * time.Millisecond},
		},
		{
			name:         "retry on timeout",
			action:       drv1.HTTPAction{Timeout: "50ms", Retry: &drv1.HTTPRetry{Limit: 1}},
			replies:      []httpReply{{status: 200, delay: httpWaitLong}, {status: 200}},
			wantMessage:  "HTTP request completed with status 200",
			wantResponse: &drv1.HTTPResponse{StatusCode: 200},
			wantRetries:  1,
			wantRequests: 2,
			wantWaits:    []time.Duration{sec},
		},
		{
			name:         "no retry on 400 even with a policy",
			action:       drv1.HTTPAction{Retry: &drv1.HTTPRetry{Limit: 3}},
			replies:      []httpReply{{status: 400, body: "bad plan"}, {status: 200}},
			wantErr:      `POST %[1]s: answered 400, expected 2xx (body: "bad plan"); not retried after 1 attempt: only failures to connect, timeouts, 429 and 5xx are`,
			wantResponse: &drv1.HTTPResponse{StatusCode: 400, Body: "bad plan"},
			wantRequests: 1,
		},
		{
			name:         "a 400 after a retry stops the retries",
			action:       drv1.HTTPAction{Retry: &drv1.HTTPRetry{Limit: 3}},
			replies:      []httpReply{{status: 503}, {status: 400}, {status: 200}},
			wantErr:      `POST %[1]s: answered 400, expected 2xx; not retried after 2 attempts: only failures to connect, timeouts, 429 and 5xx are`,
			wantResponse: &drv1.HTTPResponse{StatusCode: 400},
			wantRetries:  1,
			wantRequests: 2,
			wantWaits:    []time.Duration{sec},
		},
		{
			name:         "connection refused, retried",
			action:       drv1.HTTPAction{Retry: &drv1.HTTPRetry{Limit: 1}},
			replies:      []httpReply{{status: 200}},
			down:         true,
			wantErrParts: []string{"POST %[1]s: request failed: ", "connection refused", "; gave up after 2 attempts"},
			wantRetries:  1,
			wantWaits:    []time.Duration{sec},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, served := scriptedHTTPServer(t, tc.replies...)
			if tc.down {
				srv.Close()
			}
			runner, sleeps := newTestHTTPRunner(t)
			action := tc.action
			action.URL = srv.URL + "/hook"

			res, err := runner.Run(context.Background(), httpRequest(action))

			switch {
			case tc.wantErr != "":
				require.EqualError(t, err, fmt.Sprintf(tc.wantErr, action.URL))
			case tc.wantErrParts != nil:
				require.Error(t, err)
				for _, part := range tc.wantErrParts {
					require.Contains(t, err.Error(), strings.ReplaceAll(part, "%[1]s", action.URL))
				}
			default:
				require.NoError(t, err)
				require.Equal(t, tc.wantMessage, res.Message)
			}
			require.Equal(t, tc.wantResponse, res.HTTPResponse)
			require.Equal(t, tc.wantRetries, res.Retries)
			require.Equal(t, tc.wantRequests, served.Load())
			require.Equal(t, tc.wantWaits, sleeps.get())
		})
	}
}

func TestHTTPRunnerSendsMethodHeadersAndBody(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		body       string
		wantMethod string
	}{
		{name: "POST by default", body: `{"event":"failover"}`, wantMethod: "POST"},
		{name: "PUT", method: "PUT", body: "replace", wantMethod: "PUT"},
		{name: "GET without a body", method: "GET", wantMethod: "GET"},
		{name: "DELETE", method: "DELETE", wantMethod: "DELETE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct {
				method, path, query, host, body string
				header                          http.Header
			}
			got := make(chan seen, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, string(b), r.Header}
			}))
			t.Cleanup(srv.Close)
			runner, _ := newTestHTTPRunner(t)

			res, err := runner.Run(context.Background(), httpRequest(drv1.HTTPAction{
				URL:    srv.URL + "/v1/notify?plan=dr-1",
				Method: tc.method,
				Body:   tc.body,
				Headers: map[string]string{
					"Content-Type":  "application/json",
					"Authorization": "Bearer s3cret",
					"X-Plan":        "dr-1",
					"Host":          "oncall.example.com",
				},
			}))
			require.NoError(t, err)
			require.Equal(t, "HTTP request completed with status 200", res.Message)

			s := <-got
			require.Equal(t, tc.wantMethod, s.method)
			require.Equal(t, "/v1/notify", s.path)
			require.Equal(t, "plan=dr-1", s.query)
			require.Equal(t, "oncall.example.com", s.host)
			require.Equal(t, tc.body, s.body)
			require.Equal(t, "application/json", s.header.Get("Content-Type"))
			require.Equal(t, "Bearer s3cret", s.header.Get("Authorization"))
			require.Equal(t, "dr-1", s.header.Get("X-Plan"))
			require.Equal(t, "drplan-controller", s.header.Get("User-Agent"))
		})
	}
}

func TestHTTPRunnerMessagesHideSecrets(t *testing.T) {
	srv, _ := scriptedHTTPServer(t, httpReply{status: 500, body: "nope"})
	runner, _ := newTestHTTPRunner(t)
	u := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1) + "/hook?token=s3cret#s3cret"

	_, err := runner.Run(context.Background(), httpRequest(drv1.HTTPAction{
		URL:     u,
		Headers: map[string]string{"Authorization": "Bearer s3cret", "X-Token": "s3cret"},
	}))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
	require.Equal(t, fmt.Sprintf(`POST %s: answered 500, expected 2xx (body: "nope")`,
		strings.Replace(srv.URL, "http://", "http://user:xxxxx@", 1)+"/hook?token=xxxxx"), err.Error())
}

func TestHTTPRunnerRecordsBodyCutOnUTF8Boundary(t *testing.T) {
	a1023 := strings.Repeat("a", 1023)
	tests := []struct {
		name     string
		body     string
		wantBody string
	}{
		{name: "short body kept", body: "héllo", wantBody: "héllo"},
		{name: "exactly the limit kept", body: strings.Repeat("b", 1024), wantBody: strings.Repeat("b", 1024)},
		// "é" takes bytes 1024 and 1025: keeping half of it would make invalid UTF-8.
		{name: "two-byte rune across the limit", body: a1023 + "é" + "tail", wantBody: a1023 + "… (truncated)"},
		// "界" (3 bytes) at 1022..1024.
		{name: "three-byte rune across the limit", body: a1023[:1022] + "界" + "tail", wantBody: a1023[:1022] + "… (truncated)"},
		{name: "rune ending at the limit kept", body: a1023[:1021] + "界" + "tail", wantBody: a1023[:1021] + "界… (truncated)"},
		{name: "huge body", body: strings.Repeat("z", 4<<20), wantBody: strings.Repeat("z", 1024) + "… (truncated)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := scriptedHTTPServer(t, httpReply{status: 200, body: tc.body})
			runner, _ := newTestHTTPRunner(t)

			res, err := runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: srv.URL}))
			require.NoError(t, err)
			require.Equal(t, &drv1.HTTPResponse{StatusCode: 200, Body: tc.wantBody}, res.HTTPResponse)
		})
	}
}

// A secret across the cut is redacted whole: the body is redacted first, then cut.
func TestHTTPRunnerRedactsBodyBeforeCutting(t *testing.T) {
	secret := "s3cret-token-value"
	run := func(status int, body string) (Result, error) {
		srv, _ := scriptedHTTPServer(t, httpReply{status: status, body: body})
		runner, _ := newTestHTTPRunner(t)
		req := httpRequest(drv1.HTTPAction{URL: srv.URL})
		req.Redact = strings.NewReplacer(secret, "xxxxx")
		return runner.Run(context.Background(), req)
	}
	// The secret straddles the 1,024-byte cut of the recorded body.
	res, err := run(500, strings.Repeat("a", 1020)+secret+" tail")
	require.Error(t, err)
	for _, shown := range []string{res.HTTPResponse.Body, err.Error()} {
		for n := 4; n <= len(secret); n++ {
			require.NotContains(t, shown, secret[:n], "no part of the secret is shown")
		}
	}
	res, err = run(200, "ok "+secret)
	require.NoError(t, err)
	assert.Equal(t, "ok xxxxx", res.HTTPResponse.Body)
}

func TestTruncateHTTPBody(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"", 4, ""},
		{"abcd", 4, "abcd"},
		{"abcde", 4, "abcd… (truncated)"},
		{"ab😀", 4, "ab… (truncated)"},                        // 4-byte rune at 2..5
		{"😀x", 4, "😀… (truncated)"},                          // rune ends exactly at the limit
		{"\x80\x80\x80\x80\x80", 2, "\x80\x80… (truncated)"}, // not UTF-8: cut anywhere
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, truncateHTTPBody([]byte(tc.in), tc.limit), "%q", tc.in)
	}
}

func TestHTTPRetryPolicyWaits(t *testing.T) {
	sec := time.Second
	tests := []struct {
		name  string
		retry drv1.HTTPRetry
		want  []time.Duration // waits after attempts 1, 2, ...
	}{
		{name: "defaults", retry: drv1.HTTPRetry{Limit: 7},
			want: []time.Duration{sec, 2 * sec, 4 * sec, 8 * sec, 16 * sec, 30 * sec, 30 * sec}},
		{name: "factor 1 is constant", retry: drv1.HTTPRetry{Interval: "500ms", BackoffFactor: 1},
			want: []time.Duration{sec / 2, sec / 2, sec / 2}},
		{name: "interval above the cap", retry: drv1.HTTPRetry{Interval: "1m", MaxInterval: "10s"},
			want: []time.Duration{10 * sec, 10 * sec}},
		{name: "zero durations take the defaults", retry: drv1.HTTPRetry{Interval: "0s", MaxInterval: "0s"},
			want: []time.Duration{sec, 2 * sec}},
		{name: "no overflow", retry: drv1.HTTPRetry{Interval: "1h", BackoffFactor: 10, MaxInterval: "2562047h"},
			want: []time.Duration{time.Hour, 10 * time.Hour, 100 * time.Hour, 1000 * time.Hour,
				10000 * time.Hour, 100000 * time.Hour, 1000000 * time.Hour, 2562047 * time.Hour, 2562047 * time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newHTTPRetryPolicy(&tc.retry)
			require.NoError(t, err)
			var got []time.Duration
			for attempt := 1; attempt <= len(tc.want); attempt++ {
				got = append(got, p.wait(attempt))
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestHTTPRunnerCancel(t *testing.T) {
	t.Run("during a request", func(t *testing.T) {
		arrived := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			<-r.Context().Done()
		}))
		t.Cleanup(srv.Close)
		runner, _ := newTestHTTPRunner(t)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-arrived
			cancel()
		}()

		start := time.Now()
		_, err := runner.Run(ctx, httpRequest(drv1.HTTPAction{URL: srv.URL, Retry: &drv1.HTTPRetry{Limit: 3}}))
		require.Less(t, time.Since(start), httpWaitLong)
		require.ErrorIs(t, err, context.Canceled)
		require.EqualError(t, err, "POST "+srv.URL+": cancelled during attempt 1: context canceled")
	})

	t.Run("while waiting to retry", func(t *testing.T) {
		srv, served := scriptedHTTPServer(t, httpReply{status: 503})
		runner := NewHTTPRunner(newTestEnv(t), srv.Client()) // the real sleep
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			for served.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			cancel()
		}()

		start := time.Now()
		res, err := runner.Run(ctx, httpRequest(drv1.HTTPAction{URL: srv.URL,
			Retry: &drv1.HTTPRetry{Limit: 3, Interval: "1h"}}))
		require.Less(t, time.Since(start), httpWaitLong)
		require.ErrorIs(t, err, context.Canceled)
		require.EqualError(t, err, "POST "+srv.URL+": cancelled waiting to retry after 1 attempt: context canceled")
		require.Equal(t, int32(0), res.Retries)
		require.Equal(t, &drv1.HTTPResponse{StatusCode: 503}, res.HTTPResponse)
		require.Equal(t, int32(1), served.Load())
	})

	t.Run("before the call", func(t *testing.T) {
		srv, served := scriptedHTTPServer(t, httpReply{status: 200})
		runner, _ := newTestHTTPRunner(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()

		_, err := runner.Run(ctx, httpRequest(drv1.HTTPAction{URL: srv.URL}))
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, int32(0), served.Load())
	})
}

func TestHTTPRunnerRedirects(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/new?token=s3cret", http.StatusFound)
	})
	mux.HandleFunc("/temporary", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/new", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s %s", r.Method, b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	runner, _ := newTestHTTPRunner(t)

	// A 307 keeps the method and the body: followed.
	res, err := runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: srv.URL + "/temporary", Body: "hi"}))
	require.NoError(t, err)
	require.Equal(t, &drv1.HTTPResponse{StatusCode: 200, Body: "POST hi"}, res.HTTPResponse)

	// A 302 would turn the POST into a GET: not followed, so the call is not reported as done.
	_, err = runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: srv.URL + "/moved", Body: "hi"}))
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(),
		"POST "+srv.URL+"/moved: answered 302, expected 2xx (redirect to "+srv.URL+"/new?token=xxxxx)"), err.Error())

	// A GET may follow a 302.
	res, err = runner.Run(context.Background(), httpRequest(drv1.HTTPAction{URL: srv.URL + "/moved", Method: "GET"}))
	require.NoError(t, err)
	require.Equal(t, "GET ", res.HTTPResponse.Body)
}

func TestHTTPRunnerRejectsBadInput(t *testing.T) {
	runner, _ := newTestHTTPRunner(t)
	tests := []struct {
		name    string
		body    drv1.ActionBody
		wantErr string
	}{
		{name: "other type", body: drv1.ActionBody{Type: drv1.ActionTypeJob},
			wantErr: `the HTTP runner cannot run an action of type "Job"`},
		{name: "no http block", body: drv1.ActionBody{Type: drv1.ActionTypeHTTP},
			wantErr: "type HTTP needs an http block"},
		{name: "relative URL", body: httpRequest(drv1.HTTPAction{URL: "/hook"}).Body,
			wantErr: `http.url: must be an absolute http or https URL, got "/hook"`},
		{name: "other scheme", body: httpRequest(drv1.HTTPAction{URL: "ftp://u:pw@host/x"}).Body,
			wantErr: `http.url: must be an absolute http or https URL, got "ftp://u:xxxxx@host/x"`},
		{name: "bad timeout", body: httpRequest(drv1.HTTPAction{URL: "http://x", Timeout: "soon"}).Body,
			wantErr: `http.timeout: time: invalid duration "soon"`},
		{name: "bad retry interval", body: httpRequest(drv1.HTTPAction{URL: "http://x",
			Retry: &drv1.HTTPRetry{Interval: "later"}}).Body,
			wantErr: `http.retry.interval: time: invalid duration "later"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runner.Run(context.Background(), Request{Body: tc.body})
			require.EqualError(t, err, tc.wantErr)
		})
	}
}

func TestHTTPRunnerDefaultClientSettings(t *testing.T) {
	r := NewHTTPRunner(newTestEnv(t), nil)
	require.NotNil(t, r.client.Transport)
	require.Zero(t, r.client.Timeout, "the action's timeout bounds each attempt")
	custom := &http.Client{}
	require.Same(t, custom, NewHTTPRunner(newTestEnv(t), custom).client)
	require.True(t, errors.Is(redirectKeepingMethod(
		&http.Request{Method: "GET"}, []*http.Request{{Method: "POST"}}), http.ErrUseLastResponse))
}

func BenchmarkHTTPRunner(b *testing.B) {
	srv, _ := scriptedHTTPServer(b, httpReply{status: 200, body: `{"ok":true}`})
	runner := NewHTTPRunner(newTestEnv(b), nil)
	req := httpRequest(drv1.HTTPAction{
		URL:     srv.URL + "/hook",
		Headers: map[string]string{"Content-Type": "application/json"},
		Body:    `{"event":"failover"}`,
	})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := runner.Run(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHTTPRunnerSuccessCondition(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Region", "dr")
		switch r.URL.Path {
		case "/json":
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"status": "ready", "replicas": 3}`))
		case "/text":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`not here`))
		}
	}))
	defer srv.Close()
	tests := []struct {
		name, path, cond, err string
	}{
		{name: "json body", path: "/json", cond: "response.code == 202 && response.json.status == 'ready' && response.json.replicas >= 3"},
		{name: "headers", path: "/json", cond: "response.headers['X-Region'] == 'dr'"},
		{name: "accepts a 404 the status codes would refuse", path: "/text", cond: "response.code == 404 && response.body == 'not here' && !has(response.json)"},
		{name: "false", path: "/json", cond: "response.json.status == 'done'",
			err: `answered 202; successCondition "response.json.status == 'done'" is false`},
		{name: "cannot be evaluated", path: "/text", cond: "response.json.status == 'ready'",
			err: `answered 404; successCondition "response.json.status == 'ready'" could not be evaluated: no such key: json`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewHTTPRunner(newTestEnv(t), nil)
			_, err := r.Run(context.Background(), Request{Body: drv1.ActionBody{Type: drv1.ActionTypeHTTP,
				HTTP: &drv1.HTTPAction{URL: srv.URL + tc.path, Method: "GET", SuccessCondition: tc.cond}}})
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}
