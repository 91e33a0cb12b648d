package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/migrations"
)

// copyTxBytes bounds the bytes written per transaction of a copy.
const copyTxBytes = 32 << 20

// Defrag rewrites the database into a new, compact file while the store
// keeps serving, then swaps it in. Writes wait only for the final catch-up
// (the changes committed since the last catch-up) and the swap.
func (s *Store) Defrag(ctx context.Context) (ctxd.DefragResult, error) {
	s.maint.Lock()
	defer s.maint.Unlock()
	var res ctxd.DefragResult
	res.SizeBefore = fileSize(s.path)
	if err := s.copyFits("the defrag's copy of the database", s.inUse.Load()); err != nil {
		return res, fmt.Errorf("defrag: %w", err)
	}
	next := s.path + suffixDefrag
	_ = os.Remove(next)
	dst, err := openCopy(next)
	if err != nil {
		return res, fmt.Errorf("defrag: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = dst.Close()
		}
		_ = removeIfExists(next)
	}()
	if err := s.owner.Give(next); err != nil {
		return res, fmt.Errorf("defrag: %w", err)
	}
	gen := s.generation.Load()
	var copied uint64
	err = s.view(func(tx *bbolt.Tx) error {
		copied = lastRevision(tx)
		return copyAll(dst, tx)
	})
	if err != nil {
		return res, fmt.Errorf("defrag: copy: %w", err)
	}
	// Catch up without stopping writers until little is left.
	for i := 0; i < 8; i++ {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("defrag: %w", err)
		}
		n, last, err := s.catchUp(dst, copied)
		if err != nil {
			return res, fmt.Errorf("defrag: catch up: %w", err)
		}
		copied = last
		failpoint.Hit(failpoint.DefragCatchUp)
		if n < 1000 {
			break
		}
	}
	err = s.exclusive(func() error {
		start := time.Now()
		defer func() { res.Pause = time.Since(start) }()
		if s.generation.Load() != gen {
			return errReplaced
		}
		if _, _, err := s.catchUp(dst, copied); err != nil {
			return err
		}
		err := s.view(func(src *bbolt.Tx) error {
			return dst.Update(func(tx *bbolt.Tx) error {
				for _, name := range [][]byte{migrations.BucketMeta, migrations.BucketNSKeys, migrations.BucketTTL} {
					if err := tx.DeleteBucket(name); err != nil {
						return err
					}
					if err := copyBucket(tx, name, src.Bucket(name)); err != nil {
						return err
					}
				}
				return copyDeadlines(tx, src)
			})
		})
		if err != nil {
			return err
		}
		closed = true
		if err := closeTight(dst, next); err != nil {
			return err
		}
		return s.replaceFile(next, s.path+suffixBackup, swapDefrag)
	})
	s.removeBackup()
	if err != nil {
		return res, fmt.Errorf("defrag: %w", err)
	}
	res.SizeAfter = fileSize(s.path)
	res.Revision = s.Revision()
	s.stats.defrags.Add(1)
	s.stats.defragPauseNanos.Store(int64(res.Pause))
	return res, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// copyAll copies every bucket of src into dst, filling pages fully, in
// transactions of at most copyTxBytes.
func copyAll(dst *bbolt.DB, src *bbolt.Tx) error {
	tx, err := dst.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var size int
	err = src.ForEach(func(name []byte, b *bbolt.Bucket) error {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				return fmt.Errorf("bucket %s: nested buckets are not part of the layout", name)
			}
			if size >= copyTxBytes {
				if err := tx.Commit(); err != nil {
					return err
				}
				size = 0
				if tx, err = dst.Begin(true); err != nil {
					return err
				}
			}
			db := tx.Bucket(name)
			db.FillPercent = 1.0
			if err := db.Put(k, v); err != nil {
				return err
			}
			size += len(k) + len(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tx.Commit()
}

// copyBucket creates bucket name in tx with the content of src (may be nil).
func copyBucket(tx *bbolt.Tx, name []byte, src *bbolt.Bucket) error {
	b, err := tx.CreateBucket(name)
	if err != nil {
		return err
	}
	if src == nil {
		return nil
	}
	return src.ForEach(func(k, v []byte) error { return b.Put(k, v) })
}

// catchUp applies to dst every change logged in the live store after
// revision after, in transactions of bounded size. It returns how many
// changes it applied and the last revision applied.
func (s *Store) catchUp(dst *bbolt.DB, after uint64) (int, uint64, error) {
	n, last := 0, after
	for {
		var batch int
		err := s.view(func(src *bbolt.Tx) error {
			return dst.Update(func(tx *bbolt.Tx) error {
				c := src.Bucket(migrations.BucketLog).Cursor()
				for k, v := c.Seek(encodeRevision(last + 1)); k != nil && batch < 10000; k, v = c.Next() {
					rev := binary.BigEndian.Uint64(k)
					e, err := decodeChange(rev, v)
					if err != nil {
						return err
					}
					if err := replay(tx, &e, v); err != nil {
						return fmt.Errorf("revision %d: %w", rev, err)
					}
					last = rev
					batch++
				}
				return nil
			})
		})
		n += batch
		if err != nil || batch < 10000 {
			return n, last, err
		}
	}
}

// copyDeadlines gives the kv records of dst the deadlines src's index
// has: keepalives move deadlines without a log entry, so the catch-up
// from the log does not carry them.
func copyDeadlines(dst, src *bbolt.Tx) error {
	return src.Bucket(migrations.BucketTTL).ForEach(func(k, _ []byte) error {
		at, ns, key, err := decodeTTLKey(k)
		if err != nil {
			return err
		}
		kv := dst.Bucket(migrations.KVBucket(ns))
		if kv == nil {
			return fmt.Errorf("deadline of %s/%s: no namespace: %w", ns, key, errCorrupt)
		}
		r, err := decodeKV(kv.Get([]byte(key)))
		if err != nil {
			return fmt.Errorf("deadline of %s/%s: %w", ns, key, err)
		}
		r.expiresAt = at
		return kv.Put([]byte(key), r.encode())
	})
}

// replay applies one logged change to a copy of the database.
func replay(tx *bbolt.Tx, e *logEntry, raw []byte) error {
	kv, err := tx.CreateBucketIfNotExists(migrations.KVBucket(e.Namespace))
	if err != nil {
		return err
	}
	hist, err := tx.CreateBucketIfNotExists(migrations.HistBucket(e.Namespace))
	if err != nil {
		return err
	}
	if err := tx.Bucket(migrations.BucketLog).Put(encodeRevision(e.Revision), bytes.Clone(raw)); err != nil {
		return err
	}
	if err := hist.Put(histKey(e.Key, e.Revision), nil); err != nil {
		return err
	}
	if e.Op == ctxd.OpDelete {
		return kv.Delete([]byte(e.Key))
	}
	rec := kvRecord{version: e.Version, createRev: e.createRev, modRev: e.Revision}
	return kv.Put([]byte(e.Key), rec.encode())
}

// CompactFile rewrites the database file at path into a compact copy and
// replaces it, for a stopped server (`ctxd compact`). The file is locked
// while this runs: it fails (ErrLocked) if a server has it open after
// waiting up to lockTimeout (as Options.OpenTimeout). The copy gets the
// data folder's owner (dataOwner).
func CompactFile(path string, lockTimeout time.Duration) (before, after int64, err error) {
	before = fileSize(path)
	owner, err := dataOwner(filepath.Dir(path))
	if err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if path, err = databaseFile(path); err != nil {
		return before, 0, fmt.Errorf("compact: %w", err)
	}
	src, err := openBolt(path, migrations.LockWait(lockTimeout))
	if err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	defer func() {
		if src != nil {
			_ = src.Close()
		}
	}()
	if err := src.View(func(tx *bbolt.Tx) error {
		schema, err := migrations.SchemaVersion(tx)
		if err == nil && schema > migrations.Current {
			// Its layout may hold what this binary does not know to copy.
			return &migrations.TooNewError{Found: schema, Supported: migrations.Current}
		}
		return err
	}); err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	next := path + suffixDefrag
	_ = os.Remove(next)
	defer func() { _ = removeIfExists(next) }()
	dst, err := openCopy(next)
	if err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := owner.Give(next); err != nil {
		_ = dst.Close()
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := src.View(func(tx *bbolt.Tx) error { return copyAll(dst, tx) }); err != nil {
		_ = dst.Close()
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := closeTight(dst, next); err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	// Keep the lock on the old file until the new one is in place.
	if err := os.Rename(next, path); err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return before, 0, fmt.Errorf("compact %s: %w", path, err)
	}
	_ = src.Close()
	src = nil
	return before, fileSize(path), nil
}

// closeTight closes a freshly written copy and cuts its file to the pages
// in use: bbolt grows files ahead in large steps, and a copy made to get
// space back should not keep them.
func closeTight(db *bbolt.DB, path string) error {
	var used int64
	if err := db.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		_ = db.Close()
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(used); err != nil {
		return err
	}
	return f.Sync()
}

// openCopy opens a new file to copy a database into. As the live file, it
// writes its freelist at commit: opening it then reads that one page
// instead of walking every page to rebuild the freelist, which keeps the
// swap at the end of a defrag short. A symbolic link at path is refused
// (fsutil.OpenNoFollow: the folder may be another user's, the process
// root's).
func openCopy(path string) (*bbolt.DB, error) { return bbolt.Open(path, 0o600, copyOptions()) }

// copyOptions are openCopy's bbolt options.
func copyOptions() *bbolt.Options {
	return &bbolt.Options{FreelistType: bbolt.FreelistMapType, OpenFile: fsutil.OpenNoFollow}
}
