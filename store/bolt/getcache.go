package bolt

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/framework0/ctxd"
)

// getCache holds the current state of recently read keys, value included,
// as Get read it from bbolt: a hit skips the read transaction and the two
// lookups of a Get (kv, then log), about 6 µs of a GET's CPU over HTTP
// (DESIGN.md, "The Get cache").
//
// It never answers a state bbolt no longer has, because of one rule
// (DESIGN.md gives the proof): a key's entry is removed, and its shard's
// generation bumped, after any bbolt commit that changes the key and
// before that change leaves the overlay (which every Get consults first);
// a change of bbolt that bypasses the overlay (a direct commit, a swapped
// file) holds the whole cache (hold, release) around it. A Get that misses
// reads its shard's generation before it looks at the overlay, and inserts
// what bbolt gave it only if the generation has not moved since and no
// hold is in progress.
type getCache struct {
	seed maphash.Seed
	// shardBytes bounds each shard; maxBytes is the whole bound.
	shardBytes, maxBytes int64
	// holds counts the holds in progress: no insert succeeds meanwhile.
	holds atomic.Int32
	// skipInvalidation is a test's mutation (Options.hooks): invalidate,
	// hold and release do nothing.
	skipInvalidation bool
	shards           [getCacheShards]cacheShard
}

// getCacheShards spreads the locks: 64 clients on a few cores rarely meet
// on one.
const getCacheShards = 64

// DefaultGetCacheBytes is the Get cache's bound when Options do not set one.
const DefaultGetCacheBytes = 32 << 20

// cacheEntryOverhead is what an entry costs besides its strings' and
// value's bytes: the record (144 bytes), the map's slot (key, pointer and
// control byte, at the map's load), and the rounding of each allocation
// up to its size class. Measured (BenchmarkGetCacheMemory and
// TestGetCacheCountsItsMemory, `go test -run TestGetCacheCountsItsMemory
// -v ./store/bolt/`): 218-255 heap bytes per entry of a 1-byte value and a
// 12-byte key, where 160 counted 180 (real memory up to 1.4x the bound);
// 256 counts 276. Kept in step by that test.
const cacheEntryOverhead = 256

type cacheKey struct{ ns, key string }

type cacheShard struct {
	mu      sync.RWMutex
	gen     atomic.Uint64
	entries map[cacheKey]*ctxd.Record
	bytes   int64
	// hits and misses are counted per shard: one shared counter would be a
	// cache line that every Get on every core writes.
	hits, misses atomic.Uint64
	_            [64]byte
}

func newGetCache(maxBytes int64) *getCache {
	c := &getCache{seed: maphash.MakeSeed(), maxBytes: maxBytes, shardBytes: max(maxBytes/getCacheShards, 1)}
	for i := range c.shards {
		c.shards[i].entries = make(map[cacheKey]*ctxd.Record)
	}
	return c
}

// slot returns the shard of ns/key and its generation now. A nil cache
// (turned off) has no shard: every method of a nil *cacheShard misses.
func (c *getCache) slot(ns, key string) (*cacheShard, uint64) {
	if c == nil {
		return nil, 0
	}
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(ns)
	h.WriteByte(0)
	h.WriteString(key)
	sh := &c.shards[h.Sum64()%getCacheShards]
	return sh, sh.gen.Load()
}

// get returns a copy of ns/key's cached record.
func (sh *cacheShard) get(ns, key string) (ctxd.Record, bool) {
	if sh == nil {
		return ctxd.Record{}, false
	}
	sh.mu.RLock()
	r := sh.entries[cacheKey{ns, key}]
	sh.mu.RUnlock()
	if r == nil {
		sh.misses.Add(1)
		return ctxd.Record{}, false
	}
	sh.hits.Add(1)
	out := *r
	// Callers own what Get returns, as with the overlay's records.
	out.Value = bytes.Clone(r.Value)
	return out, true
}

// put caches rec (a copy of its value) as ns/key's state if the shard's
// generation is still gen, the one read before the overlay was looked at,
// and no hold is in progress.
func (c *getCache) put(sh *cacheShard, gen uint64, rec ctxd.Record) {
	if sh == nil {
		return
	}
	size := entrySize(&rec)
	if size > c.shardBytes/4 {
		return // one value would push out a quarter of its shard
	}
	rec.Value = bytes.Clone(rec.Value)
	k := cacheKey{rec.Namespace, rec.Key}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c.holds.Load() > 0 || sh.gen.Load() != gen {
		return
	}
	if old := sh.entries[k]; old != nil {
		sh.bytes -= entrySize(old)
		delete(sh.entries, k)
	}
	// Evict at random (Go's map iteration starts anywhere) until it fits.
	for victim, r := range sh.entries {
		if sh.bytes+size <= c.shardBytes {
			break
		}
		sh.bytes -= entrySize(r)
		delete(sh.entries, victim)
	}
	sh.entries[k] = &rec
	sh.bytes += size
}

func entrySize(r *ctxd.Record) int64 {
	return int64(cacheEntryOverhead + len(r.Namespace) + len(r.Key) + len(r.Who) + len(r.Value))
}

// invalidate removes ns/key and bumps its shard's generation: after a
// bbolt commit that changed it, before the change leaves the overlay.
func (c *getCache) invalidate(ns, key string) {
	if c == nil || c.skipInvalidation {
		return
	}
	sh, _ := c.slot(ns, key)
	sh.mu.Lock()
	sh.gen.Add(1)
	if r := sh.entries[cacheKey{ns, key}]; r != nil {
		sh.bytes -= entrySize(r)
		delete(sh.entries, cacheKey{ns, key})
	}
	sh.mu.Unlock()
}

// invalidateBatch is invalidate for every key a committer batch changed
// or kept alive.
func (c *getCache) invalidateBatch(b batch) {
	for _, ch := range b.changes {
		c.invalidate(ch.Namespace, ch.Key)
	}
	for _, x := range b.extends {
		c.invalidate(x.ns, x.key)
	}
}

// hold empties the cache and refuses inserts until release: around a
// change of bbolt that does not go through the overlay (a direct commit,
// a restore or defrag swapping the file, Close), which readers may see
// before the change's own code could invalidate anything.
func (c *getCache) hold() {
	if c == nil || c.skipInvalidation {
		return
	}
	c.holds.Add(1)
	c.clear()
}

// release ends a hold. The clear bumps every generation, so that a Get
// that read bbolt before the change does not insert after the release.
func (c *getCache) release() {
	if c == nil || c.skipInvalidation {
		return
	}
	c.clear()
	c.holds.Add(-1)
}

func (c *getCache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen.Add(1)
		clear(sh.entries)
		sh.bytes = 0
		sh.mu.Unlock()
	}
}

// status is the cache as /v1/status and /metrics show it (the etcd
// backend's read cache's fields; a miss counts as a fallback: it read
// bbolt).
func (c *getCache) status() *ctxd.ReadCacheStatus {
	if c == nil {
		return &ctxd.ReadCacheStatus{State: ctxd.ReadCacheOff}
	}
	st := &ctxd.ReadCacheStatus{State: ctxd.ReadCacheReady, MaxBytes: c.maxBytes}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		st.Keys += int64(len(sh.entries))
		st.Bytes += sh.bytes
		sh.mu.RUnlock()
		st.Hits += sh.hits.Load()
		st.Fallbacks += sh.misses.Load()
	}
	return st
}
