package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/bkbcs/drplan-controller/backoff"
)

// statusWriter is the one writer of a running execution's status. Changes mark it dirty; it
// writes the latest status at most once per gap, with at most one write in flight, so a fast run
// costs far fewer writes than it has steps. Flush writes now and waits: the engine flushes
// before a side effect that must not be repeated after a crash, and at the end of a run.
type statusWriter struct {
	interval time.Duration
	// read returns a copy of the status to write; called without mu held.
	read func() any
	// write persists it.
	write func(ctx context.Context, status any) error
	// failed, when set, is told of a write refused for good (but for the execution being gone):
	// the run cannot go on.
	failed func(error)

	mu          sync.Mutex
	changed     uint64        // generation of the latest change
	written     uint64        // generation of the latest successful write
	flushTarget uint64        // the highest generation a Flush waits for
	wrote       chan struct{} // closed and replaced after every successful write
	lastErr     error
	lastWrite   time.Time
	lastTook    time.Duration

	kick   chan struct{} // a change or a flush: there may be something to write
	urgent chan struct{} // a flush: stop waiting out the gap
	done   chan struct{} // closed when Run returns: nothing will be written any more
}

func newStatusWriter(interval time.Duration, read func() any, write func(context.Context, any) error) *statusWriter {
	return &statusWriter{interval: interval, read: read, write: write, wrote: make(chan struct{}),
		kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1), done: make(chan struct{})}
}

// Changed records that the status changed (after the change was made) and wakes the writer.
func (w *statusWriter) Changed() {
	w.mu.Lock()
	w.changed++
	w.mu.Unlock()
	signal(w.kick)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Urge asks for every change made before the call to be written now, without waiting for it.
func (w *statusWriter) Urge() {
	w.mu.Lock()
	w.flushTarget = max(w.flushTarget, w.changed)
	w.mu.Unlock()
	signal(w.kick)
	signal(w.urgent)
}

// Flush waits until every change made before the call is written. It fails when ctx ends, or
// when the writer stopped (its run ended, or a write failed for good).
func (w *statusWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.changed
	w.mu.Unlock()
	w.Urge()
	for {
		w.mu.Lock()
		done, wrote, err := w.written >= target, w.wrote, w.lastErr
		w.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-wrote:
		case <-w.done:
			w.mu.Lock()
			err = w.lastErr // the write that stopped it
			w.mu.Unlock()
			if err == nil {
				err = errors.New("the status writer stopped")
			}
			return err
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return ctx.Err()
		}
	}
}

// Run writes until ctx ends or a write fails for good (the execution is gone, or the status is
// refused); transient failures are retried with backoff.
func (w *statusWriter) Run(ctx context.Context) {
	defer close(w.done)
	failures := 0 // in a row
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.mu.Lock()
		gen, urgent, wait := w.changed, w.written < w.flushTarget, w.gap()-time.Since(w.lastWrite)
		w.mu.Unlock()
		if gen <= w.writtenGen() {
			continue
		}
		if !urgent && wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-w.urgent: // a Flush: write now
			}
			w.mu.Lock()
			gen = w.changed
			w.mu.Unlock()
		}
		// The generation is read before the status: a change included in the copy but counted
		// later only causes one more write, never a lost one.
		began := time.Now()
		err := w.write(ctx, w.read())
		w.mu.Lock()
		w.lastErr, w.lastWrite, w.lastTook = err, time.Now(), time.Since(began)
		if err == nil {
			w.written = max(w.written, gen)
			close(w.wrote)
			w.wrote = make(chan struct{})
			failures = 0
		}
		more := w.written < w.changed
		w.mu.Unlock()
		if err != nil {
			if permanent(err) {
				if w.failed != nil && !apierrors.IsNotFound(err) {
					w.failed(err)
				}
				return
			}
			if backoff.Sleep(ctx, writeRetry.Delay(failures)) != nil {
				return
			}
			failures++
			more = true
		}
		if more {
			signal(w.kick)
		}
	}
}

// writeRetry spaces the retries of a write that failed transiently.
var writeRetry = backoff.Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second}

// permanent reports a write error that retrying cannot fix.
func permanent(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || tooLarge(err) || apierrors.IsBadRequest(err)
}

// gap is the least time between two writes: the interval, or eight times what the last write
// took when that is longer, so that writing a large status never takes more than a ninth of the
// API server's time for this run (a 100-action status costs the API server about 45 ms of CPU
// a write: BenchmarkStatusWrite). Called with mu held.
func (w *statusWriter) gap() time.Duration {
	return max(w.interval, 8*w.lastTook)
}

func (w *statusWriter) writtenGen() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}
