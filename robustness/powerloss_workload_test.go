package robustness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
)

// The cut points a trial's phase picks from, in rotation: what runs beside
// the writers when the power is cut.
const (
	cutCommits        = "commits"         // group commits only
	cutSnapshot       = "snapshot"        // POST /v1/snapshots (and deletes)
	cutRestoreFull    = "restore-full"    // POST /v1/snapshots/{id}/restore
	cutRestorePartial = "restore-partial" // the same with ?ns=
	cutDefrag         = "defrag"          // POST /v1/defrag
	cutCompact        = "compact"         // POST /v1/compact
	cutDump           = "dump"            // POST /v1/ns/{ns}/dumps
	cutTokens         = "tokens"          // ctxd token new --append
	// The write-ahead log path's own steps, which no request marks: the
	// trial tells from the power cut's report (powerfs.Report.Pending)
	// whether the cut fell inside one (see internalOp).
	cutWALRotate = "wal-rotate" // 64 KiB segments: rotations and spare segments under the writers
	cutCommitter = "committer"  // 64 KiB segments, bursts of writes: the committer's bbolt commits and releases
	cutReplay    = "replay"     // a held-back committer leaves a long log; the power is cut again while the restart replays it
	cutDirect    = "direct"     // transactions over a lowered wal.direct_bytes: committed to bbolt directly
	// cutLongLog is the first cut of a replay trial: group commits with
	// the committer held back, which leave the log the replay cut needs.
	cutLongLog = "long-log"
)

var cutPoints = []string{cutCommits, cutSnapshot, cutRestoreFull, cutRestorePartial, cutDefrag, cutCompact, cutDump, cutTokens,
	cutWALRotate, cutCommitter, cutReplay, cutDirect}

// Settings of the write-ahead log path for its cut points (configs: wal.*).
const (
	smallSegment = 64 << 10 // wal-rotate, committer: ~1.5 MB of writes a phase rotate the log ~25 times
	directBytes  = 32 << 10 // direct: below it the writers' requests (7.5 KB at most), above it directTxn's
	directPuts   = 64       // puts of directValue bytes in one direct transaction
	directValue  = 700
	burstTxns    = 8 // committer: concurrent transactions of burstPuts puts, a burst the committer falls behind
	burstPuts    = 100
	// replayRounds: the replay trial's setup writes every base key this
	// many times (300 keys): 6,000 changes, unapplied with the writers',
	// 2 or 3 batches of the replay (store/bolt's replayBatch is 4,096).
	replayRounds = 20
)

// scenarioSettings are the server's environment for a phase's cut point
// (nil: the defaults).
func scenarioSettings(scenario string) []string {
	switch scenario {
	case cutWALRotate, cutCommitter:
		return []string{fmt.Sprintf("CTXD_WAL_SEGMENT_BYTES=%d", smallSegment)}
	case cutReplay:
		// The committer applies nothing until the overlay is full (65,536
		// changes or 64 MiB, more than a phase writes).
		return []string{"CTXD_WAL_COMMIT_INTERVAL=1h", "CTXD_WAL_COMMIT_CHANGES=65536", "CTXD_WAL_SEGMENT_BYTES=1MiB"}
	case cutDirect:
		return []string{fmt.Sprintf("CTXD_WAL_DIRECT_BYTES=%d", directBytes)}
	}
	return nil
}

// Namespaces the writers use; a partial restore restores restoredNS.
var (
	writerNamespaces = []string{"default", "a", "b"}
	restoredNS       = "a"
)

// known is a change the trial knows was committed: acknowledged to a
// writer, seen by a watcher, or read back after an earlier restart.
type known struct {
	ctxd.Change
	// start is when the request that made it was sent (for a change a
	// watcher saw: when the watcher learnt of the last restore before it,
	// or when it connected): a full restore that ended before start cannot
	// have discarded it.
	start time.Time
	from  string // "write", "watch" or "earlier" (read back after an earlier cut)
}

type nsKey struct{ ns, key string }

func (k known) nsKey() nsKey { return nsKey{k.Namespace, k.Key} }

// restoreOp is a restore the phase attempted.
type restoreOp struct {
	partial    bool
	who        string // partial: recorded on its changes
	snapRev    uint64
	start, end time.Time // end is zero when no answer came
	acked      bool
	res        ctxd.RestoreResult
}

type snapOp struct {
	meta     ctxd.SnapshotMeta
	deleting bool // a DELETE was sent
	deleted  bool // and acknowledged
}

type dumpOp struct {
	filename string // as asked: "" for a generated name
	format   string
	acked    bool
	info     ctxd.DumpInfo
}

type tokenOp struct {
	name   string
	secret string // printed by `ctxd token new`, when it exited 0
	acked  bool
}

// phaseLog is what one phase (a run of the server until a power cut)
// did: every acknowledged change and everything whose outcome is unknown.
type phaseLog struct {
	mu        sync.Mutex
	acked     []known
	unknown   map[nsKey]bool // writes sent without a definite answer
	attempted map[nsKey]bool // every key a write named
	restores  []*restoreOp
	snapshots []*snapOp
	dumps     []*dumpOp
	tokens    []*tokenOp
	watched   [][]known // per watcher, in the order seen
	watchErrs []string  // what a watcher saw that breaks the feed's promises

	base     *ctxd.SnapshotMeta         // taken at a quiet moment, for the restores
	baseNS   map[string]json.RawMessage // restoredNS in base: key -> value
	ops      atomic.Int64               // maintenance operations started
	opsOK    atomic.Int64               // maintenance operations answered with success
	opErr    string                     // the first failure of a maintenance operation
	inOp     atomic.Bool                // a maintenance operation is in flight
	cut      atomic.Bool                // the power is cut: no new maintenance operation
	opsStart chan struct{}              // one value per maintenance operation started
}

func newPhaseLog() *phaseLog {
	return &phaseLog{unknown: map[nsKey]bool{}, attempted: map[nsKey]bool{}, opsStart: make(chan struct{}, 1024)}
}

func (l *phaseLog) ack(k ...known) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = append(l.acked, k...)
}

func (l *phaseLog) attempt(keys ...nsKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		l.attempted[k] = true
	}
}

func (l *phaseLog) unsure(keys ...nsKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		l.unknown[k] = true
	}
}

// recordChange is the change an acknowledged put or delete made.
func recordChange(rec ctxd.Record, op ctxd.Op) ctxd.Change {
	c := ctxd.Change{Revision: rec.ModRev, Namespace: rec.Namespace, Key: rec.Key, Op: op, Version: rec.Version}
	if op == ctxd.OpPut {
		c.Value = rec.Value
	}
	return c
}

// definite reports whether err says for sure that a write was not applied
// (a conflict, a refusal). Anything else, a 500 from a failed fsync
// included, may or may not have left it on disk.
func definite(err error) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500
}

// writer runs one writer until ctx ends: puts of new keys, deletes of its
// own keys, transactions and (full programs) compare-and-swaps of a few
// hot keys, each with a distinct value.
type writer struct {
	id    int
	phase int
	c     *client.Client
	rng   *rand.Rand
	log   *phaseLog
	full  bool
	live  []nsKey // its own keys, acknowledged and not deleted
	n     int
}

func (w *writer) run(ctx context.Context) {
	for ctx.Err() == nil {
		w.n++
		p := w.rng.IntN(100)
		switch {
		case !w.full || p < 50:
			w.put(ctx)
		case p < 60 && len(w.live) > 0:
			w.del(ctx)
		case p < 85:
			w.txn(ctx)
		default:
			w.cas(ctx)
		}
	}
}

func (w *writer) value() json.RawMessage {
	pad := strings.Repeat("x", w.rng.IntN(1500))
	b, _ := json.Marshal(map[string]any{"w": w.id, "p": w.phase, "n": w.n, "pad": pad})
	return b
}

func (w *writer) newKey(tag string) nsKey {
	ns := "default"
	if w.full {
		ns = writerNamespaces[w.rng.IntN(len(writerNamespaces))]
	}
	return nsKey{ns, fmt.Sprintf("%s.%d.%d.%d", tag, w.phase, w.id, w.n)}
}

func (w *writer) put(ctx context.Context) {
	k := w.newKey("w")
	w.log.attempt(k)
	start := time.Now()
	rec, err := w.c.Put(ctx, k.ns, k.key, w.value(), client.PutOptions{})
	if err != nil {
		if !definite(err) {
			w.log.unsure(k)
		}
		return
	}
	w.log.ack(known{Change: recordChange(rec, ctxd.OpPut), start: start, from: "write"})
	w.live = append(w.live, k)
}

func (w *writer) del(ctx context.Context) {
	i := w.rng.IntN(len(w.live))
	k := w.live[i]
	w.live = append(w.live[:i], w.live[i+1:]...)
	w.log.attempt(k)
	start := time.Now()
	rec, err := w.c.Delete(ctx, k.ns, k.key, client.DeleteOptions{})
	if err != nil {
		if !definite(err) {
			w.log.unsure(k)
		}
		return
	}
	w.log.ack(known{Change: recordChange(rec, ctxd.OpDelete), start: start, from: "write"})
}

func (w *writer) txn(ctx context.Context) {
	var ops []ctxd.TxnOp
	var keys []nsKey
	puts := 2 + w.rng.IntN(4)
	for j := range puts {
		k := w.newKey(fmt.Sprintf("t%d", j))
		keys = append(keys, k)
		ops = append(ops, ctxd.TxnOp{Op: "put", Namespace: k.ns, Key: k.key, Value: w.value()})
	}
	del := -1
	if len(w.live) > 0 && w.rng.IntN(3) == 0 {
		del = w.rng.IntN(len(w.live))
		k := w.live[del]
		keys = append(keys, k)
		ops = append(ops, ctxd.TxnOp{Op: "delete", Namespace: k.ns, Key: k.key})
	}
	w.log.attempt(keys...)
	start := time.Now()
	res, err := w.c.Txn(ctx, ops, client.TxnOptions{})
	if err != nil {
		if !definite(err) {
			w.log.unsure(keys...)
		}
		return
	}
	var ks []known
	for j, rec := range res.Records {
		op := ctxd.OpPut
		if ops[j].Op == "delete" {
			op = ctxd.OpDelete
		}
		ks = append(ks, known{Change: recordChange(rec, op), start: start, from: "write"})
	}
	w.log.ack(ks...)
	if del >= 0 {
		w.live = append(w.live[:del], w.live[del+1:]...)
	}
	w.live = append(w.live, keys[:puts]...)
}

// cas reads a hot key and puts it with If-Match on the version read.
func (w *writer) cas(ctx context.Context) {
	k := nsKey{"default", fmt.Sprintf("hot.%d", w.rng.IntN(4))}
	var version uint64
	rec, err := w.c.Get(ctx, k.ns, k.key, client.GetOptions{})
	switch {
	case err == nil:
		version = rec.Version
	case client.IsNotFound(err):
	default:
		return
	}
	w.log.attempt(k)
	start := time.Now()
	rec, err = w.c.Put(ctx, k.ns, k.key, w.value(), client.PutOptions{IfVersion: client.Expect(version)})
	if err != nil {
		if !definite(err) {
			w.log.unsure(k)
		}
		return
	}
	w.log.ack(known{Change: recordChange(rec, ctxd.OpPut), start: start, from: "write"})
}

// setup writes a base of keys with a few versions each, in transactions,
// before the workload starts: history for compaction to remove, a file
// for defrag to copy. For the restore cut points it then takes the
// snapshot they restore, at a moment when nothing else writes.
func setup(ctx context.Context, c *client.Client, phase int, scenario string, log *phaseLog) error {
	const keys, perTxn = 150, 100
	rounds := 4
	if scenario == cutReplay {
		rounds = replayRounds
	}
	var ops []ctxd.TxnOp
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		start := time.Now()
		res, err := c.Txn(ctx, ops, client.TxnOptions{Who: "setup"})
		if err != nil {
			return fmt.Errorf("setup txn: %w", err)
		}
		var ks []known
		for _, rec := range res.Records {
			ks = append(ks, known{Change: recordChange(rec, ctxd.OpPut), start: start, from: "setup write"})
		}
		log.ack(ks...)
		ops = ops[:0]
		return nil
	}
	for r := range rounds {
		for _, ns := range []string{"default", restoredNS} {
			for i := range keys {
				v, _ := json.Marshal(map[string]int{"base": i, "round": r, "phase": phase})
				ops = append(ops, ctxd.TxnOp{Op: "put", Namespace: ns, Key: fmt.Sprintf("base.%d", i), Value: v})
				log.attempt(nsKey{ns, fmt.Sprintf("base.%d", i)})
				if len(ops) == perTxn {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if scenario != cutRestoreFull && scenario != cutRestorePartial {
		return nil
	}
	meta, err := c.CreateSnapshot(ctx)
	if err != nil {
		return fmt.Errorf("setup snapshot: %w", err)
	}
	log.base = &meta
	log.snapshots = append(log.snapshots, &snapOp{meta: meta})
	recs, err := c.ListAll(ctx, restoredNS, "")
	if err != nil {
		return fmt.Errorf("setup: list %s: %w", restoredNS, err)
	}
	log.baseNS = map[string]json.RawMessage{}
	for _, r := range recs {
		log.baseNS[r.Key] = r.Value
	}
	return nil
}

// maintenance runs the phase's cut point operation again and again until
// ctx ends, with short random pauses between.
type maintenance struct {
	scenario string
	phase    int
	c        *client.Client
	rng      *rand.Rand
	log      *phaseLog
	root     string // the folder that holds data/ and tokens.yaml
	n        int
}

func (m *maintenance) run(ctx context.Context) {
	switch m.scenario {
	case cutCommits, cutWALRotate, cutReplay:
		return // the writers alone
	}
	for ctx.Err() == nil && !m.log.cut.Load() {
		m.n++
		m.log.inOp.Store(true)
		m.log.ops.Add(1)
		select {
		case m.log.opsStart <- struct{}{}:
		default:
		}
		err := m.once(ctx)
		m.log.inOp.Store(false)
		if err == nil {
			m.log.opsOK.Add(1)
		} else if !m.log.cut.Load() {
			m.log.mu.Lock()
			if m.log.opErr == "" {
				m.log.opErr = err.Error()
			}
			m.log.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(m.rng.IntN(30)) * time.Millisecond):
		}
	}
}

func (m *maintenance) once(ctx context.Context) error {
	l := m.log
	switch m.scenario {
	case cutSnapshot:
		if m.rng.IntN(4) == 0 {
			l.mu.Lock()
			var victim *snapOp
			for _, s := range l.snapshots {
				if !s.deleting {
					victim = s
					victim.deleting = true
					break
				}
			}
			l.mu.Unlock()
			if victim != nil {
				err := m.c.DeleteSnapshot(ctx, victim.meta.ID)
				if err == nil {
					l.mu.Lock()
					victim.deleted = true
					l.mu.Unlock()
				}
				return err
			}
		}
		meta, err := m.c.CreateSnapshot(ctx)
		if err == nil {
			l.mu.Lock()
			l.snapshots = append(l.snapshots, &snapOp{meta: meta})
			l.mu.Unlock()
		}
		return err
	case cutRestoreFull, cutRestorePartial:
		op := &restoreOp{partial: m.scenario == cutRestorePartial, snapRev: l.base.Revision, start: time.Now()}
		opts := ctxd.RestoreOptions{}
		if op.partial {
			op.who = fmt.Sprintf("plrestore-%d-%d", m.phase, m.n)
			opts = ctxd.RestoreOptions{Namespaces: []string{restoredNS}, Who: op.who}
		}
		l.mu.Lock()
		l.restores = append(l.restores, op)
		l.mu.Unlock()
		res, err := m.c.RestoreSnapshot(ctx, l.base.ID, opts)
		l.mu.Lock()
		if err == nil {
			op.acked, op.res, op.end = true, res, time.Now()
		} else if definite(err) {
			op.end = time.Now() // refused: it changed nothing
		}
		l.mu.Unlock()
		return err
	case cutDefrag:
		_, err := m.c.Defrag(ctx)
		return err
	case cutCompact:
		_, err := m.c.Compact(ctx, 0, 0)
		return err
	case cutDump:
		format := []string{"json", "csv", "txt"}[m.rng.IntN(3)]
		op := &dumpOp{format: format}
		if m.rng.IntN(2) == 0 {
			op.filename = "named-" + format
		}
		ns := writerNamespaces[m.rng.IntN(len(writerNamespaces))]
		l.mu.Lock()
		l.dumps = append(l.dumps, op)
		l.mu.Unlock()
		info, err := m.c.Dump(ctx, ns, op.filename, client.ExportOptions{Format: format, History: format == "json" && m.rng.IntN(2) == 0})
		if err == nil {
			l.mu.Lock()
			op.acked, op.info = true, info
			l.mu.Unlock()
		}
		return err
	case cutCommitter:
		return m.burst(ctx)
	case cutDirect:
		return m.txn(ctx, "direct", 0, directPuts, directValue)
	case cutTokens:
		op := &tokenOp{name: fmt.Sprintf("tok-%d-%d", m.phase, m.n)}
		l.mu.Lock()
		l.tokens = append(l.tokens, op)
		l.mu.Unlock()
		cmd := exec.CommandContext(ctx, ctxdBin, "token", "new", "--name", op.name, "--role", "read",
			"--append", filepath.Join(m.root, tokensFile))
		var out bytes.Buffer
		cmd.Stdout = &out
		err := cmd.Run()
		if err == nil {
			l.mu.Lock()
			op.acked, op.secret = true, strings.TrimSpace(out.String())
			l.mu.Unlock()
		}
		return err
	}
	return nil
}

// burst sends burstTxns transactions at once, burstPuts puts each: the
// committer finds them all waiting and applies them in one large
// transaction, and the log segments they fill are released after it.
func (m *maintenance) burst(ctx context.Context) error {
	errs := make([]error, burstTxns)
	var wg sync.WaitGroup
	for i := range burstTxns {
		wg.Go(func() { errs[i] = m.txn(ctx, "burst", i, burstPuts, 50) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// txn sends one transaction of puts new keys, with values of about size
// bytes, and records what it acknowledged.
func (m *maintenance) txn(ctx context.Context, tag string, i, puts, size int) error {
	var ops []ctxd.TxnOp
	var keys []nsKey
	pad := strings.Repeat("m", size)
	for j := range puts {
		k := nsKey{writerNamespaces[j%len(writerNamespaces)], fmt.Sprintf("%s.%d.%d.%d.%d", tag, m.phase, m.n, i, j)}
		v, _ := json.Marshal(map[string]any{"m": m.n, "i": i, "j": j, "pad": pad})
		keys = append(keys, k)
		ops = append(ops, ctxd.TxnOp{Op: "put", Namespace: k.ns, Key: k.key, Value: v})
	}
	m.log.attempt(keys...)
	start := time.Now()
	res, err := m.c.Txn(ctx, ops, client.TxnOptions{Who: tag})
	if err != nil {
		if !definite(err) {
			m.log.unsure(keys...)
		}
		return err
	}
	ks := make([]known, 0, len(res.Records))
	for _, rec := range res.Records {
		ks = append(ks, known{Change: recordChange(rec, ctxd.OpPut), start: start, from: "write"})
	}
	m.log.ack(ks...)
	return nil
}

// tokensFile is the tokens file the tokens cut point appends to, next to
// the data folder.
const tokensFile = "tokens.yaml"

// watch follows every namespace from rev on and records what it sees,
// checking as it goes that revisions only grow (a reset aside).
func watch(ctx context.Context, c *client.Client, rev uint64, log *phaseLog, i int) {
	since := time.Now()
	var last uint64
	err := c.Watch(ctx, client.WatchOptions{Namespaces: []string{"*"}, FromRev: &rev, MinBackoff: 20 * time.Millisecond},
		func(ev client.WatchEvent) error {
			log.mu.Lock()
			defer log.mu.Unlock()
			if ev.Type == client.EventReset {
				since, last = time.Now(), ev.Rev
				return nil
			}
			if ev.Rev <= last {
				log.watchErrs = append(log.watchErrs, fmt.Sprintf("watcher %d: revision %d after %d", i, ev.Rev, last))
			}
			last = ev.Rev
			op := ctxd.OpPut
			if ev.Op == "delete" {
				op = ctxd.OpDelete
			}
			c := ctxd.Change{Revision: ev.Rev, Namespace: ev.Namespace, Key: ev.Key, Op: op, Version: ev.Version}
			if op == ctxd.OpPut {
				c.Value = ev.Value
			}
			log.watched[i] = append(log.watched[i], known{Change: c, start: since, from: "watch"})
			return nil
		})
	if err != nil && ctx.Err() == nil {
		log.mu.Lock()
		// Not a broken promise by itself (a compaction can outrun a slow
		// watcher): noted in the trial's log.
		log.watchErrs = append(log.watchErrs, fmt.Sprintf("note: watcher %d ended: %v", i, err))
		log.mu.Unlock()
	}
}

// newHTTPClient is the HTTP client of one phase; its idle connections are
// closed when the phase ends.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
	}
}
