package controller

import (
	"context"
	"sync"
	"time"
)

// statusWriter is the one writer of a running execution's status. Changes mark it dirty; it
// writes the latest status at most once per interval, with at most one write in flight, so a fast
// run costs far fewer writes than it has steps. Flush writes now and waits: the engine flushes
// before a side effect that must not be repeated after a crash, and at the end of a run.
type statusWriter struct {
	interval time.Duration
	// read returns a copy of the status to write; called without mu held.
	read func() any
	// write persists it.
	write func(ctx context.Context, status any) error

	mu        sync.Mutex
	changed   uint64        // generation of the latest change
	written   uint64        // generation of the latest successful write
	flushing  bool          // a Flush is waiting
	wrote     chan struct{} // closed and replaced after every successful write
	lastErr   error
	lastWrite time.Time
	lastTook  time.Duration

	kick   chan struct{} // a change or a flush: there may be something to write
	urgent chan struct{} // a flush: stop waiting out the interval
}

func newStatusWriter(interval time.Duration, read func() any, write func(context.Context, any) error) *statusWriter {
	return &statusWriter{interval: interval, read: read, write: write, wrote: make(chan struct{}),
		kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
}

// Changed records that the status changed (after the change was made) and wakes the writer.
func (w *statusWriter) Changed() {
	w.mu.Lock()
	w.changed++
	w.mu.Unlock()
	w.poke()
}

func (w *statusWriter) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Flush waits until every change made before the call is written, or ctx ends.
func (w *statusWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.changed
	w.flushing = true
	w.mu.Unlock()
	w.poke()
	select {
	case w.urgent <- struct{}{}:
	default:
	}
	for {
		w.mu.Lock()
		done, wrote, err := w.written >= target, w.wrote, w.lastErr
		w.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-wrote:
		case <-ctx.Done():
			if err != nil {
				return err
			}
			return ctx.Err()
		}
	}
}

// Run writes until ctx ends. Failed writes are retried with backoff.
func (w *statusWriter) Run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.mu.Lock()
		gen, urgent, wait := w.changed, w.flushing, w.gap()-time.Since(w.lastWrite)
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
		// Read the generation before the status: a change included in the copy but counted
		// later only causes one more write, never a lost one.
		began := time.Now()
		err := w.write(ctx, w.read())
		w.mu.Lock()
		w.lastErr, w.lastWrite, w.lastTook = err, time.Now(), time.Since(began)
		if err == nil {
			w.written = max(w.written, gen)
			close(w.wrote)
			w.wrote = make(chan struct{})
			backoff = 50 * time.Millisecond
		}
		w.flushing = w.flushing && w.written < w.changed
		more := w.written < w.changed
		w.mu.Unlock()
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			more = true
		}
		if more {
			w.poke()
		}
	}
}

// gap is the least time between two writes: the interval, or twice what the last write took when
// that is longer, so that writing a large status never takes more than a fifth of the API
// server's time for this run. Called with mu held.
func (w *statusWriter) gap() time.Duration {
	return max(w.interval, 4*w.lastTook)
}

func (w *statusWriter) writtenGen() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}
