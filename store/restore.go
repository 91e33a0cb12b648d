package store

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/framework0/ctxd/migrations"
	bolt "go.etcd.io/bbolt"
)

// RestoreOptions select what a restore replaces.
type RestoreOptions struct {
	// Namespaces and Prefix, when set, make the restore partial: only
	// those namespaces (all when empty) and keys starting with Prefix are
	// restored, as one ordinary transaction with new revisions. When both
	// are empty the whole database is replaced.
	Namespaces []string
	Prefix     string
	// DryRun verifies the snapshot and reports the differences without
	// changing anything.
	DryRun bool
	// Who is recorded on the changes of a partial restore.
	Who string
}

func (o RestoreOptions) partial() bool { return len(o.Namespaces) > 0 || o.Prefix != "" }

// NamespaceDiff counts what a restore changes in one namespace, seen from
// the live database: keys the snapshot adds, removes, changes or leaves.
type NamespaceDiff struct {
	Namespace string `json:"ns"`
	Added     int    `json:"added"`
	Removed   int    `json:"removed"`
	Changed   int    `json:"changed"`
	Unchanged int    `json:"unchanged"`
}

// RestoreResult reports a restore or a dry run.
type RestoreResult struct {
	DryRun           bool            `json:"dry_run"`
	Partial          bool            `json:"partial"`
	SnapshotRevision uint64          `json:"snapshot_revision"`
	Revision         uint64          `json:"revision"` // the store's revision after the restore
	Namespaces       []NamespaceDiff `json:"namespaces"`
}

// Restore replaces the live data with the snapshot at path, after
// verifying it. A full restore swaps the database file atomically: requests
// in flight finish first, none sees a half-restored state, the revision
// never goes back, and followers see a new Generation. A partial restore
// is one transaction of ordinary puts and deletes.
func (s *Store) Restore(ctx context.Context, path string, opts RestoreOptions) (RestoreResult, error) {
	for _, ns := range opts.Namespaces {
		if err := ValidateNamespace(ns); err != nil {
			return RestoreResult{}, err
		}
	}
	snap, err := OpenSnapshot(path)
	if err != nil {
		return RestoreResult{}, err
	}
	defer snap.Close()
	if err := snap.Verify(); err != nil {
		return RestoreResult{}, err
	}
	res := RestoreResult{DryRun: opts.DryRun, Partial: opts.partial()}
	var writes []Write
	err = snap.View(func(sv *View) error {
		res.SnapshotRevision = sv.Revision()
		return s.View(func(lv *View) error {
			var err error
			res.Namespaces, writes, err = diff(sv, lv, opts, !opts.DryRun && opts.partial())
			return err
		})
	})
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: compare with snapshot: %w", err)
	}
	if opts.DryRun {
		res.Revision = s.Revision()
		return res, nil
	}
	if opts.partial() {
		if len(writes) > 0 {
			out, err := s.submit(ctx, &request{writes: writes, done: make(chan result, 1)})
			if err != nil {
				return RestoreResult{}, fmt.Errorf("restore: %w", err)
			}
			res.Revision = out.Revision
		} else {
			res.Revision = s.Revision()
		}
		return res, nil
	}
	s.maint.Lock()
	defer s.maint.Unlock()
	s.restoring.Store(true)
	defer s.restoring.Store(false)
	next := s.path + suffixRestore
	if err := copyFile(next, snap.file()); err != nil {
		return RestoreResult{}, fmt.Errorf("restore: copy snapshot: %w", err)
	}
	defer func() { _ = removeIfExists(next) }()
	err = s.exclusive(func() error {
		if err := setFloor(next, s.rev); err != nil {
			return err
		}
		return s.replaceFile(next, true)
	})
	s.removeBackup()
	if err != nil {
		return RestoreResult{}, fmt.Errorf("restore: %w", err)
	}
	res.Revision = s.Revision()
	return res, nil
}

// Restoring reports whether a full restore is replacing the database
// (from the copy of the snapshot to the swap): /readyz answers 503 then.
func (s *Store) Restoring() bool { return s.restoring.Load() }

// setFloor makes the prepared file's revision at least live, so revisions
// never go back, and records which revisions the restore discarded.
//
// It always commits, through openCopy, so that the file carries a freelist
// and opening it during the swap does not walk every page.
func setFloor(path string, live uint64) error {
	db, err := openCopy(path)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		snapRev := lastRevision(tx)
		meta := tx.Bucket(migrations.BucketMeta)
		if live <= snapRev {
			return meta.Put(migrations.KeyFloor, encodeRevision(snapRev))
		}
		if err := meta.Put(migrations.KeyFloor, encodeRevision(live)); err != nil {
			return err
		}
		return meta.Put(migrations.KeyRestoredFrom, encodeRevision(snapRev))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// diff compares the selected part of snapshot sv with live lv, namespace by
// namespace, walking both in key order. With collect it also returns the
// writes that make live equal to the snapshot there.
func diff(sv, lv *View, opts RestoreOptions, collect bool) ([]NamespaceDiff, []Write, error) {
	names := map[string]bool{}
	if len(opts.Namespaces) > 0 {
		for _, ns := range opts.Namespaces {
			names[ns] = true
		}
	} else {
		for _, n := range sv.Namespaces() {
			names[n.Name] = true
		}
		for _, n := range lv.Namespaces() {
			names[n.Name] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for ns := range names {
		sorted = append(sorted, ns)
	}
	sort.Strings(sorted)
	who := opts.Who
	if who == "" {
		who = "restore"
	}
	var out []NamespaceDiff
	var writes []Write
	for _, ns := range sorted {
		d := NamespaceDiff{Namespace: ns}
		snapKeys, err := collectRecords(sv, ns, opts.Prefix)
		if err != nil {
			return nil, nil, err
		}
		i := 0
		err = lv.ForEach(ns, opts.Prefix, func(live Record) error {
			for i < len(snapKeys) && snapKeys[i].Key < live.Key {
				d.Added++
				if collect {
					writes = append(writes, Write{Namespace: ns, Key: snapKeys[i].Key, Op: OpPut, Value: snapKeys[i].Value, Who: who})
				}
				i++
			}
			if i < len(snapKeys) && snapKeys[i].Key == live.Key {
				if bytes.Equal(snapKeys[i].Value, live.Value) {
					d.Unchanged++
				} else {
					d.Changed++
					if collect {
						writes = append(writes, Write{Namespace: ns, Key: live.Key, Op: OpPut, Value: snapKeys[i].Value, Who: who})
					}
				}
				i++
				return nil
			}
			d.Removed++
			if collect {
				writes = append(writes, Write{Namespace: ns, Key: live.Key, Op: OpDelete, Who: who})
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		for ; i < len(snapKeys); i++ {
			d.Added++
			if collect {
				writes = append(writes, Write{Namespace: ns, Key: snapKeys[i].Key, Op: OpPut, Value: snapKeys[i].Value, Who: who})
			}
		}
		out = append(out, d)
	}
	return out, writes, nil
}

// collectRecords reads the keys and values of one namespace of a view.
// (A restore holds the diff in memory anyway; the live side is streamed.)
func collectRecords(v *View, ns, prefix string) ([]Record, error) {
	var out []Record
	err := v.ForEach(ns, prefix, func(r Record) error {
		out = append(out, Record{Key: r.Key, Value: r.Value})
		return nil
	})
	return out, err
}
