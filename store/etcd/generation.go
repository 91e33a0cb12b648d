package etcd

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
)

// Generations: a full restore writes the restored data under a new data
// prefix, <prefix>g/<id>/, and then switches the pointer key
// <prefix>meta/gen to it in one etcd transaction, whatever the size of
// the data: every instance sees the switch on its watch at one revision.
// Every write compares the pointer's mod revision with the one its
// instance knows, so that no write lands in a generation after it was
// replaced (it is retried in the new one). Without a pointer key the data
// lives directly under the prefix: generation 0, the layout before
// restores existed.
const genKey = "meta/gen"

// isSwitch reports whether ev, an event of the instance's watch, is a
// full restore's switch: a put of the generation pointer.
func (s *Store) isSwitch(ev *clientv3.Event) bool {
	k := ev.Kv.Key
	return ev.Type == mvccpb.PUT && len(k) == len(s.opts.Prefix)+len(genKey) &&
		string(k[:len(s.opts.Prefix)]) == s.opts.Prefix && string(k[len(s.opts.Prefix):]) == genKey
}

// generation is one generation of a prefix's data.
type generation struct {
	// id names the generation (0: the prefix's original data); it is the
	// etcd revision at which its restore began, so every change of its
	// history is above it. It is the store's Generation().
	id uint64
	// rev is the pointer key's mod revision (0 for generation 0): every
	// write compares it, and the feed's history starts there.
	rev int64
	// from is the revision of the snapshot the generation was restored
	// from (0 for generation 0).
	from uint64
	keys dataKeys
}

// genPrefix is the data prefix of generation id under prefix.
func genPrefix(prefix string, id uint64) string {
	if id == 0 {
		return prefix
	}
	return prefix + "g/" + strconv.FormatUint(id, 10) + "/"
}

// encodeGeneration is the pointer key's value: "<id> <snapshot revision>".
func encodeGeneration(id, from uint64) string {
	return strconv.FormatUint(id, 10) + " " + strconv.FormatUint(from, 10)
}

// generationOf decodes the pointer key kv (nil: generation 0).
func generationOf(prefix string, kv *mvccpb.KeyValue) (*generation, error) {
	if kv == nil {
		return &generation{keys: dataKeys{prefix: prefix}}, nil
	}
	a, b, ok := strings.Cut(string(kv.Value), " ")
	id, err1 := strconv.ParseUint(a, 10, 64)
	from, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || id == 0 {
		return nil, fmt.Errorf("%s%s holds %q, not a ctxd generation", prefix, genKey, kv.Value)
	}
	return &generation{id: id, rev: kv.ModRevision, from: from, keys: dataKeys{prefix: genPrefix(prefix, id)}}, nil
}

// readGeneration reads the prefix's current generation.
func (s *Store) readGeneration(ctx context.Context) (*generation, error) {
	resp, err := s.cli.Get(ctx, s.opts.Prefix+genKey)
	if err != nil {
		return nil, err
	}
	return generationOf(s.opts.Prefix, firstKV(resp.Kvs))
}

// keys gives the etcd keys of the instance's current generation. Only
// the instance's watch moves it to a new one, at the pointer's revision.
type keys struct{ cur *atomic.Pointer[generation] }

func newKeys(g *generation) keys {
	k := keys{cur: new(atomic.Pointer[generation])}
	k.cur.Store(g)
	return k
}

func (k keys) gen() *generation      { return k.cur.Load() }
func (k keys) dir(dir string) string { return k.gen().keys.prefix + dir }

// Generation is the id of the data's generation: it changes when a full
// restore replaced the data (on every instance, at the same revision).
// It is the feed's (feed.switchTo): it moves with the committed mark to
// the restore's switch, so that a follower that sees a new one and then
// takes the mark has a mark at or past the switch.
func (s *Store) Generation() uint64 {
	s.feed.mu.Lock()
	defer s.feed.mu.Unlock()
	return s.feed.gen.id
}

// switchGeneration is the watch's: the pointer moved to g at its mod
// revision. The instance's reads and writes go to g at once; then the
// recent changes (of the replaced generation) are dropped, and the
// committed mark moves to the switch with the feed's generation
// (feed.switchTo), which wakes the followers: they see the new
// Generation and tell their clients "reset".
//
// It never moves back: a read may have moved the instance to a later
// switch (getCurrent, reloadGeneration) before its watch delivers an
// earlier one, whose generation the later restore replaced and deleted.
// A switch the instance is on already still moves the feed: the read
// that swapped may not have got there yet, and the watch pushes the
// changes after the switch right after this.
func (s *Store) switchGeneration(g *generation) {
	for {
		cur := s.keys.cur.Load()
		if g.rev <= cur.rev {
			s.feed.switchTo(g)
			return
		}
		if s.keys.cur.CompareAndSwap(cur, g) {
			break
		}
	}
	if f := s.afterGenerationSwap.Load(); f != nil {
		(*f)()
	}
	if s.cache != nil {
		s.cache.invalidate() // reads go to etcd until the watch fills it again
	}
	s.feed.switchTo(g)
}

// catchUpGeneration returns once the instance is on the generation the
// pointer switched to at rev (or a later one): normally its watch gets
// there; when the watch missed the switch (it was compacted away while
// the watch was disconnected), the pointer is read again.
func (s *Store) catchUpGeneration(ctx context.Context, rev int64) error {
	s.feed.waitFor(ctx, uint64(rev))
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.keys.gen().rev >= rev {
		return nil
	}
	return s.reloadGeneration(ctx)
}

// reloadGeneration reads the pointer and moves the instance to the
// generation it names when that is newer than the instance's.
func (s *Store) reloadGeneration(ctx context.Context) error {
	if s.failReloads.Load() > 0 && s.failReloads.Add(-1) >= 0 {
		return fmt.Errorf("%w: the generation's pointer not read (a test's failure)", ctxd.ErrUnavailable)
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	g, err := s.readGeneration(rctx)
	if err != nil {
		return readError(err)
	}
	if g.rev > s.keys.gen().rev {
		s.switchGeneration(g)
	}
	return nil
}

// movedPast reports whether the pointer had moved past g at rev: a full
// restore switched there that the instance's watch has not delivered
// yet. The instance then moves to the current generation
// (reloadGeneration).
func (s *Store) movedPast(ctx context.Context, g *generation, rev int64) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	resp, err := s.cli.Get(rctx, s.opts.Prefix+genKey, clientv3.WithKeysOnly(), clientv3.WithRev(rev))
	cancel()
	if err != nil {
		return false, err
	}
	if ptr := firstKV(resp.Kvs); ptr == nil || ptr.ModRevision <= g.rev {
		return false, nil
	}
	return true, s.reloadGeneration(ctx)
}

// readableAt is the error of a read at rev that etcd cannot be asked:
// one past etcd's revisions (int64: a larger one would wrap to a negative
// revision, which etcd reads as its head) is in the future; one below a
// full restore's switch, restoredError's.
func (s *Store) readableAt(rev uint64) error {
	if rev > math.MaxInt64 {
		return ctxd.FutureRevision(rev, s.Revision())
	}
	return s.restoredError(rev)
}

// restoredError is the error of a read at rev, or of a follower that
// resumes after rev, when a full restore replaced the data's history
// there; nil when rev is within the current generation.
func (s *Store) restoredError(rev uint64) error { return restoredErrorIn(s.keys.gen(), rev) }

// restoredErrorIn is restoredError's for an instance on generation g.
func restoredErrorIn(g *generation, rev uint64) error {
	if g.id == 0 || rev >= uint64(g.rev) {
		return nil
	}
	return &ctxd.CompactedError{Requested: rev, Compacted: uint64(g.rev), RestoredFrom: max(g.from, 1)}
}

// genCompare is the condition every write of generation g carries: the
// pointer has not moved.
func (s *Store) genCompare(g *generation) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(s.opts.Prefix+genKey), "=", g.rev)
}

// getCurrent reads at the head the range op builds in the keys of the
// current generation, with the generation's pointer beside it in one etcd
// transaction (read-only: a linearizable read). When the pointer moved
// past the instance's generation (a full restore through another instance,
// whose switch this instance's watch has not delivered yet), the instance
// moves to it and reads again: a direct read with the instance's
// generation alone read the replaced generation's keys, which the restore
// deletes, and keys acknowledged before the read read as missing.
func (s *Store) getCurrent(ctx context.Context, op func(k dataKeys) clientv3.Op) (*clientv3.GetResponse, dataKeys, error) {
	resps, g, err := s.getCurrentAll(ctx, 0, func(k dataKeys) []clientv3.Op { return []clientv3.Op{op(k)} })
	if err != nil {
		return nil, dataKeys{}, err
	}
	return resps[0], g.keys, nil
}

// getCurrentAll is getCurrent for several range ops read at one
// revision, with the generation they were read in: what a write that
// reads its key before it writes it (a patch, a keepalive) compares.
// With rev > 0 the ops read at rev (they say so themselves) and the
// pointer is read there too: the generation is the one in effect at rev
// (a read at a full restore's revision through an instance that has not
// seen its switch reads the restored keys), and a rev that a later
// restore replaced is restoredError's.
func (s *Store) getCurrentAll(ctx context.Context, rev int64, ops func(k dataKeys) []clientv3.Op) ([]*clientv3.GetResponse, *generation, error) {
	for range 3 {
		g := s.keys.gen()
		reads := ops(g.keys)
		resp, err := s.cli.Txn(ctx).Then(append(reads, clientv3.OpGet(s.opts.Prefix+genKey, clientv3.WithKeysOnly(), clientv3.WithRev(rev)))...).Commit()
		if err != nil {
			return nil, nil, err
		}
		if ptr := firstKV(resp.Responses[len(reads)].GetResponseRange().GetKvs()); ptr == nil || ptr.ModRevision <= g.rev {
			if err := restoredErrorIn(g, uint64(rev)); rev > 0 && err != nil {
				return nil, nil, err
			}
			out := make([]*clientv3.GetResponse, len(reads))
			for i := range reads {
				out[i] = (*clientv3.GetResponse)(resp.Responses[i].GetResponseRange())
			}
			return out, g, nil
		}
		if err := s.reloadGeneration(ctx); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("%w: the data's generation keeps changing (full restores one after the other): try again", ctxd.ErrUnavailable)
}
