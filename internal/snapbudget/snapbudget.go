// Package snapbudget bounds the memory that the snapshots of both change
// feeds (/v1/watch?snapshot=true, Socket.IO's context_snapshot, and the
// snapshot after a restore's reset) hold together, from the moment one is
// built until it is written to its client's socket.
//
// Each snapshot is bounded by itself (websocket.max_snapshot_bytes), but
// not their number: after a restart every dashboard reconnects at once and
// asks for one, and eight clients of a 56 MB namespace took 1.65 GB. A
// [Budget] (websocket.snapshot_memory_bytes) is shared by both feeds: a
// snapshot reserves the most it may take before it is built, gives back
// what it did not use once built, and the rest once written (or when its
// client goes, or after the write timeout: a client that does not read
// cannot keep others waiting). A client whose reservation does not fit waits its turn, in
// order of arrival (golang.org/x/sync/semaphore is first-in first-out, so
// a large snapshot is not starved by small ones).
package snapbudget

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Budget is the memory the snapshots in progress may hold together. A nil
// *Budget grants everything at once.
type Budget struct {
	capacity int64
	sem      *semaphore.Weighted
	held     atomic.Int64
	waiting  atomic.Int64
	waited   atomic.Uint64
}

// New returns a budget of capacity bytes (at least 1).
func New(capacity int64) *Budget {
	capacity = max(capacity, 1)
	return &Budget{capacity: capacity, sem: semaphore.NewWeighted(capacity)}
}

// Stats is what a budget holds now.
type Stats struct {
	// Capacity is the budget; Held the bytes snapshots hold now.
	Capacity, Held int64
	// Waiting is how many snapshots wait for room now; Waited how many
	// ever had to wait.
	Waiting int64
	Waited  uint64
}

// Stats reports the budget's use (zero for a nil budget).
func (b *Budget) Stats() Stats {
	if b == nil {
		return Stats{}
	}
	return Stats{Capacity: b.capacity, Held: b.held.Load(), Waiting: b.waiting.Load(), Waited: b.waited.Load()}
}

// Grant is one snapshot's share of the budget. Its methods may be called
// from any goroutine, and on a nil *Grant (a nil budget's).
type Grant struct {
	b  *Budget
	mu sync.Mutex
	n  int64
}

// Acquire reserves most bytes (the whole budget when most is larger),
// waiting until they are free or ctx ends (its error is returned then).
func (b *Budget) Acquire(ctx context.Context, most int64) (*Grant, error) {
	if b == nil {
		return nil, nil
	}
	n := min(max(most, 1), b.capacity)
	if !b.sem.TryAcquire(n) {
		b.waiting.Add(1)
		b.waited.Add(1)
		err := b.sem.Acquire(ctx, n)
		b.waiting.Add(-1)
		if err != nil {
			return nil, err
		}
	}
	b.held.Add(n)
	return &Grant{b: b, n: n}, nil
}

// Shrink gives back what the grant holds above size: the snapshot is
// built, and size bytes of it wait to be written.
func (g *Grant) Shrink(size int64) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if size = max(size, 0); size < g.n {
		g.giveLocked(g.n - size)
	}
}

// ReleaseAfter releases the grant d from now, if it is not released by
// then: a client that does not read its snapshot holds the budget no
// longer than that (the memory stays its until its connection ends: the
// feeds close a client that reads nothing for websocket.write_timeout).
func (g *Grant) ReleaseAfter(d time.Duration) {
	if g == nil {
		return
	}
	time.AfterFunc(d, g.Release)
}

// Release gives back all the grant holds: the snapshot is written, or its
// client is gone. Calling it again does nothing.
func (g *Grant) Release() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.giveLocked(g.n)
}

func (g *Grant) giveLocked(n int64) {
	if n <= 0 {
		return
	}
	g.n -= n
	g.b.held.Add(-n)
	g.b.sem.Release(n)
}
