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

// KeepAlive is not supported on etcd yet: expiring keys (etcd leases)
// are the next step of this backend (DESIGN.md).
func (s *Store) KeepAlive(context.Context, string, string, time.Duration, *uint64) (ctxd.Record, error) {
	return ctxd.Record{}, fmt.Errorf("keepalive: %w: expiring keys are not supported on etcd yet", ctxd.ErrNotSupported)
}

// refuseTTL refuses writes with a TTL: expiring keys are not supported on
// etcd yet.
func refuseTTL(writes []ctxd.Write) error {
	for _, w := range writes {
		if w.TTL > 0 {
			return fmt.Errorf("%s/%s: ttl: %w: expiring keys are not supported on etcd yet", w.Namespace, w.Key, ctxd.ErrNotSupported)
		}
	}
	return nil
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
	if err := refuseTTL(writes); err != nil {
		return ctxd.TxnResult{}, err
	}
	return s.commit(ctx, writes)
}

// Import is Txn without the limit on the number of writes; etcd's own
// limits on one transaction (--max-txn-ops, --max-request-bytes) still
// hold, and a larger import is refused with ctxd.ErrTooLarge.
func (s *Store) Import(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	limits := s.opts.Limits
	limits.MaxTxnOps = max(len(writes), 1)
	if err := limits.PrepareWrites(writes); err != nil {
		return ctxd.TxnResult{}, err
	}
	if err := refuseTTL(writes); err != nil {
		return ctxd.TxnResult{}, err
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
	if !slices.ContainsFunc(writes, func(w ctxd.Write) bool { return w.Op == ctxd.OpPatch }) {
		for {
			// A full restore that switched the generation first: the
			// write goes to the new one (generation.go).
			res, err := s.commitOnce(ctx, writes, nil)
			if !errors.Is(err, errGenerationMoved) {
				return res, err
			}
		}
	}
	// A patch is applied here, to the value read, and committed as a put
	// of its result on condition that the key was not written since
	// (its modification revision): when another write got there first,
	// read and apply again. Each round some writer wins, so concurrent
	// patches of one value all land, none lost.
	for {
		puts, seen, err := s.applyPatches(ctx, writes)
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		res, err := s.commitOnce(ctx, puts, seen)
		if !errors.Is(err, errPatchRaced) && !errors.Is(err, errGenerationMoved) {
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
// others). The checks come in the order bolt's writer makes them: the
// expected version, then that the key is live, then the patch.
func (s *Store) applyPatches(ctx context.Context, writes []ctxd.Write) ([]ctxd.Write, []int64, error) {
	out := slices.Clone(writes)
	seen := make([]int64, len(writes))
	for i := range out {
		w := &out[i]
		if w.Op != ctxd.OpPatch {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		resp, err := s.cli.Get(rctx, s.keys.live(w.Namespace, w.Key))
		cancel()
		if err != nil {
			return nil, nil, readError(err)
		}
		kv := firstKV(resp.Kvs)
		var have uint64
		if kv != nil {
			have = uint64(kv.Version)
		}
		if w.Expect != nil && *w.Expect != have {
			return nil, nil, &ctxd.ConflictError{Namespace: w.Namespace, Key: w.Key, Expected: *w.Expect, Current: have}
		}
		if kv == nil {
			return nil, nil, fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, ctxd.ErrNotFound)
		}
		env, err := decodeEnvelope(kv.Value)
		if err != nil {
			return nil, nil, fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, err)
		}
		v, err := patch.Apply(env.value, w.Patch, s.opts.Limits)
		if err != nil {
			return nil, nil, fmt.Errorf("patch %s/%s: %w", w.Namespace, w.Key, err)
		}
		w.Op, w.Value, w.Patch = ctxd.OpPut, v, ctxd.Patch{}
		seen[i] = kv.ModRevision
	}
	return out, seen, nil
}

// commitOnce commits writes (no patches) in one etcd transaction; seen,
// when set, adds for each write with seen[i] > 0 the condition that its
// key's modification revision is still seen[i] (errPatchRaced if not).
func (s *Store) commitOnce(ctx context.Context, writes []ctxd.Write, seen []int64) (ctxd.TxnResult, error) {
	if err := s.enter(); err != nil {
		return ctxd.TxnResult{}, err
	}
	defer s.inflight.Done()
	if err := ctx.Err(); err != nil {
		return ctxd.TxnResult{}, err
	}
	// Fail fast while etcd is unreachable: the client would hold the
	// write until the request timeout, and then its outcome would look
	// unknown although it was never sent.
	if state := s.cli.ActiveConnection().GetState(); state == connectivity.TransientFailure || state == connectivity.Shutdown {
		return ctxd.TxnResult{}, fmt.Errorf("%w: etcd at %v is unreachable (connection %s)", ctxd.ErrUnavailable, s.opts.Endpoints, state)
	}
	now := s.opts.Now().UTC()
	gen := s.keys.gen()
	cmps := []clientv3.Cmp{s.genCompare(gen)}
	gets := make([]clientv3.Op, len(writes))
	var ops []clientv3.Op
	for i, w := range writes {
		k := gen.keys.live(w.Namespace, w.Key)
		if w.Expect != nil {
			cmps = append(cmps, clientv3.Compare(clientv3.Version(k), "=", int64(*w.Expect)))
		}
		if seen != nil && seen[i] > 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", seen[i]))
		}
		gets[i] = clientv3.OpGet(k, clientv3.WithKeysOnly())
		env := envelope{who: w.Who, time: now}
		switch w.Op {
		case ctxd.OpPut:
			env.value = w.Value
			ops = append(ops, clientv3.OpPut(k, string(env.encode())))
		case ctxd.OpDelete:
			cmps = append(cmps, clientv3.Compare(clientv3.Version(k), ">", 0))
			ops = append(ops, clientv3.OpDelete(k), clientv3.OpPut(gen.keys.tomb(w.Namespace, w.Key), string(env.encode())))
		}
	}
	wctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	started := time.Now()
	elseGets := append(slices.Clone(gets), clientv3.OpGet(s.opts.Prefix+genKey, clientv3.WithKeysOnly()))
	resp, err := s.cli.Txn(wctx).If(cmps...).Then(append(gets, ops...)...).Else(elseGets...).Commit()
	s.stats.requests.Add(1)
	if err != nil {
		return ctxd.TxnResult{}, writeError(err, true)
	}
	if !resp.Succeeded {
		if kv := firstKV(resp.Responses[len(writes)].GetResponseRange().GetKvs()); kv != nil && kv.ModRevision != gen.rev {
			// Nothing was written: switch to the new generation, and
			// write there.
			if err := s.catchUpGeneration(ctx, kv.ModRevision); err != nil {
				return ctxd.TxnResult{}, err
			}
			return ctxd.TxnResult{}, errGenerationMoved
		}
		return ctxd.TxnResult{}, failedCheck(writes, seen, resp.Responses)
	}
	rev := uint64(resp.Header.Revision)
	s.stats.commits.Add(1)
	s.stats.changes.Add(uint64(len(writes)))
	s.stats.commit.Add(int64(time.Since(started)))
	res := ctxd.TxnResult{Revision: rev, Records: make([]ctxd.Record, len(writes))}
	for i, w := range writes {
		prev := firstKV(resp.Responses[i].GetResponseRange().GetKvs())
		r := ctxd.Record{Namespace: w.Namespace, Key: w.Key, ModRev: rev, Who: w.Who, UpdatedAt: now}
		switch {
		case w.Op == ctxd.OpDelete:
			r.Version, r.CreateRev = uint64(prev.Version), uint64(prev.CreateRevision)
		case prev != nil:
			r.Value, r.Version, r.CreateRev = w.Value, uint64(prev.Version)+1, uint64(prev.CreateRevision)
		default:
			r.Value, r.Version, r.CreateRev = w.Value, 1, rev
		}
		res.Records[i] = r
	}
	// The write is durable: waiting for the watch is for read-your-writes
	// on the feed, and bounded by the caller's patience.
	s.feed.waitFor(ctx, rev)
	return res, nil
}

// failedCheck finds the first write whose check failed, in order, from
// the else branch's reads.
func failedCheck(writes []ctxd.Write, seen []int64, responses []*etcdserverpb.ResponseOp) error {
	for i, w := range writes {
		var have uint64
		var modRev int64
		if kv := firstKV(responses[i].GetResponseRange().GetKvs()); kv != nil {
			have, modRev = uint64(kv.Version), kv.ModRevision
		}
		if seen != nil && seen[i] > 0 && modRev != seen[i] {
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
	}
	// Every check holds now: the key moved between etcd's compare and its
	// read, which one transaction does not allow.
	return fmt.Errorf("%w: etcd refused the transaction's checks, yet they hold", ctxd.ErrUnavailable)
}

func firstKV(kvs []*mvccpb.KeyValue) *mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}
