package actions

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/bkbcs/drplan-controller/backoff"
)

// Backoff defaults for AddRateLimited. The first retry is fast because most failures are
// conflicts that clear at once; the cap is minutes, not the usual quarter of an hour, because
// during a failover an action left unretried for long is worse than a few extra API calls.
const (
	DefaultBaseBackoff = 5 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Minute
)

// Option configures a Queue.
type Option func(*queueConfig)

type queueConfig struct {
	backoff backoff.Policy // doubling
}

// WithBackoff sets the per-key backoff of AddRateLimited: base * 2^failures, capped at maxDelay.
// A non-positive base keeps the default; a maxDelay below base is raised to base.
func WithBackoff(base, maxDelay time.Duration) Option {
	return func(c *queueConfig) {
		c.backoff = backoff.Policy{Initial: base, Max: maxDelay}
	}
}

// Queue is a work queue of keys with the guarantees a controller needs:
//
//   - a key waiting for a worker is held once, however often it is added (adds collapse);
//   - a key is never handed to two workers at once: adding a key that is being processed only
//     marks it dirty, and Done puts it back so the change is seen by one more run;
//   - delayed adds (AddAfter) and per-key exponential backoff (AddRateLimited) for retries.
//
// Every key returned by Get must be passed to Done exactly once. All state sits behind one mutex:
// an item in the FIFO is dirty and not processing, which is what makes the guarantees hold.
type Queue[K comparable] struct {
	cfg queueConfig

	mu sync.Mutex
	// itemReady wakes Get when the FIFO gets a key or the queue shuts down.
	itemReady *sync.Cond
	// idle wakes ShutDownWithDrain when the last in-flight key is Done.
	idle *sync.Cond

	fifo       fifo[K]
	dirty      map[K]struct{} // needs a run: in the FIFO, or processing and due once more
	processing map[K]struct{} // handed out by Get, not yet Done

	// Delayed adds: one timer goroutine, started on first use, services a min-heap of deadlines.
	delayed      delayHeap[K]
	delayedByKey map[K]*delayedKey[K]
	delaySeq     uint64        // keeps equal deadlines in insertion order
	delayWake    chan struct{} // buffered(1): the earliest deadline changed
	delayStarted bool
	stop         chan struct{} // closed once by ShutDown
	delayDone    chan struct{} // closed when the timer goroutine exits

	failures map[K]int // per-key count of AddRateLimited since the last Forget

	shuttingDown bool

	adds    uint64 // keys newly marked dirty
	retries uint64 // accepted AddRateLimited calls
}

// NewQueue returns an empty queue. Call ShutDown (or let Run do it) when finished, so that the
// goroutine serving AddAfter exits.
func NewQueue[K comparable](opts ...Option) *Queue[K] {
	cfg := queueConfig{backoff: backoff.Policy{Initial: DefaultBaseBackoff, Max: DefaultMaxBackoff}}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.backoff.Initial <= 0 {
		cfg.backoff.Initial = DefaultBaseBackoff
	}
	cfg.backoff.Max = max(cfg.backoff.Max, cfg.backoff.Initial)
	q := &Queue[K]{
		cfg:          cfg,
		dirty:        map[K]struct{}{},
		processing:   map[K]struct{}{},
		delayedByKey: map[K]*delayedKey[K]{},
		delayWake:    make(chan struct{}, 1),
		stop:         make(chan struct{}),
		delayDone:    make(chan struct{}),
		failures:     map[K]int{},
	}
	q.itemReady = sync.NewCond(&q.mu)
	q.idle = sync.NewCond(&q.mu)
	return q
}

// Add marks key as needing a run. It is a no-op if the key is already waiting for a worker, and
// after ShutDown. A pending AddAfter for the key is dropped: the key is now due, which is the
// earliest deadline there is.
func (q *Queue[K]) Add(key K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

// TryAdd is Add that reports whether the key was taken: false once the queue is shutting down
// (Add then drops the key silently), so the caller can undo what it did for the key.
func (q *Queue[K]) TryAdd(key K) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shuttingDown {
		return false
	}
	q.addLocked(key)
	return true
}

func (q *Queue[K]) addLocked(key K) {
	if q.shuttingDown {
		return
	}
	if e, ok := q.delayedByKey[key]; ok {
		heap.Remove(&q.delayed, e.index)
		delete(q.delayedByKey, key)
	}
	if _, ok := q.dirty[key]; ok {
		return
	}
	q.dirty[key] = struct{}{}
	q.adds++
	if _, ok := q.processing[key]; ok {
		return // Done re-queues it, so no two workers ever hold the key.
	}
	q.fifo.push(key)
	q.itemReady.Signal()
}

// AddAfter adds key once d has passed; d <= 0 adds it now. A key holds at most one pending
// deadline, which a later call may only move earlier: a retry must not postpone a run that is
// already scheduled. If the key is already due (dirty) the call is a no-op, since that run comes
// first and can schedule again. AddAfter never blocks and is dropped after ShutDown.
func (q *Queue[K]) AddAfter(key K, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addAfterLocked(key, d)
}

func (q *Queue[K]) addAfterLocked(key K, d time.Duration) {
	if q.shuttingDown {
		return
	}
	if d <= 0 {
		q.addLocked(key)
		return
	}
	if _, ok := q.dirty[key]; ok {
		return
	}
	readyAt := time.Now().Add(d)
	if e, ok := q.delayedByKey[key]; ok {
		if readyAt.Before(e.readyAt) {
			e.readyAt = readyAt
			heap.Fix(&q.delayed, e.index)
			if e.index == 0 {
				q.wakeDelayLoop()
			}
		}
		return
	}
	e := &delayedKey[K]{key: key, readyAt: readyAt, seq: q.delaySeq}
	q.delaySeq++
	heap.Push(&q.delayed, e)
	q.delayedByKey[key] = e
	if !q.delayStarted {
		q.delayStarted = true
		go q.delayLoop()
	}
	if e.index == 0 {
		q.wakeDelayLoop()
	}
}

// wakeDelayLoop tells the timer goroutine to re-read the earliest deadline. The channel holds
// one token, so callers never block and several wake-ups fold into one.
func (q *Queue[K]) wakeDelayLoop() {
	select {
	case q.delayWake <- struct{}{}:
	default:
	}
}

// delayLoop moves due keys from the heap to the FIFO. It sleeps on one timer set to the earliest
// deadline and does not hold the lock while sleeping, so AddAfter stays non-blocking.
func (q *Queue[K]) delayLoop() {
	defer close(q.delayDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		q.mu.Lock()
		if q.shuttingDown {
			q.mu.Unlock()
			return
		}
		now := time.Now()
		for len(q.delayed) > 0 && !q.delayed[0].readyAt.After(now) {
			e := heap.Pop(&q.delayed).(*delayedKey[K])
			delete(q.delayedByKey, e.key)
			q.addLocked(e.key)
		}
		next := time.Duration(-1)
		if len(q.delayed) > 0 {
			next = q.delayed[0].readyAt.Sub(now)
		}
		q.mu.Unlock()

		if next >= 0 {
			timer.Reset(next)
		} else {
			timer.Stop()
		}
		select {
		case <-q.stop:
			timer.Stop()
			return
		case <-q.delayWake:
		case <-timer.C:
		}
	}
}

// AddRateLimited re-adds key after its backoff, base * 2^failures capped at the maximum, and
// counts one more failure for it. Call Forget once the key succeeds, or the count (and the map
// entry holding it) lives on.
func (q *Queue[K]) AddRateLimited(key K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shuttingDown {
		return
	}
	n := q.failures[key]
	q.failures[key] = n + 1
	q.retries++
	q.addAfterLocked(key, q.cfg.backoff.Delay(n))
}

// Forget clears the failure count of key, so its next failure starts again at the base backoff.
// It does not cancel a pending AddAfter.
func (q *Queue[K]) Forget(key K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// Retries returns how many times key was AddRateLimited since it was last forgotten.
func (q *Queue[K]) Retries(key K) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[key]
}

// Get blocks until a key is ready or the queue is shut down. After ShutDown it still returns the
// keys already queued, then ok=false: work accepted before shutdown is not lost silently. The
// caller owns the key until it calls Done.
func (q *Queue[K]) Get() (key K, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.fifo.len() == 0 && !q.shuttingDown {
		q.itemReady.Wait()
	}
	if q.fifo.len() == 0 {
		return key, false
	}
	key = q.fifo.pop()
	q.processing[key] = struct{}{}
	delete(q.dirty, key)
	return key, true
}

// Done releases a key returned by Get. If the key was added while it was processing it goes back
// on the queue now, so the change that came in during the run is seen by one more run.
func (q *Queue[K]) Done(key K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.processing[key]; !ok {
		return
	}
	delete(q.processing, key)
	if _, ok := q.dirty[key]; ok {
		q.fifo.push(key)
		q.itemReady.Signal()
	}
	if len(q.processing) == 0 {
		q.idle.Broadcast()
	}
}

// ShutDown stops accepting keys: Add, AddAfter and AddRateLimited are dropped from now on and
// pending delayed adds are discarded. Get keeps returning the keys already queued (including
// dirty keys re-queued by Done) and then reports ok=false. It is safe to call more than once and
// returns after the AddAfter goroutine has exited.
func (q *Queue[K]) ShutDown() {
	q.mu.Lock()
	first := !q.shuttingDown
	q.shuttingDown = true
	if first {
		q.delayed = nil
		clear(q.delayedByKey)
	}
	started := q.delayStarted
	q.itemReady.Broadcast()
	q.mu.Unlock()

	if first {
		close(q.stop)
	}
	if started {
		<-q.delayDone
	}
}

// ShutDownWithDrain shuts down like ShutDown, then waits until every key handed out by Get has
// been Done, so the caller knows no run is still touching the cluster. Keys still queued are left
// for Get to drain; Run waits for those too, by waiting for its workers.
func (q *Queue[K]) ShutDownWithDrain() {
	q.ShutDown()
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.processing) > 0 {
		q.idle.Wait()
	}
}

// ShuttingDown reports whether ShutDown has been called.
func (q *Queue[K]) ShuttingDown() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.shuttingDown
}

// Len returns the number of keys ready and waiting for a worker (the queue depth).
func (q *Queue[K]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fifo.len()
}

// InFlight returns the number of keys handed out by Get and not yet Done.
func (q *Queue[K]) InFlight() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.processing)
}

// Stats is a consistent snapshot of the queue, taken under its lock, for metrics.
type Stats struct {
	Depth        int    // keys ready and waiting for a worker
	InFlight     int    // keys handed out by Get, not yet Done
	Delayed      int    // keys waiting for an AddAfter deadline
	Adds         uint64 // keys newly marked for a run; adds collapsed into a pending one are not counted
	Retries      uint64 // accepted AddRateLimited calls
	ShuttingDown bool
}

// Stats returns a snapshot of the counters.
func (q *Queue[K]) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{
		Depth:        q.fifo.len(),
		InFlight:     len(q.processing),
		Delayed:      len(q.delayed),
		Adds:         q.adds,
		Retries:      q.retries,
		ShuttingDown: q.shuttingDown,
	}
}

// Run starts workers goroutines (at least one) that process keys from q until ctx is cancelled,
// then shuts q down with drain and returns only after every worker has exited, so the caller can
// release what process uses. It also returns if q is shut down by someone else.
//
// The retry policy lives here and nowhere else: process only returns an error. On nil the key's
// backoff is forgotten; on an error the key is re-added with backoff. Errors are not logged here;
// process knows the key and the context to log with. Keys drained after cancellation are still
// passed to process, with the cancelled ctx.
func Run[K comparable](ctx context.Context, q *Queue[K], workers int, process func(ctx context.Context, key K) error) {
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for processNext(ctx, q, process) {
			}
		})
	}
	workersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(workersDone)
	}()

	select {
	case <-ctx.Done():
		q.ShutDownWithDrain()
		<-workersDone
	case <-workersDone:
	}
}

// processNext runs one key and reports false once the queue is shut down and drained.
func processNext[K comparable](ctx context.Context, q *Queue[K], process func(ctx context.Context, key K) error) bool {
	key, ok := q.Get()
	if !ok {
		return false
	}
	defer q.Done(key)
	if err := process(ctx, key); err != nil {
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}

// fifo is a slice-backed queue that reuses its array instead of re-slicing it away, and zeroes
// popped slots so the keys can be collected.
type fifo[K any] struct {
	items []K
	head  int
}

func (f *fifo[K]) len() int { return len(f.items) - f.head }

func (f *fifo[K]) push(k K) { f.items = append(f.items, k) }

func (f *fifo[K]) pop() K {
	var zero K
	k := f.items[f.head]
	f.items[f.head] = zero
	f.head++
	switch {
	case f.head == len(f.items):
		// Empty: start again at the front, but let a burst-sized array go.
		if cap(f.items) > 4096 {
			f.items = nil
		} else {
			f.items = f.items[:0]
		}
		f.head = 0
	case f.head >= 1024 && f.head*2 >= len(f.items):
		// Mostly dead space at the front: compact so the array does not grow without bound.
		n := copy(f.items, f.items[f.head:])
		clear(f.items[n:])
		f.items = f.items[:n]
		f.head = 0
	}
	return k
}

// delayedKey is a key waiting in the heap for its deadline.
type delayedKey[K comparable] struct {
	key     K
	readyAt time.Time
	seq     uint64
	index   int // position in the heap, kept by Swap so a deadline can be moved with heap.Fix
}

// delayHeap is a min-heap of deadlines (container/heap.Interface).
type delayHeap[K comparable] []*delayedKey[K]

func (h delayHeap[K]) Len() int { return len(h) }

func (h delayHeap[K]) Less(i, j int) bool {
	if !h[i].readyAt.Equal(h[j].readyAt) {
		return h[i].readyAt.Before(h[j].readyAt)
	}
	return h[i].seq < h[j].seq
}

func (h delayHeap[K]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *delayHeap[K]) Push(x any) {
	e := x.(*delayedKey[K])
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *delayHeap[K]) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	e.index = -1
	return e
}
