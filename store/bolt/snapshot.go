package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
)

// WriteSnapshot writes a consistent copy of the whole database, at one
// revision, to w. It runs in a read transaction: writers keep writing.
func (s *Store) WriteSnapshot(w io.Writer) (ctxd.SnapshotInfo, error) {
	var info ctxd.SnapshotInfo
	err := s.readView(func(v *View) error {
		info.Revision = v.Revision()
		info.Namespaces = v.Namespaces()
		info.SchemaVersion = migrations.Current
		n, err := writeTx(v.tx, w)
		info.Size = n
		return err
	})
	if err != nil {
		return ctxd.SnapshotInfo{}, fmt.Errorf("write snapshot: %w", err)
	}
	return info, nil
}

// writeTx writes the database as tx sees it to w. bbolt's WriteTo keeps
// only the text of w's error; the error itself is returned here, so that
// a full disk (ENOSPC) stays recognizable to the callers (the API's 507).
func writeTx(tx *bbolt.Tx, w io.Writer) (int64, error) {
	ew := &errWriter{w: w}
	n, err := tx.WriteTo(ew)
	if err != nil && ew.err != nil {
		err = ew.err
	}
	return n, err
}

// errWriter keeps the first error of its writer.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// Snapshot is a snapshot file opened for reading: its content can be
// read through the same View as the live store, without touching it.
type Snapshot struct {
	db     *bbolt.DB
	path   string
	tmp    string // migrated copy of an older-schema snapshot, removed by Close
	schema int
}

// OpenSnapshot opens a snapshot file read-only and checks that it is a
// bbolt database of a schema this binary knows. A snapshot of an older
// schema is migrated in a temporary copy next to it; the file itself is
// never changed.
func OpenSnapshot(path string) (*Snapshot, error) { return openSnapshot(path, 0) }

// openSnapshot is OpenSnapshot waiting up to lockTimeout (as
// Options.OpenTimeout) for the file's lock.
func openSnapshot(path string, lockTimeout time.Duration) (*Snapshot, error) {
	db, schema, err := openSnapshotFile(path, lockTimeout)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{db: db, path: path, schema: schema}
	if schema == migrations.Current {
		return snap, nil
	}
	_ = db.Close()
	tmp := path + ".migrated.tmp"
	if err := copyFile(tmp, path); err != nil {
		return nil, fmt.Errorf("snapshot %s: copy for migration: %w", path, err)
	}
	db, err = openBolt(tmp, 0)
	if err == nil {
		err = db.Update(func(tx *bbolt.Tx) error {
			_, err := migrations.Migrate(tx)
			return err
		})
		if err != nil {
			_ = db.Close()
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("%w: %s: migrate from schema %d: %w", ctxd.ErrBadSnapshot, path, schema, err)
	}
	return &Snapshot{db: db, path: path, tmp: tmp, schema: schema}, nil
}

// openSnapshotFile opens path read-only and reads its schema version.
func openSnapshotFile(path string, lockTimeout time.Duration) (*bbolt.DB, int, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %w", path, err)
	} else if fi.Size() == 0 {
		return nil, 0, fmt.Errorf("%w: %s is empty", ctxd.ErrBadSnapshot, path)
	}
	if err := checkFileStructure(path); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", ctxd.ErrBadSnapshot, path, err)
	}
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: migrations.LockWait(lockTimeout)})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, 0, fmt.Errorf("snapshot %s is in use by another process (a running server's database?): %w", path, err)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s does not open as a database: %w", ctxd.ErrBadSnapshot, path, err)
	}
	var schema int
	err = safeView(db, func(tx *bbolt.Tx) error {
		var err error
		schema, err = migrations.SchemaVersion(tx)
		if err != nil {
			return err
		}
		if schema == 0 {
			return errors.New("it holds no ctxd schema")
		}
		if schema > migrations.Current {
			return &migrations.TooNewError{Found: schema, Supported: migrations.Current}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, 0, fmt.Errorf("%w: %s: %w", ctxd.ErrBadSnapshot, path, err)
	}
	return db, schema, nil
}

// safeView runs fn in a read transaction and turns a panic inside bbolt
// (which it raises on some corrupt pages) into an error.
func safeView(db *bbolt.DB, fn func(tx *bbolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt database: %v", r)
		}
	}()
	return db.View(fn)
}

// SchemaVersion is the schema the snapshot file was written with.
func (s *Snapshot) SchemaVersion() int { return s.schema }

// Revision is the revision of the store the snapshot was taken of: the
// file's own (its view's), or, for a file built from etcd whose
// transactions' changes it numbered apart, etcd's (SnapshotBuilder).
func (s *Snapshot) Revision() (uint64, error) {
	var rev uint64
	err := safeView(s.db, func(tx *bbolt.Tx) error {
		rev = snapshotRevision(tx)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ctxd.ErrBadSnapshot, s.path, err)
	}
	return rev, nil
}

// snapshotRevision is Snapshot.Revision in the snapshot's transaction tx.
func snapshotRevision(tx *bbolt.Tx) uint64 {
	if src := metaUint(tx, migrations.KeySourceRevision); src > 0 {
		return src
	}
	return lastRevision(tx)
}

// View calls fn with a consistent view of the snapshot.
func (s *Snapshot) View(fn func(v store.View) error) error {
	return s.readView(func(v *View) error { return fn(v) })
}

// OpenSnapshot opens a snapshot file for reading: OpenSnapshot as a method,
// for the Backend contract.
func (s *Store) OpenSnapshot(path string) (store.Snapshot, error) {
	snap, err := OpenSnapshot(path)
	if err != nil {
		return nil, err // not a store.Snapshot holding a nil *Snapshot
	}
	return snap, nil
}

func (s *Snapshot) readView(fn func(v *View) error) error {
	return safeView(s.db, func(tx *bbolt.Tx) error {
		return fn(newView(tx))
	})
}

// Verify reads every page of the snapshot and every record in it, and
// checks that they agree, that every value is JSON and every key and
// namespace one a write takes (a who at most 256 bytes, as imports keep
// it): each current record's change is in the log, each
// history entry points at a logged change of its key, and the key counts
// match. It never panics on a corrupt file (bbolt's own tx.Check may, in a
// goroutine of its own, which would take the process down with it).
func (s *Snapshot) Verify() error {
	err := safeView(s.db, func(tx *bbolt.Tx) error { return verifyTx(tx) })
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ctxd.ErrBadSnapshot, s.path, err)
	}
	return nil
}

func verifyTx(tx *bbolt.Tx) error {
	for _, name := range [][]byte{migrations.BucketMeta, migrations.BucketLog, migrations.BucketNSKeys, migrations.BucketTTL} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("bucket %s is missing", name)
		}
	}
	if src, own := metaUint(tx, migrations.KeySourceRevision), lastRevision(tx); src > own {
		return fmt.Errorf("its source's revision %d is above its own, %d", src, own)
	}
	logb := tx.Bucket(migrations.BucketLog)
	var prev uint64
	err := logb.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("log key %x is not a revision", k)
		}
		rev := binary.BigEndian.Uint64(k)
		if rev <= prev {
			return fmt.Errorf("log revision %d out of order", rev)
		}
		prev = rev
		c, err := decodeChange(rev, v)
		if err != nil {
			return err
		}
		// Names as every write is held to them (the kv and history
		// records' keys are checked against their changes below): a
		// key no write takes (not UTF-8, a control character) would be
		// served, exported and watched as is after a restore, and a
		// client could neither name it back nor delete it. A who is kept
		// as recorded, as an import keeps it, but for its length.
		if err := ctxd.ValidateNamespace(c.Namespace); err != nil {
			return fmt.Errorf("the change of revision %d names a namespace no write takes: %v", rev, err)
		}
		if err := ctxd.ValidateKeyName(c.Key); err != nil {
			return fmt.Errorf("the change of revision %d names a key no write takes, %s/%q: %v", rev, c.Namespace, c.Key, err)
		}
		if err := ctxd.ValidateRecordedWho(c.Who); err != nil {
			return fmt.Errorf("%s/%q: the who of revision %d: %v", c.Namespace, c.Key, rev, err)
		}
		// A value is read back as stored: one damaged into text that is
		// not JSON would be served as such, in every answer, after a
		// restore. (Bytes changed inside a string stay valid JSON: the
		// file has no checksum of its own; the sha256 beside it is
		// checked where it is given.)
		if c.Op == ctxd.OpPut && (!utf8.Valid(c.Value) || !json.Valid(c.Value)) {
			return fmt.Errorf("%s/%s: the value of revision %d is not valid JSON", c.Namespace, c.Key, rev)
		}
		return nil
	})
	if err != nil {
		return err
	}
	counts := tx.Bucket(migrations.BucketNSKeys)
	if err := checkDeadlines(tx); err != nil {
		return err
	}
	return tx.ForEach(func(name []byte, kv *bbolt.Bucket) error {
		ns, ok := migrations.NamespaceOf(name)
		if !ok {
			return nil
		}
		hist := tx.Bucket(migrations.HistBucket(ns))
		if hist == nil {
			return fmt.Errorf("namespace %s has no history bucket", ns)
		}
		var n uint64
		err := kv.ForEach(func(k, v []byte) error {
			n++
			if _, err := currentRecord(logb.Cursor(), ns, string(k), v, true); err != nil {
				return err
			}
			r, _ := decodeKV(v)
			if hist.Get(histKey(string(k), r.modRev)) == nil {
				return fmt.Errorf("%s/%s: revision %d is not in its history", ns, k, r.modRev)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = hist.ForEach(func(k, _ []byte) error {
			i := bytes.IndexByte(k, 0)
			if i <= 0 || len(k) != i+9 {
				return fmt.Errorf("history key %q of %s is malformed", k, ns)
			}
			rev := binary.BigEndian.Uint64(k[i+1:])
			v := logb.Get(k[i+1:])
			if v == nil {
				return fmt.Errorf("%s/%s: history revision %d is not in the log", ns, k[:i], rev)
			}
			e, err := decodeChange(rev, v)
			if err != nil {
				return err
			}
			if e.Namespace != ns || e.Key != string(k[:i]) {
				return fmt.Errorf("%s/%s: history revision %d belongs to %s/%s", ns, k[:i], rev, e.Namespace, e.Key)
			}
			return nil
		})
		if err != nil {
			return err
		}
		var counted uint64
		if v := counts.Get([]byte(ns)); len(v) == 8 {
			counted = binary.BigEndian.Uint64(v)
		} else if v != nil {
			return fmt.Errorf("namespace %s: malformed key count", ns)
		}
		if counted != n {
			return fmt.Errorf("namespace %s: key count does not match its %d keys", ns, n)
		}
		return nil
	})
}

// checkDeadlines checks the deadline index against the kv records: every
// deadline a kv record has is in bucket ttl, and nothing else is.
func checkDeadlines(tx *bbolt.Tx) error {
	var deadlines, indexed int
	err := tx.Bucket(migrations.BucketTTL).ForEach(func(k, _ []byte) error {
		at, ns, key, err := decodeTTLKey(k)
		if err != nil {
			return fmt.Errorf("ttl index entry %x: %w", k, err)
		}
		var r kvRecord
		if kv := tx.Bucket(migrations.KVBucket(ns)); kv != nil {
			r, err = decodeKV(kv.Get([]byte(key)))
		}
		if err != nil || !r.expiresAt.Equal(at) {
			return fmt.Errorf("ttl index entry %s/%s at %s: the key does not have that deadline", ns, key, at)
		}
		indexed++
		return nil
	})
	if err != nil {
		return err
	}
	err = tx.ForEach(func(name []byte, kv *bbolt.Bucket) error {
		if _, ok := migrations.NamespaceOf(name); !ok {
			return nil
		}
		return kv.ForEach(func(_, v []byte) error {
			if r, err := decodeKV(v); err == nil && !r.expiresAt.IsZero() {
				deadlines++
			}
			return nil
		})
	})
	if err == nil && deadlines != indexed {
		err = fmt.Errorf("%d keys have a deadline, the ttl index has %d entries", deadlines, indexed)
	}
	return err
}

// Close closes the snapshot and removes its migrated copy, if any.
func (s *Snapshot) Close() error {
	err := s.db.Close()
	if s.tmp != "" {
		_ = os.Remove(s.tmp)
	}
	return err
}

// file is the path of the snapshot's current-schema content.
func (s *Snapshot) file() string {
	if s.tmp != "" {
		return s.tmp
	}
	return s.path
}
