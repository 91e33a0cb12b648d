package etcd

import "time"

// Test-only switches of the read cache, for the negative controls of its
// tests: they break the cache on purpose.

// SkipReadCacheWait makes the cache serve reads without confirming etcd's
// revision and waiting for it: reads may then be stale.
func SkipReadCacheWait(s *Store, skip bool) { s.cache.skipWait.Store(skip) }

// LagReadCache holds each watch response back by d before the instance
// applies it: its cache (and feed) run behind etcd.
func LagReadCache(s *Store, d time.Duration) { s.cache.applyLagNanos.Store(int64(d)) }
