package bolt_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// syncGate holds the store's pipeline where groups are written to the log
// and not yet durable: once armed, the syncer's next fdatasync waits
// (held is signalled) until release is closed; while watching, each group
// the writer writes is signalled on wrote.
type syncGate struct {
	armed    atomic.Bool
	watching atomic.Bool
	held     chan struct{}
	release  chan struct{}
	once     sync.Once
	wrote    chan struct{}
}

func newSyncGate() *syncGate {
	return &syncGate{held: make(chan struct{}, 1), release: make(chan struct{}), wrote: make(chan struct{}, 16)}
}

// open lets the held fdatasync go.
func (g *syncGate) open() { g.once.Do(func() { close(g.release) }) }

func (g *syncGate) options(opts bolt.Options) bolt.Options {
	return bolt.WithPipelineHooks(opts, func() {
		if g.watching.Load() {
			g.wrote <- struct{}{}
		}
	}, func() {
		if g.armed.CompareAndSwap(true, false) {
			g.held <- struct{}{}
			<-g.release
		}
	})
}

type txnOutcome struct {
	res ctxd.TxnResult
	err error
}

func goTxn(s *bolt.Store, writes ...ctxd.Write) <-chan txnOutcome {
	out := make(chan txnOutcome, 1)
	go func() {
		res, err := s.Txn(ctx, writes)
		out <- txnOutcome{res, err}
	}()
	return out
}

func putWrite(key, value string, expect *uint64) ctxd.Write {
	return ctxd.Write{Namespace: "p", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(value), Expect: expect, Who: "t"}
}

// holdPipeline puts A (acknowledged), then, with the syncer held before
// the fdatasync of B's group, puts B and a CAS C on B's version in the
// next group (checked against B, which is written and not durable). It
// returns A's revision and B's and C's pending outcomes, once C is
// written too, and checks that nothing of B or C can be read yet.
func holdPipeline(t *testing.T, s *bolt.Store, gate *syncGate) (uint64, <-chan txnOutcome, <-chan txnOutcome) {
	t.Helper()
	a, err := s.Put(ctx, "p", "a", json.RawMessage(`"a"`), nil, "t")
	require.NoError(t, err)
	gate.watching.Store(true)
	gate.armed.Store(true)
	b := goTxn(s, putWrite("b", `"b1"`, nil))
	<-gate.wrote
	<-gate.held
	// C follows B's group (the writer is free: the syncer holds B); its
	// CAS expects B's version 1, which only the unpublished group has.
	c := goTxn(s, putWrite("b", `"b2"`, u64(1)))
	<-gate.wrote
	gate.watching.Store(false)

	// Reads never see a change that is not durable.
	_, err = s.Get("p", "b")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "B is written, not durable: not readable")
	assert.Equal(t, a.ModRev, s.Revision(), "the committed mark stays at the last durable change")
	select {
	case o := <-b:
		t.Fatalf("B answered before its fdatasync: %+v", o)
	case o := <-c:
		t.Fatalf("C answered before B's fdatasync: %+v", o)
	default:
	}
	return a.ModRev, b, c
}

// TestPipelinedGroupsAnswerInOrderAfterTheirSync: while the fdatasync of
// one group is held, the writer prepares and writes the next one, checked
// against the first (a CAS on its version holds, a CAS on the version
// before it fails), and neither is readable nor answered until the sync
// returns; then both are, in order.
func TestPipelinedGroupsAnswerInOrderAfterTheirSync(t *testing.T) {
	gate := newSyncGate()
	s := openStore(t, gate.options(bolt.Options{}))
	// Registered after the store's close: cleanups run last first, so a
	// failed check releases the held sync before the store closes.
	t.Cleanup(gate.open)
	revA, b, c := holdPipeline(t, s.Store, gate)
	// A third group, with a CAS that saw B and fails: its refusal waits
	// for B's sync too, since it reports state that is not durable yet.
	stale := goTxn(s.Store, putWrite("b", `"stale"`, u64(0)))
	gate.open()

	ob, oc, os := <-b, <-c, <-stale
	require.NoError(t, ob.err)
	require.NoError(t, oc.err, "C's CAS saw B, written but not yet durable when C was checked")
	assert.Equal(t, revA+1, ob.res.Revision)
	assert.Equal(t, revA+2, oc.res.Revision)
	var conflict *ctxd.ConflictError
	require.ErrorAs(t, os.err, &conflict)
	assert.Equal(t, uint64(2), conflict.Current)

	r, err := s.Get("p", "b")
	require.NoError(t, err)
	assert.JSONEq(t, `"b2"`, string(r.Value))
	assert.Equal(t, revA+2, s.Revision())
	s.reopen()
	r, err = s.Get("p", "b")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), r.Version)
}

// TestPowerCutWhilePipelined cuts the power while B's group is written and
// not yet synced and C's group is written behind it: A, acknowledged,
// survives; B and C were never acknowledged (their callers get an
// error), and in the survivors (Strict: nothing unsynced survives) they
// are gone: had the store acknowledged a group when it was written, as
// the pipeline could wrongly do, an acknowledged write would be lost
// here: the check that catches it.
func TestPowerCutWhilePipelined(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip(err)
	}
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Strict})
	gate := newSyncGate()
	// The committer waits an hour: A stays in the overlay and in the log
	// only, so the restart must replay it; and nothing writes bbolt's
	// file after the cut.
	opts := gate.options(bolt.Options{CommitInterval: 3600e9, CommitChanges: 1 << 20})
	s, err := bolt.Open(filepath.Join(fs.Dir(), "data", "ctxd.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	t.Cleanup(gate.open)
	revA, b, c := holdPipeline(t, s, gate)

	_, err = fs.Cut()
	require.NoError(t, err)
	gate.open()
	ob, oc := <-b, <-c
	require.Error(t, ob.err, "B's fdatasync failed: not acknowledged")
	require.Error(t, oc.err, "C follows B: not acknowledged")
	assert.True(t, errors.Is(ob.err, ctxd.ErrOutcomeUnknown), "B: %v", ob.err)
	assert.True(t, errors.Is(oc.err, ctxd.ErrOutcomeUnknown), "C: %v", oc.err)
	_, err = s.Put(ctx, "p", "after", json.RawMessage(`1`), nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrUnavailable, "the failed store refuses writes")
	out := t.TempDir()
	require.NoError(t, fs.WriteSurvivors(out))
	// Close applies nothing (the committer's batch would write to a dead
	// disk): A is not in bbolt's file, only in the log.
	_ = s.Close()
	require.NoError(t, fs.Unmount())

	st := testkit.OpenBoltAt(t, filepath.Join(out, "data", "ctxd.db"), bolt.Options{})
	assert.Equal(t, uint64(1), st.Recovery().Records, "A was replayed from the log")
	r, err := st.Get("p", "a")
	require.NoError(t, err, "A was acknowledged: it survives")
	assert.Equal(t, revA, r.ModRev)
	_, err = st.Get("p", "b")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "B and C were written, never synced: acknowledging them then would have lost them")
	assert.Equal(t, revA, st.Revision())
	rb, err := st.Put(ctx, "p", "b", json.RawMessage(`"again"`), nil, "t")
	require.NoError(t, err)
	assert.Equal(t, revA+1, rb.ModRev, "the revisions continue after the last durable change")
}

// A patch of a key, in the group after one that keeps it alive and waits
// for its fdatasync: the key is in bbolt only, the keepalive's state says
// so, and the patch's group had read nothing of bbolt yet. Before, the
// patch failed with "corrupt record".
func TestAPatchAfterAPipelinedKeepAlive(t *testing.T) {
	gate := newSyncGate()
	s := openStore(t, gate.options(bolt.Options{}))
	t.Cleanup(gate.open)
	_, err := s.Txn(ctx, []ctxd.Write{{Namespace: "p", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`{"a":1}`), TTL: time.Hour, Who: "t"}})
	require.NoError(t, err)
	require.NoError(t, s.Check()) // k is in bbolt only

	gate.watching.Store(true)
	gate.armed.Store(true)
	kept := make(chan error, 1)
	go func() { _, err := s.KeepAlive(ctx, "p", "k", time.Hour, nil); kept <- err }()
	<-gate.wrote
	<-gate.held
	patched := goTxn(s.Store, ctxd.Write{Namespace: "p", Key: "k", Op: ctxd.OpPatch, Patch: ctxd.Patch{Type: ctxd.MergePatch, Doc: []byte(`{"b":2}`)}, Who: "t"})
	<-gate.wrote
	gate.watching.Store(false)
	gate.open()
	require.NoError(t, <-kept)
	require.NoError(t, (<-patched).err)
	r, err := s.Get("p", "k")
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":1,"b":2}`, string(r.Value))
}
