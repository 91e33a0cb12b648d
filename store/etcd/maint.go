package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

func errorsIsCompacted(err error) bool { return errors.Is(err, ctxd.ErrCompacted) }

// compactedRevisionNow is etcd's compaction mark, read with a request
// timeout of its own.
func (s *Store) compactedRevisionNow(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	return s.compactedRevision(ctx)
}

// Status summarises the prefix: the revision and compaction mark, the
// keys and namespaces, and etcd's database size as reported by the first
// member that answers (the whole cluster's data, every prefix). The keys
// and namespaces are the read cache's counts, at its revision, while it
// is ready; otherwise they are counted from etcd (namespacesAt), in the
// generation the pointer names (movedPast), as are the last restore and
// the compaction mark then. Counted from etcd on every status, 2
// requests per namespace, /readyz and every scrape took seconds at a
// thousand namespaces and failed at 5,000.
func (s *Store) Status() (ctxd.Status, error) {
	rc := s.ReadCache()
	st := ctxd.Status{Revision: s.Revision(), SchemaVersion: envelopeFormat,
		Path:      "etcd://" + strings.Join(s.opts.Endpoints, ",") + s.opts.Prefix,
		ReadCache: rc.status(s.cache == nil)}
	if rc.Ready {
		st.Keys, st.Namespaces = uint64(rc.Keys), rc.Namespaces
	}
	g := s.keys.gen() // one generation for every field, though a restore may switch it meanwhile
	err := s.read(func(ctx context.Context) error {
		if !rc.Ready {
			// Counted from etcd, in the current generation: the
			// instance's watch may not have delivered a full restore's
			// switch yet, whose restorer deletes the replaced keys
			// (counted there, the status said 0 keys, or the replaced
			// data's counts). movedPast catches the instance up.
			moved, err := s.movedPast(ctx, g, 0)
			if err != nil {
				return err
			}
			if moved {
				g = s.keys.gen()
			}
		}
		// The compaction mark, etcd's database size and its alarms, from
		// the first member that answers them all: sent where round robin
		// sent them, a status (and a /metrics scrape) sent to a member
		// silent with its connection open (paused, overloaded) waited the
		// request timeout while the others answered.
		m, err := firstMember(ctx, s, func(ctx context.Context, conn *grpc.ClientConn) (memberState, error) {
			var m memberState
			var err error
			if m.compacted, err = s.compactedRevisionFrom(ctx, clientv3.NewKVFromKVClient(etcdserverpb.NewKVClient(conn), s.cli)); err != nil {
				return m, err
			}
			mt := clientv3.NewMaintenanceFromMaintenanceClient(etcdserverpb.NewMaintenanceClient(conn), s.cli)
			if m.status, err = mt.Status(ctx, ""); err != nil {
				return m, err
			}
			m.alarms, err = mt.AlarmList(ctx)
			return m, err
		})
		if err != nil {
			return err
		}
		st.CompactedRevision = m.compacted
		if g.id != 0 {
			// History starts at the restore (restoredError), whatever
			// etcd's own mark.
			st.CompactedRevision = max(st.CompactedRevision, uint64(g.rev))
		}
		if !rc.Ready {
			ns, err := s.namespacesAt(ctx, g.keys, 0)
			if err != nil {
				return err
			}
			st.Namespaces = len(ns)
			for _, n := range ns {
				st.Keys += n.Keys
			}
		}
		if g.id != 0 {
			// Every revision below the switch is discarded (restoredError).
			st.LastRestore = &ctxd.RestoreMark{Revision: uint64(g.rev), SnapshotRevision: g.from, DiscardedFrom: 1}
		}
		ms := m.status
		st.DBSizeBytes, st.FileSizeBytes, st.InUseBytes = ms.DbSize, ms.DbSize, ms.DbSizeInUse
		// etcd's quota counts its file, free pages too (what a defrag
		// gives back).
		st.QuotaBytes, st.UsedBytes = ms.DbSizeQuota, ms.DbSize
		for _, a := range m.alarms.Alarms {
			if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
				st.QuotaAlarm = spaceAlarm
			}
		}
		return nil
	})
	return st, err
}

// memberState is what Status asks one member (firstMember): the
// compaction mark, the member's status (etcd's database size) and the
// cluster's alarms.
type memberState struct {
	compacted uint64
	status    *clientv3.StatusResponse
	alarms    *clientv3.AlarmResponse
}

// spaceAlarm is what a write refused for etcd's space quota answers, and
// the status's alarm meanwhile: what happened and what to do.
const spaceAlarm = "etcd's database is full: it passed its space quota (etcd's --quota-backend-bytes) and raised its NOSPACE alarm; " +
	"until the alarm is disarmed etcd refuses every write, deletes too (a ctxd delete writes a tombstone), while reads work. " +
	"To write again: compact etcd's history (POST /v1/compact, or etcdctl compact), defragment each member (etcdctl defrag), " +
	"then disarm the alarm (etcdctl alarm disarm); or raise --quota-backend-bytes on every member"

// CompactKeep compacts etcd's history below rev: etcd keeps, for every
// key, the change in effect at rev, and only that. keep above 1 has no
// etcd equivalent: ctxd.ErrNotSupported. The compaction is the whole
// cluster's, every prefix's. Removed counts this prefix's changes that
// went, from a replay of the history being compacted.
func (s *Store) CompactKeep(ctx context.Context, rev uint64, keep int) (ctxd.CompactResult, error) {
	if rev == 0 {
		return ctxd.CompactResult{}, ctxd.Invalidf("there is no revision 0")
	}
	if keep > 1 {
		return ctxd.CompactResult{}, fmt.Errorf("compaction keeping %d changes per key: %w (etcd keeps the change in effect at the mark)", keep, ctxd.ErrNotSupported)
	}
	if err := s.enter(); err != nil {
		return ctxd.CompactResult{}, err
	}
	defer s.inflight.Done()
	if err := s.unreachable(); err != nil {
		return ctxd.CompactResult{}, err // at once, as writes
	}
	return s.compact(ctx, rev)
}

func (s *Store) compact(ctx context.Context, rev uint64) (ctxd.CompactResult, error) {
	mark := s.Revision()
	if rev > mark {
		return ctxd.CompactResult{}, ctxd.FutureRevision(rev, mark)
	}
	old, err := s.compactedRevisionNow(ctx)
	if err != nil {
		return ctxd.CompactResult{}, readError(err)
	}
	if g := s.keys.gen(); g.id != 0 {
		// History starts at the last restore (restoredError), as Status
		// says: below it there is nothing of this prefix to remove, though
		// etcd's own history goes further down.
		old = max(old, uint64(g.rev))
	}
	if rev <= old {
		return ctxd.CompactResult{Revision: old}, nil
	}
	removed, err := s.countRemoved(ctx, max(old, 1), rev, mark)
	switch {
	case errors.Is(err, ctxd.ErrCompacted):
		// etcd's own compaction took part of the history meanwhile: what
		// is left goes, uncounted.
		removed = 0
	case err != nil:
		return ctxd.CompactResult{}, readError(err)
	}
	if s.beforeCompact != nil {
		s.beforeCompact()
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	if _, err := s.cli.Compact(cctx, int64(rev), clientv3.WithCompactPhysical()); err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return s.compactedMeanwhile(ctx, rev)
		}
		if errors.Is(err, rpctypes.ErrPermissionDenied) {
			return ctxd.CompactResult{}, fmt.Errorf("compaction on etcd: %w: etcd compacts the whole cluster, every prefix, "+
				"and allows it only to users of its root role, which ctxd's etcd user (etcd.username) does not have; "+
				"compact with etcd's --auto-compaction-mode and --auto-compaction-retention (or etcdctl compact), "+
				"and set history.keep_versions: 0 so that ctxd does not try", ctxd.ErrNotSupported)
		}
		return ctxd.CompactResult{}, writeError(err, true)
	}
	s.sawCompacted(rev)
	s.stats.compactions.Add(1)
	s.stats.compacted.Add(uint64(removed))
	return ctxd.CompactResult{Revision: rev, Removed: removed}, nil
}

// compactedMeanwhile answers a compaction at rev that etcd's own
// compaction (its --auto-compaction, etcdctl compact) overtook, at rev or
// past it: what it asked for is done, by the other, and this one removed
// nothing.
func (s *Store) compactedMeanwhile(ctx context.Context, rev uint64) (ctxd.CompactResult, error) {
	now, err := s.compactedRevisionNow(ctx)
	if err != nil {
		return ctxd.CompactResult{}, readError(err)
	}
	s.sawCompacted(now)
	return ctxd.CompactResult{Revision: max(now, rev)}, nil
}

// countRemoved counts the prefix's changes that compacting from `from`
// (the old mark) to `to` removes: for each key with changes in
// [from, to], all but the one in effect at `to` (none, when that is a
// delete before `to`), and the change in effect at `from` that they
// replaced.
func (s *Store) countRemoved(ctx context.Context, from, to, mark uint64) (int, error) {
	type keyChanges struct {
		n        int
		last     ctxd.Change
		replaced bool
	}
	perKey := map[string]*keyChanges{}
	err := s.eachRevision(ctx, from-1, mark, func(rc revisionChanges) bool {
		if rc.rev > to {
			return false
		}
		for _, c := range rc.changes {
			id := c.Namespace + "/" + c.Key
			k := perKey[id]
			if k == nil {
				k = &keyChanges{replaced: c.PrevRev > 0 && c.PrevRev < from}
				perKey[id] = k
			}
			k.n++
			k.last = c
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, k := range perKey {
		removed += k.n - 1
		if k.last.Op == ctxd.OpDelete && k.last.Revision < to {
			removed++
		}
		if k.replaced {
			removed++
		}
	}
	return removed, nil
}

// ApplyRetention compacts as the policy allows, where etcd's compaction
// can: KeepVersions of 1 (with the newest KeepRevisions revisions kept
// whole) is a compaction at revision - KeepRevisions. KeepVersions above
// 1 and KeepFor answer ctxd.ErrNotSupported.
func (s *Store) ApplyRetention(ctx context.Context, p store.RetentionPolicy) (ctxd.CompactResult, error) {
	if err := s.enter(); err != nil {
		return ctxd.CompactResult{}, err
	}
	defer s.inflight.Done()
	switch {
	case p.KeepFor > 0:
		return ctxd.CompactResult{}, fmt.Errorf("retention by age: %w (etcd compacts by revision)", ctxd.ErrNotSupported)
	case p.KeepVersions > 1:
		return ctxd.CompactResult{}, fmt.Errorf("retention of %d versions per key: %w (etcd keeps the change in effect at the mark)", p.KeepVersions, ctxd.ErrNotSupported)
	case p.KeepVersions == 0:
		return ctxd.CompactResult{}, nil
	}
	mark := s.Revision()
	if mark <= p.KeepRevisions {
		return ctxd.CompactResult{}, nil
	}
	return s.compact(ctx, mark-p.KeepRevisions)
}

// Defrag is etcd's operator's: `etcdctl defrag`, member by member.
func (s *Store) Defrag(context.Context) (ctxd.DefragResult, error) {
	return ctxd.DefragResult{}, fmt.Errorf("defrag on etcd: %w (run etcdctl defrag on each member)", ctxd.ErrNotSupported)
}

// MinServerVersion is the oldest etcd release ctxd supports (README,
// "Running on etcd"). (etcd reports its --quota-backend-bytes in a
// member's status, StatusResponse.DbSizeQuota, from 3.6 on: before, Status's
// QuotaBytes is 0.)
const MinServerVersion = "3.5"

// ServerVersion is the etcd version a member reported when the store
// opened ("3.7.3"), or "" when none answered its status then.
func (s *Store) ServerVersion() string { return s.serverVersion }

// VersionBefore reports whether the etcd version v ("3.4.23") is older
// than the release want ("3.5"); false when v cannot be read.
func VersionBefore(v, want string) bool {
	parse := func(v string) (major, minor int, ok bool) {
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return 0, 0, false
		}
		major, err1 := strconv.Atoi(parts[0])
		minor, err2 := strconv.Atoi(parts[1])
		return major, minor, err1 == nil && err2 == nil
	}
	hm, hn, ok1 := parse(v)
	wm, wn, ok2 := parse(want)
	if !ok1 || !ok2 {
		return false
	}
	return hm < wm || (hm == wm && hn < wn)
}

// memberStatus asks every member for its status at once and returns
// the first answer: every member holds the same data. Asking them in
// turn, each with a share of the request timeout, made every /v1/status
// and /metrics scrape wait out a dead or paused member's share (1.7 s of
// 5 s, on every instance, for as long as it was down) when it came
// first in etcd.endpoints; asking the first endpoint alone failed them
// (TestClusterWatchersAcrossFaults kills it). A Status is answered by
// the member from its own state, so the requests to the others cost
// little, and those still out are cancelled once one has answered.
func (s *Store) memberStatus(ctx context.Context) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		ms  *clientv3.StatusResponse
		err error
	}
	eps := s.opts.Endpoints
	answers := make(chan answer, len(eps)) // room for all: the late ones end without a reader
	for _, ep := range eps {
		go func() {
			ms, err := s.cli.Status(ctx, ep)
			if err != nil {
				err = fmt.Errorf("member %s: %w", ep, err)
			}
			answers <- answer{ms, err}
		}()
	}
	var errs []error
	for range eps {
		a := <-answers
		if a.err == nil {
			return a.ms, nil
		}
		errs = append(errs, a.err)
	}
	return nil, errors.Join(errs...)
}
