package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// call is one request the recorder received.
type call struct {
	Method, Path, Body string
	Start, End         time.Time
}

// recorder is an HTTP server the actions call. A path's query may ask for a delay (?delay=200ms),
// a status (?status=503) or a longer answer (?pad=1200); a path registered with hold blocks
// until released.
type recorder struct {
	t    testing.TB
	srv  *httptest.Server
	base string // the URL actions call

	mu       sync.Mutex
	calls    []call
	arrived  map[string]int
	aborted  map[string]int // held requests whose client went away
	holds    map[string]chan struct{}
	statuses map[string]int // answer, by path (answer sets it)
}

func newRecorder(t testing.TB) *recorder {
	r := &recorder{t: t, holds: map[string]chan struct{}{}, arrived: map[string]int{}, aborted: map[string]int{}, statuses: map[string]int{}}
	if host := os.Getenv(recorderHostEnv); host != "" {
		// Called from pods (the in-cluster backends): listen on this host's address on their
		// network.
		r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		r.srv.Listener = ln
		r.srv.Start()
		r.base = "http://" + ln.Addr().String()
	} else {
		r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
		r.base = r.srv.URL
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) URL(path string) string { return r.base + path }

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	hold := r.holds[req.URL.Path]
	r.arrived[req.URL.Path]++
	r.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-req.Context().Done():
			r.mu.Lock()
			r.aborted[req.URL.Path]++
			r.mu.Unlock()
			return
		}
	}
	if d, err := time.ParseDuration(req.URL.Query().Get("delay")); err == nil {
		time.Sleep(d)
	}
	status := http.StatusOK
	if s, err := strconv.Atoi(req.URL.Query().Get("status")); err == nil {
		status = s
	}
	r.mu.Lock()
	if s, ok := r.statuses[req.URL.Path]; ok {
		status = s
	}
	r.mu.Unlock()
	r.mu.Lock()
	r.calls = append(r.calls, call{Method: req.Method, Path: req.URL.Path, Body: string(body), Start: start, End: time.Now()})
	r.mu.Unlock()
	w.WriteHeader(status)
	pad, _ := strconv.Atoi(req.URL.Query().Get("pad")) // ?pad=N: N more bytes of answer
	_, _ = w.Write([]byte(`{"ok":true,"path":"` + req.URL.Path + `","pad":"` + strings.Repeat("x", min(max(pad, 0), 1<<20)) + `"}`))
}

// hold makes requests to path wait until the returned function is called.
func (r *recorder) hold(path string) (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.holds[path] = ch
	r.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// answer makes requests to path answered with status from now on.
func (r *recorder) answer(path string, status int) {
	r.mu.Lock()
	r.statuses[path] = status
	r.mu.Unlock()
}

// Calls returns the completed calls so far, in completion order.
func (r *recorder) Calls() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// CallsTo returns the completed calls to path.
func (r *recorder) CallsTo(path string) []call {
	var out []call
	for _, c := range r.Calls() {
		if c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

// Arrived counts the requests to path that arrived, finished or not.
func (r *recorder) Arrived(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrived[path]
}

// Aborted counts the held requests to path whose client gave up.
func (r *recorder) Aborted(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted[path]
}
