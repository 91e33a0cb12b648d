package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
)

// feed is the instance's view of the change feed: the committed mark (the
// newest revision of the prefix its watch has delivered) and the recent
// changes, whole revisions, contiguous up to the mark.
type feed struct {
	mu   sync.Mutex
	mark uint64
	// changed is closed and replaced when the mark rises or the feed
	// closes (wakeLocked): what the realtime hub follows (Committed).
	changed chan struct{}
	// synced is the newest etcd revision up to which the watch is known
	// to have delivered every event of the prefix (a progress
	// notification's): at or above mark when the prefix was idle while
	// the cluster's revision moved on.
	synced uint64
	// progress is closed and replaced when synced rises or the feed
	// closes (wakeProgressLocked): what currentMark waits on besides
	// changed. A progress notification moves no mark, so it stays off
	// changed: the hub would wake for nothing, once per notification.
	progress chan struct{}
	// recent holds every change with a revision above floor, up to mark,
	// in order; at most cap changes and maxBytes bytes (changeBytes;
	// whole revisions are dropped first). bytes is what it holds.
	recent          []ctxd.Change
	floor           uint64
	cap             int
	bytes, maxBytes int
	closed          bool
	// gen is the generation the changes are of, the one the followers
	// see (Generation, ReadLog): it moves only with the restart at its
	// switch, in one step under mu (switchTo).
	gen *generation
	// widest is the most changes one revision pushed has held.
	widest atomic.Uint64
}

func (f *feed) init(rev uint64, capacity, maxBytes int) {
	f.mark, f.floor, f.cap, f.maxBytes = rev, rev, capacity, maxBytes
	f.changed, f.progress = make(chan struct{}), make(chan struct{})
}

// wakeLocked wakes what waits for the mark to rise (Committed's
// followers, waitFor, currentMark); f.mu is held.
func (f *feed) wakeLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// wakeProgressLocked wakes what waits for synced to rise (currentMark);
// f.mu is held.
func (f *feed) wakeProgressLocked() {
	close(f.progress)
	f.progress = make(chan struct{})
}

// Committed returns the instance's committed mark and a channel closed
// when it rises.
func (s *Store) Committed() (uint64, <-chan struct{}) {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	return s.feed.mark, s.feed.changed
}

// ChangesPerRevision bounds the changes of one revision: a transaction's
// share its revision, up to limits.max_txn_ops of them, and an import's
// more (up to etcd's --max-txn-ops), so the most seen in one revision
// counts too.
func (s *Store) ChangesPerRevision() uint64 {
	return max(uint64(s.opts.Limits.MaxTxnOps), s.feed.widest.Load(), 1)
}

// Revision is the newest revision of the prefix this instance has seen:
// its committed mark.
func (s *Store) Revision() uint64 {
	rev, _ := s.Committed()
	return rev
}

// currentMark is the committed mark once the instance's watch has caught
// up with etcd's current revision: it holds every write acknowledged
// before the call, through any instance (a linearizable point, as the
// read cache's). What reads the prefix at one revision for a client (a
// snapshot, a view for dumps and exports) starts from it: the instance's
// own mark alone may be behind a write another instance acknowledged.
func (s *Store) currentMark(ctx context.Context) (uint64, error) {
	mark, _, err := s.currentMarkSeen(ctx)
	return mark, err
}

// currentMarkSeen is currentMark, with the revision up to which the
// instance's watch has seen the prefix: at least mark, above it only by
// writes that are no change (a keepalive's deadline record; an expiry or
// a write would have moved the mark). Deadlines read at seen are those
// of the keys as they are at mark, with every keepalive made so far.
func (s *Store) currentMarkSeen(ctx context.Context) (mark, seen uint64, err error) {
	head, err := s.headRevision(ctx)
	if err != nil {
		return 0, 0, err
	}
	for {
		s.feed.mu.Lock()
		mark, synced, changed, progress, closed := s.feed.mark, s.feed.synced, s.feed.changed, s.feed.progress, s.feed.closed
		s.feed.mu.Unlock()
		switch {
		case closed:
			return 0, 0, ctxd.ErrClosed
		case mark >= head:
			return mark, mark, nil
		case synced >= head:
			return mark, head, nil
		}
		if !s.waitForWatch(ctx, changed, progress) {
			return 0, 0, fmt.Errorf("%w: the instance's watch did not reach etcd's revision %d in time (it is at %d)", ctxd.ErrUnavailable, head, mark)
		}
	}
}

// waitForWatch waits for the instance's watch to move: until changed or
// progress is closed or progressEvery passes (reporting true), or ctx
// ends (false). The prefix may have had no event up to the revision
// waited for (other prefixes wrote): it first asks etcd for a progress
// notification, which tells the watch it is current (progress may be
// nil: the read cache's changed is closed by notifications too).
func (s *Store) waitForWatch(ctx context.Context, changed, progress <-chan struct{}) bool {
	s.requestProgress()
	t := time.NewTimer(progressEvery)
	defer t.Stop()
	select {
	case <-changed:
	case <-progress:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// headRevision is etcd's current revision: the header of a linearizable
// count-only read of one key.
func (s *Store) headRevision(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.opts.Prefix+bornKey, clientv3.WithCountOnly())
	if err != nil {
		return 0, readError(err)
	}
	return uint64(resp.Header.Revision), nil
}

// processStart is the origin of the monotonic times the store keeps.
var processStart = time.Now()

// requestProgress asks etcd for a progress notification on the watch's
// stream, at most once per progressEvery.
func (s *Store) requestProgress() {
	// On the monotonic clock: after a step back of the wall clock, no
	// request went out until it caught up, and every read that waits for
	// the watch waited its whole second (a snapshot gave up).
	now := int64(time.Since(processStart) + progressEvery) // the first goes out
	last := s.lastProgress.Load()
	if now-last < int64(progressEvery) || !s.lastProgress.CompareAndSwap(last, now) {
		return
	}
	ctx, cancel := context.WithTimeout(watchContext(context.Background()), s.opts.RequestTimeout)
	defer cancel()
	// An error leaves the caller to wait for events or give up.
	_ = s.cli.RequestProgress(ctx)
}

// push appends the changes of one revision and raises the mark.
func (f *feed) push(rev uint64, changes []ctxd.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev <= f.mark {
		return
	}
	if n := uint64(len(changes)); n > f.widest.Load() {
		f.widest.Store(n) // pushes hold f.mu: no other writer
	}
	f.recent = append(f.recent, changes...)
	f.bytes += bytesOf(changes)
	// Drop the oldest revisions whole, by reslicing: copying the rest at
	// every push once the buffer is full made each write cost the whole
	// buffer (16,384 changes: 500 puts/s at 64 clients). append copies
	// the live part only when it outgrows the array, amortized O(1).
	if drop, floor, dropped := oldestToDrop(f.recent, f.bytes, f.cap, f.maxBytes); drop > 0 {
		clear(f.recent[:drop]) // the dropped values are garbage now
		f.recent = f.recent[drop:]
		f.floor, f.bytes = floor, f.bytes-dropped
	}
	f.mark = rev
	f.wakeLocked()
}

// prepend puts the changes of the revisions (after, to], read from
// etcd's history, before the recent ones, as many as fit, newest kept,
// whole revisions: while the recent changes still start at to (the mark
// the instance opened at, see Store.backfill). Otherwise (they filled up,
// or restarted after a compaction or a restore) it does nothing.
func (f *feed) prepend(after, to uint64, changes []ctxd.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.floor != to || f.closed {
		return
	}
	size := bytesOf(changes)
	drop, floor, dropped := oldestToDrop(changes, size, f.cap-len(f.recent), f.maxBytes-f.bytes)
	if drop == len(changes) {
		return // no room for one revision: the floor stays
	}
	if drop == 0 {
		floor = after
	}
	for i := drop; i < len(changes); {
		j := ctxd.RevisionEnd(changes, i)
		if n := uint64(j - i); n > f.widest.Load() {
			f.widest.Store(n)
		}
		i = j
	}
	f.recent = append(slices.Clip(changes[drop:]), f.recent...)
	f.floor, f.bytes = floor, f.bytes+size-dropped
}

// changeBytes is about what a change holds in memory: the struct and
// the bytes it points to.
func changeBytes(c *ctxd.Change) int {
	return int(unsafe.Sizeof(*c)) + len(c.Namespace) + len(c.Key) + len(c.Value) + len(c.Who)
}

// bytesOf is the sum of changeBytes over cs.
func bytesOf(cs []ctxd.Change) int {
	n := 0
	for i := range cs {
		n += changeBytes(&cs[i])
	}
	return n
}

// oldestToDrop is how many changes to drop from the front of cs (in
// revision order; size bytes in all), whole revisions, so that the rest
// holds at most maxCount changes and maxBytes bytes: drop, the newest
// revision dropped (the new floor; 0 when none is) and the bytes dropped.
// It may be every change: the newest revision alone is too big.
func oldestToDrop(cs []ctxd.Change, size, maxCount, maxBytes int) (drop int, floor uint64, dropped int) {
	for drop < len(cs) && (len(cs)-drop > maxCount || size-dropped > maxBytes) {
		first := cs[drop].Revision
		for drop < len(cs) && cs[drop].Revision == first {
			dropped += changeBytes(&cs[drop])
			drop++
		}
		floor = first
	}
	return drop, floor, dropped
}

// progressed records a progress notification: every event up to rev was
// delivered.
func (f *feed) progressed(rev uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev > f.synced {
		f.synced = rev
		f.wakeProgressLocked()
	}
}

// restart drops the recent changes up to rev, which they then start
// after: the watch missed what lies between (it was compacted away while
// disconnected).
func (f *feed) restart(rev uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restartLocked(rev)
}

// switchTo moves the feed to generation g, a full restore's, restarted
// at its switch, in one step under f.mu; never back to an older switch.
// A follower reads the generation and the mark apart (Generation,
// Committed, ReadLog): before 2026-12-06 the instance's generation
// moved first and the feed's restart came after it, so a follower there
// (the hub, woken by another change) saw the new generation with the
// mark below its switch, reset its clients there, and read the feed
// below the switch in the new generation: "compacted". Now a follower
// that sees g takes a mark at or past its switch afterwards.
func (f *feed) switchTo(g *generation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g.rev <= f.gen.rev {
		return
	}
	f.gen = g
	f.restartLocked(uint64(g.rev))
}

// restartLocked is restart's; f.mu is held. The changes above rev stay:
// the watch may have delivered a switch and pushed later changes before
// a read that moved the instance to it switched the feed (switchTo
// passes over it then). Emptied, the feed answered "no change" between
// rev and the mark, and a follower there lost those changes.
func (f *feed) restartLocked(rev uint64) {
	if kept := changesAfter(f.recent, rev); len(kept) == 0 {
		f.recent, f.bytes = nil, 0
	} else {
		dropped := f.recent[:len(f.recent)-len(kept)]
		f.bytes -= bytesOf(dropped)
		clear(dropped) // garbage now
		f.recent = kept
	}
	f.floor = max(f.floor, rev)
	if rev > f.mark {
		f.mark = rev
		f.wakeLocked()
	}
}

func (f *feed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		f.wakeLocked()
		f.wakeProgressLocked()
	}
}

// waitFor waits until the mark reaches rev, the context ends or the feed
// closes.
func (f *feed) waitFor(ctx context.Context, rev uint64) {
	for {
		f.mu.Lock()
		mark, changed, closed := f.mark, f.changed, f.closed
		f.mu.Unlock()
		if mark >= rev || closed {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// page returns the recent changes after `after`, whole revisions, up to
// about limit, and the generation they are of; ok is false when they do
// not reach back to after.
func (f *feed) page(after uint64, limit int) (changes []ctxd.Change, mark uint64, gen *generation, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if after >= f.mark {
		return nil, f.mark, f.gen, true
	}
	if after < f.floor {
		return nil, f.mark, f.gen, false
	}
	// A binary search: the hub reads the newest changes after each write,
	// and a scan of a full buffer (16,384 changes) held the lock that the
	// watch's push, and so every write's answer, waits for.
	return wholeRevisions(changesAfter(f.recent, after), limit), f.mark, f.gen, true
}

// changesAfter returns the changes of cs (in revision order) with a
// revision above after.
func changesAfter(cs []ctxd.Change, after uint64) []ctxd.Change {
	return cs[sort.Search(len(cs), func(i int) bool { return cs[i].Revision > after }):]
}

// wholeRevisions returns the first limit changes, and the rest of the
// last one's revision: a page never ends inside a revision.
func wholeRevisions(cs []ctxd.Change, limit int) []ctxd.Change {
	n := min(limit, len(cs))
	if n > 0 {
		n = ctxd.RevisionEnd(cs, n-1)
	}
	return append([]ctxd.Change(nil), cs[:n]...)
}

// ReadLog returns the changes after `after`, in revision order, whole
// revisions (a page may exceed limit to finish one), up to the committed
// mark: from memory when recent, else from etcd's history with a watch of
// its own from after+1. Below etcd's compaction it is a
// *ctxd.CompactedError.
func (s *Store) ReadLog(after uint64, limit int) ([]ctxd.Change, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.inflight.Done()
	limit = max(limit, 1)
	// The prefix has no change at or below its birth: after it, history
	// is whole from the start, whatever etcd compacted below it.
	after = max(after, s.born)
	// The feed's generation, taken with its page, not the instance's: a
	// read that moved the instance to a full restore's switch moves the
	// feed after it (switchGeneration), and a follower of the replaced
	// generation reads it until then, its history included.
	changes, mark, gen, ok := s.feed.page(after, limit)
	if err := restoredErrorIn(gen, after); err != nil {
		return nil, err
	}
	if c := s.compacted.Load(); c > 0 && after+1 < c {
		return nil, &ctxd.CompactedError{Requested: after, Compacted: c}
	}
	if ok {
		return changes, nil
	}
	if changes, ok := s.replayed.read(gen.id, after, limit, mark); ok {
		return changes, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	changes, err := s.replay(ctx, gen, after, mark, limit)
	return changes, readError(err)
}

// replay reads the prefix's changes after `after` up to `to` from etcd's
// history, whole revisions, and returns the first limit of them. `to`
// must be a revision with a change of the prefix (a committed mark is),
// so that the watch has an event to end at.
//
// etcd sends a watch from an old revision its history one response at a
// time, up to 1,000 revisions each, one per 100 ms (its watchers' resync
// period), and reads every revision from the watch's start to its head
// for each new watch. Reading only limit changes and starting over for
// the next page cost a follower catching up page by page a new watch, a
// new scan and a new wait per page (4.4 s for 20,000 revisions in pages
// of 512; the scans grow with the gap). So replay takes, past limit, every
// response already there without waiting (up to replayChanges changes
// and Options.RingBytes bytes), and keeps what the caller did not ask
// for (s.replayed) for the next pages: the wait per watch is the same,
// the pages per watch more.
func (s *Store) replay(ctx context.Context, gen *generation, after, to uint64, limit int) ([]ctxd.Change, error) {
	if after >= to { // ReadLog raised after to the birth already
		return nil, nil
	}
	s.stats.historyReads.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := s.historyAfter(ctx, gen, after)
	var out []ctxd.Change
	last, size := after, 0
	// Past the page asked for, at most replayChanges changes and
	// Options.RingBytes bytes are kept.
	for last < to && (len(out) < limit || (len(out) < replayChanges && size < s.opts.RingBytes)) {
		revs, got, err := next(len(out) < limit)
		if err != nil {
			return nil, err
		}
		if !got {
			break // etcd's next response is ~100 ms away: enough for now
		}
		for _, rev := range revs {
			if rev.rev > to {
				last = to // every revision up to it came before
				break
			}
			out = append(out, rev.changes...)
			size += bytesOf(rev.changes)
			last = rev.rev
		}
	}
	s.replayed.keep(gen.id, after, last, out)
	return wholeRevisions(out, limit), nil
}

// replayChanges bounds the changes one replay keeps: a page of the
// recent changes' size (the default Options.RingChanges), whole
// revisions, plus at most one response of etcd's; Options.RingBytes
// bounds their bytes the same way.
const replayChanges = 8192

// replayPage is the last page read from etcd's history (replay): every
// change of the generation gen's prefix in (after, upTo], whole revisions.
type replayPage struct {
	mu          sync.Mutex
	gen         uint64
	after, upTo uint64
	changes     []ctxd.Change
}

func (p *replayPage) keep(gen, after, upTo uint64, changes []ctxd.Change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen, p.after, p.upTo, p.changes = gen, after, upTo, changes
}

// read answers ReadLog(after, limit) from the page when it can: the
// position is in it, and it holds limit changes after it or reaches the
// committed mark (a shorter answer means "nothing more up to the mark").
func (p *replayPage) read(gen, after uint64, limit int, mark uint64) ([]ctxd.Change, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.changes == nil || gen != p.gen || after < p.after || after >= p.upTo {
		return nil, false
	}
	rest := changesAfter(p.changes, after)
	if len(rest) < limit && p.upTo < mark {
		return nil, false
	}
	return wholeRevisions(rest, limit), true
}

// backfill reads the prefix's history just before to, the mark the
// instance opened at, into its recent changes: up to Options.RingChanges
// revisions back (fewer changes when other prefixes share them), not
// below the prefix's birth, a restore's switch or etcd's compaction.
// Without it, an instance that has just started serves every position
// before its start from etcd's history: each read is a watch of its own
// from that position, which etcd answers by reading every revision from
// there to its head, and a client resuming there (after its instance
// died) paid three of them per connection, as many for each catch-up
// read (make cluster-test's watchers, cut inside each transaction, fell
// behind and never caught up). It runs in
// the background: the watch and every request go on meanwhile; a failure
// leaves the history to etcd, as before.
func (s *Store) backfill(ctx context.Context, to uint64) {
	after := max(s.born, to-min(to, uint64(s.opts.RingChanges)))
	if g := s.keys.gen(); g.id != 0 {
		after = max(after, uint64(g.rev))
	}
	for after < to {
		// Only the newest revisions that fit are kept, while reading:
		// the buffer's bounds hold here too.
		var changes []ctxd.Change
		floor, size := after, 0
		err := s.eachRevision(ctx, after, to, func(rev revisionChanges) bool {
			changes = append(changes, rev.changes...)
			size += bytesOf(rev.changes)
			if drop, newest, dropped := oldestToDrop(changes, size, s.opts.RingChanges, s.opts.RingBytes); drop > 0 {
				clear(changes[:drop])
				changes, floor, size = changes[drop:], newest, size-dropped
			}
			return true
		})
		var ce *ctxd.CompactedError
		switch {
		case errors.As(err, &ce) && ce.Compacted > after+1:
			after = ce.Compacted - 1 // what etcd still holds
			continue
		case err != nil:
			return
		}
		s.feed.prepend(floor, to, changes)
		return
	}
}

// eachRevision calls fn with the prefix's changes of each revision after
// `after` up to `to`, in order, from a watch of its own, until fn returns
// false. `to` must be a revision with an event under the prefix (a
// committed mark is): the watch ends there.
func (s *Store) eachRevision(ctx context.Context, after, to uint64, fn func(revisionChanges) bool) error {
	after = max(after, s.born)
	if after >= to {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := s.historyAfter(ctx, s.keys.gen(), after)
	for {
		revs, _, err := next(true)
		if err != nil {
			return err
		}
		for _, rev := range revs {
			if rev.rev > to || !fn(rev) || rev.rev == to {
				return nil
			}
		}
	}
}

// historyAfter starts a watch of the prefix's history after `after`
// (ctx ends it), read in generation g, and returns the reader of its responses: next gives the
// revisions of the next one, waiting for it when wait is set; otherwise,
// none being there yet, it reports got false. A compaction past `after`
// is a *ctxd.CompactedError; the end of the watch, or of ctx,
// ErrUnavailable.
func (s *Store) historyAfter(ctx context.Context, g *generation, after uint64) (next func(wait bool) (revs []revisionChanges, got bool, err error)) {
	wch := s.cli.Watch(ctx, s.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(int64(after)+1), clientv3.WithPrevKV())
	return func(wait bool) ([]revisionChanges, bool, error) {
		var resp clientv3.WatchResponse
		ok := true
		if wait {
			resp, ok = <-wch
		} else {
			select {
			case resp, ok = <-wch:
			default:
				return nil, false, nil
			}
		}
		switch {
		case !ok && ctx.Err() != nil:
			return nil, false, fmt.Errorf("%w: etcd history after revision %d not read in time: %v", ctxd.ErrUnavailable, after, ctx.Err())
		case !ok:
			return nil, false, fmt.Errorf("%w: the watch on etcd ended", ctxd.ErrUnavailable)
		case resp.CompactRevision > 0:
			s.sawCompacted(uint64(resp.CompactRevision))
			return nil, false, &ctxd.CompactedError{Requested: after, Compacted: uint64(resp.CompactRevision)}
		case resp.Err() != nil:
			return nil, false, resp.Err()
		}
		return s.byRevision(g, resp.Events, false), true, nil
	}
}

// fillTries is how many fills of the read cache the watch tries in a row
// before it watches without the cache (reads go to etcd meanwhile); after
// refillDelay it ends that watch to fill again, once, doubling the delay
// up to refillMaxDelay while the fills fail.
const (
	fillTries      = 3
	refillDelay    = time.Second
	refillMaxDelay = 30 * time.Second
)

// watch is the instance's one watch on its prefix: it turns etcd's events
// into changes, one revision at a time, and raises the committed mark.
// It watches again from the mark when etcd ends the watch, and starts
// over at etcd's compaction when it fell behind it.
//
// A read cache whose fills failed (etcd slow or away, a page timing out)
// is filled again after a back-off: the fill must come before the watch
// (cache.go), so the back-off ends the watch, which the loop fills and
// starts again from the mark, as after an error of etcd's. Without it
// the cache stayed unfilled, every read going to etcd, until etcd ended
// the watch, which in a healthy cluster may be days. So does a cache
// invalidated while a watch runs (readCache.whenUnready): the watch
// ends at once and the loop fills it, with the same tries and back-off.
func (s *Store) watch(ctx context.Context, from uint64) {
	defer close(s.watchDone)
	tries, delay := fillTries, refillDelay
	var fillErr error // the last fill's error, while the cache goes unfilled
	unfilled := false // OnReadCacheFill was told of fillErr
	for ctx.Err() == nil {
		filled := false
		if s.cache != nil && s.cache.needsFill() && tries > 0 {
			// Before the watch starts, so that no event falls between
			// the fill's revision and the watch (cache.go).
			switch err := s.cache.fill(ctx); {
			case errors.Is(err, errFillOvertaken):
				continue // in the new generation, at once
			case err != nil:
				tries--
				fillErr = err
				pause(ctx, 100*time.Millisecond)
				continue
			}
			filled, delay = true, refillDelay
			if f := s.afterFill.Load(); f != nil {
				(*f)()
			}
		}
		tries = fillTries
		mark, _ := s.Committed()
		if filled && s.cache.needsFill() {
			// A read moved the instance to a full restore's switch
			// since the fill (switchGeneration: the cache invalidated,
			// then the mark moved to the switch): the watch would start
			// after that switch and never fill the cache again.
			continue
		}
		wctx, cancel := context.WithCancel(watchContext(ctx))
		var refill *time.Timer
		var unready <-chan struct{} // closed once the cache is invalidated (needsFill)
		switch {
		case s.cache == nil:
		case s.cache.needsFill():
			// Not filled (its fills failed): reads go to etcd until the
			// back-off ends this watch for the next fill.
			refill = time.AfterFunc(delay, cancel)
			if fillErr != nil && !unfilled {
				unfilled = true
				s.tellFill(fillErr)
			}
		default:
			// Filled: should it be invalidated while this watch runs
			// (a read that moved the instance to a restore's switch
			// the watch has passed already, the cache stopping at a
			// switch that is no generation), the watch ends to fill it
			// again: it would not restart before etcd ends it, which in
			// a healthy cluster may be days, every read going to etcd.
			// Invalidated since needsFill, it is closed already.
			unready = s.cache.whenUnready()
			if filled {
				if unfilled && s.cache.servable() { // not given up for good (giveUp), which says so
					s.tellFill(nil)
				}
				unfilled, fillErr = false, nil
			}
		}
		wch := s.cli.Watch(wctx, s.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(int64(max(mark, from))+1), clientv3.WithPrevKV())
		refilling := false
	watching:
		for {
			select {
			case resp, ok := <-wch:
				if !ok || !s.takeResponse(ctx, resp) {
					break watching
				}
			case <-unready:
				if refilling = s.cache.needsFill(); refilling {
					break watching
				}
				unready = nil // it gave up for good (giveUp): no fill to wait for
			}
		}
		cancel()
		switch {
		case refilling:
			// Invalidated while this watch ran: fill at once, then
			// watch again from the mark. Failing fills fall back to the
			// back-off as any (tries are fillTries again).
			continue
		case refill != nil && !refill.Stop():
			// The back-off ended the watch, not etcd: fill once now,
			// and should it fail, watch again at once and wait longer.
			tries, delay = 1, min(2*delay, refillMaxDelay)
			continue
		}
		// etcd unreachable or the watch cancelled: try again shortly.
		pause(ctx, 100*time.Millisecond)
	}
}

// takeResponse is the watch's for one response of etcd's: the cache
// applies it, the feed takes its changes, a switch moves the instance to
// its generation. It reports false when the watch must end: etcd ended
// it (an error, a compaction past the mark) or, with a read cache, a
// switch came (the cache is the replaced generation's: fill it again
// first).
func (s *Store) takeResponse(ctx context.Context, resp clientv3.WatchResponse) bool {
	if resp.CompactRevision > 0 {
		// Changes between the mark and the compaction are gone:
		// followers behind it read the log and are told.
		s.sawCompacted(uint64(resp.CompactRevision))
		s.feed.restart(uint64(resp.CompactRevision) - 1)
		if s.cache != nil {
			s.cache.invalidate()
		}
		// A switch of generation may be among what was missed: the
		// instance must be on the current generation before it fills
		// its cache or watches again (with the replaced one's keys, no
		// event of the current one is a change, and the cache would be
		// filled from deleted keys).
		for s.reloadGeneration(ctx) != nil && ctx.Err() == nil {
			pause(ctx, 100*time.Millisecond)
		}
		return false
	}
	if resp.Err() != nil {
		return false
	}
	if s.cache != nil {
		s.cache.apply(resp)
	}
	if f := s.afterCacheApply.Load(); f != nil {
		(*f)(resp)
	}
	if resp.IsProgressNotify() {
		s.feed.progressed(uint64(resp.Header.Revision))
	}
	switched := false
	for _, rev := range s.byRevision(s.keys.gen(), resp.Events, true) {
		if len(rev.changes) > 0 {
			s.feed.push(rev.rev, rev.changes)
		}
		if rev.gen != nil {
			s.switchGeneration(rev.gen)
			if rev.gen.id != s.switching.Load() {
				s.cleanLater(ctx) // the replaced generation, should its restorer die
			}
			switched = true
		}
	}
	return !switched || s.cache == nil
}

// tellFill tells Options.OnReadCacheFill that the read cache's fills
// failed (err, the last one's error) or, nil, that it is filled again.
func (s *Store) tellFill(err error) {
	if on := s.opts.OnReadCacheFill; on != nil {
		on(err)
	}
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// revisionChanges are the changes of one revision.
type revisionChanges struct {
	rev     uint64
	changes []ctxd.Change
	// gen is set when a full restore switched the generation at rev:
	// the changes after it are the new generation's.
	gen *generation
}

// byRevision turns a watch response's events into changes, grouped by
// revision in order. A delete is two events of one revision: the live
// key's delete (with the deleted version from its previous value) and the
// tombstone's put (who and when).
//
// The events are read with the keys of generation g (the instance's for
// its watch, the feed's for a follower's replay). With follow (the
// instance's watch) they are changes only from g's switch on: below it,
// g's keys hold its restored history being staged, which a read may have
// moved the instance to before the watch delivers the switch
// (getCurrent); and a switch of the pointer key moves the
// reading to the new generation's keys from there on; without (a replay
// of history, which only the current generation's changes are part of:
// its restored history is written under its keys before its switch),
// the switch is passed over.
func (s *Store) byRevision(g *generation, events []*clientv3.Event, follow bool) []revisionChanges {
	var out []revisionChanges
	for i := 0; i < len(events); {
		rev := events[i].Kv.ModRevision
		j := i
		for j < len(events) && events[j].Kv.ModRevision == rev {
			j++
		}
		rc := revisionChanges{rev: uint64(rev)}
		if !follow || rev >= g.rev {
			// A replay reads the restored history as the generation's
			// own (a snapshot of it holds that history); the watch
			// does not take it for changes (above).
			rc.changes = changesOf(g.keys, events[i:j])
		}
		for _, ev := range events[i:j] {
			if s.isSwitch(ev) {
				if next, err := generationOf(s.opts.Prefix, ev.Kv); err == nil && follow {
					rc.gen, g = next, next
				}
			}
		}
		out = append(out, rc)
		i = j
	}
	return out
}

// changesOf turns the events of one revision into changes, in the order
// of the transaction's writes. A delete of a key on a lease with no
// tombstone written in its revision is etcd's: the lease expired (a
// ctxd delete always writes the tombstone), and the change is the
// expiry, its deadline from the deadline record deleted with the key.
func changesOf(k dataKeys, events []*clientv3.Event) []ctxd.Change {
	tombs := map[string]envelope{}
	deads := map[string]*deadline{}
	for _, ev := range events {
		dir, ns, key, ok := k.parse(ev.Kv.Key)
		switch {
		case !ok:
		case dir == tombDir && ev.Type == mvccpb.PUT:
			if env, err := decodeEnvelope(ev.Kv.Value); err == nil {
				tombs[ns+"/"+key] = env
			}
		case dir == deadDir && ev.Type == mvccpb.DELETE && ev.PrevKv != nil:
			if d, err := decodeDeadline(ev.PrevKv.Value); err == nil {
				deads[ns+"/"+key] = &d
			}
		}
	}
	var out []ctxd.Change
	for _, ev := range events {
		dir, ns, key, ok := k.parse(ev.Kv.Key)
		if !ok || dir != liveDir {
			continue
		}
		c := ctxd.Change{Revision: uint64(ev.Kv.ModRevision), Namespace: ns, Key: key}
		if ev.PrevKv != nil {
			c.PrevRev = uint64(ev.PrevKv.ModRevision)
		}
		if ev.Type == mvccpb.DELETE {
			env, tombed := tombs[ns+"/"+key]
			if !tombed && ev.PrevKv != nil && ev.PrevKv.Lease != 0 {
				out = append(out, expiryOf(c, ev.PrevKv, deads[ns+"/"+key]))
				continue
			}
			c.Op = ctxd.OpDelete
			if ev.PrevKv != nil {
				c.Version = uint64(ev.PrevKv.Version)
			}
			c.Who, c.Time = env.who, env.time
		} else {
			env, err := decodeEnvelope(ev.Kv.Value)
			if err != nil {
				continue // not ctxd's: someone else wrote under the prefix
			}
			c.Op, c.Value, c.Version, c.Who, c.Time = ctxd.OpPut, env.value, uint64(ev.Kv.Version), env.who, env.time
			c.ExpiresAt = env.expiresAt
			if ev.Kv.Version == 1 {
				c.PrevRev = 0
			}
		}
		out = append(out, c)
	}
	return out
}
