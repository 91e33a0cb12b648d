package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/migrations"
)

// PlanMigration reads what migrations.PlanFile plans for the database at
// path, without changing it; a database a server holds is ErrLocked, as
// for Open, once lockTimeout has passed (as Options.OpenTimeout).
func PlanMigration(path string, lockTimeout time.Duration) (from, to int, steps []migrations.Step, err error) {
	from, to, steps, err = migrations.PlanFile(path, lockTimeout)
	return from, to, steps, locked(err)
}

// FolderRestoreOptions configure RestoreFolder.
type FolderRestoreOptions struct {
	ctxd.RestoreOptions
	// OpenTimeout bounds each wait for a file's lock, as
	// Options.OpenTimeout: the existing database's (a running server
	// holds it), and the snapshot file's.
	OpenTimeout time.Duration
	// Now names the kept file (default time.Now).
	Now func() time.Time
	// BumpRevision, for a new folder only, starts the new store's
	// revisions that far after the snapshot's and marks everything up to
	// there compacted (etcdutl's --bump-revision with --mark-compacted).
	// Clients of the old server may have seen revisions after the
	// snapshot's; a bump larger than the changes the old server made
	// after the snapshot makes such a client's resume answer 'compacted'
	// instead of the new server's different changes under the same
	// revisions.
	BumpRevision uint64
}

// FolderRestore is what RestoreFolder did, or would do on a dry run.
type FolderRestore struct {
	ctxd.RestoreResult
	// Database is the database file restored.
	Database string
	// New: the folder held no database, the snapshot became it.
	New bool
	// CreatedFolder: the data folder did not exist; it was (or would be)
	// created.
	CreatedFolder bool
	// Kept is where the replaced database is kept, for an undo (a full
	// restore over an existing database).
	Kept string
}

// KeptSuffix starts the suffix of a database file a full offline restore
// replaced: <db>.before-restore-<time>.
const KeptSuffix = ".before-restore-"

// RestoreFolder restores the database file at path, in a stopped server's
// data folder or a new one, from the snapshot file at snapshotPath. The
// snapshot is verified first (page structure, every record; an older
// schema is migrated in a temporary copy beside it); a bad one writes
// nothing.
//
// Where there is no database at path, the folder is created if needed and
// the snapshot becomes its database (only whole: a partial restore needs
// a database to restore into), a new store: a new store id, a write-ahead
// log that starts afresh at the next Open, revisions that continue after
// the snapshot's, and the snapshot's revision as the compacted one (a
// client of the old server cannot resume below it here; see DESIGN.md).
// A folder holding a write-ahead log but no database is refused: the log
// could hold writes of a database moved away.
//
// Where there is one, the store is opened as a server would open it (a
// log its last run left unapplied is applied to the file first, so the
// replaced file holds every acknowledged write) and Restore runs; a full
// restore keeps the replaced file as path + KeptSuffix + time (Kept).
func RestoreFolder(ctx context.Context, path, snapshotPath string, opts FolderRestoreOptions) (FolderRestore, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	out := FolderRestore{Database: path}
	db, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		out.New = true
	case err != nil:
		return out, fmt.Errorf("restore: %w", err)
	}
	if snap, err := os.Stat(snapshotPath); err == nil && db != nil && os.SameFile(db, snap) {
		// Opened as the snapshot, its lock would be waited for as the
		// database's, as if a server held it.
		return out, ctxd.Invalidf("%s is the database of this folder itself: give a snapshot file (ctxd snapshot get, or a kept %s* file)",
			snapshotPath, filepath.Base(path)+KeptSuffix)
	}
	if opts.BumpRevision > 0 && !out.New {
		return out, ctxd.Invalidf("--bump-revision applies to a new data folder: there is a database at %s, whose revisions go on from its own", path)
	}
	if out.New {
		if opts.IsPartial() {
			return out, ctxd.Invalidf("there is no database at %s to restore part of a snapshot into (--ns, --prefix): "+
				"a new data folder gets the whole snapshot", path)
		}
		if _, err := os.Stat(WALDir(path)); err == nil {
			return out, fmt.Errorf("restore: %s holds a write-ahead log but no database %s: the log could hold "+
				"acknowledged writes of a database moved away; move the folder %s away first", filepath.Dir(path), filepath.Base(path), WALDir(path))
		}
	}
	snap, err := openVerified(snapshotPath, opts.OpenTimeout)
	if err != nil {
		return out, err
	}
	defer snap.Close()
	if out.New {
		return restoreNew(snap, out, opts.DryRun, opts.BumpRevision)
	}
	st, err := Open(path, Options{OpenTimeout: opts.OpenTimeout})
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return out, fmt.Errorf("%s is in use: stop the server first (%w)", path, err)
		}
		return out, err
	}
	if !opts.DryRun && !opts.IsPartial() {
		// Beside the file the database is in (which a link may name):
		// the swap keeps the replaced file by a hard link.
		if out.Kept, err = keptName(st.Path(), opts.Now()); err != nil {
			return out, errors.Join(err, st.Close())
		}
	}
	out.RestoreResult, err = st.restore(ctx, snap, opts.RestoreOptions, out.Kept)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		out.Kept = ""
	}
	return out, err
}

// keptName is a free name for the database file at path replaced at t.
func keptName(path string, t time.Time) (string, error) {
	base := path + KeptSuffix + t.UTC().Format("20060102T150405Z")
	for i := 0; i < 100; i++ {
		name := base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name, nil
		}
	}
	return "", fmt.Errorf("restore: no free name for the replaced database: remove old %s* files", path+KeptSuffix)
}

// restoreNew writes the verified snapshot as the database out.Database,
// which does not exist, creating its folder if needed; its revisions go
// on after the file's plus bump (the file's revision is the snapshot's,
// except in a snapshot of etcd that numbered a transaction apart).
func restoreNew(snap *Snapshot, out FolderRestore, dryRun bool, bump uint64) (FolderRestore, error) {
	out.DryRun = dryRun
	var own uint64 // the file's revision: above the snapshot's in one of etcd with transactions
	err := snap.readView(func(v *View) error {
		out.SnapshotRevision, own = snapshotRevision(v.tx), v.Revision()
		for _, ns := range v.Namespaces() {
			out.Namespaces = append(out.Namespaces, ctxd.NamespaceDiff{Namespace: ns.Name, Added: int(ns.Keys)})
		}
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("restore: read snapshot: %w", err)
	}
	if bump > math.MaxInt64-own {
		return out, ctxd.Invalidf("--bump-revision %d: the snapshot is at revision %d, and revisions stay below 2^63", bump, own)
	}
	out.Revision = own + bump
	dir := filepath.Dir(out.Database)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		out.CreatedFolder = true
	}
	if dryRun {
		return out, nil
	}
	if err := fsutil.MkdirAll(dir, 0o750); err != nil {
		return out, fmt.Errorf("restore: %w", err)
	}
	owner, err := dataOwner(dir)
	if err != nil {
		return out, fmt.Errorf("restore: %w", err)
	}
	file, err := databaseFile(out.Database)
	if err != nil {
		return out, fmt.Errorf("restore: %w", err)
	}
	if err := writeNew(snap.file(), file, out.Revision, owner); err != nil {
		if out.CreatedFolder {
			_ = os.Remove(dir) // only if empty: nothing of ours is left in it
		}
		return out, fmt.Errorf("restore: %w", err)
	}
	return out, nil
}

// writeNew copies the database file src to path, which must not exist
// (fsutil's CommitNew: a server started there meanwhile is never
// overwritten), as a new store at revision rev, owned by owner.
func writeNew(src, path string, rev uint64, owner fsutil.Owner) error {
	tmp, err := fsutil.CreateTemp(filepath.Dir(path), filepath.Base(path), 0o600)
	if err != nil {
		return err
	}
	defer tmp.Discard()
	if err := owner.Give(tmp.Name()); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	_ = in.Close()
	if err != nil {
		return fmt.Errorf("copy snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := newStore(tmp.Name(), rev); err != nil {
		return err
	}
	if err := tmp.CommitNew(path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("a database appeared at %s while restoring (is a server starting there?): it was left alone", path)
		}
		return err
	}
	return nil
}

// newStore makes the copy of a snapshot at path a store of its own: a new
// store id and no write-ahead log position, so that its log starts afresh
// and no record of another store's log is ever replayed onto it; the
// snapshot's revision rev as its floor (revisions continue after it even
// when compaction removed the last change) and its compacted revision.
// Its last restore (status last_restore) is this one: the restored state
// at rev, from the snapshot file's revision, discarding nothing above the
// compacted revision (discarded_from = rev: every revision below answers
// compacted as compacted). The marks the snapshot carries are those of
// its server's last online restore, of revisions this store never had:
// kept, they named that restore with this floor, and a watcher resuming
// from 0 was told the revisions below the floor were discarded by it.
// It commits through openCopy, so the file carries a freelist.
func newStore(path string, rev uint64) error {
	id, err := migrations.NewStoreID()
	if err != nil {
		return err
	}
	db, err := openCopy(path)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(migrations.BucketMeta)
		snapRev := lastRevision(tx)
		if err := meta.Delete(migrations.KeyWALSeq); err != nil {
			return err
		}
		if err := meta.Delete(migrations.KeySourceRevision); err != nil {
			return err // its revisions are its own now
		}
		if err := meta.Put(migrations.KeyStoreID, id); err != nil {
			return err
		}
		for _, kv := range []struct {
			key []byte
			rev uint64
		}{
			{migrations.KeyFloor, rev},
			{migrations.KeyCompacted, rev},
			{migrations.KeyRestoredFrom, snapRev},
			{migrations.KeyDiscardedFrom, rev},
		} {
			if err := meta.Put(kv.key, encodeRevision(kv.rev)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}
