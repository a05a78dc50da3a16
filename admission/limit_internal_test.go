package admission

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestOneAtATime: no more than n requests are worked on at once; one whose caller gives up while
// it waits is answered 503, and never reaches the handler.
func TestOneAtATime(t *testing.T) {
	const n = 3
	release := make(chan struct{})
	var mu sync.Mutex
	in, most := 0, 0
	h := oneAtATime(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		in++
		most = max(most, in)
		mu.Unlock()
		<-release
		mu.Lock()
		in--
		mu.Unlock()
	}), n)
	var wg sync.WaitGroup
	for range 2 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/validate", nil))
		}()
	}
	assert.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return in == n }, 5*time.Second, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/validate", nil).WithContext(ctx))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "a caller that gave up while waiting")

	close(release)
	wg.Wait()
	assert.Equal(t, n, most, "never more than n at once")
}
