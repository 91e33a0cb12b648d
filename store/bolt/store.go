package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store"
)

// Store is the durable versioned key-value store. It is safe for concurrent use.
type Store struct {
	// dbMu guards db: every use holds it shared; replacing the file
	// (restore, defrag) holds it exclusively, so no request ever sees a
	// half-replaced database.
	dbMu   sync.RWMutex
	db     *bbolt.DB
	path   string
	limits ctxd.Limits
	now    func() time.Time

	queue    chan *request
	maxBatch int
	stop     chan struct{} // closed by Close: the writer drains and exits
	stopped  chan struct{} // closed when the writer has exited
	closing  sync.Once
	closeErr error

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
		compactions, compacted     atomic.Uint64
		defrags                    atomic.Uint64
		defragPauseNanos           atomic.Int64
	}
	onCommit func(store.CommitInfo)

	// Owned by the writer goroutine (and Open before it starts).
	rev    uint64
	nsKeys map[string]uint64 // live keys per namespace, mirrored in bucket nskeys
}

// request is one atomic unit of writes queued for the writer goroutine.
type request struct {
	writes []ctxd.Write
	// exclusive, when set, is run by the writer with no commit in flight
	// instead of applying writes.
	exclusive func() error
	done      chan result
}

type result struct {
	res ctxd.TxnResult
	err error
}

// Open opens (creating if needed) the database at path, upgrades an older
// schema, and starts the writer.
func Open(path string, opts Options) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := fsutil.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("open store: create folder: %w", err)
		}
	}
	timeout := opts.OpenTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	removeLeftovers(path)
	_, statErr := os.Stat(path)
	db, err := openBolt(path, timeout)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// A new file's name is durable only once its folder is synced.
		if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
			return nil, errors.Join(fmt.Errorf("open store %s: %w", path, err), db.Close())
		}
	}
	s := &Store{
		db:       db,
		path:     path,
		limits:   opts.Limits.WithDefaults(),
		now:      opts.Now,
		queue:    make(chan *request, 4096),
		maxBatch: opts.MaxBatch,
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		changed:  make(chan struct{}),
		onCommit: opts.OnCommit,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 1024
	}
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}

	go s.writer()
	return s, nil
}

// openBolt opens a database file the way the store always does. A file
// still locked after timeout is ErrLocked.
func openBolt(path string, timeout time.Duration) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: timeout,
		// The freelist is rebuilt from the pages at open instead of being
		// written at every commit: fewer pages per commit, same durability.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		// Map 1 GiB of address space up front (not memory: pages are read
		// when used). Growing the map waits for every open read
		// transaction, so without this a long View or snapshot would stall
		// the writer each time the file grows; past 1 GiB it grows in
		// 1 GiB steps, rarely.
		InitialMmapSize: 1 << 30,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %w", ErrLocked, err)
	}
	return db, err
}

// load migrates the schema and reads the revision, compaction mark and key counts.
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
		err := s.db.Update(func(tx *bbolt.Tx) error {
			_, err := migrations.Migrate(tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("open store %s: %w", s.path, err)
		}
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		s.rev = lastRevision(tx)
		s.compacted.Store(metaUint(tx, migrations.KeyCompacted))
		// A restore reloads while followers read the mark: take its lock.
		s.mu.Lock()
		s.committed = s.rev
		s.mu.Unlock()
		return tx.Bucket(migrations.BucketNSKeys).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("open store: nskeys/%s: %w", k, errCorrupt)
			}
			s.nsKeys[string(k)] = binary.BigEndian.Uint64(v)
			return nil
		})
	})
}

// Close stops the writer after it has committed everything already queued,
// then closes the database. Later calls return the first call's result.
func (s *Store) Close() error {
	s.closing.Do(func() {
		close(s.stop)
		<-s.stopped
		s.dbMu.Lock()
		defer s.dbMu.Unlock()
		s.closeErr = s.db.Close()
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

// Put sets a key's value. With expect non-nil the write applies only if the
// key's version equals *expect (0: the key must not exist).
func (s *Store) Put(ctx context.Context, ns, key string, value json.RawMessage, expect *uint64, who string) (ctxd.Record, error) {
	res, err := s.Txn(ctx, []ctxd.Write{{Namespace: ns, Key: key, Op: ctxd.OpPut, Value: value, Expect: expect, Who: who}})
	if err != nil {
		return ctxd.Record{}, err
	}
	return res.Records[0], nil
}

// Delete ends a key's life. It returns the deleted key's last version, with
// ModRev set to the delete's revision and a nil value.
func (s *Store) Delete(ctx context.Context, ns, key string, expect *uint64, who string) (ctxd.Record, error) {
	res, err := s.Txn(ctx, []ctxd.Write{{Namespace: ns, Key: key, Op: ctxd.OpDelete, Expect: expect, Who: who}})
	if err != nil {
		return ctxd.Record{}, err
	}
	return res.Records[0], nil
}

// Txn applies writes all or nothing: each gets its own revision, in order,
// and all commit in one fsynced transaction, or none is applied. A key may
// appear only once. The call returns after the commit is durable. If ctx
// ends after the request was queued, the caller stops waiting and gets an
// error matching ctxd.ErrOutcomeUnknown: the request may still commit (see
// submit for where "refused" ends and "outcome unknown" begins).
func (s *Store) Txn(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	return s.submitWrites(ctx, s.limits, writes)
}

// submitWrites validates writes against limits, then queues them and
// waits for the answer (see submit).
func (s *Store) submitWrites(ctx context.Context, limits ctxd.Limits, writes []ctxd.Write) (ctxd.TxnResult, error) {
	if err := limits.ValidateWrites(writes); err != nil {
		return ctxd.TxnResult{}, err
	}
	return s.submit(ctx, &request{writes: writes, done: make(chan result, 1)})
}

// submit queues a request for the writer and waits for its answer.
//
// The boundary between a refused request and one whose outcome may be
// unknown is the send on s.queue, and nothing else:
//
//   - Before it, the request is refused and was not applied: the store is
//     closing (ErrClosed), ctx was already done (ctx.Err()), or ctx ended
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
	// A select picks at random among ready cases: check ctx first, so that
	// a ctx already done is refused rather than queued half of the time.
	if err := ctx.Err(); err != nil {
		return ctxd.TxnResult{}, err
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
// that are one transaction by design (importing a dump). Every write is
// still validated, and the whole import commits or nothing does.
func (s *Store) Import(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	unlimited := s.limits
	unlimited.MaxTxnOps = max(len(writes), 1)
	return s.submitWrites(ctx, unlimited, writes)
}

// writer is the only goroutine that writes. It takes the first queued
// request, drains whatever else is already queued (no timer: a lone write
// commits at once), commits the group with one fsync, then answers each.
// An exclusive request (a restore or defrag swap) ends a group: the group
// commits first, then the exclusive function runs with no commit in flight.
func (s *Store) writer() {
	defer close(s.stopped)
	batch := make([]*request, 0, s.maxBatch)
	for {
		var first *request
		select {
		case first = <-s.queue:
		case <-s.stop:
			// Commit what was queued before Close; fail nothing that got in.
			for {
				batch, held := s.take(batch[:0], false)
				if len(batch) == 0 && held == nil {
					return
				}
				s.run(batch, held)
			}
		}
		if first.exclusive != nil {
			s.run(nil, first)
			continue
		}
		batch, held := s.take(append(batch[:0], first), true)
		s.run(batch, held)
	}
}

// run commits a group, then runs the exclusive request that ended it.
func (s *Store) run(batch []*request, held *request) {
	if len(batch) > 0 {
		s.commit(batch)
	}
	if held != nil {
		err := held.exclusive()
		held.done <- result{err: err}
	}
}

// take adds to batch every request already queued, up to an exclusive
// request, which it returns separately. Callers answered by the previous
// commit are typically about to queue again, so when yield is set and the
// queue runs dry the writer yields its processor (no timer, no sleep) and
// drains again, stopping when a yield brings nothing new. A lone write
// costs one yield; under load the groups stay large.
func (s *Store) take(batch []*request, yield bool) ([]*request, *request) {
	yielded := false
	for len(batch) < s.maxBatch {
		select {
		case r := <-s.queue:
			if r.exclusive != nil {
				return batch, r
			}
			batch = append(batch, r)
			yielded = false
			continue
		default:
		}
		if !yield || yielded {
			return batch, nil
		}
		runtime.Gosched()
		yielded = true
	}
	return batch, nil
}

// commit applies a group of requests in one transaction. A request whose
// version check fails is answered with its error and leaves no trace; the
// others commit. If the transaction itself fails, each request is retried
// alone so that one request's failure cannot fail its neighbours.
func (s *Store) commit(batch []*request) {
	results := make([]result, len(batch))
	g := group{store: s, rev: s.rev, now: s.now().UTC()}
	start := time.Now()
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		g.begin(tx)
		for i, r := range batch {
			res, err := g.apply(r.writes)
			if err != nil && !isRequestError(err) {
				return err
			}
			results[i] = result{res: res, err: err}
		}
		return g.finish()
	})
	if err != nil {
		if len(batch) > 1 {
			for _, r := range batch {
				s.commit([]*request{r})
			}
			return
		}
		batch[0].done <- result{err: fmt.Errorf("commit: %w", err)}
		return
	}
	failpoint.Hit(failpoint.CommitBeforeAnswer)
	took := time.Since(start)
	s.stats.commitNanos.Add(int64(took))
	s.stats.commits.Add(1)
	s.stats.requests.Add(uint64(len(batch)))
	s.stats.changes.Add(g.rev - s.rev)
	if s.onCommit != nil {
		s.onCommit(store.CommitInfo{Requests: len(batch), Changes: int(g.rev - s.rev), Duration: took})
	}
	s.rev = g.rev
	for ns, n := range g.nsKeys {
		s.nsKeys[ns] = n
	}
	s.publish(g.rev)
	for i, r := range batch {
		r.done <- results[i]
	}
}

// isRequestError tells a request's own failure (answered to its caller
// alone) from a failure of the transaction (which aborts the group).
func isRequestError(err error) bool {
	return errors.Is(err, ctxd.ErrConflict) || errors.Is(err, ctxd.ErrNotFound) || errors.Is(err, ctxd.ErrInvalid) || errors.Is(err, ctxd.ErrTooLarge)
}

// Stats returns the store's counters.
func (s *Store) Stats() store.Stats {
	ws := store.Stats{
		Commits:         s.stats.commits.Load(),
		Requests:        s.stats.requests.Load(),
		Changes:         s.stats.changes.Load(),
		Commit:          time.Duration(s.stats.commitNanos.Load()),
		Compactions:     s.stats.compactions.Load(),
		Compacted:       s.stats.compacted.Load(),
		Defrags:         s.stats.defrags.Load(),
		LastDefragPause: time.Duration(s.stats.defragPauseNanos.Load()),
	}
	s.dbMu.RLock()
	dbStats := s.db.Stats()
	ws.DiskWrite = dbStats.TxStats.GetWriteTime()
	s.dbMu.RUnlock()
	return ws
}
