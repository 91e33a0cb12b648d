package etcd

import (
	"context"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
)

// Test-only switches of the read cache, for the negative controls of its
// tests: they break the cache on purpose.

// SkipReadCacheWait makes the cache serve reads without confirming etcd's
// revision and waiting for it: reads may then be stale.
func SkipReadCacheWait(s *Store, skip bool) { s.cache.skipWait.Store(skip) }

// LagReadCache holds each watch response back by d before the instance
// applies it: its cache (and feed) run behind etcd.
func LagReadCache(s *Store, d time.Duration) { s.cache.applyLagNanos.Store(int64(d)) }

// HoldReadCache stops the instance's cache at the revision it has until
// release, while its feed goes on: reads and writes that use the cache
// see it behind etcd for as long as the test needs.
func HoldReadCache(s *Store) (release func()) { return s.cache.holdBack() }

// RemoveStaleGenerations runs the removal of replaced and abandoned
// generations (cleanup.go) now, and returns how many it removed.
func RemoveStaleGenerations(s *Store) int { return s.removeStaleGenerations(context.Background()) }

// MarkRestore marks generation id as a restore in flight, as a restorer
// does after its claim; unmark removes the mark.
func MarkRestore(s *Store, id uint64) (unmark func(), err error) {
	return s.markRestore(context.Background(), id)
}

// EachDeadline is Snapshot's walk of the deadlines of the keys on a lease
// that no write changed after rev.
func EachDeadline(s *Store, rev uint64, fn func(ns, key string, at time.Time) error) error {
	return s.eachDeadline(context.Background(), s.keys.gen(), rev, fn)
}

// HoldGroups keeps the store's grouped writes queued until release, so
// that a test commits a group of its choosing; queued tells how many
// writes wait.
func HoldGroups(s *Store) (queued func() int, release func()) { return s.groups.hold() }

// FeedFloor is the revision the instance's recent changes start after:
// ReadLog after it answers from memory, before it from etcd's history.
// ChangeBytes is what the feed counts for cs against Options.RingBytes.
func ChangeBytes(cs []ctxd.Change) int { return bytesOf(cs) }

func FeedFloor(s *Store) uint64 {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	return s.feed.floor
}

// HistoryReads counts the watches of etcd's history ReadLog started.
func HistoryReads(s *Store) uint64 { return s.stats.historyReads.Load() }

// OnGroupRunner makes f run each time a writer becomes a runner of
// groups, before it looks at the queue.
func OnGroupRunner(s *Store, f func()) { s.groups.joined = f }

// BeforeCompact runs fn right before each compaction's etcd request.
func BeforeCompact(s *Store, fn func()) { s.beforeCompact = fn }

// BeforeSnapshotRead runs fn in each snapshot once it has chosen the
// revision it reads the state at, before it reads it.
func BeforeSnapshotRead(s *Store, fn func()) { s.beforeSnapshotRead = fn }

// CountRequests makes a store opened with o count the unary etcd
// requests its client sends (each retry of requireLeader's too); count
// tells how many so far.
func CountRequests(o *Options) (count func() int64) {
	var n atomic.Int64
	o.onRequest = func(string) { n.Add(1) }
	return n.Load
}

// FailCacheFills makes each fill of the read cache of a store opened
// with o fail, as when etcd does not answer, until stop; failed tells
// how many did.
func FailCacheFills(o *Options) (failed func() int64, stop func()) {
	var n atomic.Int64
	var stopped atomic.Bool
	o.failFill = func() bool {
		if stopped.Load() {
			return false
		}
		n.Add(1)
		return true
	}
	return n.Load, func() { stopped.Store(true) }
}

// AfterCacheApply runs fn in the instance's watch after its read cache
// applied each response, before its feed takes the response (nil: no
// longer): fn may hold the watch there.
func AfterCacheApply(s *Store, fn func(clientv3.WatchResponse)) {
	if fn == nil {
		s.afterCacheApply.Store(nil)
		return
	}
	s.afterCacheApply.Store(&fn)
}

// FailReloads makes the instance's next n reads of the generation
// pointer (reloadGeneration) fail as when etcd does not answer.
func FailReloads(s *Store, n int) { s.failReloads.Store(int32(n)) }

// BeforeCacheFillEnds runs fn in each fill of the instance's read cache
// once it has read the prefix, before it makes that the cache's content
// (nil: no longer): fn may hold the fill there.
func BeforeCacheFillEnds(s *Store, fn func()) { setHook(&s.beforeFillEnds, fn) }

// AfterCacheFill runs fn in the instance's watch after each fill of its
// read cache, before the watch takes the mark it starts after (nil: no
// longer): fn may hold the watch there.
func AfterCacheFill(s *Store, fn func()) { setHook(&s.afterFill, fn) }

// BeforeRestoreClaim runs fn in each full restore through the instance
// once it has compared the data with the snapshot, before it catches the
// instance up with the pointer and claims its id (nil: no longer).
func BeforeRestoreClaim(s *Store, fn func()) { setHook(&s.beforeRestoreClaim, fn) }

// AfterGenerationSwap runs fn in each switch of the instance's generation
// once the instance's reads and writes are on the new one, before its
// read cache is invalidated and its feed follows (nil: no longer): fn may
// hold the switch there.
func AfterGenerationSwap(s *Store, fn func()) { setHook(&s.afterGenerationSwap, fn) }

// CachedValue is the value the instance's read cache holds now for key
// in ns, ready or not, without waiting for it to be current ("" when it
// holds none), and the revision the cache reflects.
func CachedValue(s *Store, ns, key string) (value string, rev uint64) {
	e, found, _ := s.cache.entry(ns, key)
	s.cache.mu.RLock()
	rev = s.cache.rev
	s.cache.mu.RUnlock()
	if !found {
		return "", rev
	}
	r, err := e.record(ns)
	if err != nil {
		return "", rev
	}
	return string(r.Value), rev
}

// setHook sets a test hook to fn (nil: none).
func setHook(h *atomic.Pointer[func()], fn func()) {
	if fn == nil {
		h.Store(nil)
		return
	}
	h.Store(&fn)
}
