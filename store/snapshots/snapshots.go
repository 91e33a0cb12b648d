package snapshots

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/store"
)

var (
	// ErrNotFound is returned for an unknown snapshot id.
	ErrNotFound = errors.New("snapshot not found")
	// ErrInvalidID is returned for an id that is not a snapshot id.
	ErrInvalidID = errors.New("invalid snapshot id")
	// ErrChecksum is returned when a file's sha256 differs from the one
	// recorded or given. It also matches ctxd.ErrBadSnapshot.
	ErrChecksum = fmt.Errorf("%w: sha256 mismatch", ctxd.ErrBadSnapshot)
)

// Manager keeps the snapshots of one folder, which several processes may
// share (the instances of one etcd deployment, snapshots.dir).
type Manager struct {
	dir string
	st  store.Snapshotter
	now func() time.Time
	mu  sync.Mutex // serialises this process's creations and prunings

	// OnCreate, when set before use, is told of every snapshot creation:
	// its metadata (when it succeeded), how long it took and its error.
	OnCreate func(meta ctxd.SnapshotMeta, took time.Duration, err error)
	// Reserve, when set before use, is the disk space that snapshots
	// written here (taken or uploaded) leave free on the folder's file
	// system: one that would take it fails with a *fsutil.ReserveError.
	Reserve fsutil.Reserve
}

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}(\.[0-9]{1,9})?Z-r[0-9]+$`)

// ValidID reports whether id has the form of a snapshot id, so that it can
// never name a file outside the snapshots folder.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Open returns the manager of the snapshots folder dir, creating it, and
// removes what a crash may have left (RemoveLeftovers).
func Open(dir string, st store.Snapshotter) (*Manager, error) {
	if err := fsutil.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	m := &Manager{dir: dir, st: st, now: time.Now}
	if _, err := m.RemoveLeftovers(); err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	return m, nil
}

// RemoveLeftovers removes what a crash left in the folder: temporary
// files and snapshot files whose metadata was never written. Every process
// writing a snapshot in the folder holds its fsutil.WritersLock shared
// until the snapshot's metadata is written, and leftovers are removed only
// under it exclusively, so that processes sharing the folder never take
// each other's snapshot in progress for a crash's leftover. While one
// writes, it removes nothing (removed is false): the next call does.
func (m *Manager) RemoveLeftovers() (removed bool, err error) {
	return fsutil.WhenIdle(m.dir, func() error {
		entries, err := os.ReadDir(m.dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			switch {
			case fsutil.IsTemp(name), strings.HasSuffix(name, ".tmp"):
				_ = os.Remove(filepath.Join(m.dir, name))
			case strings.HasSuffix(name, ".db"):
				if _, err := os.Stat(filepath.Join(m.dir, strings.TrimSuffix(name, ".db")+".json")); os.IsNotExist(err) {
					_ = os.Remove(filepath.Join(m.dir, name))
				}
			}
		}
		return nil
	})
}

// createTemp creates a temp file for a snapshot in the folder, holding
// its lock shared (see RemoveLeftovers); release gives the lock back, once
// the snapshot's metadata is written or the temp file discarded.
func (m *Manager) createTemp(name string) (tmp *fsutil.Temp, release func(), err error) {
	tmp, release, err = fsutil.CreateSharedTemp(m.dir, name, 0o600)
	if err == nil {
		tmp.KeepFree(m.Reserve)
	}
	return tmp, release, err
}

// Dir is the snapshots folder.
func (m *Manager) Dir() string { return m.dir }

func (m *Manager) dbPath(id string) string   { return filepath.Join(m.dir, id+".db") }
func (m *Manager) metaPath(id string) string { return filepath.Join(m.dir, id+".json") }

// Create takes a snapshot of the live store and verifies it by reopening
// it before listing it. Writers keep writing meanwhile.
func (m *Manager) Create(ctx context.Context, origin string) (meta ctxd.SnapshotMeta, err error) {
	if m.OnCreate != nil {
		start := time.Now()
		defer func() { m.OnCreate(meta, time.Since(start), err) }()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// After this snapshot, once its lock is given back: a crash's leftovers
	// (a temp file as large as the data) that Open could not remove while
	// another process sharing the folder was writing one.
	defer func() { _, _ = m.RemoveLeftovers() }()
	tmp, release, err := m.createTemp("snapshot")
	if err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("create snapshot: %w", err)
	}
	defer release()
	defer tmp.Discard()
	h := sha256.New()
	info, err := m.st.WriteSnapshot(io.MultiWriter(tmp, h))
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("create snapshot: %w", err)
	}
	failpoint.Hit(failpoint.SnapshotAfterCopy)
	if err := ctx.Err(); err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("create snapshot: %w", err)
	}
	created := m.now().UTC()
	meta = ctxd.SnapshotMeta{
		Revision: info.Revision, Created: created, Size: info.Size,
		SHA256: hex.EncodeToString(h.Sum(nil)), SchemaVersion: info.SchemaVersion, Namespaces: info.Namespaces, Origin: origin,
	}
	if err := m.install(tmp, &meta); err != nil {
		return ctxd.SnapshotMeta{}, err
	}
	return meta, nil
}

// newID names the n-th candidate id of a snapshot taken at t of
// revision rev: time and revision, then a counter.
func newID(t time.Time, rev uint64, n int) string {
	if n == 0 {
		return fmt.Sprintf("%sZ-r%d", t.Format("20060102T150405"), rev)
	}
	return fmt.Sprintf("%s.%dZ-r%d", t.Format("20060102T150405"), n, rev)
}

// maxIDTries bounds the candidate ids a snapshot tries.
const maxIDTries = 1000

// install verifies the closed temporary file tmp and moves it into place
// under a new id with its metadata, the metadata last; it sets meta.ID.
// The id is claimed by linking the file under it, which fails when the
// name exists: processes sharing the folder that take snapshots of the
// same revision in the same second (the instances of an etcd deployment)
// get distinct ids, where a look for a free name would give both the same.
func (m *Manager) install(tmp *fsutil.Temp, meta *ctxd.SnapshotMeta) error {
	snap, err := m.st.OpenSnapshot(tmp.Name())
	if err != nil {
		return err
	}
	err = snap.Verify()
	_ = snap.Close()
	if err != nil {
		return err
	}
	for n := 0; ; n++ {
		if n == maxIDTries {
			return fmt.Errorf("snapshot %s: %d ids taken", meta.ID, n)
		}
		meta.ID = newID(meta.Created, meta.Revision, n)
		if _, err := os.Stat(m.metaPath(meta.ID)); err == nil {
			continue // a snapshot whose file went missing keeps its id
		}
		err = tmp.CommitNew(m.dbPath(meta.ID))
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("snapshot %s: %w", meta.ID, err)
		}
	}
	failpoint.Hit(failpoint.SnapshotBeforeMeta)
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileBytes(m.metaPath(meta.ID), 0o600, b); err != nil {
		_ = os.Remove(m.dbPath(meta.ID))
		return fmt.Errorf("snapshot %s: %w", meta.ID, err)
	}
	return nil
}

// Upload stores a snapshot file made elsewhere, read from r, after
// checking it against wantSHA256 (when given) and verifying it.
func (m *Manager) Upload(ctx context.Context, r io.Reader, wantSHA256 string) (ctxd.SnapshotMeta, error) {
	tmp, release, err := m.createTemp("uploaded-snapshot")
	if err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("upload snapshot: %w", err)
	}
	defer release()
	defer tmp.Discard()
	meta, err := m.upload(tmp, r, wantSHA256)
	return meta, named(err, tmp.Name(), "the upload")
}

func (m *Manager) upload(tmp *fsutil.Temp, r io.Reader, wantSHA256 string) (ctxd.SnapshotMeta, error) {
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Close()
	}
	if err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("upload snapshot: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if wantSHA256 != "" && !strings.EqualFold(wantSHA256, sum) {
		return ctxd.SnapshotMeta{}, fmt.Errorf("%w: the upload's sha256 is %s, %s was expected", ErrChecksum, sum, wantSHA256)
	}
	snap, err := m.st.OpenSnapshot(tmp.Name())
	if err != nil {
		return ctxd.SnapshotMeta{}, err
	}
	meta := ctxd.SnapshotMeta{Size: size, SHA256: sum, SchemaVersion: snap.SchemaVersion(), Origin: "upload"}
	meta.Revision, err = snap.Revision()
	if err == nil {
		err = snap.View(func(v store.View) error {
			meta.Namespaces = v.Namespaces()
			return nil
		})
	}
	_ = snap.Close()
	if err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("%w: %w", ctxd.ErrBadSnapshot, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	meta.Created = m.now().UTC()
	if err := m.install(tmp, &meta); err != nil {
		return ctxd.SnapshotMeta{}, err
	}
	return meta, nil
}

// ids returns the ids of the snapshots whose metadata is written.
func (m *Manager) ids() ([]string, error) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && ValidID(id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Count returns how many snapshots are kept, reading only the folder (for
// metrics, which ask at every scrape).
func (m *Manager) Count() (int, error) {
	ids, err := m.ids()
	return len(ids), err
}

// List returns every snapshot, newest first.
func (m *Manager) List() ([]ctxd.SnapshotMeta, error) {
	ids, err := m.ids()
	if err != nil {
		return nil, err
	}
	out := []ctxd.SnapshotMeta{}
	for _, id := range ids {
		meta, err := m.Get(id)
		if err != nil {
			continue
		}
		out = append(out, meta)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Get returns one snapshot's metadata.
func (m *Manager) Get(id string) (ctxd.SnapshotMeta, error) {
	if !ValidID(id) {
		return ctxd.SnapshotMeta{}, fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	b, err := os.ReadFile(m.metaPath(id))
	if os.IsNotExist(err) {
		return ctxd.SnapshotMeta{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return ctxd.SnapshotMeta{}, err
	}
	var meta ctxd.SnapshotMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("snapshot %s: metadata: %w", id, err)
	}
	return meta, nil
}

// OpenFile opens a snapshot's file for download, after checking that it
// still has the sha256 recorded.
func (m *Manager) OpenFile(id string) (*os.File, ctxd.SnapshotMeta, error) {
	meta, err := m.checked(id)
	if err != nil {
		return nil, ctxd.SnapshotMeta{}, err
	}
	f, err := os.Open(m.dbPath(id))
	if err != nil {
		return nil, ctxd.SnapshotMeta{}, err
	}
	return f, meta, nil
}

// checked returns a snapshot's metadata after checking its file's sha256.
func (m *Manager) checked(id string) (ctxd.SnapshotMeta, error) {
	meta, err := m.checkedFile(id)
	return meta, named(err, m.dbPath(id), "snapshot "+id)
}

func (m *Manager) checkedFile(id string) (ctxd.SnapshotMeta, error) {
	meta, err := m.Get(id)
	if err != nil {
		return ctxd.SnapshotMeta{}, err
	}
	sum, err := fileSHA256(m.dbPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return ctxd.SnapshotMeta{}, fmt.Errorf("%w: %s: file missing: %w", ctxd.ErrBadSnapshot, id, err)
	}
	if err != nil {
		return ctxd.SnapshotMeta{}, fmt.Errorf("snapshot %s: %w", id, err)
	}
	if sum != meta.SHA256 {
		return ctxd.SnapshotMeta{}, fmt.Errorf("%w: snapshot %s has sha256 %s, %s was recorded", ErrChecksum, id, sum, meta.SHA256)
	}
	return meta, nil
}

// named returns err with path replaced in its message by name, what the
// client knows the file as (the upload, a snapshot's id): these messages
// reach clients, and where the server keeps its files is not theirs to
// know. It still wraps err (errors.Is finds ErrBadSnapshot).
func named(err error, path, name string) error {
	if err == nil || !strings.Contains(err.Error(), path) {
		return err
	}
	return &namedError{msg: strings.ReplaceAll(err.Error(), path, name), err: err}
}

type namedError struct {
	msg string
	err error
}

func (e *namedError) Error() string { return e.msg }
func (e *namedError) Unwrap() error { return e.err }

// fileSHA256 is the hex sha256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// MetaPath is the metadata file that goes with the snapshot file at path,
// as in a snapshots folder: <name>.json beside <name>.db (or beside any
// other name, + ".json").
func MetaPath(path string) string {
	return strings.TrimSuffix(path, ".db") + ".json"
}

// IsSHA256 reports whether s is a sha256 in hexadecimal (64 digits), as
// X-Ctxd-Sha256 and --sha256 must be.
func IsSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// CheckFile checks the sha256 of a snapshot file kept outside a snapshots
// folder (downloaded, or copied from another machine) against want, when
// given, and against the metadata file beside it (MetaPath), when there is
// one. It returns how many sums it checked (0: neither was there). A
// mismatch is ErrChecksum. A file beside it that is not snapshot metadata
// (a dump named like the snapshot) is refused, unless want is given: the
// sum given is then the one checked. A path that is missing or a folder is
// an error first: before anything is said about sums.
func CheckFile(path, want string) (int, error) {
	switch fi, err := os.Stat(path); {
	case err != nil:
		return 0, fmt.Errorf("snapshot %w", err)
	case fi.IsDir():
		return 0, fmt.Errorf("snapshot %s: is a folder; give the snapshot file (a .db)", path)
	}
	type expected struct{ sum, from string }
	var expect []expected
	if want != "" {
		expect = append(expect, expected{strings.ToLower(want), "was given"})
	}
	metaPath := MetaPath(path)
	b, err := os.ReadFile(metaPath)
	switch {
	case err == nil:
		var meta ctxd.SnapshotMeta
		switch err := json.Unmarshal(b, &meta); {
		case (err != nil || meta.SHA256 == "") && want != "":
			// Not the snapshot's metadata: the sum given stands alone.
		case err != nil:
			return 0, fmt.Errorf("%w: %s, the metadata beside %s: %w (give the sum with --sha256 to check against it alone)", ctxd.ErrBadSnapshot, metaPath, path, err)
		case meta.SHA256 == "":
			return 0, fmt.Errorf("%w: %s, the metadata beside %s, holds no sha256 (give the sum with --sha256 to check against it alone)", ctxd.ErrBadSnapshot, metaPath, path)
		default:
			expect = append(expect, expected{strings.ToLower(meta.SHA256), "is recorded in " + metaPath})
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("snapshot metadata: %w", err)
	}
	if len(expect) == 0 {
		return 0, nil
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", path, err)
	}
	for _, e := range expect {
		if sum != e.sum {
			return 0, fmt.Errorf("%w: %s has sha256 %s, %s %s", ErrChecksum, path, sum, e.sum, e.from)
		}
	}
	return len(expect), nil
}

// Open opens a verified snapshot for reading (for an export).
func (m *Manager) Open(id string) (store.Snapshot, ctxd.SnapshotMeta, error) {
	meta, err := m.checked(id)
	if err != nil {
		return nil, ctxd.SnapshotMeta{}, err
	}
	snap, err := m.st.OpenSnapshot(m.dbPath(id))
	if err != nil {
		return nil, ctxd.SnapshotMeta{}, named(err, m.dbPath(id), "snapshot "+id)
	}
	return snap, meta, nil
}

// Restore checks a snapshot's sha256, then restores the live store from it.
func (m *Manager) Restore(ctx context.Context, id string, opts ctxd.RestoreOptions) (ctxd.RestoreResult, error) {
	if _, err := m.checked(id); err != nil {
		return ctxd.RestoreResult{}, err
	}
	res, err := m.st.Restore(ctx, m.dbPath(id), opts)
	return res, named(err, m.dbPath(id), "snapshot "+id)
}

// Delete removes a snapshot, its metadata first so it is never listed
// half-removed (not even after a power cut: the folder is synced between
// the two), and is durable when it returns.
func (m *Manager) Delete(id string) error {
	if _, err := m.Get(id); err != nil {
		return err
	}
	if err := os.Remove(m.metaPath(id)); os.IsNotExist(err) {
		return fmt.Errorf("%w: %s", ErrNotFound, id) // another process deleted it meanwhile
	} else if err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	if err := fsutil.SyncDir(m.dir); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	if err := os.Remove(m.dbPath(id)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	if err := fsutil.SyncDir(m.dir); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", id, err)
	}
	return nil
}

// Prune removes the oldest scheduled snapshots beyond the keep newest,
// never those named in spare (a snapshot just taken: one dated before
// others by a clock that stepped back is still the newest there is).
// Snapshots dated ahead of the clock (fsutil.AheadLast) count as the
// oldest.
// Snapshots taken through the API or uploaded are the operator's to
// delete: a schedule removed the one taken before an upgrade, or uploaded
// to restore, seven intervals later.
func (m *Manager) Prune(keep int, spare ...string) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	var removed []string
	all = slices.DeleteFunc(all, func(meta ctxd.SnapshotMeta) bool {
		return meta.Origin != originSchedule || slices.Contains(spare, meta.ID)
	})
	// Dated ahead of the clock (taken while it was ahead), they count as
	// the oldest: newest first, they held keep's slots, and each new
	// snapshot removed the one before, until the clock passed them.
	fsutil.AheadLast(all, func(s ctxd.SnapshotMeta) time.Time { return s.Created }, m.now())
	for _, meta := range all[min(max(keep-len(spare), 0), len(all)):] {
		err := m.Delete(meta.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // pruned by another process sharing the folder
		case err != nil:
			return removed, err
		}
		removed = append(removed, meta.ID)
	}
	return removed, nil
}

// Schedule takes a snapshot every interval until ctx ends, pruning to
// keep after each verified one. Failures go to onError and the schedule
// goes on.
//
// Instances that share the folder (snapshots.dir) and have the same
// schedule take one snapshot per interval between them, not one each: a
// tick is skipped when another process's scheduled snapshot in the folder
// is less than half the interval old, or another process claimed a tick
// less than half the interval ago (claimTick: ticks that come together
// find no snapshot yet). The instance whose tick comes first after that
// keeps the schedule; when it stops, another takes over within an
// interval.
//
// A tick is skipped, too, when the newest scheduled snapshot already
// holds the store's revision (an idle server's keep slots filled with
// copies of one state). onTaken, when set, hears of each snapshot taken
// and the ones pruned after it.
func (m *Manager) Schedule(ctx context.Context, interval time.Duration, keep int, onError func(error), onTaken func(taken ctxd.SnapshotMeta, pruned []string)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	// last is the scheduled snapshot this process took last: the only one
	// of its own that can be less than an interval old (a set of every one
	// grew by an id per interval with keep 0).
	var last string
	// claimed is the number of this process's last claim (claimTick).
	var claimed int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// One listing for both checks (each reads every snapshot's
		// metadata); a failed one is the snapshot's to report.
		if list, err := m.List(); err == nil && (m.scheduledElsewhere(list, interval/2, last) || m.unchangedSinceScheduled(list)) {
			continue
		}
		n, claim, ok := m.claimTick(interval, claimed)
		if !ok {
			continue
		}
		claimed = n
		meta, err := m.Create(ctx, originSchedule)
		if err != nil {
			if claim != "" {
				_ = os.Remove(claim) // another instance may take this interval's
				// Numbers start again from the claims left: a later one
				// of this number is another process's.
				claimed = 0
			}
			if ctx.Err() == nil {
				onError(err)
			}
			continue
		}
		last = meta.ID
		removed, err := m.Prune(keep, meta.ID)
		if onTaken != nil {
			onTaken(meta, removed)
		}
		if err != nil {
			onError(err)
		}
	}
}

// originSchedule is the Origin of a scheduled snapshot.
const originSchedule = "schedule"

// claimTick claims this tick's scheduled snapshot for this process among
// those sharing the folder. Claims are files numbered in order, each
// holding the time it was made: a tick is claimed by creating the file
// after the newest, which fails when another process created it first,
// and only when the newest is this process's own (mine) or was made at
// least half an interval ago (or more than that ahead of the clock: one
// made before the clock stepped back). Without it, instances whose ticks
// came together both found no recent snapshot (one is listed only once
// written) and both took one, every interval. Older claims are removed.
// A folder where no claim can be made takes the snapshot anyway: its
// error is the snapshot's to report. Claims are this folder's, whatever
// each instance's interval, as scheduledElsewhere counts every
// instance's snapshots.
func (m *Manager) claimTick(interval time.Duration, mine int64) (n int64, path string, ok bool) {
	names, _ := filepath.Glob(filepath.Join(m.dir, claimPrefix+"*"+claimSuffix))
	newest, numbers := int64(0), []int64{}
	for _, p := range names {
		k, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), claimPrefix), claimSuffix), 10, 64)
		if err == nil && k > 0 {
			numbers = append(numbers, k)
			newest = max(newest, k)
		}
	}
	now := m.now()
	if newest > 0 && newest != mine {
		// A claim read between its creation and its time's write is
		// empty: its file's time stands in for it.
		if at, ok := claimTime(m.claimPath(newest)); ok && within(at, now, interval/2) {
			return 0, "", false
		}
	}
	n, path = newest+1, m.claimPath(newest+1)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return 0, "", false
	}
	if err == nil {
		stamp, _ := now.UTC().MarshalText()
		_, err = f.Write(stamp)
		if err == nil {
			err = fsutil.GiveFile(f)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		_ = os.Remove(path)
		return 0, "", true
	}
	for _, k := range numbers {
		if k < n {
			_ = os.Remove(m.claimPath(k))
		}
	}
	return n, path, true
}

// The names of claimTick's claims: .schedule-<n>.claim.
const (
	claimPrefix = ".schedule-"
	claimSuffix = ".claim"
)

// claimTime is when the claim at path was made: the time it holds, else
// its file's modification time; ok is false when it is gone.
func claimTime(path string) (at time.Time, ok bool) {
	b, err := os.ReadFile(path)
	if err == nil && at.UnmarshalText(b) == nil {
		return at, true
	}
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}, false
	}
	return fi.ModTime(), true
}

func (m *Manager) claimPath(n int64) string {
	return filepath.Join(m.dir, claimPrefix+strconv.FormatInt(n, 10)+claimSuffix)
}

// unchangedSinceScheduled reports whether the newest scheduled snapshot
// of list (newest first) holds the store's current revision; one dated
// ahead of the clock is not the newest (taken while the clock was ahead,
// it held every tick after a step back: an idle server took a snapshot
// each).
func (m *Manager) unchangedSinceScheduled(list []ctxd.SnapshotMeta) bool {
	st, ok := m.st.(interface{ Revision() uint64 })
	if !ok {
		return false
	}
	rev, now := st.Revision(), m.now()
	for _, s := range list { // newest first
		if s.Origin == originSchedule && !fsutil.DatedAhead(s.Created, now) {
			return s.Revision == rev
		}
	}
	return false
}

// scheduledElsewhere reports whether list holds a scheduled snapshot less
// than d old that is not mine. One dated more
// than d after now is not counted: it says only that a clock was
// ahead when it was taken (this one's since stepped back, or another
// instance's), and would hold every tick back until the clock caught up
// with it.
func (m *Manager) scheduledElsewhere(list []ctxd.SnapshotMeta, d time.Duration, mine string) bool {
	now := m.now()
	for _, s := range list {
		if s.Origin == originSchedule && s.ID != mine && within(s.Created, now, d) {
			return true
		}
	}
	return false
}

// within reports whether at is less than d from now, before or after it:
// a scheduled snapshot or a claim of the current interval. One dated
// further ahead says only that a clock was ahead when it was made.
func within(at, now time.Time, d time.Duration) bool {
	age := now.Sub(at)
	return age < d && age > -d
}
