package bolt

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/store"
)

// writer makes the changes of the requests that queue (a lone write may
// make its own: submitAlone; either holds s.writing). It takes the first
// queued request, drains whatever else is already queued (no timer: a
// lone write goes at once), checks the group against the current state,
// appends one write-ahead log record per request that holds (one
// fdatasync for the group), publishes the changes to the overlay and the
// committed mark, then answers each caller. An exclusive request (a
// restore or defrag swap) or one too large for the log ends a group: the
// group goes first, then that request runs alone.
func (s *Store) writer() {
	defer close(s.stopped)
	// The syncer answers what the writer sent it, and a lone write's
	// caller what it landed itself: both must be done before the writer
	// counts as stopped.
	defer func() {
		close(s.flights)
		<-s.syncerDone
		s.lone.Wait()
	}()
	batch := make([]*request, 0, s.maxBatch)
	for {
		var first *request
		select {
		case first = <-s.queue:
		case <-s.stop:
			// Commit what was queued before Close; fail nothing that got
			// in, and let no lone write start.
			s.writing.Lock()
			defer s.writing.Unlock()
			s.writerExited = true
			for {
				batch, held := s.take(batch[:0], false)
				if len(batch) == 0 && held == nil {
					return
				}
				s.run(batch, held)
			}
		}
		s.writing.Lock()
		if first.exclusive != nil || s.big(first) {
			s.run(nil, first)
		} else {
			batch, held := s.take(append(batch[:0], first), true)
			s.run(batch, held)
		}
		s.writing.Unlock()
	}
}

// submitAlone commits r in its caller's goroutine when the pipeline is
// idle: nothing queued, no group written and not yet landed, and the
// writer's part free. The caller checks and writes its group, then, the
// syncer being idle too, makes it durable, publishes and answers it
// itself. A lone write so costs no goroutine hand-off: the writer's, the
// syncer's and the answer's wakes were each a futex call and, on an idle
// machine, a processor brought up (store/bolt/DESIGN.md, "Lone writes").
// Its caller waits for its own fdatasync, and so gets the exact answer
// even when its ctx ends meanwhile. Under load the pipeline is not idle
// and requests queue for the writer, which groups them. It reports
// whether it took r: then r is answered, or on its way to the syncer.
func (s *Store) submitAlone(r *request) bool {
	// After a landing that answered several callers, more are about to
	// write: the writer's grouping (take) serves them with one fdatasync.
	if r.exclusive != nil || s.big(r) || s.lastLanding.Load() > 1 || !s.pipelineIdle() {
		return false
	}
	if !s.writing.TryLock() {
		return false
	}
	// Looked at again holding writing: nothing can be sent meanwhile.
	if s.writerExited || !s.pipelineIdle() {
		s.writing.Unlock()
		return false
	}
	s.lone.Add(1)
	defer s.lone.Done()
	f := s.commit([]*request{r})
	switch {
	case f == nil:
		// Refused before its log write: answered.
		s.writing.Unlock()
	case s.syncing.TryLock():
		// Every group written before this one has landed (flying is 0,
		// and none can be sent while this caller holds writing), and no
		// other caller is landing one: landing it here keeps the order.
		// The writer may write the next group meanwhile.
		s.writing.Unlock()
		s.land([]*flight{f})
		s.syncing.Unlock()
	default:
		// Another caller is landing its own group: this one follows it,
		// through the syncer.
		s.send(f)
		s.writing.Unlock()
	}
	return true
}

// pipelineIdle reports whether nothing is queued and no flight sent to
// the syncer is still to land.
func (s *Store) pipelineIdle() bool { return s.flying.Load() == 0 && len(s.queue) == 0 }

// run commits a group, then runs the request that ended it: an exclusive
// function (after a checkpoint: the database then holds every change) or
// a request committed directly.
func (s *Store) run(batch []*request, held *request) {
	if len(batch) > 0 {
		if f := s.commit(batch); f != nil {
			s.send(f)
		}
	}
	if held == nil {
		return
	}
	// Exclusive and direct requests work on bbolt: every group before
	// them must be durable and published first.
	s.settle()
	if held.exclusive == nil {
		s.commitDirect(held)
		return
	}
	err := s.checkpointTo(s.rev)
	if err == nil {
		err = held.exclusive()
	}
	held.done <- result{err: err}
}

// take adds to batch every request already queued, up to an exclusive or
// large request, which it returns separately. Callers answered by the
// previous commit are typically about to queue again, so when yield is
// set and the queue runs dry the writer yields its processor (no timer,
// no sleep) and drains again, stopping when a yield brings nothing new. A
// lone write costs one yield; under load the groups stay large.
func (s *Store) take(batch []*request, yield bool) ([]*request, *request) {
	yielded := false
	for len(batch) < s.maxBatch {
		select {
		case r := <-s.queue:
			if r.exclusive != nil || s.big(r) {
				return batch, r
			}
			batch = append(batch, r)
			yielded = false
			continue
		default:
		}
		if !yield || yielded {
			return batch, nil
		}
		runtime.Gosched()
		yielded = true
	}
	return batch, nil
}

// commit prepares a group and writes it to the write-ahead log, without
// waiting for its fdatasync: it checks each request against the state so
// far, which includes the groups written before it and not yet durable
// (s.inflight), and makes its changes in memory (a request whose check
// fails gets its error, and leaves no trace), writes one log record per
// request that holds, and hands the group to the syncer, which makes it
// durable, publishes it and answers its callers, in order. So while the
// syncer's fdatasync of one group runs, the writer prepares and writes
// the next. It returns the group's flight, to land (send or
// submitAlone), or nil when it refused the whole batch (answered).
// The caller holds s.writing.
func (s *Store) commit(batch []*request) *flight {
	if err := s.failure.Load(); err != nil {
		s.refuse(batch, *err)
		return nil
	}
	if err := s.waitRoom(); err != nil {
		s.refuse(batch, err)
		return nil
	}
	// The writer reuses batch for its next group: the flight keeps a copy.
	f := &flight{batch: slices.Clone(batch), start: time.Now(), prevRev: s.rev, results: make([]result, len(batch))}
	var ok []made
	s.dbMu.RLock()
	g := s.newGroup()
	// A read error leaves the deadlines as they were, for the next group.
	if m, err := g.rebaseDeadlines(); err == nil && m.record != nil {
		ok = append(ok, m)
	}
	for i, r := range batch {
		expired, err := g.expireTouched(r)
		if err != nil {
			f.results[i] = result{err: err}
			continue
		}
		if expired.record != nil {
			ok = append(ok, expired)
		}
		m, err := g.apply(r)
		if err != nil {
			f.results[i] = result{err: err}
			continue
		}
		f.results[i] = result{res: m.res}
		if m.record != nil {
			ok = append(ok, m)
		}
	}
	g.close()
	s.dbMu.RUnlock()
	f.g = g
	if len(ok) > 0 {
		records := make([][]byte, len(ok))
		for i := range ok {
			records[i] = ok[i].record
			g.bytes += int64(len(ok[i].record))
		}
		last, err := s.wal.Write(records...)
		if err != nil {
			f.err = err
		} else {
			first := last - uint64(len(records)) + 1
			for i := range ok {
				for _, c := range ok[i].changes {
					c.seq = first + uint64(i)
				}
				for _, x := range ok[i].extends {
					x.seq = first + uint64(i)
				}
				f.changes = append(f.changes, ok[i].changes...)
				f.extends = append(f.extends, ok[i].extends...)
			}
			f.lastSeq = last
		}
	}
	s.rev = g.rev
	s.inflight = append(s.inflight, g)
	if s.hooks.written != nil {
		s.hooks.written()
	}
	return f
}

// send hands a flight to the syncer. The caller holds s.writing.
func (s *Store) send(f *flight) {
	s.flying.Add(1)
	s.flights <- f
}

// flight is a group the writer has written to the write-ahead log, on its
// way to the syncer: not durable, not readable, not answered yet.
type flight struct {
	batch   []*request
	results []result
	g       *group
	changes []*change
	extends []*extend
	// lastSeq is the group's last log record (0: it logged nothing); err
	// is the log's error when writing its records failed.
	lastSeq uint64
	err     error
	start   time.Time
	prevRev uint64
	// settled, when set, is closed once every group before it is done
	// (settle): the flight carries no group.
	settled chan struct{}
}

// syncer makes the groups the writer wrote durable and answers them, in
// the order they were written: it takes every flight waiting, makes them
// durable with one fdatasync (wal.Sync covers every record written
// before it began), then publishes and answers each. A failed Write or
// Sync fails the store, and every group after it: their records may or
// may not be durable (outcome unknown), and the checks of those that
// logged nothing saw state that may be lost.
func (s *Store) syncer() {
	defer close(s.syncerDone)
	var fs []*flight
	for f := range s.flights {
		fs = append(fs[:0], f)
	more:
		for {
			select {
			case f, ok := <-s.flights:
				if !ok {
					break more
				}
				fs = append(fs, f)
			default:
				break more
			}
		}
		s.syncing.Lock()
		s.land(fs)
		s.flying.Add(-int64(len(fs)))
		s.syncing.Unlock()
		clear(fs)
	}
}

// land makes the flights fs durable, then publishes and answers them.
func (s *Store) land(fs []*flight) {
	var syncErr error
	var need uint64
	for _, f := range fs {
		need = max(need, f.lastSeq)
	}
	synced := need > s.wal.LastSeq()
	if synced {
		if s.hooks.beforeSync != nil {
			s.hooks.beforeSync()
		}
		if _, err := s.wal.Sync(); err != nil {
			syncErr = err
		}
	}
	// The stats and OnCommit count one commit per fdatasync: every group
	// it made durable. Groups that wrote nothing (every request refused,
	// a CAS that lost, say) took no fdatasync and are not a commit: they
	// were counted, and under CAS contention 'commits' was ten times the
	// fdatasyncs, each 'taking' 0.03 ms.
	var requests int
	var changes uint64
	var start time.Time
	for _, f := range fs {
		if f.settled != nil {
			continue
		}
		err := f.err
		if err == nil && f.lastSeq > 0 {
			err = syncErr
		}
		switch {
		case err != nil:
			s.syncFailed = true
			s.fail(fmt.Errorf("write-ahead log: %w", err))
			for i := range f.results {
				if f.results[i].err == nil {
					// Some of the group's records may be durable, and
					// replayed at the next start: the outcome is unknown.
					f.results[i].err = appendUnknown(err)
				}
			}
		case s.syncFailed:
			// An earlier group failed, and this one was checked against
			// its state, which may be lost: its records (if any) may or
			// may not be durable, and its refusals may be wrong.
			failure := *s.failure.Load()
			for i := range f.results {
				if f.results[i].err == nil && f.lastSeq > 0 {
					f.results[i].err = appendUnknown(failure)
				} else {
					f.results[i] = result{err: failure}
				}
			}
		default:
			if len(f.changes) > 0 || len(f.extends) > 0 {
				failpoint.Hit(failpoint.CommitBeforeAnswer)
				s.wakes = append(s.wakes, s.publish(f.changes, f.extends, f.g))
			}
			if requests == 0 {
				start = f.start
			}
			requests += len(f.batch)
			changes += f.g.rev - f.prevRev
		}
	}
	// OnCommit runs before the answers (the outcome tests rely on it).
	if requests > 0 && synced {
		s.count(requests, changes, time.Since(start))
	}
	answered := 0
	for _, f := range fs {
		if f.settled != nil {
			close(f.settled)
			continue
		}
		s.landed.Store(f.g.id)
		s.answer(f.batch, f.results)
		answered += len(f.batch)
	}
	if answered > 0 {
		s.lastLanding.Store(int64(answered))
	}
	if len(s.wakes) > 0 {
		s.wakeAfterPublish(s.wakes)
		clear(s.wakes)
		s.wakes = s.wakes[:0]
	}
}

// settle waits until the syncer has answered every group the writer
// sent it (they are durable and published, or failed).
func (s *Store) settle() {
	if len(s.inflight) == 0 {
		return
	}
	done := make(chan struct{})
	s.send(&flight{settled: done})
	<-done
	s.inflight = s.inflight[:0]
}

// answer sends each request its result.
func (s *Store) answer(batch []*request, results []result) {
	for i, r := range batch {
		r.done <- results[i]
	}
}

// refuse answers every request of batch with err: none was applied.
func (s *Store) refuse(batch []*request, err error) {
	for _, r := range batch {
		r.done <- result{err: err}
	}
}

// count records a commit in the stats and tells the commit hook.
func (s *Store) count(requests int, changes uint64, took time.Duration) {
	s.stats.commitNanos.Add(int64(took))
	s.stats.commits.Add(1)
	s.stats.requests.Add(uint64(requests))
	s.stats.changes.Add(changes)
	if s.onCommit != nil {
		s.onCommit(store.CommitInfo{Requests: requests, Changes: int(changes), Duration: took})
	}
}

// publish makes durable changes and keepalives readable: into the
// overlay and the deadline index, and the committed mark raised to the
// last change. It returns the channel to close to wake the mark's
// followers; the caller does so, and wakes the committer (wakeAfterPublish),
// once it has answered the writes.
func (s *Store) publish(changes []*change, extends []*extend, g *group) (wake chan struct{}) {
	s.ov.mu.Lock()
	for ns, n := range g.nsKeys {
		s.nsKeys[ns] = n
	}
	s.ov.add(changes, s.nsKeys)
	s.ov.addExtends(extends)
	s.ttl.publish(changes, extends)
	wake = s.setMark(s.ov.top)
	s.ov.mu.Unlock()
	return wake
}

// wakeAfterPublish wakes the followers of the mark (each channel of
// wakes, in order) and the committer, after a publish. Both are off a
// lone write's path: each wake of a sleeping goroutine is a system call
// (futex) and, on an idle machine, another processor to bring up.
func (s *Store) wakeAfterPublish(wakes []chan struct{}) {
	for _, w := range wakes {
		close(w)
	}
	// A committer already counting down its interval needs no wake
	// unless enough changes wait: each wake is a goroutine switch that
	// Go's scheduler runs before the callers just answered.
	if s.commitIdle.Load() || int(s.ov.size.Load()) >= s.commitChanges {
		select {
		case s.commitWake <- struct{}{}:
		default:
		}
	}
}

// waitRoom waits while the overlay is full (the committer is behind).
func (s *Store) waitRoom() error {
	for {
		// The groups written and not yet published will be in the
		// overlay soon: they count. Pruned first, then the overlay
		// read: a group that lands in between is in the overlay then
		// (it lands after its publish), or still in flight, or both
		// (counted twice, which only errs towards waiting). The other
		// way round, a group landing between the two was in neither,
		// and the overlay could pass MaxPending by a group
		// (TestOverlayIsBounded saw 14 of 8 + 4 under make test's load).
		s.prune()
		_, _, n, bytes, drained := s.ov.state()
		var flying int
		var flyingBytes int64
		for _, g := range s.inflight {
			flying += int(g.rev - g.first)
			flyingBytes += g.bytes
		}
		if n+flying < s.maxPending && bytes+flyingBytes < s.maxPendingB {
			return nil
		}
		if flying > 0 {
			// Let them land first, then look again.
			s.settle()
			continue
		}
		s.urgent.Add(1)
		select {
		case s.commitWake <- struct{}{}:
		default:
		}
		select {
		case <-drained:
		case <-s.failed:
		}
		s.urgent.Add(-1)
		if err := s.failure.Load(); err != nil {
			return *err
		}
	}
}

// commitDirect commits a request too large for the write-ahead log to
// bbolt in one transaction (two fdatasyncs), after a checkpoint: the
// database then holds every change before it. A request refused before
// the commit (a version that does not match, a patch that does not apply)
// fails alone. A failed commit fails the store, as the committer's does:
// bbolt writes its meta page before the last fdatasync, and when that
// fdatasync fails it rolls back, but the page stays in the page cache and
// the memory map, from where bbolt reads the transaction as committed
// (not durable, and its revision then taken again by the next write).
func (s *Store) commitDirect(r *request) {
	if err := s.failure.Load(); err != nil {
		r.done <- result{err: *err}
		return
	}
	if err := s.checkpointTo(s.rev); err != nil {
		r.done <- result{err: err}
		return
	}
	start := time.Now()
	// As the committer's commits (applyMu, then dbMu): Check holds it off.
	s.applyMu.Lock()
	s.dbMu.RLock()
	g := s.newGroup()
	expired, err := g.expireTouched(r)
	var m made
	if err == nil {
		m, err = g.applyWrites(r.writes, false)
	}
	g.close()
	if err == nil {
		// The expiries before the request's changes, in one transaction.
		m.changes = append(expired.changes, m.changes...)
		// It bypasses the overlay: readers see it as it commits.
		s.cache.hold()
		err = applyChanges(s.db, batch{changes: m.changes})
		s.cache.release()
		if err != nil {
			s.fail(fmt.Errorf("a commit to the database failed: %w", err))
			err = fmt.Errorf("%w: the database commit of this write failed (%w); it may or may not have been applied: "+
				"the store takes no more writes until it is restarted; read the key (or the revision) after the restart to learn whether it was",
				ctxd.ErrOutcomeUnknown, err)
		} else {
			s.measure()
		}
	}
	s.dbMu.RUnlock()
	s.applyMu.Unlock()
	if err != nil {
		r.done <- result{err: err}
		return
	}
	failpoint.Hit(failpoint.CommitBeforeAnswer)
	s.ov.mu.Lock()
	for ns, n := range g.nsKeys {
		s.nsKeys[ns] = n
	}
	s.ov.reset(g.rev)
	s.ttl.publish(m.changes, nil)
	s.raiseMark(g.rev)
	s.ov.mu.Unlock()
	s.count(1, g.rev-s.rev, time.Since(start))
	s.rev = g.rev
	r.done <- result{res: m.res}
}

// fail makes the store refuse writes from now on, with an error matching
// ctxd.ErrUnavailable and store.ErrFailed that says why (the first
// failure), which it returns; Options.OnFail is told once.
func (s *Store) fail(cause error) error {
	s.failOnce.Do(func() {
		err := fmt.Errorf("%w: %w: %w", ctxd.ErrUnavailable, store.ErrFailed, cause)
		if s.onFail != nil {
			s.onFail(err) // first: its log line comes before any refusal's
		}
		s.failure.Store(&err)
		close(s.failed)
	})
	return *s.failure.Load()
}

// appendUnknown is the answer to a request whose log record was being
// appended when the log failed.
func appendUnknown(cause error) error {
	return fmt.Errorf("%w: the write-ahead log failed while this write was being made durable (%w); "+
		"it may or may not have been applied: read the key (or the revision) after the restart to learn whether it was",
		ctxd.ErrOutcomeUnknown, cause)
}
