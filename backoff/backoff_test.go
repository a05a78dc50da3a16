package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bkbcs/drplan-controller/backoff"
)

func TestDelay(t *testing.T) {
	ms, sec, forever := time.Millisecond, time.Second, time.Duration(1<<63-1)
	for _, tc := range []struct {
		name     string
		policy   backoff.Policy
		failures int
		want     time.Duration
	}{
		// Doubling (the work queue's, the API calls', the status writer's).
		{"first retry waits the initial delay", backoff.Policy{Initial: 5 * ms, Max: sec}, 0, 5 * ms},
		{"doubles", backoff.Policy{Initial: 5 * ms, Max: sec}, 1, 10 * ms},
		{"doubles again", backoff.Policy{Initial: 5 * ms, Max: sec}, 4, 80 * ms},
		{"just under the cap", backoff.Policy{Initial: 5 * ms, Max: sec}, 7, 640 * ms},
		{"capped", backoff.Policy{Initial: 5 * ms, Max: sec}, 8, sec},
		{"capped for good", backoff.Policy{Initial: 5 * ms, Max: sec}, 1000, sec},
		{"initial at the cap", backoff.Policy{Initial: ms, Max: ms}, 3, ms},
		{"initial above the cap", backoff.Policy{Initial: time.Minute, Max: 10 * sec}, 0, 10 * sec},
		{"factor 2 is doubling", backoff.Policy{Initial: ms, Factor: 2, Max: sec}, 3, 8 * ms},
		{"2^62", backoff.Policy{Initial: time.Nanosecond, Max: forever}, 62, 1 << 62},
		{"no overflow at 2^63", backoff.Policy{Initial: time.Nanosecond, Max: forever}, 63, forever},
		{"no overflow, many failures", backoff.Policy{Initial: time.Nanosecond, Max: forever}, 1 << 30, forever},
		{"negative failures count as none", backoff.Policy{Initial: 5 * ms, Max: sec}, -1, 5 * ms},
		{"zero initial stays zero", backoff.Policy{Max: sec}, 1 << 30, 0},
		// Other factors (an HTTP action's retry policy).
		{"factor 1 is constant", backoff.Policy{Initial: sec / 2, Factor: 1, Max: 30 * sec}, 1 << 30, sec / 2},
		{"factor 10", backoff.Policy{Initial: time.Hour, Factor: 10, Max: 2562047 * time.Hour}, 3, 1000 * time.Hour},
		{"factor 10, no overflow", backoff.Policy{Initial: time.Hour, Factor: 10, Max: 2562047 * time.Hour}, 7, 2562047 * time.Hour},
		{"factor 3 capped", backoff.Policy{Initial: sec, Factor: 3, Max: 30 * sec}, 3, 27 * sec},
		{"factor 3 past the cap", backoff.Policy{Initial: sec, Factor: 3, Max: 30 * sec}, 4, 30 * sec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.policy.Delay(tc.failures))
		})
	}
}

func TestSleep(t *testing.T) {
	require.NoError(t, backoff.Sleep(t.Context(), time.Millisecond))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	require.ErrorIs(t, backoff.Sleep(ctx, time.Hour), context.Canceled)
	require.Less(t, time.Since(start), time.Minute, "an ended context does not wait")
}
