package bolt_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/wal"
)

// metaOf reads a database file's store id and write-ahead log position.
func metaOf(t *testing.T, path string) (id []byte, walSeq []byte) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(migrations.BucketMeta)
		id = bytes.Clone(meta.Get(migrations.KeyStoreID))
		walSeq = bytes.Clone(meta.Get(migrations.KeyWALSeq))
		return nil
	}))
	return id, walSeq
}

// restoredState is what a restored database must keep of the one its
// snapshot was taken from: every key's value, version and revisions, the
// namespaces, every key's history, the revision. (readAnswers also reads at
// every revision, which a restored database answers compacted.)
type restoredState struct {
	Revision   uint64
	Keys       map[string]ctxd.Record
	Namespaces []ctxd.Namespace
	History    map[string][]uint64
}

func stateOf(t *testing.T, s *bolt.Store) restoredState {
	t.Helper()
	st := restoredState{Revision: s.Revision(), Keys: map[string]ctxd.Record{}, History: map[string][]uint64{}}
	nss, err := s.Namespaces()
	require.NoError(t, err)
	st.Namespaces = nss
	for _, ns := range nss {
		p, err := s.List(ns.Name, ctxd.ListOptions{Limit: 1000})
		require.NoError(t, err)
		for _, r := range p.Records {
			st.Keys[ns.Name+"/"+r.Key] = r
			h, err := s.History(ns.Name, r.Key, ctxd.HistoryOptions{Limit: 1000})
			require.NoError(t, err)
			for _, c := range h.Changes {
				st.History[ns.Name+"/"+r.Key] = append(st.History[ns.Name+"/"+r.Key], c.Revision)
			}
		}
	}
	return st
}

// A folder that does not exist gets the snapshot as its database: the
// same keys, values, versions and history, revisions that go on after the
// snapshot's, a store of its own with a log of its own, and reads and
// resumes below the snapshot's revision answer compacted. A dry run
// creates nothing.
func TestRestoreFolderIntoANewFolder(t *testing.T) {
	s := openStore(t, lazy)
	writeTwoPhases(t, s.Store)
	snapPath, info := writeSnapshot(t, s)
	want := stateOf(t, s.Store)
	srcID, _ := metaOf(t, snapPath) // the source store's id, as the snapshot has it

	dir := filepath.Join(t.TempDir(), "machine-b", "data")
	path := filepath.Join(dir, "ctxd.db")
	dry, err := bolt.RestoreFolder(ctx, path, snapPath, bolt.FolderRestoreOptions{RestoreOptions: ctxd.RestoreOptions{DryRun: true}})
	require.NoError(t, err)
	assert.True(t, dry.New && dry.CreatedFolder && dry.DryRun)
	assert.Equal(t, info.Revision, dry.SnapshotRevision)
	var wantDiff []ctxd.NamespaceDiff
	for _, ns := range want.Namespaces {
		wantDiff = append(wantDiff, ctxd.NamespaceDiff{Namespace: ns.Name, Added: int(ns.Keys)})
	}
	assert.Equal(t, wantDiff, dry.Namespaces, "what the new database would hold")
	assert.NoDirExists(t, filepath.Dir(dir), "a dry run creates nothing")

	res, err := bolt.RestoreFolder(ctx, path, snapPath, bolt.FolderRestoreOptions{})
	require.NoError(t, err)
	assert.True(t, res.New && res.CreatedFolder && !res.DryRun)
	assert.Equal(t, info.Revision, res.Revision)
	assert.Empty(t, res.Kept)
	assert.Equal(t, []string{"ctxd.db"}, testkit.DirNames(t, dir), "the database alone: no temp file, no log yet")
	id, walSeq := metaOf(t, path)
	assert.Len(t, id, 8)
	assert.NotEqual(t, srcID, id, "a new store")
	assert.Nil(t, walSeq, "its log starts afresh")

	b := testkit.OpenBoltAt(t, path, bolt.Options{})
	assert.Equal(t, want, stateOf(t, b.Store), "keys, values, versions, history and revision")
	_, err = b.ReadLog(0, 10)
	var ce *ctxd.CompactedError
	require.ErrorAs(t, err, &ce, "a resume from before the snapshot re-reads")
	assert.Equal(t, info.Revision, ce.Compacted)
	_, err = b.GetAt("n", "a3", 1)
	require.ErrorAs(t, err, &ce)
	r, err := b.Put(ctx, "n", "after", []byte(`1`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, info.Revision+1, r.ModRev, "revisions go on after the snapshot's")
	changes, err := b.ReadLog(info.Revision, 10)
	require.NoError(t, err)
	require.Len(t, changes, 1)
	b.Reopen()
	assert.Equal(t, info.Revision+1, b.Revision())
}

// --bump-revision: a client of the old server that saw revisions after
// the snapshot's resumes into 'compacted' on the new one, not into the new
// server's different changes under the same numbers; writes go on after
// the bump. Over an existing database the bump is refused.
func TestRestoreFolderBumpRevision(t *testing.T) {
	s := openStore(t, lazy)
	writeTwoPhases(t, s.Store)
	snapPath, info := writeSnapshot(t, s)
	// The old server goes on after the snapshot: a client sees these.
	for i := 0; i < 5; i++ {
		_, err := s.Put(ctx, "n", "later", []byte(`1`), nil, "t")
		require.NoError(t, err)
	}
	seenByClient := s.Revision()
	const bump = 1000

	path := filepath.Join(t.TempDir(), "new", "ctxd.db")
	res, err := bolt.RestoreFolder(ctx, path, snapPath, bolt.FolderRestoreOptions{BumpRevision: bump})
	require.NoError(t, err)
	assert.Equal(t, info.Revision, res.SnapshotRevision)
	assert.Equal(t, info.Revision+bump, res.Revision)

	b := testkit.OpenBoltAt(t, path, bolt.Options{})
	assert.Equal(t, info.Revision+bump, b.Revision())
	_, err = b.ReadLog(seenByClient, 10)
	var ce *ctxd.CompactedError
	require.ErrorAs(t, err, &ce, "the old server's client resumes into compacted, not a silent gap")
	assert.Equal(t, info.Revision+bump, ce.Compacted)
	r, err := b.Put(ctx, "n", "after", []byte(`1`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, info.Revision+bump+1, r.ModRev, "revisions go on after the bump")
	got, err := b.Get("n", "a3")
	require.NoError(t, err)
	assert.Equal(t, stateOf(t, s.Store).Keys["n/a3"].Value, got.Value, "the snapshot's data")

	_, err = bolt.RestoreFolder(ctx, path, snapPath, bolt.FolderRestoreOptions{BumpRevision: bump})
	require.ErrorIs(t, err, ctxd.ErrInvalid, "a bump over an existing database")
}

// A new folder's last restore (status last_restore) is the offline
// restore itself: the restored state at the floor, from the snapshot's
// revision, and nothing discarded above the compacted revision (the
// floor). A snapshot of a server that had itself restored online carries
// that restore's marks: they were kept, so the status named the old
// restore (its snapshot, its discarded revisions, with the new floor),
// and a watcher resuming from 0 was told the revisions below the floor
// were discarded by it.
func TestRestoreFolderLastRestoreIsTheOfflineOne(t *testing.T) {
	s := openStore(t, lazy)
	writeTwoPhases(t, s.Store)
	early, _ := writeSnapshot(t, s)
	_, err := s.Put(ctx, "n", "undone", []byte(`1`), nil, "t")
	require.NoError(t, err)
	_, err = s.Restore(ctx, early, ctxd.RestoreOptions{})
	require.NoError(t, err)
	old, err := s.Status()
	require.NoError(t, err)
	require.NotNil(t, old.LastRestore, "the old server restored online")
	_, err = s.Put(ctx, "n", "after", []byte(`1`), nil, "t")
	require.NoError(t, err)
	snapPath, info := writeSnapshot(t, s)

	for _, bump := range []uint64{0, 1000} {
		path := filepath.Join(t.TempDir(), "ctxd.db")
		res, err := bolt.RestoreFolder(ctx, path, snapPath, bolt.FolderRestoreOptions{BumpRevision: bump})
		require.NoError(t, err)
		b := testkit.OpenBoltAt(t, path, bolt.Options{})
		st, err := b.Status()
		require.NoError(t, err)
		floor := info.Revision + bump
		require.Equal(t, floor, res.Revision)
		assert.Equal(t, floor, st.CompactedRevision, "bump %d", bump)
		assert.Equal(t, &ctxd.RestoreMark{Revision: floor, SnapshotRevision: info.Revision, DiscardedFrom: floor}, st.LastRestore,
			"bump %d: the offline restore, not the old server's online one", bump)
		after, _, err := store.ResumeFrom(b.Store, 0, nil)
		require.NoError(t, err, "bump %d: a watcher from 0 gets what history holds", bump)
		assert.Equal(t, floor-1, after, "bump %d: from the change at the compacted revision", bump)
	}
}

// An existing empty folder is used as it is; a folder with a log but no
// database, and a partial restore into a new folder, are refused and
// leave the folder as it was.
func TestRestoreFolderEmptyAndRefusedFolders(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)
	snapPath, _ := writeSnapshot(t, s)

	empty := t.TempDir()
	res, err := bolt.RestoreFolder(ctx, filepath.Join(empty, "ctxd.db"), snapPath, bolt.FolderRestoreOptions{})
	require.NoError(t, err)
	assert.True(t, res.New)
	assert.False(t, res.CreatedFolder)
	testkit.CheckBoltFile(t, filepath.Join(empty, "ctxd.db"))

	orphan := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(orphan, "wal"), 0o700))
	_, err = bolt.RestoreFolder(ctx, filepath.Join(orphan, "ctxd.db"), snapPath, bolt.FolderRestoreOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "holds a write-ahead log but no database")
	assert.Equal(t, []string{"wal"}, testkit.DirNames(t, orphan))

	fresh := filepath.Join(t.TempDir(), "new")
	_, err = bolt.RestoreFolder(ctx, filepath.Join(fresh, "ctxd.db"), snapPath,
		bolt.FolderRestoreOptions{RestoreOptions: ctxd.RestoreOptions{Prefix: "k"}})
	require.ErrorIs(t, err, ctxd.ErrInvalid)
	assert.NoDirExists(t, fresh)
}

// The folder's own database given as the snapshot (--from DIR/ctxd.db,
// or a link to it) is refused at once, as such, and left alone. Before,
// the restore locked it as the snapshot and then waited for its lock as
// the database, and said a server was running on it.
func TestRestoreFolderRefusesItsOwnDatabase(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)
	s.CloseChecked()
	link := filepath.Join(t.TempDir(), "backup.db")
	require.NoError(t, os.Symlink(s.path, link))
	for _, from := range []string{s.path, link} {
		_, err := bolt.RestoreFolder(ctx, s.path, from, bolt.FolderRestoreOptions{OpenTimeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, ctxd.ErrInvalid, from)
		assert.Contains(t, err.Error(), "is the database of this folder itself", from)
	}
	s.open()
	assert.Equal(t, []string{"ctxd.db", "wal"}, testkit.DirNames(t, filepath.Dir(s.path)))
}

// A bad snapshot (damaged pages, a newer schema, not a database) into a
// new folder writes nothing: no folder, no temp file beside the snapshot.
func TestRestoreFolderBadSnapshotLeavesNothing(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := range 200 {
		s.put("default", "k"+string(rune('a'+i%26))+string(rune('a'+i/26)), `"`+string(bytes.Repeat([]byte("v"), 100))+`"`)
	}
	good, _ := writeSnapshot(t, s)
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)
	src := t.TempDir()
	flipped := bytes.Clone(goodBytes)
	for i := 3 * 4096; i < len(flipped); i += 97 {
		flipped[i] ^= 0x5a
	}
	files := map[string][]byte{"bitflip.db": flipped, "truncated.db": goodBytes[:len(goodBytes)/2], "text.db": []byte("not a database"), "newer.db": goodBytes}
	for name, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(src, name), b, 0o600))
	}
	setSchema(t, filepath.Join(src, "newer.db"), 99)
	for name := range files {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			_, err := bolt.RestoreFolder(ctx, filepath.Join(dir, "ctxd.db"), filepath.Join(src, name), bolt.FolderRestoreOptions{})
			require.ErrorIs(t, err, ctxd.ErrBadSnapshot)
			assert.NoDirExists(t, dir)
		})
	}
	assert.ElementsMatch(t, []string{"bitflip.db", "truncated.db", "text.db", "newer.db"}, testkit.DirNames(t, src))
}

// Over the database of a server that crashed with acknowledged writes in
// its log only: the restore applies them to the file it replaces, keeps
// that file as ctxd.db.before-restore-<time>, and restoring from the kept
// file undoes the restore whole, those writes included.
func TestRestoreFolderKeepsTheReplacedFileForAnUndo(t *testing.T) {
	snapStore := openStore(t, bolt.Options{})
	snapStore.put("n", "from-snapshot", `"s"`)
	snapPath, _ := writeSnapshot(t, snapStore)

	path := crashedFolder(t)
	// What the crashed folder holds, read from a copy of it.
	twin := filepath.Join(t.TempDir(), "twin")
	copyDir(t, filepath.Dir(path), twin)
	tb := testkit.OpenBoltAt(t, filepath.Join(twin, "ctxd.db"), bolt.Options{})
	require.NotZero(t, tb.Recovery().Records, "the crashed folder's log holds writes its file lacks")
	before := stateOf(t, tb.Store)
	tb.CloseChecked()

	at := time.Date(2026, 12, 1, 10, 15, 0, 0, time.UTC)
	res, err := bolt.RestoreFolder(ctx, path, snapPath, bolt.FolderRestoreOptions{Now: func() time.Time { return at }})
	require.NoError(t, err)
	assert.False(t, res.New)
	assert.Equal(t, path+".before-restore-20261201T101500Z", res.Kept)
	assert.Equal(t, before.Revision+1, res.Revision, "the restored state takes a revision of its own, above every one before")
	assert.FileExists(t, res.Kept)

	b := testkit.OpenBoltAt(t, path, bolt.Options{})
	assert.Zero(t, b.Recovery().Records, "no record of the old log is replayed onto the restored file")
	recs, err := b.List("n", ctxd.ListOptions{})
	require.NoError(t, err)
	require.Len(t, recs.Records, 1)
	assert.Equal(t, "from-snapshot", recs.Records[0].Key)
	_, err = b.Put(ctx, "n", "later", []byte(`1`), nil, "t")
	require.NoError(t, err)
	b.CloseChecked()

	// Undo: the kept file is a snapshot of the state before the restore.
	undo, err := bolt.RestoreFolder(ctx, path, res.Kept, bolt.FolderRestoreOptions{Now: func() time.Time { return at }})
	require.NoError(t, err)
	assert.Equal(t, path+".before-restore-20261201T101500Z-1", undo.Kept, "a kept file is never overwritten")
	b.Open()
	after := stateOf(t, b.Store)
	assert.Equal(t, before.Keys, after.Keys, "every key at its value and revision, the log's writes included")
	assert.Equal(t, before.Namespaces, after.Namespaces)
	assert.Equal(t, before.History, after.History)
	assert.Greater(t, after.Revision, before.Revision, "revisions still never go back")
}

// A dry run over an existing database reports and changes nothing; a
// running store's database is refused as in use.
func TestRestoreFolderDryRunAndInUse(t *testing.T) {
	snapStore := openStore(t, bolt.Options{})
	snapStore.put("n", "s", `1`)
	snapPath, _ := writeSnapshot(t, snapStore)

	s := openStore(t, bolt.Options{})
	s.put("n", "live", `1`)
	_, err := bolt.RestoreFolder(ctx, s.path, snapPath, bolt.FolderRestoreOptions{OpenTimeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, bolt.ErrLocked)
	assert.Contains(t, err.Error(), "stop the server first")

	s.CloseChecked()
	before, err := os.ReadFile(s.path)
	require.NoError(t, err)
	res, err := bolt.RestoreFolder(ctx, s.path, snapPath, bolt.FolderRestoreOptions{RestoreOptions: ctxd.RestoreOptions{DryRun: true}})
	require.NoError(t, err)
	assert.Equal(t, []ctxd.NamespaceDiff{{Namespace: "default"}, {Namespace: "n", Added: 1, Removed: 1}}, res.Namespaces)
	assert.Empty(t, res.Kept)
	after, err := os.ReadFile(s.path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(before, after), "the file is byte-for-byte unchanged")
	assert.NotContains(t, testkit.DirNames(t, filepath.Dir(s.path)), "ctxd.db.before-restore-", "nothing kept")
}

// A snapshot of schema 1 (the migrations fixture) into a new folder is
// migrated on the way: the file given is untouched and nothing is left
// beside it.
func TestRestoreFolderMigratesAnOldSnapshot(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join("..", "..", "migrations", "testdata", "schema1.db"))
	require.NoError(t, err)
	src := t.TempDir()
	snapPath := filepath.Join(src, "old.db")
	require.NoError(t, os.WriteFile(snapPath, fixture, 0o600))
	path := filepath.Join(t.TempDir(), "data", "ctxd.db")
	res, err := bolt.RestoreFolder(ctx, path, snapPath, bolt.FolderRestoreOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint64(7), res.Revision)
	after, err := os.ReadFile(snapPath)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(fixture, after), "the snapshot file is not changed")
	assert.Equal(t, []string{"old.db"}, testkit.DirNames(t, src))

	b := testkit.OpenBoltAt(t, path, bolt.Options{})
	st, err := b.Status()
	require.NoError(t, err)
	assert.Equal(t, migrations.Current, st.SchemaVersion)
	assert.Equal(t, uint64(7), st.Revision)
	r, err := b.Get("team", "members")
	require.NoError(t, err)
	assert.JSONEq(t, `["alice","bob","carol"]`, string(r.Value))
	assert.Equal(t, uint64(2), r.Version)
	h, err := b.History("default", "app.config.debug", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Len(t, h.Changes, 2)
	_, err = b.Get("default", "scratch")
	assert.True(t, errors.Is(err, ctxd.ErrNotFound))
}

// A process waiting for the file's lock while its holder replaces the
// file (ctxd compact renames a compact copy over it, then lets the old
// one go) opens the file now at the path, not the old one it waited on:
// writes to the old one, unlinked, were lost at the next start.
func TestOpenAfterTheFileWasReplacedDuringTheWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctxd.db")
	st, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	_, err = st.Put(t.Context(), "default", "before", json.RawMessage(`1`), nil, "test")
	require.NoError(t, err)
	require.NoError(t, st.Close())

	holder, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second}) // as ctxd compact
	require.NoError(t, err)
	opened := make(chan error, 1)
	go func() {
		// Small log segments: the ones applied to the file are released.
		st, err = bolt.Open(path, bolt.Options{OpenTimeout: 10 * time.Second, WALSegmentSize: wal.MinSegmentSize})
		opened <- err
	}()
	time.Sleep(200 * time.Millisecond) // into its wait for the lock
	require.NoError(t, holder.View(func(tx *bbolt.Tx) error { return tx.CopyFile(path+".new", 0o600) }))
	require.NoError(t, os.Rename(path+".new", path))
	require.NoError(t, holder.Close())
	require.NoError(t, <-opened)
	value := json.RawMessage(`"` + strings.Repeat("x", 1<<10) + `"`)
	for i := range 32 {
		_, err = st.Put(t.Context(), "default", fmt.Sprint("after", i), value, nil, "test")
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())

	st, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer st.Close()
	for i := range 32 {
		_, err = st.Get("default", fmt.Sprint("after", i))
		require.NoError(t, err, "the writes went to the file at the path")
	}
}
