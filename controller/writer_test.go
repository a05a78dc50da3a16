package controller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeStatus is a status the writer copies and writes: a counter.
type fakeStatus struct {
	mu      sync.Mutex
	value   int
	written atomic.Int64 // the last value written
	writes  atomic.Int64
	fail    atomic.Int64 // fail this many writes first
}

func (f *fakeStatus) set(v int) {
	f.mu.Lock()
	f.value = v
	f.mu.Unlock()
}

func (f *fakeStatus) read() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.value
}

func (f *fakeStatus) write(_ context.Context, v any) error {
	if f.fail.Add(-1) >= 0 {
		return errors.New("transient")
	}
	time.Sleep(2 * time.Millisecond)
	f.writes.Add(1)
	f.written.Store(int64(v.(int)))
	return nil
}

func TestStatusWriterCoalesces(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeStatus{}
	w := newStatusWriter(20*time.Millisecond, f.read, f.write)
	go w.Run(ctx)
	start := time.Now()
	for i := 1; i <= 500; i++ {
		f.set(i)
		w.Changed()
		time.Sleep(100 * time.Microsecond)
	}
	require.NoError(t, w.Flush(ctx))
	assert.EqualValues(t, 500, f.written.Load(), "a Flush returns once the latest change is written")
	// At most one write per interval (plus the first and the flush), however many changes.
	limit := int64(time.Since(start)/(20*time.Millisecond)) + 2
	assert.LessOrEqual(t, f.writes.Load(), limit, "500 changes cost at most one write per interval")
	assert.Less(t, f.writes.Load(), int64(100))
}

func TestStatusWriterFlushIsImmediate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeStatus{}
	w := newStatusWriter(time.Hour, f.read, f.write) // only a Flush can write
	go w.Run(ctx)
	f.set(1)
	w.Changed()
	start := time.Now()
	require.NoError(t, w.Flush(ctx))
	assert.Less(t, time.Since(start), time.Second)
	assert.EqualValues(t, 1, f.written.Load())
	// Nothing changed: a Flush does not write again.
	require.NoError(t, w.Flush(ctx))
	assert.EqualValues(t, 1, f.writes.Load())
}

func TestStatusWriterRetriesFailedWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeStatus{}
	f.fail.Store(2)
	w := newStatusWriter(time.Millisecond, f.read, f.write)
	go w.Run(ctx)
	f.set(7)
	w.Changed()
	require.NoError(t, w.Flush(ctx))
	assert.EqualValues(t, 7, f.written.Load())
}

func TestStatusWriterFlushEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeStatus{}
	f.fail.Store(1 << 30) // never succeeds
	w := newStatusWriter(time.Millisecond, f.read, f.write)
	go w.Run(ctx)
	w.Changed()
	flushCtx, flushCancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer flushCancel()
	assert.Error(t, w.Flush(flushCtx))
	cancel()
}
