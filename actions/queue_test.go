package actions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitLong bounds every wait that should succeed; it only matters when the test is broken.
const waitLong = 5 * time.Second

func newTestQueue[K comparable](t testing.TB, opts ...Option) *Queue[K] {
	t.Helper()
	q := NewQueue[K](opts...)
	t.Cleanup(q.ShutDown)
	return q
}

type getResult[K comparable] struct {
	key K
	ok  bool
}

// asyncGet calls Get in a goroutine so a test can assert that it blocks.
func asyncGet[K comparable](q *Queue[K]) <-chan getResult[K] {
	ch := make(chan getResult[K], 1)
	go func() {
		k, ok := q.Get()
		ch <- getResult[K]{k, ok}
	}()
	return ch
}

func mustGet[K comparable](t *testing.T, q *Queue[K]) K {
	t.Helper()
	select {
	case r := <-asyncGet(q):
		require.True(t, r.ok, "queue shut down while a key was expected")
		return r.key
	case <-time.After(waitLong):
		t.Fatal("Get did not return a key")
	}
	panic("unreachable")
}

func requireBlocked[K comparable](t *testing.T, ch <-chan getResult[K]) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Get returned %v (ok=%v) while it should block", r.key, r.ok)
	case <-time.After(30 * time.Millisecond):
	}
}

// requireNoLeftovers checks that no internal map or the FIFO still holds a key.
func requireNoLeftovers[K comparable](t *testing.T, q *Queue[K]) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	require.Zero(t, q.fifo.len(), "fifo")
	require.Empty(t, q.dirty, "dirty")
	require.Empty(t, q.processing, "processing")
	require.Empty(t, q.delayed, "delayed heap")
	require.Empty(t, q.delayedByKey, "delayed index")
	require.Empty(t, q.failures, "failures")
}

func TestAddWhileProcessingRunsOnceMoreNeverConcurrently(t *testing.T) {
	q := newTestQueue[string](t)
	q.Add("a")
	require.Equal(t, "a", mustGet(t, q))

	q.Add("a")
	require.Equal(t, 0, q.Len(), "a processing key must not be queued")
	second := asyncGet(q)
	requireBlocked(t, second) // a second worker must not get "a" while it is processing

	q.Done("a")
	select {
	case r := <-second:
		require.True(t, r.ok)
		require.Equal(t, "a", r.key)
	case <-time.After(waitLong):
		t.Fatal("dirty key was not re-queued on Done")
	}
	q.Done("a")
	require.Equal(t, 0, q.Len())
	requireBlocked(t, asyncGet(q)) // exactly one more run, not two
}

func TestDuplicateAddsCollapse(t *testing.T) {
	q := newTestQueue[string](t)
	for _, k := range []string{"a", "b", "a", "a", "b"} {
		q.Add(k)
	}
	require.Equal(t, 2, q.Len())
	require.Equal(t, uint64(2), q.Stats().Adds)
	require.Equal(t, "a", mustGet(t, q))
	require.Equal(t, "b", mustGet(t, q))
	q.Done("a")
	q.Done("b")
	require.Equal(t, 0, q.Len())
}

func TestAddsWhileProcessingCollapse(t *testing.T) {
	q := newTestQueue[string](t)
	q.Add("a")
	require.Equal(t, "a", mustGet(t, q))
	q.Add("a")
	q.Add("a")
	q.Add("a")
	require.Equal(t, 0, q.Len())
	q.Done("a")
	require.Equal(t, 1, q.Len(), "three adds during processing collapse into one run")
	require.Equal(t, "a", mustGet(t, q))
	q.Done("a")
	require.Equal(t, 0, q.Len())
	requireNoLeftovers(t, q)
}

func TestShutDownDrainsDirtyItem(t *testing.T) {
	q := newTestQueue[string](t)
	q.Add("a")
	require.Equal(t, "a", mustGet(t, q))
	q.Add("a") // dirty while processing
	q.Add("b")
	q.ShutDown()
	q.Add("c") // dropped

	require.Equal(t, "b", mustGet(t, q))
	q.Done("b")
	q.Done("a") // re-queues the dirty key even though the queue is shutting down
	require.Equal(t, "a", mustGet(t, q))
	q.Done("a")

	_, ok := q.Get()
	require.False(t, ok)
	requireNoLeftovers(t, q)
}

func TestAddAfterShutDownIsDropped(t *testing.T) {
	q := newTestQueue[string](t)
	q.AddAfter("waiting", time.Hour) // starts the timer goroutine; ShutDown must stop it
	q.ShutDown()
	q.ShutDown() // idempotent
	require.True(t, q.ShuttingDown())

	q.Add("a")
	q.AddAfter("b", time.Millisecond)
	q.AddAfter("c", 0)
	q.AddRateLimited("d")

	s := q.Stats()
	require.Equal(t, Stats{ShuttingDown: true}, s)
	require.Zero(t, q.Retries("d"))
	_, ok := q.Get()
	require.False(t, ok)
	requireNoLeftovers(t, q)
}

// TestTryAddSaysWhetherTheKeyWasTaken: a key is taken until the queue shuts down, then dropped
// and TryAdd says so.
func TestTryAddSaysWhetherTheKeyWasTaken(t *testing.T) {
	q := newTestQueue[string](t)
	require.True(t, q.TryAdd("a"))
	require.True(t, q.TryAdd("a"), "taken, collapsed with the one waiting")
	require.Equal(t, 1, q.Len())
	q.ShutDown()
	require.False(t, q.TryAdd("b"))
	key, ok := q.Get()
	require.True(t, ok)
	require.Equal(t, "a", key)
	q.Done(key)
	_, ok = q.Get()
	require.False(t, ok, "b was dropped")
	requireNoLeftovers(t, q)
}

func TestAddAfterOrdering(t *testing.T) {
	q := newTestQueue[string](t)
	start := time.Now()
	q.AddAfter("c", 60*time.Millisecond)
	q.AddAfter("a", 20*time.Millisecond)
	q.AddAfter("b", 40*time.Millisecond)
	require.Equal(t, 3, q.Stats().Delayed)
	require.Equal(t, 0, q.Len(), "delayed keys are not ready yet")

	for i, want := range []string{"a", "b", "c"} {
		got := mustGet(t, q)
		require.Equal(t, want, got)
		require.GreaterOrEqual(t, time.Since(start), time.Duration(i+1)*20*time.Millisecond, "%s came early", got)
		q.Done(got)
	}
	requireNoLeftovers(t, q)
}

func TestAddAfterOnlyMovesDeadlineEarlier(t *testing.T) {
	q := newTestQueue[string](t)

	t.Run("later deadline ignored", func(t *testing.T) {
		q.AddAfter("a", 20*time.Millisecond)
		q.AddAfter("a", time.Hour)
		require.Equal(t, 1, q.Stats().Delayed)
		require.Equal(t, "a", mustGet(t, q)) // well before an hour
		q.Done("a")
	})

	t.Run("earlier deadline wins", func(t *testing.T) {
		q.AddAfter("b", time.Hour)
		q.AddAfter("b", 10*time.Millisecond)
		require.Equal(t, 1, q.Stats().Delayed)
		require.Equal(t, "b", mustGet(t, q))
		q.Done("b")
	})

	t.Run("add now replaces a pending deadline", func(t *testing.T) {
		q.AddAfter("c", time.Hour)
		q.Add("c")
		require.Equal(t, Stats{Depth: 1}, withoutTotals(q.Stats()))
		require.Equal(t, "c", mustGet(t, q))
		q.Done("c")
	})

	t.Run("non-positive delay adds now", func(t *testing.T) {
		q.AddAfter("d", 0)
		q.AddAfter("e", -time.Second)
		require.Equal(t, 2, q.Len())
		require.Equal(t, "d", mustGet(t, q))
		require.Equal(t, "e", mustGet(t, q))
		q.Done("d")
		q.Done("e")
	})

	t.Run("delayed add of a due key is a no-op", func(t *testing.T) {
		q.Add("f")
		q.AddAfter("f", time.Millisecond)
		require.Equal(t, Stats{Depth: 1}, withoutTotals(q.Stats()))
		require.Equal(t, "f", mustGet(t, q))
		q.Done("f")
	})

	t.Run("deadline reached while processing re-queues on Done", func(t *testing.T) {
		q.Add("g")
		require.Equal(t, "g", mustGet(t, q))
		q.AddAfter("g", time.Millisecond)
		require.Eventually(t, func() bool { return q.Stats().Delayed == 0 }, waitLong, time.Millisecond)
		require.Equal(t, 0, q.Len())
		q.Done("g")
		require.Equal(t, "g", mustGet(t, q))
		q.Done("g")
	})

	requireNoLeftovers(t, q)
}

func withoutTotals(s Stats) Stats {
	s.Adds, s.Retries = 0, 0
	return s
}

func TestAddRateLimitedBacksOffAndForgetResets(t *testing.T) {
	const base, maxDelay = 10 * time.Second, 80 * time.Second
	q := newTestQueue[string](t, WithBackoff(base, maxDelay))

	// deadline reads the pending deadline of k relative to when AddRateLimited was called.
	rateLimit := func(k string) (lo, hi time.Duration) {
		before := time.Now()
		q.AddRateLimited(k)
		after := time.Now()
		q.mu.Lock()
		defer q.mu.Unlock()
		e, ok := q.delayedByKey[k]
		require.True(t, ok, "AddRateLimited must delay the key")
		return e.readyAt.Sub(after), e.readyAt.Sub(before)
	}
	// runNow pulls the delayed key forward and completes one run, without waiting for backoff.
	runNow := func(k string) {
		q.Add(k)
		require.Equal(t, k, mustGet(t, q))
		q.Done(k)
	}

	for i, want := range []time.Duration{10, 20, 40, 80, 80, 80} {
		want *= time.Second
		lo, hi := rateLimit("a")
		require.LessOrEqual(t, lo, want, "retry %d", i)
		require.GreaterOrEqual(t, hi, want, "retry %d", i)
		require.Equal(t, i+1, q.Retries("a"))
		runNow("a")
	}
	require.Equal(t, uint64(6), q.Stats().Retries)
	require.Zero(t, q.Retries("b"), "backoff is per key")

	q.Forget("a")
	require.Zero(t, q.Retries("a"))
	lo, hi := rateLimit("a")
	require.LessOrEqual(t, lo, base)
	require.GreaterOrEqual(t, hi, base)
	runNow("a")
	q.Forget("a")
	require.Equal(t, uint64(7), q.Stats().Retries, "the total is a counter, Forget does not reset it")
	requireNoLeftovers(t, q)
}

func TestAddRateLimitedEventuallyRuns(t *testing.T) {
	q := newTestQueue[int](t, WithBackoff(time.Millisecond, 4*time.Millisecond))
	q.AddRateLimited(1)
	require.Equal(t, 1, mustGet(t, q))
	q.Done(1)
	q.Forget(1)
	requireNoLeftovers(t, q)
}

func TestWithBackoffSanitises(t *testing.T) {
	q := newTestQueue[int](t, WithBackoff(0, -1))
	require.Equal(t, DefaultBaseBackoff, q.cfg.backoff.Initial)
	require.Equal(t, DefaultBaseBackoff, q.cfg.backoff.Max)
	q = newTestQueue[int](t)
	require.Equal(t, DefaultBaseBackoff, q.cfg.backoff.Initial)
	require.Equal(t, DefaultMaxBackoff, q.cfg.backoff.Max)
}

func TestShutDownWithDrainWaitsForInFlight(t *testing.T) {
	q := newTestQueue[string](t)
	q.Add("a")
	q.Add("b")
	require.Equal(t, "a", mustGet(t, q))
	require.Equal(t, "b", mustGet(t, q))

	drained := make(chan struct{})
	go func() {
		q.ShutDownWithDrain()
		close(drained)
	}()
	require.Eventually(t, q.ShuttingDown, waitLong, time.Millisecond)
	q.Add("c") // dropped during drain

	q.Done("a")
	select {
	case <-drained:
		t.Fatal("ShutDownWithDrain returned while b was in flight")
	case <-time.After(30 * time.Millisecond):
	}
	require.Equal(t, 1, q.InFlight())

	q.Done("b")
	select {
	case <-drained:
	case <-time.After(waitLong):
		t.Fatal("ShutDownWithDrain did not return after the last Done")
	}
	_, ok := q.Get()
	require.False(t, ok)
	requireNoLeftovers(t, q)
}

func TestShutDownWakesBlockedGet(t *testing.T) {
	q := newTestQueue[string](t)
	got := asyncGet(q)
	requireBlocked(t, got)
	q.ShutDown()
	select {
	case r := <-got:
		require.False(t, r.ok)
	case <-time.After(waitLong):
		t.Fatal("Get still blocked after ShutDown")
	}
}

func TestDoneOfUnknownKeyIsIgnored(t *testing.T) {
	q := newTestQueue[string](t)
	q.Add("a")
	q.Done("a") // never handed out: must not queue "a" twice
	require.Equal(t, 1, q.Len())
	q.Done("zzz")
	require.Equal(t, 1, q.Len())
	require.Equal(t, "a", mustGet(t, q))
	q.Done("a")
	requireNoLeftovers(t, q)
}

func TestStats(t *testing.T) {
	q := newTestQueue[string](t, WithBackoff(time.Hour, time.Hour))
	q.Add("a")
	q.Add("b")
	q.Add("b")
	require.Equal(t, "a", mustGet(t, q))
	q.AddRateLimited("z")
	require.Equal(t, Stats{Depth: 1, InFlight: 1, Delayed: 1, Adds: 2, Retries: 1}, q.Stats())
	require.Equal(t, 1, q.Len())
	require.Equal(t, 1, q.InFlight())
}

// TestNoLeakOfPoppedKeys runs many distinct keys through every path and checks that nothing
// stays behind in the internal maps, the FIFO or the heap.
func TestNoLeakOfPoppedKeys(t *testing.T) {
	q := newTestQueue[int](t, WithBackoff(time.Microsecond, time.Microsecond))
	const n = 5000 // big enough that the FIFO compacts and then lets its array go
	for i := range n {
		q.Add(i)
	}
	for i := range n {
		k, ok := q.Get()
		require.True(t, ok)
		require.Equal(t, i, k)
		if i%3 == 0 {
			q.Add(k) // dirty while processing: one more run below
		}
		q.Done(k)
	}
	for q.Len() > 0 {
		k, _ := q.Get()
		q.Done(k)
	}
	for i := range 200 {
		q.AddAfter(i, time.Microsecond)
		q.AddRateLimited(n + i)
	}
	for range 400 {
		k := mustGet(t, q)
		q.Forget(k)
		q.Done(k)
	}
	requireNoLeftovers(t, q)

	q.mu.Lock()
	require.LessOrEqual(t, cap(q.fifo.items), 4096, "a drained FIFO must not keep a burst-sized array")
	q.mu.Unlock()
}

func TestFIFOCompactsAndZeroesSlots(t *testing.T) {
	var f fifo[*int]
	for i := range 3000 {
		f.push(&i)
	}
	for range 2000 {
		f.pop()
	}
	require.Equal(t, 1000, f.len())
	for i := f.len() + f.head; i < cap(f.items); i++ {
		require.Nil(t, f.items[:cap(f.items)][i], "slot %d beyond the live items still holds a key", i)
	}
	for i := range f.head {
		require.Nil(t, f.items[i], "popped slot %d still holds a key", i)
	}
}

// TestStress adds random keys from a small key space from many goroutines while workers run,
// some runs failing. It checks the two promises that matter: a key is never processed by two
// workers at once, and every add that happened after the key's last run started is followed by
// one more run.
func TestStress(t *testing.T) {
	const (
		keys    = 16
		adders  = 50
		perAdd  = 200
		workers = 8
	)
	q := NewQueue[int](WithBackoff(50*time.Microsecond, time.Millisecond))

	var (
		clock      atomic.Int64 // orders adds and run starts
		inProgress [keys]atomic.Bool
		lastAdd    [keys]atomic.Int64
		lastStart  [keys]atomic.Int64
		runs       atomic.Int64
		overlaps   atomic.Int64
	)
	storeMax := func(v *atomic.Int64, n int64) {
		for {
			old := v.Load()
			if n <= old || v.CompareAndSwap(old, n) {
				return
			}
		}
	}

	process := func(_ context.Context, k int) error {
		if !inProgress[k].CompareAndSwap(false, true) {
			overlaps.Add(1)
			return nil
		}
		defer inProgress[k].Store(false)
		storeMax(&lastStart[k], clock.Add(1))
		runs.Add(1)
		if rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
		}
		if rand.IntN(10) == 0 {
			return errors.New("transient")
		}
		return nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		Run(ctx, q, workers, process)
		close(runDone)
	}()

	var wg sync.WaitGroup
	for range adders {
		wg.Go(func() {
			for range perAdd {
				k := rand.IntN(keys)
				// The stamp is taken before Add: if the run that covers this add started
				// earlier, the add saw the key processing and must cause another run.
				storeMax(&lastAdd[k], clock.Add(1))
				q.Add(k)
				if rand.IntN(8) == 0 {
					time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()

	// Wait until the queue is idle: nothing queued, running or delayed (retries included). One
	// snapshot under the lock, and no adder is left, so idle cannot end by itself.
	require.Eventually(t, func() bool {
		s := q.Stats()
		return s.Depth == 0 && s.InFlight == 0 && s.Delayed == 0
	}, waitLong, time.Millisecond)
	cancel()
	select {
	case <-runDone:
	case <-time.After(waitLong):
		t.Fatal("Run did not return after cancel")
	}

	require.Zero(t, overlaps.Load(), "a key was processed by two workers at once")
	for k := range keys {
		require.Greater(t, lastStart[k].Load(), lastAdd[k].Load(), "key %d was added after its last run started and never run again", k)
	}
	require.Positive(t, runs.Load())
	t.Logf("runs=%d stats=%+v", runs.Load(), q.Stats())

	q.mu.Lock()
	defer q.mu.Unlock()
	require.Zero(t, q.fifo.len())
	require.Empty(t, q.dirty)
	require.Empty(t, q.processing)
	require.Empty(t, q.delayedByKey)
}

func TestRunReturnsOnlyAfterWorkersExit(t *testing.T) {
	const workers = 4
	q := NewQueue[int](WithBackoff(time.Hour, time.Hour)) // failed runs must not come back
	for i := range workers {
		q.Add(i)
	}
	var startedCount, finished atomic.Int32
	allStarted := make(chan struct{})
	process := func(ctx context.Context, _ int) error {
		if startedCount.Add(1) == workers {
			close(allStarted)
		}
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // a run that takes a while to wind down
		finished.Add(1)
		return ctx.Err()
	}

	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		Run(ctx, q, workers, process)
		close(runDone)
	}()
	select {
	case <-allStarted:
	case <-time.After(waitLong):
		t.Fatal("workers did not start")
	}
	cancel()
	select {
	case <-runDone:
	case <-time.After(waitLong):
		t.Fatal("Run did not return")
	}
	require.Equal(t, int32(workers), finished.Load(), "Run returned before its workers finished")
	require.True(t, q.ShuttingDown())
	require.Zero(t, q.InFlight())
	require.Zero(t, q.Stats().Delayed, "retries are dropped after shutdown")
}

func TestRunRetriesThenForgets(t *testing.T) {
	q := NewQueue[string](WithBackoff(time.Millisecond, 2*time.Millisecond))
	var calls atomic.Int32
	succeeded := make(chan struct{})
	process := func(_ context.Context, k string) error {
		if calls.Add(1) < 3 {
			return fmt.Errorf("%s: not yet", k)
		}
		close(succeeded)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		Run(ctx, q, 2, process)
		close(runDone)
	}()
	q.Add("a")
	select {
	case <-succeeded:
	case <-time.After(waitLong):
		t.Fatal("key was not retried to success")
	}
	require.Eventually(t, func() bool { return q.InFlight() == 0 }, waitLong, time.Millisecond)
	require.Zero(t, q.Retries("a"), "success must forget the backoff")
	require.Equal(t, uint64(2), q.Stats().Retries)
	cancel()
	<-runDone
	require.Equal(t, int32(3), calls.Load())
	requireNoLeftovers(t, q)
}

func TestRunReturnsWhenQueueShutDownElsewhere(t *testing.T) {
	q := NewQueue[int]()
	runDone := make(chan struct{})
	go func() {
		Run(context.Background(), q, 3, func(context.Context, int) error { return nil })
		close(runDone)
	}()
	q.Add(1)
	q.ShutDown()
	select {
	case <-runDone:
	case <-time.After(waitLong):
		t.Fatal("Run did not return after the queue was shut down")
	}
}

func BenchmarkQueueAddGetDone(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		q := newTestQueue[int](b)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			q.Add(i & 1023)
			k, _ := q.Get()
			q.Done(k)
		}
	})
	b.Run("workers=8", func(b *testing.B) {
		q := newTestQueue[int](b)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					k, ok := q.Get()
					if !ok {
						return
					}
					q.Done(k)
				}
			})
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			q.Add(i)
		}
		q.ShutDown()
		wg.Wait()
	})
}
