// Package backoff is the one rule for how long a retry waits: a delay that grows by a factor per
// failure up to a cap. The work queue, the actions' API and HTTP retries and the status writer use it.
package backoff

import (
	"context"
	"time"
)

// Policy is a growing delay: Initial, then Initial*Factor, Initial*Factor², ..., never more than
// Max.
type Policy struct {
	Initial time.Duration
	// Factor is what each failure multiplies the delay by; below 1 it is 2 (doubling). 1 keeps the
	// delay constant.
	Factor int64
	Max    time.Duration
}

// Delay is the wait after the given number of failures before it (0 for the first retry):
// Initial * Factor^failures, capped at Max, without overflowing.
func (p Policy) Delay(failures int) time.Duration {
	f := time.Duration(p.Factor)
	if f < 1 {
		f = 2
	}
	d := p.Initial
	if f == 1 || d <= 0 {
		return min(d, p.Max)
	}
	for range max(failures, 0) {
		if d > p.Max/f {
			return p.Max // d*f would pass the cap, or overflow
		}
		d *= f
	}
	return min(d, p.Max)
}

// Sleep waits for d, or until ctx ends; then it returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
