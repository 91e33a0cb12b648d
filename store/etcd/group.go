package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
)

// Grouped writes: concurrent single writes of distinct keys, committed
// together in one etcd transaction.
//
// etcd spends most of a write on what each request costs it (gRPC, a raft
// entry, an apply and its revision), not on the keys it writes: its own
// Go client, 64 concurrent puts, is bound by etcd's CPU on a small
// machine. ctxd pays for HTTP on top, so a request per write cannot come
// near etcd's client there. A write that arrives while GroupsInFlight
// transactions are out waits, and the next transaction takes every write
// waiting (up to the group's bounds), the way bolt's committer shares an
// fdatasync. A lone write goes at once, alone: it waits for nothing.
//
// What grouping changes, and why each holds:
//   - The writes of a group share its revision, as a transaction's do:
//     the feed's rule (the changes of one revision travel together) and
//     (from_rev, from_index) resume already cover it.
//   - One etcd transaction applies all or nothing: the group's compares
//     are each write's own (If-Match, a delete's key must exist) and the
//     generation's. When one fails, nothing applied: the else branch's
//     reads tell whose check failed; those writes get their answer
//     (conflict, not found), read at one revision inside their request,
//     and the others go again in a new transaction.
//   - etcd refuses two ops on one key in a transaction: a write of a key
//     already in the group waits for the next one.
//   - Answers: each write learns its own version and create revision from
//     its key's prev_kv, as alone.
//   - A put with a TTL joins too, with its lease: its writer grants it
//     before it queues, so that a group waits for no grant. etcd counts
//     a lease's TTL from its grant, so the group's time is taken no
//     later than its first grant (commitOnce takes it before the grant):
//     a key never expires before the deadline it is given, the time its
//     write records plus its TTL. A lease whose write did not apply is
//     revoked; a group etcd refuses because a lease ended while it waited
//     (etcd answered nothing for the TTL) goes again, each write alone.
//     Such a put costs the transaction three ops (the key, its deadline
//     record, its armed tombstone), a delete two, a put one: a group's
//     ops stay within those of maxWrites deletes, so within etcd's
//     --max-txn-ops (groupWrite.txnOps, which counts compares too).
//
//   - A keepalive's rewrite of its key's deadline record joins too (no
//     change: the record is not in the feed), on condition that the key
//     is still as the keepalive read it; when it is not, the group
//     answers the key's version now for it alone (renewGrouped).
//
//   - A patch joins as the put of its result, on condition that its key
//     was not written since the value it was applied to was read (its
//     modification revision), and for an expiring key that its deadline
//     record was not moved since either, as alone: when another write or
//     a keepalive got there first, the group answers errPatchRaced for it
//     alone and its writer applies the patch again to the new value.
//
// Transactions of several writes are committed on their own.

// DefaultMaxGroupWrites is how many writes a group holds at most by
// default (Options.MaxGroupWrites): 63 deletes, the largest writes, make
// 127 compares (the generation's, each key's version and If-Match), 126
// ops and 64 reads in the else branch, within etcd's default
// --max-txn-ops (128) for each. A group etcd refuses all the same (a
// lower --max-txn-ops) is made again write by write.
const DefaultMaxGroupWrites = 63

// groupBytes bounds the values of a group, well under etcd's default
// --max-request-bytes (1.5 MiB); a larger write goes alone.
const groupBytes = 512 << 10

// DefaultGroupsInFlight is how many grouped transactions may be out at
// once by default (Options.GroupsInFlight).
const DefaultGroupsInFlight = 2

// groupWrite is one write waiting for, or in, a group.
type groupWrite struct {
	ctx context.Context
	w   ctxd.Write
	// A put with a TTL: its lease, granted before it queued, and the
	// time taken before the grant.
	lease    deadline
	leasedAt time.Time
	// A patch's put: the modification revision of the value it was
	// applied to, and the lease and deadline an expiring key keeps
	// (applyPatches).
	seen int64
	kept deadline
	// A keepalive's move of its key's deadline record (renewGrouped):
	// the record, written on condition that the key is still at seen, in
	// generation gen. Not a change: no record, no feed.
	renewal *deadline
	gen     *generation
	// expires is when the write must be answered, etcd.request_timeout
	// after it queued: a write still queued then is answered unavailable
	// (never sent), and a group is sent with its oldest write's time left,
	// so that no write waits longer than the request timeout in all.
	expires time.Time
	done    chan struct{}
	// set before done is closed
	rec ctxd.Record
	err error
}

func (p *groupWrite) finish(rec ctxd.Record, err error) {
	p.rec, p.err = rec, err
	close(p.done)
}

func (p *groupWrite) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// errQueuedTooLong answers a write that waited most of its request
// timeout behind groups etcd did not answer in time: it was never sent.
var errQueuedTooLong = fmt.Errorf("%w: not sent: etcd did not answer the writes queued before it within etcd.request_timeout", ctxd.ErrUnavailable)

// minSendFraction of the request timeout is the least a write must have
// left to be sent (grouper.minLeft).
const minSendFraction = 4

// errGoAlone: etcd refused a group, as too large for one transaction or
// because a lease ended while it waited: each of its writes goes again
// alone.
var errGoAlone = errors.New("etcd refused the group: each write goes alone")

// grouper queues single writes and commits them in groups.
type grouper struct {
	mu      sync.Mutex
	queue   []*groupWrite
	running int // groups being committed, at most inFlight

	inFlight, maxWrites int
	// minLeft is the least time a write must have left of its request
	// timeout to be sent: one with less is answered unavailable (never
	// sent) rather than sent with a deadline etcd could not meet even
	// when it is only busy.
	minLeft time.Duration
	// commit commits a group and answers its writes, but for those it
	// returns: they did not apply through no fault of their own, and go
	// again, first in the queue.
	commit func(group []*groupWrite) (again []*groupWrite)
	// joined, when set (tests), runs when a writer has become a runner,
	// before it looks at the queue.
	joined func()
}

// do commits p in a group, and returns once it is answered. The caller
// commits groups itself when fewer than inFlight are out: until its own
// write is answered, then it hands the queue to a goroutine of its own.
// Another runner may take p in its group first (between the unlock and
// the caller's first look, or because p's key was in the caller's group
// already): the caller, its queue empty, then waits for that group's
// answer.
func (g *grouper) do(p *groupWrite) {
	g.mu.Lock()
	g.queue = append(g.queue, p)
	if g.running >= g.inFlight {
		g.mu.Unlock()
		<-p.done
		return
	}
	g.running++
	g.mu.Unlock()
	if g.joined != nil {
		g.joined()
	}
	g.run(p)
	<-p.done
}

// run commits groups from the queue until it is empty, or, for a caller
// (mine not nil), until the caller's own write is answered.
func (g *grouper) run(mine *groupWrite) {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		if mine != nil && mine.finished() {
			g.mu.Unlock()
			go g.run(nil)
			return
		}
		group := g.takeLocked()
		g.mu.Unlock()
		if len(group) == 0 {
			continue
		}
		if again := g.commit(group); len(again) > 0 {
			g.mu.Lock()
			g.queue = append(again, g.queue...)
			g.mu.Unlock()
		}
	}
}

// takeLocked takes the next group from the queue, oldest first: writes of
// distinct keys, within the group's bounds. A write whose context ended
// while it waited is answered with its context's error (it was never
// sent).
func (g *grouper) takeLocked() []*groupWrite {
	type nsKey struct{ ns, key string }
	var (
		group      []*groupWrite
		keys       = map[nsKey]bool{}
		bytes, ops int
		rest       = g.queue[:0]
	)
	for i, p := range g.queue {
		if len(group) == g.maxWrites {
			rest = append(rest, g.queue[i:]...)
			break
		}
		if err := p.ctx.Err(); err != nil {
			p.finish(ctxd.Record{}, err)
			continue
		}
		if !p.expires.IsZero() && time.Until(p.expires) < g.minLeft {
			p.finish(ctxd.Record{}, errQueuedTooLong)
			continue
		}
		k := nsKey{p.w.Namespace, p.w.Key}
		size := len(p.w.Namespace) + len(p.w.Key) + len(p.w.Value)
		n := p.txnOps()
		if keys[k] || len(group) > 0 && (bytes+size > groupBytes || ops+n > 2*g.maxWrites) {
			rest = append(rest, p)
			continue
		}
		keys[k] = true
		bytes += size
		ops += n
		group = append(group, p)
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	return group
}

// groupable is a write that may share a transaction with others as it is:
// a single put (with or without a TTL) or delete. (A single patch joins
// as the put of its result: commit.)
func groupable(writes []ctxd.Write) bool {
	return len(writes) == 1 && (writes[0].Op == ctxd.OpPut || writes[0].Op == ctxd.OpDelete)
}

// txnOps is what buildTxn gives p of what etcd bounds by --max-txn-ops
// (each of a transaction's compares, then ops and else ops): the more of
// its ops (a put one, a put with a TTL three, a delete two) and its
// compares (its expected version, a delete's key, a patch's revision and
// deadline record). Its else reads are fewer than either.
func (p *groupWrite) txnOps() int {
	ops := 1
	switch {
	case p.w.Op == ctxd.OpDelete:
		ops = 2
	case p.w.TTL > 0:
		ops = 3
	}
	cmps := 0
	for _, c := range []bool{p.w.Expect != nil, p.w.Op == ctxd.OpDelete, p.seen > 0, p.kept.recordRev > 0} {
		if c {
			cmps++
		}
	}
	return max(ops, cmps)
}

// commitGrouped commits a single write (groupable) in a group; seen and
// kept are a patch's (commitOnce), zero for the others.
func (s *Store) commitGrouped(ctx context.Context, w ctxd.Write, seen int64, kept deadline) (ctxd.TxnResult, error) {
	if err := s.beginWrite(ctx); err != nil {
		return ctxd.TxnResult{}, err
	}
	defer s.inflight.Done()
	p := &groupWrite{ctx: ctx, w: w, seen: seen, kept: kept, done: make(chan struct{}), expires: time.Now().Add(s.opts.RequestTimeout)}
	if w.TTL > 0 {
		p.leasedAt = s.opts.Now().UTC()
		granted, err := s.grantLeases(ctx, []ctxd.Write{w})
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		p.lease = granted[0]
	}
	s.groups.do(p)
	if p.err != nil {
		if p.lease.lease != clientv3.NoLease && !errors.Is(p.err, ctxd.ErrOutcomeUnknown) {
			// Its write did not apply (a failed check, a group etcd
			// refused: it goes again alone, with a lease of its own).
			s.revokeLater(p.lease.lease)
		}
		return ctxd.TxnResult{}, p.err
	}
	// As commitOnce: read-your-writes on the feed, within the request
	// timeout.
	wctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	s.feed.waitFor(wctx, p.rec.ModRev)
	return ctxd.TxnResult{Revision: p.rec.ModRev, Records: []ctxd.Record{p.rec}}, nil
}

// hold keeps every slot of the grouper busy until release, so that writes
// queue: how a test commits a group of its choosing (export_test.go).
// queued tells how many writes wait.
func (g *grouper) hold() (queued func() int, release func()) {
	g.mu.Lock()
	g.running += g.inFlight
	g.mu.Unlock()
	queued = func() int {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.queue)
	}
	release = func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.running -= g.inFlight
		if len(g.queue) > 0 && g.running < g.inFlight {
			g.running++
			go g.run(nil)
		}
	}
	return queued, release
}

// commitGroup commits a group's writes in one etcd transaction and
// answers each, but for the writes it returns: they go again.
func (s *Store) commitGroup(all []*groupWrite) (again []*groupWrite) {
	gen := s.keys.gen()
	group, renewals := make([]*groupWrite, 0, len(all)), []*groupWrite(nil)
	for _, p := range all {
		switch {
		case p.renewal == nil:
			group = append(group, p)
		case p.gen != gen:
			// Read in a generation a full restore has replaced: alone,
			// it compares that generation and answers as a keepalive
			// of a key no longer there.
			p.finish(ctxd.Record{}, errGoAlone)
		default:
			renewals = append(renewals, p)
		}
	}
	if len(group)+len(renewals) == 0 {
		return nil
	}
	// The group's time is no later than any of its leases' grants: each
	// key's deadline (the time plus its TTL) is then no later than its
	// lease's end, and its TTL exactly after the time its write records.
	now := s.opts.Now().UTC()
	writes := make([]ctxd.Write, len(group))
	var granted, kept []deadline
	var seen []int64
	for i, p := range group {
		writes[i] = p.w
		if p.lease.lease != clientv3.NoLease {
			if granted == nil {
				granted = make([]deadline, len(group))
			}
			granted[i] = p.lease
			if p.leasedAt.Before(now) {
				now = p.leasedAt
			}
		}
		if p.seen > 0 {
			if seen == nil {
				seen, kept = make([]int64, len(group)), make([]deadline, len(group))
			}
			seen[i], kept[i] = p.seen, p.kept
		}
	}
	t := s.buildTxn(gen, writes, now, granted, seen, kept)
	// The renewals after the writes: each its key's and its record's
	// compares, its record's put, and its key's and record's reads in the
	// else branch (from renewalGets[j]).
	renewalGets := make([]int, len(renewals))
	for j, p := range renewals {
		cmps, put := renewalOps(gen, p.w.Namespace, p.w.Key, *p.renewal, p.seen)
		t.cmps, t.ops = append(t.cmps, cmps...), append(t.ops, put)
		renewalGets[j] = len(t.elseGets)
		t.elseGets = append(t.elseGets, clientv3.OpGet(gen.keys.live(p.w.Namespace, p.w.Key), clientv3.WithKeysOnly()),
			clientv3.OpGet(gen.keys.dead(p.w.Namespace, p.w.Key), clientv3.WithKeysOnly()))
	}
	// The group's transaction is no one write's: it is bounded by the
	// time its oldest write has left of the request timeout alone, and a
	// write whose client went away is answered all the same (its outcome
	// is the group's).
	ctx, cancel := context.WithDeadline(context.Background(), groupDeadline(time.Now().Add(s.opts.RequestTimeout), group, renewals))
	defer cancel()
	started := time.Now()
	resp, err := s.cli.Txn(ctx).If(t.cmps...).Then(t.ops...).Else(t.elseGets...).Commit()
	s.stats.transactions.Add(1)
	answerAll := func(err error) {
		for _, p := range group {
			p.finish(ctxd.Record{}, err)
		}
		for _, p := range renewals {
			p.finish(ctxd.Record{}, err)
		}
	}
	switch {
	case err != nil && len(group)+len(renewals) > 1 && errors.Is(writeError(err, true), ctxd.ErrTooLarge),
		err != nil && (granted != nil || kept != nil || renewals != nil) && errors.Is(err, rpctypes.ErrLeaseNotFound):
		// Refused before applying: the group exceeds etcd's bounds, not
		// (necessarily) any of its writes; or a lease ended before the
		// group was sent (etcd answered nothing in the key's TTL, or a
		// patched or renewed key expired since it was read). Each goes
		// again alone.
		answerAll(errGoAlone)
	case err != nil:
		answerAll(writeError(err, true))
	case !resp.Succeeded:
		if moved := movedGeneration(gen, t, resp); moved != 0 {
			// Nothing was written: each write goes again, in the new
			// generation (commit's loop).
			if err := s.catchUpGeneration(ctx, moved); err != nil {
				answerAll(err)
				return nil
			}
			answerAll(errGenerationMoved)
			return nil
		}
		// Nothing applied: the writes whose check failed get their
		// answer, the others go again.
		for i, p := range group {
			if err := t.failureOf(i, p.w, p.seen, resp.Responses); err != nil {
				p.finish(ctxd.Record{}, err)
			} else {
				again = append(again, p)
			}
		}
		for j, p := range renewals {
			kv := firstKV(resp.Responses[renewalGets[j]].GetResponseRange().GetKvs())
			rec := firstKV(resp.Responses[renewalGets[j]+1].GetResponseRange().GetKvs())
			if kv == nil || kv.ModRevision != p.seen || (p.renewal.recordRev > 0 && (rec == nil || rec.ModRevision != p.renewal.recordRev)) {
				p.finish(ctxd.Record{}, errKeyMoved)
			} else {
				again = append(again, p)
			}
		}
		if len(again) == len(group)+len(renewals) {
			answerAll(errChecksHold)
			return nil
		}
		return again
	default:
		rev := uint64(resp.Header.Revision)
		s.committed(len(group)+len(renewals), len(writes), started)
		for i, rec := range s.records(writes, t, resp, rev, now) {
			group[i].finish(rec, nil)
		}
		for _, p := range renewals {
			p.finish(ctxd.Record{ModRev: rev}, nil)
		}
	}
	return nil
}

// errKeyMoved: a keepalive's key was written or deleted since the
// keepalive read it.
var errKeyMoved = errors.New("the key moved since it was read")

// renewGrouped moves a key's deadline record to d in a group, on
// condition that the key is still at modRev in generation gen (renew);
// held is false when it was not. errGoAlone: the record must be written
// alone.
func (s *Store) renewGrouped(ctx context.Context, gen *generation, ns, key string, d deadline, modRev int64) (held bool, err error) {
	p := &groupWrite{ctx: ctx, w: ctxd.Write{Namespace: ns, Key: key}, seen: modRev, renewal: &d, gen: gen, done: make(chan struct{}), expires: time.Now().Add(s.opts.RequestTimeout)}
	s.groups.do(p)
	switch {
	case p.err == nil:
		return true, nil
	case errors.Is(p.err, errKeyMoved):
		return false, nil
	case errors.Is(p.err, errGenerationMoved):
		return false, errGoAlone
	case errors.Is(p.err, context.Canceled), errors.Is(p.err, context.DeadlineExceeded), errors.Is(p.err, errQueuedTooLong):
		// Never sent, but the lease was renewed (renew): the key may
		// live past the deadline its record says.
		return false, fmt.Errorf("%w: the key's lease was renewed, its deadline record not moved (%v): renew it again", ctxd.ErrOutcomeUnknown, p.err)
	}
	return false, p.err
}

// groupDeadline is the earliest of limit and the writes' expiry times:
// at least grouper.minLeft away when the group was taken.
func groupDeadline(limit time.Time, groups ...[]*groupWrite) time.Time {
	for _, g := range groups {
		for _, p := range g {
			if !p.expires.IsZero() && p.expires.Before(limit) {
				limit = p.expires
			}
		}
	}
	return limit
}
