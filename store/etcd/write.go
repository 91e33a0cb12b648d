package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
	"github.com/framework0/ctxd/store"
)

// Put sets a key's value. With expect non-nil it applies only if the key's
// version equals *expect (0: the key must not exist).
func (s *Store) Put(ctx context.Context, ns, key string, value json.RawMessage, expect *uint64, who string) (ctxd.Record, error) {
	return store.WriteOne(ctx, s.Txn, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpPut, Value: value, Expect: expect, Who: who})
}

// Patch applies p to a live key's value as it is when the write commits,
// and stores the result as a put (see commit: a compare-and-swap on the
// key's modification revision, retried when another write got there
// first).
func (s *Store) Patch(ctx context.Context, ns, key string, p ctxd.Patch, expect *uint64, who string) (ctxd.Record, error) {
	return store.WriteOne(ctx, s.Txn, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpPatch, Patch: p, Expect: expect, Who: who})
}

// Delete ends a key's life. It returns the deleted key's last version,
// with ModRev set to the delete's revision and a nil value.
func (s *Store) Delete(ctx context.Context, ns, key string, expect *uint64, who string) (ctxd.Record, error) {
	return store.WriteOne(ctx, s.Txn, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpDelete, Expect: expect, Who: who})
}

// Txn applies writes all or nothing, in one etcd transaction: every
// change gets the transaction's one revision.
func (s *Store) Txn(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	if err := s.opts.Limits.PrepareWrites(writes); err != nil {
		return ctxd.TxnResult{}, err
	}
	if err := s.checkTTLs(writes); err != nil {
		return ctxd.TxnResult{}, err
	}
	return s.commit(ctx, writes)
}

// checkTTLs refuses writes whose TTL etcd cannot honour (checkTTL).
func (s *Store) checkTTLs(writes []ctxd.Write) error {
	for _, w := range writes {
		if w.TTL > 0 {
			if err := s.checkTTL(w.Namespace, w.Key, w.TTL); err != nil {
				return err
			}
		}
	}
	return nil
}

// Import is Txn checked against ctxd.Limits.ForImport (no limit on the
// number of writes, no limits.min_ttl: an imported TTL is what remained of
// a dumped deadline); etcd's own limits on one transaction
// (--max-txn-ops, --max-request-bytes) still hold, and a larger import is
// refused with ctxd.ErrTooLarge. A remaining TTL below etcd's minimum
// lease TTL is raised to it: the key expires that much later, never
// earlier.
func (s *Store) Import(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	if err := s.opts.Limits.ForImport(len(writes)).PrepareWrites(writes); err != nil {
		return ctxd.TxnResult{}, err
	}
	for i := range writes {
		if w := &writes[i]; w.TTL > 0 && w.TTL < s.MinTTL() {
			w.TTL = s.MinTTL()
		}
	}
	return s.commit(ctx, writes)
}

// commit makes validated writes one etcd transaction:
//
//	if   version(k_i) = expect_i           for each write with an expected version
//	     version(k_i) > 0                  for each delete (it must exist)
//	then get(k_i) (keys only), for every write, before any change: the state replaced
//	     put(k_i, envelope) | delete(k_i), put(t_i, envelope)
//	else get(k_i) (keys only): which compare failed, and the current version
//
// One round trip, and nothing to retry: the compares are the checks. The
// answer returns once etcd has the transaction in a quorum's log, and
// after this instance's watch has seen it, so that the instance's feed
// and committed mark include every write it acknowledged.
func (s *Store) commit(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	s.stats.requests.Add(1) // once, however many transactions it takes
	res, err := s.commitWrites(ctx, writes)
	if errors.Is(err, ctxd.ErrInsufficientStorage) { // etcd's NOSPACE alarm (writeError)
		s.stats.quotaRefused.Add(1)
	}
	return res, err
}

// commitWrites is commit's work: grouped, alone, or patches applied first.
func (s *Store) commitWrites(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	if s.groups != nil && groupable(writes) {
		for {
			res, err := s.commitGrouped(ctx, writes[0], 0, deadline{})
			switch {
			case errors.Is(err, errGoAlone):
				return s.commitAlone(ctx, writes)
			case !errors.Is(err, errGenerationMoved):
				return res, err
			}
		}
	}
	if !slices.ContainsFunc(writes, func(w ctxd.Write) bool { return w.Op == ctxd.OpPatch }) {
		return s.commitAlone(ctx, writes)
	}
	// A patch is applied here, to the value read, and committed as a put
	// of its result on condition that the key was not written since
	// (its modification revision): when another write got there first,
	// read and apply again. Each round some writer wins, so concurrent
	// patches of one value all land, none lost. A single patch joins a
	// group (group.go).
	grouped := s.groups != nil && len(writes) == 1
	if len(writes) == 1 {
		leave, err := s.patches.enter(ctx, writes[0].Namespace, writes[0].Key, s.opts.RequestTimeout)
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		defer leave()
	}
	for round := 0; ; round++ {
		puts, seen, kept, err := s.applyPatches(ctx, writes, round == 0)
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		var res ctxd.TxnResult
		if grouped {
			res, err = s.commitGrouped(ctx, puts[0], seen[0], kept[0])
		}
		if !grouped || errors.Is(err, errGoAlone) {
			res, err = s.commitOnce(ctx, puts, seen, kept)
		}
		if !errors.Is(err, errPatchRaced) && !errors.Is(err, errGenerationMoved) {
			return res, err
		}
		s.stats.patchRetries.Add(1)
	}
}

// commitAlone commits writes (no patches) in a transaction of their own.
func (s *Store) commitAlone(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	for {
		// A full restore that switched the generation first: the write
		// goes to the new one (generation.go).
		res, err := s.commitOnce(ctx, writes, nil, nil)
		if !errors.Is(err, errGenerationMoved) {
			return res, err
		}
	}
}

// errPatchRaced: a patched key was written between the read its patch
// was applied to and the commit.
var errPatchRaced = errors.New("a patched key changed before the commit")

// errGenerationMoved: a full restore switched the data to a new
// generation before the commit, which wrote nothing.
var errGenerationMoved = errors.New("a full restore replaced the data before the commit")

// applyPatches returns writes with each patch replaced by the put of its
// result on the key's current value, and for each patched write the
// modification revision of the value it was applied to (0 for the
// others) and, for an expiring key, its lease and deadline, which the
// put keeps, with the revision of the deadline record it was read from
// (the commit requires the record unchanged: a keepalive moves it without
// moving the key). The checks come in the order bolt's writer makes them:
// the expected version, then that the key is live, then the patch.
//
// With fromCache, a key the read cache holds (an expiring one with its
// deadline record) is read from the cache without waiting for it to be
// current: the commit's compares on the modification revisions refuse a
// value or deadline the cache had not brought up to date (errPatchRaced),
// and the next round reads etcd.
// Only a patch that applies to the cached value is taken from it: any
// check that fails there is made again on etcd's value, whose answer is
// exact.
//
// The patches share one patch.Budget, new for each round: their work
// together is what one patch may do, however many the transaction holds.
func (s *Store) applyPatches(ctx context.Context, writes []ctxd.Write, fromCache bool) ([]ctxd.Write, []int64, []deadline, error) {
	out := slices.Clone(writes)
	seen := make([]int64, len(writes))
	kept := make([]deadline, len(writes))
	var budget patch.Budget
	for i := range out {
		w := &out[i]
		if w.Op != ctxd.OpPatch {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		if fromCache && s.cache != nil {
			if v, md, d, ok := s.cache.patched(*w, s.opts.Limits, &budget); ok {
				w.Op, w.Value, w.Patch = ctxd.OpPut, v, ctxd.Patch{}
				seen[i], kept[i] = md, d
				continue
			}
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		// In the current generation: the instance's watch may not have
		// delivered a full restore's switch yet (getCurrent).
		resps, _, err := s.getCurrentAll(rctx, 0, func(k dataKeys) []clientv3.Op {
			return []clientv3.Op{clientv3.OpGet(k.live(w.Namespace, w.Key)), clientv3.OpGet(k.dead(w.Namespace, w.Key))}
		})
		cancel()
		if err != nil {
			return nil, nil, nil, readError(err)
		}
		kv := firstKV(resps[0].Kvs)
		var have uint64
		if kv != nil {
			have = uint64(kv.Version)
		}
		if w.Expect != nil && *w.Expect != have {
			return nil, nil, nil, &ctxd.ConflictError{Namespace: w.Namespace, Key: w.Key, Expected: *w.Expect, Current: have}
		}
		if kv == nil {
			return nil, nil, nil, fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, ctxd.ErrNotFound)
		}
		env, err := decodeEnvelope(kv.Value)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, err)
		}
		v, err := budget.Apply(env.value, w.Patch, s.opts.Limits)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, err)
		}
		w.Op, w.Value, w.Patch = ctxd.OpPut, v, ctxd.Patch{}
		seen[i] = kv.ModRevision
		if kv.Lease != 0 {
			// The put's deadline, unless a keepalive moved it since.
			kept[i] = deadline{lease: clientv3.LeaseID(kv.Lease), at: env.expiresAt}
			if dkv := firstKV(resps[1].Kvs); dkv != nil && dkv.Lease == kv.Lease {
				if d, err := decodeDeadline(dkv.Value); err == nil {
					d.recordRev = dkv.ModRevision
					kept[i] = d
				}
			}
		}
	}
	return out, seen, kept, nil
}

// commitOnce commits writes (no patches) in one etcd transaction; seen,
// when set, adds for each write with seen[i] > 0 the condition that its
// key's modification revision is still seen[i] (errPatchRaced if not),
// and kept[i], when it has a lease, is the lease and deadline a patched
// expiring key keeps.
//
// A put with a TTL is the key on a lease granted for it, with its
// deadline record (deadDir) on the same lease and its tombstone armed
// (History's sign that the key's life ended by expiry): three puts. The
// lease the key had before, if any (its deadline record tells, read in
// the transaction), is revoked once the write applied.
func (s *Store) commitOnce(ctx context.Context, writes []ctxd.Write, seen []int64, kept []deadline) (ctxd.TxnResult, error) {
	if err := s.beginWrite(ctx); err != nil {
		return ctxd.TxnResult{}, err
	}
	defer s.inflight.Done()
	// The time is taken before the leases are granted: etcd's lessor
	// counts a lease's TTL from its grant, so a key never expires before
	// the deadline it is given.
	now := s.opts.Now().UTC()
	granted, err := s.grantLeases(ctx, writes)
	if err != nil {
		return ctxd.TxnResult{}, err
	}
	gen := s.keys.gen()
	t := s.buildTxn(gen, writes, now, granted, seen, kept)
	wctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	started := time.Now()
	resp, err := s.cli.Txn(wctx).If(t.cmps...).Then(t.ops...).Else(t.elseGets...).Commit()
	s.stats.transactions.Add(1)
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// A patched key's lease ended (the key expired) since it
			// was read: read it again.
			s.revokeGranted(granted)
			return ctxd.TxnResult{}, errPatchRaced
		}
		// A transaction that may have applied keeps its leases (they
		// end at their TTL when it did not); one etcd refused (too
		// large, no space, no leader, ...) gives them back: a client
		// retrying it would otherwise add a lease each time, held up to
		// limits.max_ttl.
		err = writeError(err, true)
		if !errors.Is(err, ctxd.ErrOutcomeUnknown) {
			s.revokeGranted(granted)
		}
		return ctxd.TxnResult{}, err
	}
	if !resp.Succeeded {
		s.revokeGranted(granted)
		if moved := movedGeneration(gen, t, resp); moved != 0 {
			// Nothing was written: switch to the new generation, and
			// write there.
			if err := s.catchUpGeneration(ctx, moved); err != nil {
				return ctxd.TxnResult{}, err
			}
			return ctxd.TxnResult{}, errGenerationMoved
		}
		return ctxd.TxnResult{}, failedCheck(writes, seen, t, resp.Responses)
	}
	rev := uint64(resp.Header.Revision)
	s.committed(1, len(writes), started)
	res := ctxd.TxnResult{Revision: rev, Records: s.records(writes, t, resp, rev, now)}
	// The write is committed: waiting for the watch is for read-your-writes
	// on the feed, within the request timeout (wctx). A watch stalled on
	// a member that stopped answering (paused, cut off: until gRPC's
	// keepalive notices) would otherwise hold the answer for as long as
	// the member is away (TestClusterPausedProcesses found such writes
	// unanswered after 6 s); the feed delivers the change once the watch
	// catches up.
	s.feed.waitFor(wctx, rev)
	return res, nil
}

// beginWrite admits a write, counted in flight (the caller ends it with
// s.inflight.Done) unless it fails: the store is open, the write's
// context live, and etcd reachable. While etcd is unreachable it fails
// fast: the client would hold the write until the request timeout, and
// then its outcome would look unknown although it was never sent.
func (s *Store) beginWrite(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	err := ctx.Err()
	if err == nil {
		err = s.unreachable()
	}
	if err != nil {
		s.inflight.Done()
	}
	return err
}

// unreachable is an error matching ctxd.ErrUnavailable while the etcd
// client has no connection to send on (it failed to connect, or is shut
// down): a request would wait for the request timeout to fail.
func (s *Store) unreachable() error {
	if state := s.cli.ActiveConnection().GetState(); state == connectivity.TransientFailure || state == connectivity.Shutdown {
		return fmt.Errorf("%w: etcd at %v is unreachable (connection %s)", ctxd.ErrUnavailable, s.opts.Endpoints, state)
	}
	return nil
}

// txnOps is one etcd transaction of writes:
//
//	if   mod_revision(meta/gen) = gen      the generation written to is current
//	     version(k_i) = expect_i           for each write with an expected version
//	     mod_revision(k_i) = seen_i        for each patched write
//	     mod_revision(d_i) = kept_i        for each patched expiring key: its deadline record as read
//	     version(k_i) > 0                  for each delete (it must exist)
//	then put(k_i, envelope) | delete(k_i), put(t_i, envelope), each key's op with prev_kv
//	else get(k_i) (keys only), get(meta/gen), get(d_i) (keys only): which compare failed, and the current version
type txnOps struct {
	cmps          []clientv3.Cmp
	ops, elseGets []clientv3.Op
	// keyOps[i] is the index in ops of write i's own op on its key.
	keyOps []int
	// leases[i] is the lease and deadline write i's key is put on.
	leases []deadline
	// recordGets[i] is the index in elseGets of the read of write i's
	// deadline record, when its commit compares it (0: none).
	recordGets []int
}

// buildTxn makes the transaction of writes in generation gen, stamped
// now; granted, seen and kept (each may be nil) are commitOnce's.
func (s *Store) buildTxn(gen *generation, writes []ctxd.Write, now time.Time, granted []deadline, seen []int64, kept []deadline) txnOps {
	t := txnOps{
		cmps:       []clientv3.Cmp{s.genCompare(gen)},
		elseGets:   make([]clientv3.Op, len(writes), len(writes)+1),
		keyOps:     make([]int, len(writes)),
		leases:     make([]deadline, len(writes)),
		ops:        make([]clientv3.Op, 0, len(writes)),
		recordGets: make([]int, len(writes)),
	}
	var recordGets []clientv3.Op
	// The key's own op of each write, first of its ops, carries the key's
	// previous state (prev_kv): its version and create revision for the
	// answer, and its lease, revoked once no key needs it. One op per put
	// instead of a put and two reads: etcd applies fewer ops per write.
	for i, w := range writes {
		k := gen.keys.live(w.Namespace, w.Key)
		if w.Expect != nil {
			t.cmps = append(t.cmps, clientv3.Compare(clientv3.Version(k), "=", int64(*w.Expect)))
		}
		if seen != nil && seen[i] > 0 {
			t.cmps = append(t.cmps, clientv3.Compare(clientv3.ModRevision(k), "=", seen[i]))
		}
		t.elseGets[i] = clientv3.OpGet(k, clientv3.WithKeysOnly())
		t.keyOps[i] = len(t.ops)
		env := envelope{who: w.Who, time: now}
		switch w.Op {
		case ctxd.OpPut:
			env.value = w.Value
			switch {
			case granted != nil && granted[i].lease != clientv3.NoLease:
				d := granted[i]
				d.at = now.Add(time.Duration(d.ttlSeconds) * time.Second)
				t.leases[i], env.expiresAt = d, d.at
				armed := envelope{who: ctxd.WhoTTL, time: now, expiresAt: d.at}
				t.ops = append(t.ops, clientv3.OpPut(k, string(env.encode()), clientv3.WithLease(d.lease), clientv3.WithPrevKV()),
					clientv3.OpPut(gen.keys.dead(w.Namespace, w.Key), string(d.encode()), clientv3.WithLease(d.lease)),
					clientv3.OpPut(gen.keys.tomb(w.Namespace, w.Key), string(armed.encode())))
			case kept != nil && kept[i].lease != clientv3.NoLease:
				t.leases[i], env.expiresAt = kept[i], kept[i].at
				t.ops = append(t.ops, clientv3.OpPut(k, string(env.encode()), clientv3.WithLease(kept[i].lease), clientv3.WithPrevKV()))
				if rev := kept[i].recordRev; rev > 0 {
					d := gen.keys.dead(w.Namespace, w.Key)
					t.cmps = append(t.cmps, clientv3.Compare(clientv3.ModRevision(d), "=", rev))
					t.recordGets[i] = len(writes) + 1 + len(recordGets)
					recordGets = append(recordGets, clientv3.OpGet(d, clientv3.WithKeysOnly()))
				}
			default:
				t.ops = append(t.ops, clientv3.OpPut(k, string(env.encode()), clientv3.WithPrevKV()))
			}
		case ctxd.OpDelete:
			t.cmps = append(t.cmps, clientv3.Compare(clientv3.Version(k), ">", 0))
			t.ops = append(t.ops, clientv3.OpDelete(k, clientv3.WithPrevKV()), clientv3.OpPut(gen.keys.tomb(w.Namespace, w.Key), string(env.encode())))
		}
	}
	t.elseGets = append(t.elseGets, clientv3.OpGet(s.opts.Prefix+genKey, clientv3.WithKeysOnly()))
	t.elseGets = append(t.elseGets, recordGets...)
	return t
}

// movedGeneration is the generation pointer's modification revision when
// a transaction of t failed because a full restore switched the
// generation (0 when it did not).
func movedGeneration(gen *generation, t txnOps, resp *clientv3.TxnResponse) int64 {
	if kv := firstKV(resp.Responses[len(t.keyOps)].GetResponseRange().GetKvs()); kv != nil && kv.ModRevision != gen.rev {
		return kv.ModRevision
	}
	return 0
}

// records are the answers of writes committed by t at rev, from the
// key ops' previous states; a lease the write replaced is revoked.
func (s *Store) records(writes []ctxd.Write, t txnOps, resp *clientv3.TxnResponse, rev uint64, now time.Time) []ctxd.Record {
	recs := make([]ctxd.Record, len(writes))
	for i, w := range writes {
		prev := previous(resp.Responses[t.keyOps[i]])
		r := ctxd.Record{Namespace: w.Namespace, Key: w.Key, ModRev: rev, Who: w.Who, UpdatedAt: now, ExpiresAt: t.leases[i].at}
		if prev != nil && prev.Lease != 0 && clientv3.LeaseID(prev.Lease) != t.leases[i].lease {
			// The key's old lease holds nothing this write keeps: its
			// deadline record at most, which ends with it.
			s.revokeLater(clientv3.LeaseID(prev.Lease))
		}
		switch {
		case w.Op == ctxd.OpDelete:
			r.Version, r.CreateRev = uint64(prev.Version), uint64(prev.CreateRevision)
		case prev != nil:
			r.Value, r.Version, r.CreateRev = w.Value, uint64(prev.Version)+1, uint64(prev.CreateRevision)
		default:
			r.Value, r.Version, r.CreateRev = w.Value, 1, rev
		}
		recs[i] = r
	}
	return recs
}

// failedCheck finds the first write whose check failed, in order, from
// the else branch's reads.
func failedCheck(writes []ctxd.Write, seen []int64, t txnOps, responses []*etcdserverpb.ResponseOp) error {
	for i, w := range writes {
		var seenRev int64
		if seen != nil {
			seenRev = seen[i]
		}
		if err := t.failureOf(i, w, seenRev, responses); err != nil {
			return err
		}
	}
	return errChecksHold
}

// errChecksHold: etcd refused a transaction whose checks all hold in its
// else branch's reads: the key moved between etcd's compare and its read,
// which one transaction does not allow.
var errChecksHold = fmt.Errorf("%w: etcd refused the transaction's checks, yet they hold", ctxd.ErrUnavailable)

// failureOf is why write i (w) of t failed its checks, from the else
// branch's reads (nil: they hold); seen is as checkFailure's.
func (t txnOps) failureOf(i int, w ctxd.Write, seen int64, responses []*etcdserverpb.ResponseOp) error {
	if err := checkFailure(w, seen, responses[i]); err != nil {
		return err
	}
	if g := t.recordGets[i]; g > 0 {
		var rev int64
		if kv := firstKV(responses[g].GetResponseRange().GetKvs()); kv != nil {
			rev = kv.ModRevision
		}
		if rev != t.leases[i].recordRev {
			// A keepalive moved the key's deadline since it was read
			// (or the key expired): the patch is applied again.
			return errPatchRaced
		}
	}
	return nil
}

// checkFailure is why write w's check failed, from the else branch's read
// of its key (nil: it holds); seen is the modification revision a patch
// was applied to (0: not a patch).
func checkFailure(w ctxd.Write, seen int64, read *etcdserverpb.ResponseOp) error {
	var have uint64
	var modRev int64
	if kv := firstKV(read.GetResponseRange().GetKvs()); kv != nil {
		have, modRev = uint64(kv.Version), kv.ModRevision
	}
	if seen > 0 && modRev != seen {
		// Before the expected version: the patch is applied again
		// to the new value, whose version is then checked.
		return errPatchRaced
	}
	if w.Expect != nil && *w.Expect != have {
		return &ctxd.ConflictError{Namespace: w.Namespace, Key: w.Key, Expected: *w.Expect, Current: have}
	}
	if w.Op == ctxd.OpDelete && have == 0 {
		return fmt.Errorf("delete %s/%s: %w", w.Namespace, w.Key, ctxd.ErrNotFound)
	}
	return nil
}

// previous is the key's state before a put or delete with prev_kv, nil
// when it had none.
func previous(r *etcdserverpb.ResponseOp) *mvccpb.KeyValue {
	if p := r.GetResponsePut(); p != nil {
		return p.PrevKv
	}
	return firstKV(r.GetResponseDeleteRange().GetPrevKvs())
}

func firstKV(kvs []*mvccpb.KeyValue) *mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}
