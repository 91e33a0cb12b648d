package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/wal"
)

// Store is the durable versioned key-value store. It is safe for concurrent use.
type Store struct {
	// dbMu guards db: every use holds it shared; replacing the file
	// (restore, defrag) holds it exclusively, so no request ever sees a
	// half-replaced database.
	dbMu   sync.RWMutex
	db     *bbolt.DB
	path   string // the database file (databaseFile)
	walDir string // its write-ahead log (WALDir of the path Open was given)
	limits ctxd.Limits
	now    func() time.Time
	// ttlClock is the clock deadlines are set and compared on: the wall
	// clock as it stood at its base (Open, or the last step the writer
	// found), moved on by the monotonic clock since, so that a step of the
	// system clock (NTP, a VM resumed) neither expires every expiring key
	// at once nor keeps them past their time; the writer then moves every
	// deadline by the step and takes the wall clock as the new base
	// (rebaseDeadlines), so that deadlines are stored as wall times.
	ttlClock *steadyClock

	// wal is the write-ahead log in <folder>/wal: a write is acknowledged
	// once it is there; the committer applies it to db later (DESIGN.md).
	wal     *wal.Log
	walLock *os.File // the wal folder, locked while the store is open
	// ov holds the acknowledged changes not yet in db.
	ov overlay
	// cache holds the current state of keys Get read from db (nil: off).
	cache *getCache
	// ttl indexes the deadlines of the keys that expire; the expirer
	// (ttl.go) deletes them when due.
	ttl         *deadlines
	expirerDone chan struct{}

	queue    chan *request
	maxBatch int
	stop     chan struct{} // closed by Close: the writer drains and exits
	stopped  chan struct{} // closed when the writer has exited
	closing  sync.Once
	closeErr error

	// The committer (committer.go).
	commitWake chan struct{} // a send (never blocking) wakes it
	// commitIdle is set while the committer waits with nothing to apply:
	// only then (or at commitChanges) does a publish wake it.
	commitIdle     atomic.Bool
	commitStop     chan struct{} // closed once the writer has exited
	commitDone     chan struct{} // closed when it has exited
	urgent         atomic.Int32  // checkpoints waiting: commit at once
	applyMu        sync.Mutex    // held by the committer's commits (and Check)
	commitInterval time.Duration
	commitChanges  int
	maxPending     int
	maxPendingB    int64
	// direct is the size from which a request is committed to bbolt
	// directly instead of through the write-ahead log.
	direct int

	// owner is given every file the store creates in the data folder
	// (dataOwner).
	owner fsutil.Owner

	// quota is the storage quota in bytes (0: none); inUse the bytes of
	// the database file holding data, measured after each change of the
	// file; refused the size of the last write the quota refused, 0 once
	// one that adds data is accepted (quota.go).
	quota int64
	// reserve is the disk space a defrag's or a restore's copy of the
	// database leaves free (Options.Reserve, copyFits).
	reserve fsutil.Reserve
	inUse   atomic.Int64
	refused atomic.Int64

	// failure, once set, is why the store takes no more writes: the
	// write-ahead log or a commit to bbolt failed (see fail).
	failure  atomic.Pointer[error]
	failOnce sync.Once
	failed   chan struct{} // closed when failure is set

	// mu guards the commit mark and its notification channel.
	mu        sync.Mutex
	committed uint64
	changed   chan struct{}

	compacted atomic.Uint64
	// maint serialises maintenance that rewrites history or the file
	// (compaction, defrag), so they never work from each other's half.
	maint sync.Mutex
	// generation counts online restores: followers that see it change must
	// re-read state, because the database was replaced.
	generation atomic.Uint64
	// restoring is set while a full restore replaces the database (Restoring).
	restoring atomic.Bool

	stats struct {
		commits, requests, changes atomic.Uint64
		commitNanos                atomic.Int64
		applies, applied           atomic.Uint64
		applyNanos                 atomic.Int64
		compactions, compacted     atomic.Uint64
		compactExamined            atomic.Uint64
		defrags                    atomic.Uint64
		defragPauseNanos           atomic.Int64
		quotaRefused               atomic.Uint64
		// What the database files closed so far (a defrag or a restore
		// swaps the file) had written: bbolt's own counters start again
		// with each file, Prometheus counters must not.
		closedPageWrites atomic.Uint64
		closedWriteNanos atomic.Int64
	}
	onCommit func(store.CommitInfo)
	// onUpgrade is Options.OnSchemaUpgrade; upgradedFrom and upgradeTook
	// what Open's upgrade did (Recovery).
	onUpgrade    func(from, to int)
	onClockStep  func(step time.Duration, moved int)
	onFail       func(err error) // Options.OnFail
	upgradedFrom int
	upgradeTook  time.Duration
	recovery     Recovery
	// afterCompactChunk is Options.afterCompactChunk.
	afterCompactChunk func()

	// id is the database's store id (meta/store_id), in every log record.
	id []byte

	// writing is held by whoever runs the writer's part of a group (checks,
	// log write, hand-off): the writer goroutine, or a lone write's caller
	// (submitAlone). What follows, to inflight, is guarded by it.
	writing sync.Mutex
	// writerExited is set, holding writing, when the writer stops taking
	// requests: no lone write starts after it. lone counts the lone
	// writes under way, which the writer waits for before it stops.
	writerExited bool
	lone         sync.WaitGroup
	rev          uint64
	// groups counts the writer's groups; inflight are those written to
	// the log and not yet published by the syncer (see commit).
	groups   uint64
	inflight []*group
	// syncing is held by whoever lands flights (makes them durable,
	// publishes and answers them): the syncer goroutine, or a lone write's
	// caller. wakes and syncFailed are guarded by it.
	syncing sync.Mutex
	// wakes: the mark's channels to close once a landing's writes are
	// answered (wakeAfterPublish).
	wakes []chan struct{}
	// nsKeys: live keys per namespace, mirrored in bucket nskeys, as
	// published; written holding ov.mu.
	nsKeys map[string]uint64

	// The pipeline from the writer to the syncer (writer.go): flights
	// are groups written to the log, flying counts those sent to the
	// syncer and not yet landed; landed is the id of the last group
	// answered; syncFailed is set once a group failed.
	flights chan *flight
	flying  atomic.Int64
	// lastLanding is how many requests the last landing answered.
	lastLanding atomic.Int64
	landed      atomic.Uint64
	syncerDone  chan struct{}
	syncFailed  bool
	hooks       pipelineHooks
}

// request is one atomic unit of writes queued for the writer goroutine.
type request struct {
	writes []ctxd.Write
	// size bounds the bytes of the request's changes (changeSize).
	size int
	// exclusive, when set, is run by the writer with no commit in flight
	// instead of applying writes.
	exclusive func() error
	// keepAlive, when set, moves a key's deadline instead; expire, when
	// set, deletes the keys whose deadline has passed (ttl.go).
	keepAlive *keepAlive
	expire    bool
	done      chan result
}

// big reports whether r goes to bbolt directly (see Options.DirectBytes).
func (s *Store) big(r *request) bool { return r.exclusive == nil && r.size >= s.direct }

type result struct {
	res ctxd.TxnResult
	err error
}

// Recovery is what Open found in the write-ahead log, and replayed.
type Recovery struct {
	// Log is what the log itself found (segments read, a torn record cut).
	Log wal.Recovery
	// Records and Changes count what was replayed into the database: the
	// acknowledged writes the last run had not applied to it.
	Records, Changes uint64
	// Took is the time the replay took.
	Took time.Duration
	// Revision is the revision after the replay.
	Revision uint64
	// SchemaFrom is the schema version Open upgraded the database from
	// (0: it was current, or new), in SchemaUpgradeTook.
	SchemaFrom        int
	SchemaUpgradeTook time.Duration
}

// WALDir is the folder of the write-ahead log of the database at path:
// wal, next to it.
func WALDir(path string) string { return filepath.Join(filepath.Dir(path), "wal") }

// databaseFile is the file that holds the database at path: path itself,
// or, when path is a symbolic link (ctxd.db naming a file on another
// disk), the file the link names, which need not exist yet. A restore, a
// defrag or a compact writes its new file beside this one and renames it
// over it: renamed over the link, the data would move to the link's disk
// and leave the named file behind, stale.
func databaseFile(path string) (string, error) {
	for range 40 { // as the kernel's bound on links followed
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode().Type() != fs.ModeSymlink {
			return path, nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", fmt.Errorf("read the link %s: %w", path, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		dir, err := filepath.EvalSymlinks(filepath.Dir(target))
		if err != nil {
			return "", fmt.Errorf("the link %s names %s: %w", path, target, err)
		}
		path = filepath.Join(dir, filepath.Base(target))
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

// dataOwner is the owner given to every file the store creates in the
// data folder dir (the database, a copy swapped in for it, the
// write-ahead log): the folder's, when the process runs as root and the
// folder is another user's (fsutil.FolderOwner). That is an offline
// command (ctxd restore, compact, migrate) run as root in the folder of
// the service user the server runs as, which could not open a file left
// to root. The folder's owner, not the replaced file's: a new folder
// (install -d -o ctxd) has no file yet, the log's new segments replace
// none, and a file left to root by an older release is not copied.
func dataOwner(dir string) (fsutil.Owner, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return fsutil.Owner{}, err
	}
	return fsutil.FolderOwner(fi), nil
}

// Open opens (creating if needed) the database at path and its
// write-ahead log (WALDir), upgrades an older schema, replays the log
// records the database does not have yet, and starts the writer and the
// committer.
func Open(path string, opts Options) (*Store, error) {
	dir := filepath.Dir(path)
	if err := fsutil.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open store: create folder: %w", err)
	}
	owner, err := dataOwner(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	walDir := WALDir(path) // in the data folder, where the link is
	if path, err = databaseFile(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	fi, statErr := os.Stat(path)
	if statErr == nil && fi.Size() > 0 {
		// A file in use by a server is left to bbolt.Open, which answers
		// ErrLocked after the timeout without reading its pages.
		err := checkOpenable(path)
		switch {
		case errors.Is(err, fs.ErrPermission):
			return nil, openDenied(path, walDir, err)
		case err != nil && !lockedByOther(path):
			return nil, fmt.Errorf("open store %s: %w: %v: the file is damaged; restore it from a snapshot "+
				"(ctxd restore --data DIR --from FILE) or move it away", path, ErrDamaged, err)
		}
	}
	db, err := openBoltWith(path, migrations.LockWait(opts.OpenTimeout), opts.freelist)
	if errors.Is(err, fs.ErrPermission) {
		return nil, openDenied(path, walDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := owner.Give(path); err != nil {
			return nil, errors.Join(fmt.Errorf("open store %s: %w", path, err), db.Close())
		}
		// A new file's name is durable only once its folder is synced.
		if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
			return nil, errors.Join(fmt.Errorf("open store %s: %w", path, err), db.Close())
		}
	}
	opts = opts.withDefaults()
	s := &Store{
		db:             db,
		path:           path,
		walDir:         walDir,
		owner:          owner,
		limits:         opts.Limits.WithDefaults(),
		now:            opts.Now,
		ttlClock:       newSteadyClock(opts.Now, opts.elapsed()),
		queue:          make(chan *request, 4096),
		maxBatch:       opts.MaxBatch,
		stop:           make(chan struct{}),
		stopped:        make(chan struct{}),
		commitWake:     make(chan struct{}, 1),
		commitStop:     make(chan struct{}),
		commitDone:     make(chan struct{}),
		commitInterval: opts.CommitInterval,
		commitChanges:  opts.CommitChanges,
		maxPending:     opts.MaxPending,
		maxPendingB:    opts.MaxPendingBytes,
		direct:         opts.DirectBytes,
		quota:          max(opts.QuotaBytes, 0),
		reserve:        opts.Reserve,
		failed:         make(chan struct{}),
		changed:        make(chan struct{}),
		onCommit:       opts.OnCommit,
		ttl:            newDeadlines(),
		expirerDone:    make(chan struct{}),
		flights:        make(chan *flight, flightsQueued),
		syncerDone:     make(chan struct{}),
		hooks:          opts.hooks,
		onUpgrade:      opts.OnSchemaUpgrade,
		onClockStep:    opts.OnClockStep,
		onFail:         opts.OnFail,
		cache:          opts.getCache(),

		afterCompactChunk: opts.afterCompactChunk,
	}
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.openWAL(opts); err != nil {
		db.Close()
		return nil, err
	}
	// The files a swap left (a crash in a restore or a defrag) go only
	// now that this process holds the folder: bbolt's lock on the file,
	// and the log's on its folder, which a running server keeps through
	// its swaps. An Open refused as locked (ctxd restore --data on the
	// folder of a running server) removed the file the server was
	// preparing, and the server crashed on the empty one it reopened.
	removeLeftovers(path)
	go s.writer()
	go s.syncer()
	go s.committer()
	go s.expirer()
	return s, nil
}

// openDenied is Open's error for err, a permission error on the
// database file at path or its write-ahead log in walDir: it says nothing
// of what the files hold, and is usually an owner that is not the
// server's user (an offline command run as root by an older release).
// The advice names the database file's folder and, when ctxd.db is a
// link to a file elsewhere, the data folder too: the log is there.
func openDenied(path, walDir string, err error) error {
	dirs := filepath.Dir(path)
	if data := filepath.Dir(walDir); data != dirs {
		dirs += " " + data
	}
	return fmt.Errorf("open store %s: %w: this process (uid %d) may not use it, which says nothing of its content: "+
		"the server's user must own the data folder and its files, and be allowed to write them, e.g. chown -R ctxd: %[4]s && chmod -R u+rwX %[4]s",
		path, err, os.Geteuid(), dirs)
}

// openBolt opens a database file the way the store always does. A file
// still locked after timeout is ErrLocked.
func openBolt(path string, timeout time.Duration) (*bbolt.DB, error) {
	return openBoltWith(path, timeout, freelistMode{})
}

// freelistMode is how bbolt keeps its freelist. The zero value is the
// store's choice (persisted in every commit, map); the other modes exist
// for the measurements that chose it (largedb_bench_test.go).
type freelistMode struct {
	// notPersisted: rebuilt at open by walking every page (bbolt's
	// NoFreelistSync), as before the write-ahead log.
	notPersisted bool
	// array: bbolt's array freelist instead of the hash map.
	array bool
}

func openBoltWith(path string, timeout time.Duration, mode freelistMode) (*bbolt.DB, error) {
	// The lock is the open file's: a holder may replace the file at path
	// while this waits (ctxd compact and restore rename a new file over
	// it, then let the old one go), and the lock then got is the old
	// file's, unlinked, where writes would be lost. Open what is at path
	// now instead, within what is left of the wait (0 still forever).
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		var file *os.File
		db, err := openBoltOnce(path, timeout, mode, func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		})
		if err != nil {
			return nil, err
		}
		same, err := isFileAt(file, path)
		if err != nil { // removed during the wait
			_ = db.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		if same {
			return db, nil
		}
		_ = db.Close()
		if timeout > 0 {
			timeout = max(time.Until(deadline), migrations.NoLockWait)
		}
	}
}

// isFileAt says whether f is the file at path.
func isFileAt(f *os.File, path string) (bool, error) {
	have, err := f.Stat()
	if err != nil {
		return false, err
	}
	now, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(have, now), nil
}

// openBoltOnce is one bbolt.Open of openBoltWith; openFile opens the
// file (bbolt keeps it to itself: openBoltWith keeps it too).
func openBoltOnce(path string, timeout time.Duration, mode freelistMode, openFile func(string, int, os.FileMode) (*os.File, error)) (*bbolt.DB, error) {
	freelistType := bbolt.FreelistMapType
	if mode.array {
		freelistType = bbolt.FreelistArrayType
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:  timeout,
		OpenFile: openFile,
		// The freelist is written in every commit, so that Open reads it
		// from its page instead of walking every page of the file to
		// rebuild it (15 s and the whole file in memory on 900 MB cold):
		// the commits are the committer's, off the acknowledgement path,
		// and it costs them about one page each (DESIGN.md, "Open"). A
		// file written without it (an older ctxd) gets its freelist
		// written by bbolt at its first open, once.
		NoFreelistSync: mode.notPersisted,
		FreelistType:   freelistType,
		// Map 1 GiB of address space up front (not memory: pages are read
		// when used). Growing the map waits for every open read
		// transaction, so without this a long View or snapshot would stall
		// the writer each time the file grows; past 1 GiB it grows in
		// 1 GiB steps, rarely.
		InitialMmapSize: 1 << 30,
	})
	return db, locked(err)
}

// locked names an open of a bbolt file that timed out on its lock:
// another process (a server) holds the database.
func locked(err error) error {
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%w: %w", ErrLocked, err)
	}
	return err
}

// load migrates the schema and reads the revision, compaction mark and
// key counts; the overlay starts empty at the revision.
func (s *Store) load() error {
	s.nsKeys = make(map[string]uint64)
	s.compacted.Store(0)
	var schema int
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		schema, err = migrations.SchemaVersion(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	if schema != migrations.Current {
		// A new file or an older schema: one write transaction, all or nothing.
		if schema != 0 && s.onUpgrade != nil {
			s.onUpgrade(schema, migrations.Current)
		}
		start := time.Now()
		err := s.db.Update(func(tx *bbolt.Tx) error {
			_, err := migrations.Migrate(tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("open store %s: %w", s.path, err)
		}
		if schema != 0 {
			s.upgradedFrom, s.upgradeTook = schema, time.Since(start)
		}
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		s.inUse.Store(inUseBytes(tx))
		s.id = bytes.Clone(tx.Bucket(migrations.BucketMeta).Get(migrations.KeyStoreID))
		if len(s.id) != storeIDSize {
			return fmt.Errorf("open store %s: meta/store_id: %w", s.path, errCorrupt)
		}
		s.rev = lastRevision(tx)
		s.compacted.Store(metaUint(tx, migrations.KeyCompacted))
		// A restore reloads while followers read the mark: take the locks.
		s.ov.mu.Lock()
		s.ov.reset(s.rev)
		s.mu.Lock()
		s.committed = s.rev
		s.mu.Unlock()
		s.ov.mu.Unlock()
		if err := s.ttl.load(tx); err != nil {
			return fmt.Errorf("open store %s: %w", s.path, err)
		}
		return tx.Bucket(migrations.BucketNSKeys).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("open store: nskeys/%s: %w", k, errCorrupt)
			}
			s.nsKeys[string(k)] = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	s.ttl.poke()
	return err
}

// Close stops the writer after it has made durable everything already
// queued, lets the committer apply everything to the database, then
// closes the log and the database: after a Close without error the
// database file alone holds every write. A store that failed (fail)
// returns why: the log holds what the file may lack, and the next Open
// replays it. Later calls return the first call's result.
func (s *Store) Close() error {
	s.closing.Do(func() {
		close(s.stop)
		<-s.stopped
		<-s.expirerDone
		close(s.commitStop)
		<-s.commitDone
		var errs []error
		if err := s.failure.Load(); err != nil {
			errs = append(errs, fmt.Errorf("close store %s: %w", s.path, *err))
		}
		if err := s.wal.Close(); err != nil {
			errs = append(errs, err)
		}
		unlockDir(s.walLock)
		// Reads after Close answer ErrClosed, not what the cache held.
		s.cache.hold()
		s.dbMu.Lock()
		defer s.dbMu.Unlock()
		errs = append(errs, s.db.Close())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Revision returns the last committed revision.
func (s *Store) Revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed
}

// Committed returns the last committed revision and a channel that is
// closed when a later revision commits. Followers compare revisions rather
// than count wake-ups, so a slow follower never misses a change.
func (s *Store) Committed() (uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed, s.changed
}

// Generation counts the times the database was replaced by an online
// restore since Open. A restore also closes the Committed channel, so a
// follower wakes, sees a new generation, and re-reads current state; the
// revision after a restore is never below any revision seen before it.
func (s *Store) Generation() uint64 { return s.generation.Load() }

// ChangesPerRevision is 1: each change of a transaction has its own
// revision.
func (s *Store) ChangesPerRevision() uint64 { return 1 }

// Put sets a key's value. With expect non-nil the write applies only if the
// key's version equals *expect (0: the key must not exist).
func (s *Store) Put(ctx context.Context, ns, key string, value json.RawMessage, expect *uint64, who string) (ctxd.Record, error) {
	return store.WriteOne(ctx, s.Txn, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpPut, Value: value, Expect: expect, Who: who})
}

// Patch applies p to a live key's value as it is when the write commits,
// and stores the result as a put.
func (s *Store) Patch(ctx context.Context, ns, key string, p ctxd.Patch, expect *uint64, who string) (ctxd.Record, error) {
	return store.WriteOne(ctx, s.Txn, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpPatch, Patch: p, Expect: expect, Who: who})
}

// Delete ends a key's life. It returns the deleted key's last version, with
// ModRev set to the delete's revision and a nil value.
func (s *Store) Delete(ctx context.Context, ns, key string, expect *uint64, who string) (ctxd.Record, error) {
	return store.WriteOne(ctx, s.Txn, ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpDelete, Expect: expect, Who: who})
}

// Txn applies writes all or nothing: each gets its own revision, in order,
// and all are in one write-ahead log record (fdatasynced before the
// answer), or none is applied. A key may appear only once. The call
// returns after the commit is durable. If ctx
// ends after the request was queued, the caller stops waiting and gets an
// error matching ctxd.ErrOutcomeUnknown: the request may still commit (see
// submit for where "refused" ends and "outcome unknown" begins).
func (s *Store) Txn(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	return s.submitWrites(ctx, s.limits, writes)
}

// submitWrites validates writes against limits, then queues them and
// waits for the answer (see submit).
func (s *Store) submitWrites(ctx context.Context, limits ctxd.Limits, writes []ctxd.Write) (ctxd.TxnResult, error) {
	if err := limits.PrepareWrites(writes); err != nil {
		return ctxd.TxnResult{}, err
	}
	r := newRequest(writes, limits)
	if err := s.checkQuota(r); err != nil {
		return ctxd.TxnResult{}, err
	}
	return s.submit(ctx, r)
}

// newRequest is a request for writes, with its size. A patch's result is
// not known yet: it counts as large as a value may be, so that a request
// whose result might not fit in the write-ahead log goes to bbolt directly.
func newRequest(writes []ctxd.Write, limits ctxd.Limits) *request {
	r := &request{writes: writes, done: make(chan result, 1)}
	for i := range writes {
		r.size += changeSize(&writes[i])
		if writes[i].Op == ctxd.OpPatch {
			r.size += limits.MaxValueBytes
		}
	}
	return r
}

// submit queues a request for the writer and waits for its answer, or,
// the pipeline idle, commits it in the caller's goroutine (submitAlone:
// its answer is always exact).
//
// The boundary between a refused request and one whose outcome may be
// unknown is the send on s.queue (or submitAlone taking it), and nothing
// else:
//
//   - Before it, the request is refused and was not applied: the store is
//     closing (ErrClosed), it failed (its write-ahead log or a commit to
//     its database failed: ErrUnavailable, saying why, until a restart),
//     ctx was already done (ctx.Err()), or ctx ended
//     while the send was blocked on a full queue (ctx.Err(): a send that
//     did not happen put nothing in the queue). Validation failures never
//     get here. A restore in progress refuses nothing: writes queue behind
//     its exclusive request and run on the restored data.
//   - After it, the writer may take and commit the request at any moment,
//     whether or not anyone still waits. A caller whose ctx ends before
//     the answer gets the answer if it is already there, and otherwise an
//     error matching ctxd.ErrOutcomeUnknown (wrapping ctx.Err() for logs).
//     That holds while the request is still in the queue too: the writer
//     does not look at the caller's ctx, so a request queued and abandoned
//     still commits when its turn comes.
//
// Shutdown is exact, never unknown, for a caller still waiting: Close lets
// the writer commit and answer everything it finds in the queue before it
// exits (closing s.stopped). A request that entered the queue after the
// writer's last look is never run; its caller, seeing s.stopped closed with
// no answer, knows it was not applied and gets ErrClosed.
func (s *Store) submit(ctx context.Context, r *request) (ctxd.TxnResult, error) {
	select {
	case <-s.stop:
		return ctxd.TxnResult{}, ctxd.ErrClosed
	default:
	}
	if err := s.failure.Load(); err != nil && r.exclusive == nil {
		return ctxd.TxnResult{}, *err
	}
	// A select picks at random among ready cases: check ctx first, so that
	// a ctx already done is refused rather than queued half of the time.
	if err := ctx.Err(); err != nil {
		return ctxd.TxnResult{}, err
	}
	if s.submitAlone(r) {
		return s.wait(ctx, r)
	}
	select {
	case s.queue <- r:
	case <-s.stop:
		return ctxd.TxnResult{}, ctxd.ErrClosed
	case <-ctx.Done():
		// The queue was full and the request never entered it.
		return ctxd.TxnResult{}, ctx.Err()
	}
	return s.wait(ctx, r)
}

// wait waits for the answer to a queued request (see submit).
func (s *Store) wait(ctx context.Context, r *request) (ctxd.TxnResult, error) {
	select {
	case out := <-r.done:
		return out.res, out.err
	case <-s.stopped:
		return s.afterStop(r)
	case <-ctx.Done():
		// The answer may have come at the same time: prefer it.
		select {
		case out := <-r.done:
			return out.res, out.err
		default:
		}
		select {
		case <-s.stopped:
			return s.afterStop(r)
		default:
		}
		return ctxd.TxnResult{}, outcomeUnknown(ctx.Err())
	}
}

// afterStop answers a queued request once the writer has exited. The
// writer answers everything it took before it exits, so an answer is there
// now or never: none means the request slipped into the queue after the
// writer's last look, and was not applied.
func (s *Store) afterStop(r *request) (ctxd.TxnResult, error) {
	select {
	case out := <-r.done:
		return out.res, out.err
	default:
		return ctxd.TxnResult{}, ctxd.ErrClosed
	}
}

// outcomeUnknown is the error of a queued write whose caller stopped
// waiting (cause: the ctx's error) before it was answered.
func outcomeUnknown(cause error) error {
	return fmt.Errorf("%w: the write was queued but the wait for its commit ended (%w); "+
		"it may or may not have been applied: read the key (or the revision) to learn whether it was",
		ctxd.ErrOutcomeUnknown, cause)
}

// exclusive runs fn in the writer goroutine: no commit is in flight while
// it runs and none starts until it returns. Waiting for it is not
// cancellable once queued, because fn may be swapping the database file.
func (s *Store) exclusive(fn func() error) error {
	_, err := s.submit(context.Background(), &request{exclusive: fn, done: make(chan result, 1)})
	return err
}

// Import is Txn without the limit on the number of writes, for bulk loads
// that are one transaction by design (importing a dump), and without the
// minimum TTL (ctxd.Limits.ForImport). Every write is still validated,
// and the whole import commits or nothing does.
func (s *Store) Import(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	return s.submitWrites(ctx, s.limits.ForImport(len(writes)), writes)
}

// Stats returns the store's counters.
func (s *Store) Stats() store.Stats {
	ws := store.Stats{
		Commits:         s.stats.commits.Load(),
		Requests:        s.stats.requests.Load(),
		Changes:         s.stats.changes.Load(),
		Commit:          time.Duration(s.stats.commitNanos.Load()),
		Applies:         s.stats.applies.Load(),
		Applied:         s.stats.applied.Load(),
		Apply:           time.Duration(s.stats.applyNanos.Load()),
		Pending:         uint64(s.ov.size.Load()),
		Compactions:     s.stats.compactions.Load(),
		Compacted:       s.stats.compacted.Load(),
		CompactExamined: s.stats.compactExamined.Load(),
		Defrags:         s.stats.defrags.Load(),
		LastDefragPause: time.Duration(s.stats.defragPauseNanos.Load()),
		QuotaRefused:    s.stats.quotaRefused.Load(),
	}
	s.dbMu.RLock()
	dbStats := s.db.Stats()
	ws.DiskWrite = dbStats.TxStats.GetWriteTime() + time.Duration(s.stats.closedWriteNanos.Load())
	ws.PageWrites = uint64(dbStats.TxStats.GetWrite()) + s.stats.closedPageWrites.Load()
	s.dbMu.RUnlock()
	return ws
}

// closeFile closes the database file the store is swapping for another,
// keeping what bbolt counted on it (Stats).
func (s *Store) closeFile() error {
	st := s.db.Stats()
	s.stats.closedPageWrites.Add(uint64(st.TxStats.GetWrite()))
	s.stats.closedWriteNanos.Add(int64(st.TxStats.GetWriteTime()))
	return s.db.Close()
}
