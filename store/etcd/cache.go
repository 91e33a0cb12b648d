package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
)

// The read cache: the instance's live keys in memory, filled by a paged
// range read at one revision and kept current by the instance's one watch
// (the feed's: no second watch). A read served from it is linearizable:
// it first learns etcd's current revision with a count-only linearizable
// read, shared by every read that arrived before that request was sent
// (readBarrier), then waits until the cache has applied that revision
// (from the watch's events, or a progress notification the instance asks
// etcd for when the prefix had no event up to it). Kubernetes serves its
// consistent reads from its watch cache the same way. See DESIGN.md,
// "Reads: the watch-fed cache". Writes that read before they write (a
// patch, a keepalive) read it without that wait: their transaction
// compares the key's modification revision, so a stale copy only costs
// them a second round, read from etcd (leaseOf, patched).

const (
	// cacheEntryOverhead is what the cache counts for an entry besides
	// its key and envelope bytes: the entry, allocation rounding, its
	// share of the B-tree's nodes (BenchmarkReadCacheMemory measures the
	// heap against the count).
	cacheEntryOverhead = 160
	// cacheWait bounds how long a read waits for the cache to apply the
	// revision it confirmed; past it the read goes to etcd directly (a
	// watch that lags, or is restarting, never blocks reads).
	cacheWait = time.Second
	// progressEvery is how often a read that waits asks etcd for a
	// progress notification (reads waiting together share the asks).
	progressEvery = 20 * time.Millisecond
	// fillPage is how many keys a fill reads from etcd at a time.
	fillPage = 1000
	// DefaultReadCacheMaxBytes bounds the cache when Options do not.
	DefaultReadCacheMaxBytes = 1 << 30
)

// cacheEntry is one live key as etcd holds it: its envelope (immutable:
// an update replaces the entry) and etcd's version and revisions; for a
// key on a lease (an expiring key), the deadline its deadline record
// holds now (a keepalive moves that record, not the envelope) and, when
// that record is on the key's lease, the lease's TTL it records and the
// record's modification revision.
type cacheEntry struct {
	key                 string
	envelope            []byte
	version, create, md int64
	lease               int64
	deadline            time.Time
	ttlSeconds          int64
	deadlineRev         int64
}

func (e *cacheEntry) size() int64 { return int64(len(e.key)+len(e.envelope)) + cacheEntryOverhead }

func lessEntry(a, b *cacheEntry) bool { return a.key < b.key }

// readCache is the instance's in-memory copy of its prefix's live keys.
type readCache struct {
	s        *Store
	maxBytes int64

	mu sync.RWMutex
	// ready: filled since the last start or invalidation; while false,
	// reads go to etcd.
	ready bool
	// unready is closed while the cache is not ready (stopServing) and
	// replaced by an open one when a fill makes it ready: the watch
	// selects on it, so that a cache invalidated while a watch runs is
	// filled again (Store.watch), not left unready until that watch ends.
	unready chan struct{}
	// rev is the revision the cache reflects: every event of the prefix
	// up to it is applied.
	rev     uint64
	changed chan struct{} // closed when rev rises
	// gen is the generation the cache was filled in: the watch's events
	// are parsed with its keys, not the instance's (s.keys), which a read
	// moves to a full restore's switch (switchGeneration) before it
	// invalidates the cache. Parsed with the instance's, an event of the
	// cache's generation applied in between was no key (passed over,
	// while the cache's revision rose past it), and a change of the new
	// generation's staged history, before its switch, a live key.
	gen   *generation
	nss   map[string]*btree.BTreeG[*cacheEntry]
	bytes int64
	keys  int64
	// disabled says why the cache gave up (over its memory bound): reads
	// then all go to etcd, until the instance restarts.
	disabled string

	barrier       readBarrier
	hits, misses  atomic.Uint64
	fills         atomic.Uint64 // fills completed
	lastFill      atomic.Int64  // how long the last completed fill took (ns)
	fillKeys      atomic.Int64  // keys read by the fill in progress
	skipWait      atomic.Bool   // test only: serve without the revision wait
	applyLagNanos atomic.Int64  // test only: hold each watch response back
	holding       atomic.Bool   // test only: keep the responses in held
	hold          struct {
		sync.Mutex
		on   bool
		held []clientv3.WatchResponse
	}
}

func newReadCache(s *Store, maxBytes int64) *readCache {
	if maxBytes <= 0 {
		maxBytes = DefaultReadCacheMaxBytes
	}
	unready := make(chan struct{})
	close(unready) // not filled yet
	return &readCache{s: s, maxBytes: maxBytes, changed: make(chan struct{}), unready: unready, nss: map[string]*btree.BTreeG[*cacheEntry]{}}
}

// ReadCacheStats describe the read cache of an instance.
type ReadCacheStats struct {
	// Enabled is false when the instance reads etcd directly
	// (Options.DirectReads) or the cache gave up (Disabled says why).
	Enabled  bool
	Disabled string
	// Ready is true while the cache is filled and serving.
	Ready bool
	// Revision is the revision the cache reflects.
	Revision uint64
	// Keys and Bytes are what it holds; Bytes counts keys, values and a
	// fixed overhead per entry, and stays under MaxBytes.
	Keys, Bytes, MaxBytes int64
	// Namespaces is how many namespaces have keys in it, "default"
	// counted always (as Namespaces lists it): with Keys, the status's
	// counts at Revision while Ready.
	Namespaces int
	// Hits are reads served by the cache; Misses reads that went to etcd
	// because the cache was not ready or did not catch up in time.
	Hits, Misses uint64
	// Confirmations are the requests that confirmed etcd's revision for
	// the hits: one serves every read waiting when it is sent, so Hits
	// divided by Confirmations is how many reads each served.
	Confirmations uint64
	// FillKeys is how many keys the fill in progress has read; Fills
	// counts the completed fills, LastFill is how long the last one took.
	FillKeys int64
	Fills    uint64
	LastFill time.Duration
}

// status is the cache as /v1/status and /metrics show it.
func (st ReadCacheStats) status(direct bool) *ctxd.ReadCacheStatus {
	state := ctxd.ReadCacheFilling
	switch {
	case direct:
		state = ctxd.ReadCacheOff
	case st.Disabled != "":
		state = ctxd.ReadCacheDisabled
	case st.Ready:
		state = ctxd.ReadCacheReady
	}
	return &ctxd.ReadCacheStatus{State: state, Reason: st.Disabled, Revision: st.Revision, Keys: st.Keys, Bytes: st.Bytes, MaxBytes: st.MaxBytes,
		FillKeys: st.FillKeys, Fills: st.Fills, LastFillSeconds: st.LastFill.Seconds(), Hits: st.Hits, Fallbacks: st.Misses,
		Confirmations: &st.Confirmations}
}

// ReadCache reports the instance's read cache.
func (s *Store) ReadCache() ReadCacheStats {
	c := s.cache
	if c == nil {
		return ReadCacheStats{}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	namespaces := len(c.nss)
	if c.nss[ctxd.DefaultNamespace] == nil {
		namespaces++
	}
	return ReadCacheStats{Enabled: c.disabled == "", Disabled: c.disabled, Ready: c.ready, Revision: c.rev,
		Keys: c.keys, Namespaces: namespaces, Bytes: c.bytes, MaxBytes: c.maxBytes, Hits: c.hits.Load(), Misses: c.misses.Load(),
		Confirmations: c.barrier.sent.Load(),
		FillKeys:      c.fillKeys.Load(), Fills: c.fills.Load(), LastFill: time.Duration(c.lastFill.Load())}
}

// needsFill reports whether the watch must fill the cache before it
// watches again.
func (c *readCache) needsFill() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return !c.ready && c.disabled == ""
}

// whenUnready returns a channel closed once the cache is not ready: at
// once when it is not ready now.
func (c *readCache) whenUnready() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.unready
}

// stopServing makes the cache not ready; c.mu is held.
func (c *readCache) stopServing() {
	if c.ready {
		c.ready = false
		close(c.unready)
	}
}

// fill reads the prefix's live keys at one revision (the first page's),
// a page at a time, and makes them the cache's content at that revision.
// The watch calls it before watching, so no event can come between: the
// watch starts at or below the fill's revision and the events up to it
// are skipped.
//
// A fill has no overall time budget: each page has the request timeout
// (eachPage), so a fill goes on as long as etcd answers each page in time
// however large the prefix (a fixed 20 s was too short near the cache's
// 1 GiB bound); FillKeys shows its progress.
func (c *readCache) fill(ctx context.Context) error {
	if c.s.opts.failFill != nil && c.s.opts.failFill() {
		return fmt.Errorf("fill the read cache: %w: a test's failure", ctxd.ErrUnavailable)
	}
	started := time.Now()
	c.fillKeys.Store(0)
	gen := c.s.keys.gen()
	base := gen.keys.prefix + liveDir
	end := prefixEnd(base)
	nss := map[string]*btree.BTreeG[*cacheEntry]{}
	var bytes, keys int64
	rev, err := c.s.eachPage(ctx, base, end, 0, fillPage, func(resp *clientv3.GetResponse) error {
		for _, kv := range resp.Kvs {
			_, ns, key, ok := gen.keys.parse(kv.Key)
			if !ok {
				continue
			}
			e := &cacheEntry{key: strings.Clone(key), envelope: kv.Value, version: kv.Version, create: kv.CreateRevision, md: kv.ModRevision, lease: kv.Lease}
			t := nss[ns]
			if t == nil {
				t = btree.NewG(32, lessEntry)
				nss[ns] = t
			}
			t.ReplaceOrInsert(e)
			bytes += e.size()
			keys++
		}
		c.fillKeys.Store(keys)
		if bytes > c.maxBytes {
			return errCacheTooLarge
		}
		return nil
	})
	if errors.Is(err, errCacheTooLarge) {
		c.mu.Lock()
		c.giveUp(bytes)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("fill the read cache: %w", err)
	}
	// A full restore may have switched before rev, its switch not yet
	// delivered by the watch (which fills before it watches on), and
	// deleted gen's keys: filled from them, the cache would serve that
	// as the data up to rev, past the switch. Fill again in the current
	// generation (movedPast moves the instance there).
	switch moved, err := c.s.movedPast(ctx, gen, rev); {
	case err != nil:
		return fmt.Errorf("fill the read cache: %w", err)
	case moved:
		return errFillOvertaken
	}
	if err := c.fillDeadlines(ctx, gen, nss, rev); err != nil {
		return err
	}
	if f := c.s.beforeFillEnds.Load(); f != nil {
		(*f)()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s.keys.gen() != gen {
		// A full restore switched the data meanwhile (a read moved the
		// instance to it): fill again now, in its generation. The
		// watch goes on past that switch, so nothing else would.
		return errFillOvertaken
	}
	if !c.ready {
		c.unready = make(chan struct{})
	}
	c.nss, c.bytes, c.keys, c.ready, c.gen = nss, bytes, keys, true, gen
	c.raise(uint64(rev))
	c.fills.Add(1)
	c.lastFill.Store(int64(time.Since(started)))
	return nil
}

// fillDeadlines reads the prefix's deadline records at rev, a page at a
// time, into the entries of the keys on a lease.
func (c *readCache) fillDeadlines(ctx context.Context, gen *generation, nss map[string]*btree.BTreeG[*cacheEntry], rev int64) error {
	base := gen.keys.prefix + deadDir
	_, err := c.s.eachPage(ctx, base, prefixEnd(base), rev, fillPage, func(resp *clientv3.GetResponse) error {
		for _, kv := range resp.Kvs {
			c.setDeadline(gen.keys, nss, kv, false)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fill the read cache: %w", err)
	}
	return nil
}

// setDeadline records a deadline record's put (or, deleted, its removal)
// in the entry of its key (k: the keys of the cache's generation),
// replaced by a copy (entries are immutable: reads hold them without the
// lock). A key not cached, or not on a lease, has nothing to update.
func (c *readCache) setDeadline(k dataKeys, nss map[string]*btree.BTreeG[*cacheEntry], kv *mvccpb.KeyValue, deleted bool) {
	dir, ns, key, ok := k.parse(kv.Key)
	if !ok || dir != deadDir || nss[ns] == nil {
		return
	}
	old, found := nss[ns].Get(&cacheEntry{key: key})
	if !found || old.lease == 0 {
		return
	}
	e := *old
	e.deadline, e.ttlSeconds, e.deadlineRev = time.Time{}, 0, 0
	if !deleted {
		if d, err := decodeDeadline(kv.Value); err == nil {
			e.deadline = d.at
			if kv.Lease == e.lease {
				e.ttlSeconds, e.deadlineRev = d.ttlSeconds, kv.ModRevision
			}
		}
	}
	nss[ns].ReplaceOrInsert(&e)
}

// errFillOvertaken: a fill read a generation a full restore replaced
// (before its revision, or while it read); the watch fills again at once.
var errFillOvertaken = errors.New("a full restore switched the data during the read cache's fill")

// errCacheTooLarge stops a fill that went over the cache's bound.
var errCacheTooLarge = errors.New("the prefix is larger than the read cache's bound")

// giveUp empties the cache for good: the prefix holds more than
// maxBytes. c.mu is held.
func (c *readCache) giveUp(bytes int64) {
	c.disabled = fmt.Sprintf("the prefix needs more than %d bytes (%d counted): etcd.read_cache_max_bytes", c.maxBytes, bytes)
	c.stopServing()
	c.nss, c.bytes, c.keys = map[string]*btree.BTreeG[*cacheEntry]{}, 0, 0
	if on := c.s.opts.OnReadCacheDisabled; on != nil {
		on(c.disabled)
	}
}

// invalidate stops serving until the next fill: the watch missed events
// (compacted while it was away) or the instance's data was replaced (a
// restore). The watch fills it again, ending the watch it runs when the
// cache was ready at its start (whenUnready).
func (c *readCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopServing()
}

// raise moves rev forward and wakes the reads that wait; c.mu is held.
func (c *readCache) raise(rev uint64) {
	if rev > c.rev {
		c.rev = rev
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// apply applies one watch response: its events, or the revision of a
// progress notification (every event up to it was delivered before it).
func (c *readCache) apply(resp clientv3.WatchResponse) {
	if d := c.applyLagNanos.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if c.holding.Load() && c.heldBack(resp) {
		return
	}
	c.applyNow(resp)
}

// applyNow is apply without the tests' switches.
func (c *readCache) applyNow(resp clientv3.WatchResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		return
	}
	if resp.IsProgressNotify() {
		c.raise(uint64(resp.Header.Revision))
		return
	}
	var last int64
	var deadlines []*clientv3.Event
	for _, ev := range resp.Events {
		last = max(last, ev.Kv.ModRevision)
		if uint64(ev.Kv.ModRevision) <= c.rev {
			continue // the fill read it already
		}
		if c.s.isSwitch(ev) {
			// A full restore's switch: what the cache holds is the
			// replaced generation's. It must not reach the switch's
			// revision (a read confirmed there would be served the
			// replaced data until the watch's switchGeneration): reads
			// go to etcd until the watch fills it again.
			c.stopServing()
			return
		}
		dir, ns, key, ok := c.gen.keys.parse(ev.Kv.Key)
		if ok && dir == deadDir {
			// After the keys: a put with a ttl writes its key and its
			// deadline record in one revision, which one response holds.
			deadlines = append(deadlines, ev)
			continue
		}
		if !ok || dir != liveDir {
			continue
		}
		t := c.nss[ns]
		if ev.Type == mvccpb.DELETE {
			if t == nil {
				continue
			}
			if old, found := t.Delete(&cacheEntry{key: key}); found {
				c.bytes -= old.size()
				c.keys--
			}
			if t.Len() == 0 {
				delete(c.nss, ns)
			}
			continue
		}
		if t == nil {
			t = btree.NewG(32, lessEntry)
			c.nss[ns] = t
		}
		e := &cacheEntry{key: strings.Clone(key), envelope: ev.Kv.Value, version: ev.Kv.Version, create: ev.Kv.CreateRevision, md: ev.Kv.ModRevision, lease: ev.Kv.Lease}
		if old, found := t.ReplaceOrInsert(e); found {
			if old.lease == e.lease {
				// A patch keeps the lease and its deadline record.
				e.deadline, e.ttlSeconds, e.deadlineRev = old.deadline, old.ttlSeconds, old.deadlineRev
			}
			c.bytes -= old.size()
		} else {
			c.keys++
		}
		c.bytes += e.size()
	}
	for _, ev := range deadlines {
		c.setDeadline(c.gen.keys, c.nss, ev.Kv, ev.Type == mvccpb.DELETE)
	}
	if c.bytes > c.maxBytes {
		c.giveUp(c.bytes)
		return
	}
	if last > 0 {
		c.raise(uint64(last))
	}
}

// await returns once the cache holds every write acknowledged before it
// was called (a linearizable point), or false when reads must go to
// etcd: the cache is not ready or did not catch up within cacheWait.
func (c *readCache) await() (bool, error) {
	if !c.servable() {
		return false, nil
	}
	if c.skipWait.Load() {
		return true, nil
	}
	rev, err := c.barrier.confirm(func() (uint64, error) { return c.s.headRevision(context.Background()) })
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cacheWait)
	defer cancel()
	for {
		c.mu.RLock()
		ready, at, changed := c.ready, c.rev, c.changed
		c.mu.RUnlock()
		switch {
		case !ready:
			return false, nil
		case at >= rev:
			return true, nil
		}
		if !c.s.waitForWatch(ctx, changed, nil) {
			return false, nil
		}
	}
}

func (c *readCache) servable() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ready
}

// heldBack keeps resp for later while a test holds the cache back
// (holdBack), and reports whether it did.
func (c *readCache) heldBack(resp clientv3.WatchResponse) bool {
	c.hold.Lock()
	defer c.hold.Unlock()
	if c.hold.on {
		c.hold.held = append(c.hold.held, resp)
	}
	return c.hold.on
}

// holdBack makes the cache stop at the revision it has, while the feed
// (which shares its watch) goes on, until release applies what was held,
// in order: a test's stale cache, for as long as the test needs it.
func (c *readCache) holdBack() (release func()) {
	c.hold.Lock()
	c.hold.on = true
	c.holding.Store(true)
	c.hold.Unlock()
	return func() {
		c.hold.Lock()
		defer c.hold.Unlock()
		c.hold.on = false
		for _, resp := range c.hold.held {
			c.applyNow(resp)
		}
		c.hold.held = nil
		c.holding.Store(false)
	}
}

// watchContext is the context of the instance's watch: a progress
// request must carry the same metadata to reach the same gRPC stream.
func watchContext(ctx context.Context) context.Context { return clientv3.WithRequireLeader(ctx) }

// get serves a point read; ok is false when the caller must read etcd.
func (c *readCache) get(ns, key string) (r ctxd.Record, ok bool, err error) {
	if ok, err = c.await(); !ok || err != nil {
		c.misses.Add(1)
		return r, false, err
	}
	e, found, _ := c.entry(ns, key)
	c.hits.Add(1)
	if !found {
		return r, true, ctxd.KeyNotFound(ns, key, 0)
	}
	r, err = e.record(ns)
	return r, true, err
}

// leaseOf is a cached expiring key as the cache holds it now, without
// waiting for the cache to be current: for a keepalive, whose transaction
// checks it against etcd (KeepAlive). ok is false when the cache cannot
// say: not ready, or the key not cached, not on a lease, or without its
// deadline record on that lease.
func (c *readCache) leaseOf(ns, key string) (e *cacheEntry, ok bool) {
	e, ok, ready := c.entry(ns, key)
	return e, ready && ok && e.lease != 0 && e.ttlSeconds > 0
}

// entry is key's entry as the cache holds it now, and whether the cache
// is ready (filled and kept current); entries are immutable, so the
// caller reads it without the lock.
func (c *readCache) entry(ns, key string) (e *cacheEntry, found, ready bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if t := c.nss[ns]; t != nil {
		e, found = t.Get(&cacheEntry{key: key})
	}
	return e, found, c.ready
}

// patched is w's patch applied to the value the cache holds now for its
// key, without waiting for the cache to be current, and the modification
// revision of that value, for a commit that compares it (applyPatches);
// for an expiring key, also the deadline it keeps, with its record's
// revision, which the commit compares too. ok is false when the cache
// cannot serve it (not ready, the key not cached, or on a lease without
// its deadline record) or any check fails on the cached value: the caller
// reads etcd then. The patch's work counts against budget only when it
// applies here (patch.Budget.Apply).
func (c *readCache) patched(w ctxd.Write, limits ctxd.Limits, budget *patch.Budget) (v json.RawMessage, md int64, kept deadline, ok bool) {
	e, found, ready := c.entry(w.Namespace, w.Key)
	if !ready || !found || e.lease != 0 && e.deadlineRev == 0 || w.Expect != nil && *w.Expect != uint64(e.version) {
		c.misses.Add(1)
		return nil, 0, deadline{}, false
	}
	env, err := decodeEnvelope(e.envelope)
	if err == nil {
		v, err = budget.Apply(env.value, w.Patch, limits)
	}
	if err != nil {
		c.misses.Add(1)
		return nil, 0, deadline{}, false
	}
	if e.lease != 0 {
		kept = deadline{lease: clientv3.LeaseID(e.lease), ttlSeconds: e.ttlSeconds, at: e.deadline, recordRev: e.deadlineRev}
	}
	c.hits.Add(1)
	return v, e.md, kept, true
}

func (e *cacheEntry) record(ns string) (ctxd.Record, error) {
	env, err := decodeEnvelope(e.envelope)
	if err != nil {
		return ctxd.Record{}, fmt.Errorf("read %s/%s: %w", ns, e.key, err)
	}
	r := ctxd.Record{Namespace: ns, Key: e.key, Value: env.value, Version: uint64(e.version),
		CreateRev: uint64(e.create), ModRev: uint64(e.md), Who: env.who, UpdatedAt: env.time, ExpiresAt: env.expiresAt}
	if e.lease != 0 && !e.deadline.IsZero() {
		r.ExpiresAt = e.deadline
	}
	return r, nil
}

// list serves a page of a namespace's keys, as List reads them from etcd.
func (c *readCache) list(ns string, opts ctxd.ListOptions) (page ctxd.ListPage, ok bool, err error) {
	if ok, err = c.await(); !ok || err != nil {
		c.misses.Add(1)
		return page, false, err
	}
	c.hits.Add(1)
	limit := pageSize(opts.Limit)
	page.Records = []ctxd.Record{}
	from := opts.Prefix
	if opts.After >= opts.Prefix {
		from = opts.After + "\x00"
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	t := c.nss[ns]
	if t == nil {
		return page, true, nil
	}
	t.AscendGreaterOrEqual(&cacheEntry{key: from}, func(e *cacheEntry) bool {
		if !strings.HasPrefix(e.key, opts.Prefix) {
			return false
		}
		if len(page.Records) == limit {
			page.Next = page.Records[limit-1].Key
			return false
		}
		var r ctxd.Record
		if r, err = e.record(ns); err != nil {
			return false
		}
		if opts.NoValues {
			r.Value = nil
		}
		page.Records = append(page.Records, r)
		return true
	})
	return page, true, err
}

// count serves Count.
func (c *readCache) count(ns, prefix string) (n uint64, ok bool, err error) {
	if ok, err = c.await(); !ok || err != nil {
		c.misses.Add(1)
		return 0, false, err
	}
	c.hits.Add(1)
	c.mu.RLock()
	defer c.mu.RUnlock()
	t := c.nss[ns]
	if t == nil {
		return 0, true, nil
	}
	if prefix == "" {
		return uint64(t.Len()), true, nil
	}
	t.AscendGreaterOrEqual(&cacheEntry{key: prefix}, func(e *cacheEntry) bool {
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		n++
		return true
	})
	return n, true, nil
}

// namespaces serves Namespaces.
func (c *readCache) namespaces() (out []ctxd.Namespace, ok bool, err error) {
	if ok, err = c.await(); !ok || err != nil {
		c.misses.Add(1)
		return nil, false, err
	}
	c.hits.Add(1)
	c.mu.RLock()
	for ns, t := range c.nss {
		out = append(out, ctxd.Namespace{Name: ns, Keys: uint64(t.Len())})
	}
	_, hasDefault := c.nss[ctxd.DefaultNamespace]
	c.mu.RUnlock()
	if !hasDefault {
		out = append(out, ctxd.Namespace{Name: ctxd.DefaultNamespace})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, true, nil
}

// readBarrier shares the revision confirmations of concurrent reads: a
// read joins the next confirmation to be sent, never one already in
// flight (that one may have been answered before the read began), so one
// etcd request serves every read that arrived while the others were out
// — as etcd batches its own ReadIndex requests. Up to barrierRounds
// confirmations are in flight at once: a read that arrives while one is
// out starts the next at once instead of waiting for it to come back.
type readBarrier struct {
	mu      sync.Mutex
	slot    sync.Cond  // signalled when a round in flight ends
	running int        // rounds in flight
	next    *readRound // the round reads arriving now join
	sent    atomic.Uint64
}

// barrierRounds is how many confirmations a store has in flight at most.
const barrierRounds = 2

type readRound struct {
	done    chan struct{}
	started bool
	rev     uint64
	err     error
}

// confirm returns the revision of a request sent after confirm was
// called. One of the reads waiting for a round sends its request.
func (b *readBarrier) confirm(current func() (uint64, error)) (uint64, error) {
	b.mu.Lock()
	if b.slot.L == nil {
		b.slot.L = &b.mu
	}
	if b.next == nil {
		b.next = &readRound{done: make(chan struct{})}
	}
	r := b.next
	for !r.started {
		if b.running < barrierRounds {
			// Lead the round.
			r.started, b.next = true, nil
			b.running++
			b.sent.Add(1)
			b.mu.Unlock()
			r.rev, r.err = current()
			b.mu.Lock()
			b.running--
			b.slot.Broadcast() // the joiners of this round and of the next
			b.mu.Unlock()
			close(r.done)
			return r.rev, r.err
		}
		b.slot.Wait()
	}
	b.mu.Unlock()
	<-r.done
	return r.rev, r.err
}

// cached runs a read on the cache; served is false when the read must go
// to etcd (no cache, or it cannot serve now). It refuses reads once the
// store is closed, as etcd reads do.
func (s *Store) cached(read func(c *readCache) (served bool, err error)) (served bool, err error) {
	if s.cache == nil {
		return false, nil
	}
	if err := s.enter(); err != nil {
		return true, err
	}
	defer s.inflight.Done()
	if err := s.unreachable(); err != nil {
		// A cached read waits for etcd's revision (linearizable), then
		// for etcd itself: unavailable at once, as writes.
		return true, err
	}
	return read(s.cache)
}
