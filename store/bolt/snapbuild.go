package bolt

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/migrations"
)

// buildCommitEvery and buildCommitBytes bound what a SnapshotBuilder
// writes per bbolt transaction (changes, and their bytes as the file will
// hold them): memory stays bounded (bbolt holds a transaction's dirty
// pages in memory), the reserve is checked before each step of the file's
// growth, and the fsyncs of the scratch file stay few.
const (
	buildCommitEvery = 10000
	buildCommitBytes = 16 << 20
	changeOverhead   = 128 // bytes of a file's pages per change, beyond its data
)

// SnapshotBuilder writes a snapshot file in this package's format (the
// same file the bolt store's WriteSnapshot writes, so either backend
// restores it) from a stream of changes, for a backend whose data lives
// elsewhere (etcd). It fills a scratch bbolt file with the store's own
// applier, then copies it out with Tx.WriteTo; Close removes the scratch
// file. The scratch file is about the size of the data: its commits keep
// the reserve given to NewSnapshotBuilder free on its file system.
//
// Changes are added oldest first. The builder keeps the file consistent
// whatever the source's numbering: several changes sharing a revision
// (an etcd transaction) get consecutive revisions from there on (a
// revision is never below the source's, and only moves up when the one
// before took it), and each change's previous revision and create
// revision are the file's own, so that every record points at a change
// the file holds. A delete of a key the file does not hold (its put was
// compacted away) is left out: history does not hold what it deleted.
type SnapshotBuilder struct {
	path    string
	reserve fsutil.Reserve
	pending int64 // what the open transaction adds to the file (an estimate)
	db      *bbolt.DB
	tx      *bbolt.Tx
	a       *applier
	n       int    // changes in tx
	last    uint64 // the last revision given to a change
}

// NewSnapshotBuilder starts a snapshot in a scratch file in dir (the
// system's temporary folder when empty), a temp file by its name
// (fsutil.IsTemp: the snapshots folder's leftovers after a crash are
// removed), whose commits refuse, with a *fsutil.ReserveError, to leave
// less than reserve free on dir's file system.
func NewSnapshotBuilder(dir string, reserve fsutil.Reserve) (*SnapshotBuilder, error) {
	f, err := os.CreateTemp(dir, fsutil.TempPrefix+"snapshot-build-*.db")
	if err != nil {
		return nil, fmt.Errorf("snapshot builder: %w", err)
	}
	b := &SnapshotBuilder{path: f.Name(), reserve: reserve}
	// bbolt opens the file just created, not whatever is at its name by
	// then: the folder may be another user's, and this process root's.
	opts := copyOptions()
	opts.OpenFile = func(string, int, os.FileMode) (*os.File, error) { return f, nil }
	if b.db, err = bbolt.Open(b.path, 0o600, opts); err != nil {
		_ = f.Close() // closed by bbolt too, unless it failed before taking it
	} else {
		err = b.db.Update(func(tx *bbolt.Tx) error {
			_, err := migrations.Migrate(tx)
			return err
		})
	}
	if err == nil {
		err = b.begin()
	}
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("snapshot builder: %w", err)
	}
	return b, nil
}

func (b *SnapshotBuilder) begin() error {
	tx, err := b.db.Begin(true)
	if err != nil {
		return err
	}
	b.tx, b.a, b.n, b.pending = tx, newApplier(tx), 0, 0
	return nil
}

// commit writes the key counts and commits the open transaction, unless
// the pages it adds to the file would eat into the reserve.
func (b *SnapshotBuilder) commit() error {
	tx := b.tx
	b.tx = nil
	if err := b.a.finish(0); err != nil {
		_ = tx.Rollback()
		return err
	}
	// bbolt gives a transaction's pages their place in the file only as
	// it commits: what it adds is estimated from the changes' bytes.
	if err := b.reserve.Fits(filepath.Dir(b.path), "the snapshot's scratch file", b.pending); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// LastRevision is the revision given to the last change added (0 before
// the first).
func (b *SnapshotBuilder) LastRevision() uint64 { return b.last }

// Add appends change c, newer than every change added before it.
// createRev is the key's create revision in the source, used when the
// key's create is older than the file's history (compacted). c's
// Revision may be renumbered, and its PrevRev is the file's (see
// SnapshotBuilder).
func (b *SnapshotBuilder) Add(c ctxd.Change, createRev uint64) error {
	if b.tx == nil {
		return fmt.Errorf("snapshot builder: %w", ctxd.ErrClosed)
	}
	if err := ctxd.ValidateNamespace(c.Namespace); err != nil {
		return fmt.Errorf("snapshot builder: change at revision %d: %w", c.Revision, err)
	}
	nsb, err := b.a.namespace(c.Namespace)
	if err != nil {
		return err
	}
	var prev kvRecord
	live := false
	if v := nsb.kv.Get([]byte(c.Key)); v != nil {
		if prev, err = decodeKV(v); err != nil {
			return fmt.Errorf("snapshot builder: %s/%s: %w", c.Namespace, c.Key, err)
		}
		live = true
	}
	source := c.Revision
	c.Revision = max(c.Revision, b.last+1)
	switch {
	case c.Op == ctxd.OpDelete && !live:
		return nil
	case c.Op == ctxd.OpDelete:
		c.PrevRev, c.Version, createRev = prev.modRev, prev.version, prev.createRev
		c.Value = nil
	case live:
		c.PrevRev, createRev = prev.modRev, prev.createRev
	default:
		c.PrevRev = 0
		if createRev == 0 || createRev >= source {
			createRev = c.Revision // created by this very change
		}
	}
	b.last = c.Revision
	ch := &change{logEntry: logEntry{Change: c, createRev: createRev}, raw: encodeChange(&c, createRev)}
	if err := b.a.apply(ch); err != nil {
		return fmt.Errorf("snapshot builder: %w", err)
	}
	// A change is held twice: in the log and, as the key's record, in
	// its namespace (the record is smaller than the change's encoding),
	// each with its share of a page's header and of the branch pages
	// above (measured: 10-byte values take 2.5 times their encoding).
	b.pending += 2*int64(len(ch.raw)) + changeOverhead
	if b.n++; b.n >= buildCommitEvery || b.pending >= buildCommitBytes {
		if err := b.commit(); err != nil {
			return fmt.Errorf("snapshot builder: %w", err)
		}
		if err := b.begin(); err != nil {
			return fmt.Errorf("snapshot builder: %w", err)
		}
	}
	return nil
}

// KeepAlive moves the deadline of the live key ns/key to expiresAt, as a
// keepalive does (no change, no revision): for a source whose keepalives
// are not changes (etcd's deadline records). A key the file does not
// hold, or holds without a deadline, is left as it is.
func (b *SnapshotBuilder) KeepAlive(ns, key string, expiresAt time.Time) error {
	if b.tx == nil {
		return fmt.Errorf("snapshot builder: %w", ctxd.ErrClosed)
	}
	kv := b.tx.Bucket(migrations.KVBucket(ns))
	if kv == nil {
		return nil
	}
	v := kv.Get([]byte(key))
	if v == nil {
		return nil
	}
	r, err := decodeKV(v)
	if err != nil {
		return fmt.Errorf("snapshot builder: %s/%s: %w", ns, key, err)
	}
	if r.expiresAt.IsZero() {
		return nil
	}
	if err := b.a.extend(&extend{ns: ns, key: key, modRev: r.modRev, expiresAt: expiresAt}); err != nil {
		return fmt.Errorf("snapshot builder: %w", err)
	}
	return nil
}

// WriteTo finishes the file and writes it to w as a snapshot of the
// source at revision rev, whose history below compacted is gone. The
// answer's revision is rev. Where renumbering moved the last change above
// rev, the file's own revision is the last change's and the file records
// rev as its source's (migrations.KeySourceRevision; Snapshot.Revision
// reads it): the snapshot still says which of the source's changes it
// holds, so that a follower of the source that resumes after it misses
// none.
func (b *SnapshotBuilder) WriteTo(w io.Writer, rev, compacted uint64) (ctxd.SnapshotInfo, error) {
	if b.tx == nil {
		return ctxd.SnapshotInfo{}, fmt.Errorf("snapshot builder: %w", ctxd.ErrClosed)
	}
	fileRev := max(rev, b.last)
	meta := b.tx.Bucket(migrations.BucketMeta)
	err := meta.Put(migrations.KeyFloor, encodeRevision(fileRev))
	if err == nil && fileRev > rev {
		err = meta.Put(migrations.KeySourceRevision, encodeRevision(rev))
	}
	if err == nil && compacted > 0 {
		err = meta.Put(migrations.KeyCompacted, encodeRevision(min(compacted, fileRev)))
	}
	if err != nil {
		_ = b.tx.Rollback()
		b.tx = nil
		return ctxd.SnapshotInfo{}, fmt.Errorf("snapshot builder: %w", err)
	}
	if err := b.commit(); err != nil {
		return ctxd.SnapshotInfo{}, fmt.Errorf("snapshot builder: %w", err)
	}
	info := ctxd.SnapshotInfo{Revision: rev, SchemaVersion: migrations.Current}
	err = b.db.View(func(tx *bbolt.Tx) error {
		info.Namespaces = newView(tx).Namespaces()
		n, err := writeTx(tx, w)
		info.Size = n
		return err
	})
	if err != nil {
		return ctxd.SnapshotInfo{}, fmt.Errorf("write snapshot: %w", err)
	}
	return info, nil
}

// Close removes the scratch file.
func (b *SnapshotBuilder) Close() error {
	if b.tx != nil {
		_ = b.tx.Rollback()
		b.tx = nil
	}
	var err error
	if b.db != nil {
		err = b.db.Close()
	}
	if rerr := os.Remove(b.path); err == nil && rerr != nil && !os.IsNotExist(rerr) {
		err = rerr
	}
	return err
}
