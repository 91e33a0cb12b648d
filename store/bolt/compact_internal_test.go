package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
)

// historyModel is what compaction must leave: every change written, by
// revision, less those a compaction removed, computed the way a full scan
// of the log judges them.
type historyModel struct {
	changes map[uint64]modelChange
}

type modelChange struct {
	ns, key string
	op      ctxd.Op
}

// compact applies a compaction at limit keeping keep changes per key.
func (m *historyModel) compact(limit uint64, keep int) {
	byKey := map[modelChange][]uint64{}
	for _, r := range m.revisions() {
		c := m.changes[r]
		if r <= limit {
			k := modelChange{ns: c.ns, key: c.key}
			byKey[k] = append(byKey[k], r)
		}
	}
	for _, revs := range byKey {
		for i, r := range revs {
			newer := len(revs) - 1 - i
			if r < limit && (newer >= keep || (keep == 1 && newer == 0 && m.changes[r].op == ctxd.OpDelete)) {
				delete(m.changes, r)
			}
		}
	}
}

// revisions lists the model's revisions in order.
func (m *historyModel) revisions() []uint64 {
	var revs []uint64
	for r := range m.changes {
		revs = append(revs, r)
	}
	slices.Sort(revs)
	return revs
}

// loggedRevisions reads the revisions in the log bucket, and checks that
// the history index holds exactly the same changes.
func loggedRevisions(t *testing.T, s *Store) []uint64 {
	t.Helper()
	require.NoError(t, s.checkpoint())
	var revs []uint64
	indexed := 0
	require.NoError(t, s.view(func(tx *bbolt.Tx) error {
		err := tx.Bucket(migrations.BucketLog).ForEach(func(k, v []byte) error {
			rev := binary.BigEndian.Uint64(k)
			e, err := decodeChangeShared(rev, v)
			if err != nil {
				return err
			}
			if tx.Bucket(migrations.HistBucket(e.Namespace)).Get(histKey(e.Key, rev)) == nil {
				return fmt.Errorf("revision %d of %s/%s is not in the history index", rev, e.Namespace, e.Key)
			}
			revs = append(revs, rev)
			return nil
		})
		if err != nil {
			return err
		}
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			if bytes.HasPrefix(name, migrations.HistBucket("")) {
				indexed += b.Stats().KeyN
			}
			return nil
		})
	}))
	require.Equal(t, len(revs), indexed, "the history index holds the changes of the log, no more")
	return revs
}

// writeHistory writes n rounds of changes over two namespaces: cold keys
// written once, hot keys rewritten every round, and keys deleted (some
// written again), and returns the model of what was logged.
func writeHistory(t *testing.T, s *Store, m *historyModel, round, n int) {
	t.Helper()
	ctx := context.Background()
	for r := round; r < round+n; r++ {
		var puts, deletes, again []ctxd.Write
		for i := range 100 {
			puts = append(puts, ctxd.Write{Namespace: "cold", Key: fmt.Sprintf("c%d-%03d", r, i), Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"})
		}
		for i := range 30 {
			puts = append(puts, ctxd.Write{Namespace: "hot", Key: fmt.Sprintf("h%02d", i), Op: ctxd.OpPut, Value: json.RawMessage(fmt.Sprint(r)), Who: "t"})
		}
		// Keys of the round before are deleted; every other one of them
		// is written again.
		if r > 0 {
			for i := range 10 {
				deletes = append(deletes, ctxd.Write{Namespace: "cold", Key: fmt.Sprintf("c%d-%03d", r-1, i), Op: ctxd.OpDelete, Who: "t"})
			}
			for i := 0; i < 10; i += 2 {
				again = append(again, ctxd.Write{Namespace: "cold", Key: fmt.Sprintf("c%d-%03d", r-1, i), Op: ctxd.OpPut, Value: json.RawMessage(`2`), Who: "t"})
			}
		}
		for _, writes := range [][]ctxd.Write{puts, deletes, again} {
			if len(writes) == 0 {
				continue
			}
			res, err := s.Import(ctx, writes)
			require.NoError(t, err)
			// A transaction's changes are consecutive revisions, in order.
			first := res.Revision - uint64(len(writes)) + 1
			for i, w := range writes {
				m.changes[first+uint64(i)] = modelChange{ns: w.Namespace, key: w.Key, op: w.Op}
			}
		}
	}
}

// Retention examines only the log written since its last run, across a
// restart: a run with nothing new examines nothing, and a run after a
// few writes examines those few; what it removes is what a scan of the
// whole log removes. The control: a run keeping fewer versions than the
// last one cannot trust it, scans the whole log, and the count shows it.
func TestRetentionExaminesOnlyWhatIsNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	ctx := context.Background()
	m := &historyModel{changes: map[uint64]modelChange{}}
	writeHistory(t, s, m, 0, 12)
	require.Equal(t, m.revisions(), loggedRevisions(t, s), "the model matches the log before any compaction")

	policy := store.RetentionPolicy{KeepVersions: 3, KeepRevisions: 200}
	examined := func() uint64 { return s.Stats().CompactExamined }
	limit1 := s.Revision() - policy.KeepRevisions
	_, err = s.ApplyRetention(ctx, policy)
	require.NoError(t, err)
	m.compact(limit1, policy.KeepVersions)
	require.Equal(t, m.revisions(), loggedRevisions(t, s))
	first := examined()
	require.Equal(t, limit1, first, "the first run examines the log up to its limit")
	require.Less(t, len(m.changes), int(s.Revision()), "control: the first run removed changes")

	_, err = s.ApplyRetention(ctx, policy)
	require.NoError(t, err)
	assert.Equal(t, first, examined(), "a run with nothing new examines nothing")

	// After a restart, a few rounds more.
	require.NoError(t, s.Close())
	s, err = Open(path, Options{})
	require.NoError(t, err)
	writeHistory(t, s, m, 12, 3)
	limit2 := s.Revision() - policy.KeepRevisions
	res, err := s.ApplyRetention(ctx, policy)
	require.NoError(t, err)
	m.compact(limit2, policy.KeepVersions)
	require.Equal(t, m.revisions(), loggedRevisions(t, s), "what a scan of the whole log removes")
	assert.Positive(t, res.Removed)
	assert.Equal(t, limit2-limit1+1, s.Stats().CompactExamined, "the second run examines the log from the first run's limit to its own")
	assert.Equal(t, limit2, s.compacted.Load())

	// Keeping fewer versions than the run before: the whole log.
	writeHistory(t, s, m, 15, 1)
	limit3 := s.Revision() - policy.KeepRevisions
	before := s.Stats().CompactExamined
	_, err = s.CompactKeep(ctx, limit3, 2)
	require.NoError(t, err)
	m.compact(limit3, 2)
	require.Equal(t, m.revisions(), loggedRevisions(t, s))
	assert.Greater(t, s.Stats().CompactExamined-before, limit3-limit2+1, "control: fewer versions kept scans more than what is new")
	require.NoError(t, s.Check())
}

// A compaction stopped between two chunks (where the
// compact-between-chunks failpoint crashes the binary in the robustness
// tests) resumes after a restart, when asked again at its mark, from the
// chunk where it stopped: it examines only the rest, and leaves what a
// whole compaction leaves. Keep 1 (Compact) judges deletes too.
func TestCompactionResumesBetweenChunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	ctx := context.Background()
	m := &historyModel{changes: map[uint64]modelChange{}}
	writeHistory(t, s, m, 0, 5)
	limit1 := s.Revision() - 50
	require.NoError(t, s.Compact(ctx, limit1))
	m.compact(limit1, 1)
	require.Equal(t, m.revisions(), loggedRevisions(t, s))
	writeHistory(t, s, m, 5, 15)
	require.NoError(t, s.Close())

	// Stopped after the first chunk of the second compaction.
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err = Open(path, Options{afterCompactChunk: cancel})
	require.NoError(t, err)
	limit2 := s.Revision() - 50
	require.Greater(t, limit2-limit1+1, uint64(2*compactChunk), "the second compaction takes more than two chunks")
	require.ErrorIs(t, s.Compact(stop, limit2), context.Canceled)
	require.Equal(t, uint64(compactChunk), s.Stats().CompactExamined, "one chunk was examined")
	require.NoError(t, s.Close())

	s, err = Open(path, Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	assert.Equal(t, limit2, s.compacted.Load(), "the mark was raised before the first chunk")
	_, err = s.GetAt("hot", "h00", limit2-1)
	assert.ErrorIs(t, err, ctxd.ErrCompacted, "below the mark: compacted, never a wrong answer")
	full := &historyModel{changes: maps.Clone(m.changes)}
	full.compact(limit2, 1)
	require.Greater(t, len(loggedRevisions(t, s)), len(full.changes), "control: the stopped compaction left changes it removes")

	require.NoError(t, s.Compact(ctx, limit2))
	assert.Equal(t, limit2-limit1+1-compactChunk, s.Stats().CompactExamined, "the resumed compaction examines the chunks not done")
	require.Equal(t, full.revisions(), loggedRevisions(t, s), "what a whole compaction leaves")
	require.NoError(t, s.Compact(ctx, limit2))
	assert.Equal(t, limit2-limit1+1-compactChunk, s.Stats().CompactExamined, "asked again once done: nothing to examine")
	var inEffect uint64
	for _, rev := range full.revisions() {
		if c := full.changes[rev]; rev <= limit2 && c.ns == "hot" && c.key == "h00" {
			inEffect = rev
		}
	}
	r, err := s.GetAt("hot", "h00", limit2)
	require.NoError(t, err)
	assert.Equal(t, inEffect, r.ModRev, "at the mark: the change in effect")
	require.NoError(t, s.Check())
}

// A file written before meta/pruned existed (the schema 1 fixture of
// package migrations, upgraded at open) has its whole log examined by
// its first compaction, and only what is new by the next.
func TestCompactionOfAnOlderFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	require.NoError(t, copyFile(path, filepath.Join("..", "..", "migrations", "testdata", "schema1.db")))
	s, err := Open(path, Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	ctx := context.Background()
	m := &historyModel{changes: map[uint64]modelChange{}}
	require.NoError(t, s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(migrations.BucketLog).ForEach(func(k, v []byte) error {
			e, err := decodeChangeShared(binary.BigEndian.Uint64(k), v)
			m.changes[e.Revision] = modelChange{ns: e.Namespace, key: e.Key, op: e.Op}
			return err
		})
	}))
	require.Len(t, m.changes, 7, "the fixture's history")
	limit := s.Revision()
	require.NoError(t, s.Compact(ctx, limit))
	m.compact(limit, 1)
	assert.Equal(t, m.revisions(), loggedRevisions(t, s))
	assert.Equal(t, uint64(7), s.Stats().CompactExamined, "no record yet: the whole log")

	r := putValue(t, s, "default", "app.config.debug", `true`)
	m.changes[r.ModRev] = modelChange{ns: "default", key: "app.config.debug", op: ctxd.OpPut}
	r = putValue(t, s, "default", "new", `1`)
	m.changes[r.ModRev] = modelChange{ns: "default", key: "new", op: ctxd.OpPut}
	require.NoError(t, s.Compact(ctx, r.ModRev))
	m.compact(r.ModRev, 1)
	assert.Equal(t, m.revisions(), loggedRevisions(t, s))
	assert.Equal(t, uint64(7+3), s.Stats().CompactExamined, "then from the first compaction's limit on")
	require.NoError(t, s.Check())
}

// putValue writes value to ns/key.
func putValue(t *testing.T, s *Store, ns, key, value string) ctxd.Record {
	t.Helper()
	r, err := s.Put(context.Background(), ns, key, json.RawMessage(value), nil, "t")
	require.NoError(t, err)
	return r
}
