package bolt

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// These tests look at the writer's queue itself, to put a request exactly
// on either side of the boundary submit documents: queued (outcome unknown
// if abandoned) or not (refused, not applied).

// heldStore is a store whose writer can be held in its hook after a
// group is written (pipelineHooks.written).
type heldStore struct {
	*Store
	path    string
	mu      sync.Mutex
	hold    bool
	held    chan struct{} // closed when the writer is held
	release chan struct{} // closing it lets the writer go
}

func openHeld(t *testing.T) *heldStore {
	t.Helper()
	hs := &heldStore{path: filepath.Join(t.TempDir(), "ctxd.db")}
	s, err := Open(hs.path, Options{hooks: pipelineHooks{written: hs.onWritten}})
	require.NoError(t, err)
	hs.Store = s
	t.Cleanup(func() { _ = hs.Close() })
	return hs
}

func (hs *heldStore) onWritten() {
	hs.mu.Lock()
	hold, held, release := hs.hold, hs.held, hs.release
	hs.hold = false
	hs.mu.Unlock()
	if hold {
		close(held)
		<-release
	}
}

// holdWriter commits a write and keeps the writer inside its hook until
// the returned function is called (the write itself is answered by the
// syncer meanwhile). The write goes into the queue itself: a lone write
// through submit would commit in its caller's goroutine (submitAlone),
// and the writer goroutine would be free to empty the queue.
func (hs *heldStore) holdWriter(t *testing.T) (releaseWriter func()) {
	t.Helper()
	hs.mu.Lock()
	hs.hold, hs.held, hs.release = true, make(chan struct{}), make(chan struct{})
	held, release := hs.held, hs.release
	hs.mu.Unlock()
	r := &request{
		writes: []ctxd.Write{{Namespace: "default", Key: "holder", Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "t"}},
		done:   make(chan result, 1),
	}
	hs.queue <- r
	<-held
	return func() {
		close(release)
		require.NoError(t, (<-r.done).err)
	}
}

// waitQueued waits (without sleeping) until n requests are in the queue.
func (hs *heldStore) waitQueued(n int) {
	for len(hs.queue) != n {
		runtime.Gosched()
	}
}

func TestAbandonedWhileInQueueIsOutcomeUnknownAndStillCommits(t *testing.T) {
	hs := openHeld(t)
	releaseWriter := hs.holdWriter(t)

	wctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := hs.Put(wctx, "default", "k", json.RawMessage(`1`), nil, "t")
		errc <- err
	}()
	hs.waitQueued(1) // in the queue; the writer is busy and has not taken it
	cancel()
	err := <-errc
	require.ErrorIs(t, err, ctxd.ErrOutcomeUnknown)
	require.ErrorIs(t, err, context.Canceled)

	// Not applied yet...
	_, gerr := hs.Get("default", "k")
	require.ErrorIs(t, gerr, ctxd.ErrNotFound)
	// ...but it is queued, and the writer does not look at the caller's
	// ctx: once the writer runs, it commits. A later write queues behind it.
	releaseWriter()
	_, err = hs.Put(context.Background(), "default", "after", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	rec, err := hs.Get("default", "k")
	require.NoError(t, err)
	assert.Equal(t, `1`, string(rec.Value))
}

// doneSignal is a ctx that is not done until told (End), and reports the
// first call of Done: submit calls it as it enters the select that sends
// the request to the queue.
type doneSignal struct {
	*EndCtx
	once      sync.Once
	doneAsked chan struct{}
}

func newDoneSignal() *doneSignal {
	return &doneSignal{EndCtx: NewEndCtx(context.Canceled), doneAsked: make(chan struct{})}
}

func (c *doneSignal) Done() <-chan struct{} {
	c.once.Do(func() { close(c.doneAsked) })
	return c.EndCtx.Done()
}

func TestFullQueueRefusesWithoutQueueing(t *testing.T) {
	hs := openHeld(t)
	releaseWriter := hs.holdWriter(t)
	// Fill the queue with real writes while the writer is held.
	var fillers []*request
	for len(hs.queue) < cap(hs.queue) {
		r := &request{
			writes: []ctxd.Write{{Namespace: "default", Key: "filler", Op: ctxd.OpPut, Value: json.RawMessage(`0`), Who: "t"}},
			done:   make(chan result, 1),
		}
		hs.queue <- r
		fillers = append(fillers, r)
	}

	wctx := newDoneSignal()
	errc := make(chan error, 1)
	go func() {
		_, err := hs.Put(wctx, "default", "k", json.RawMessage(`1`), nil, "t")
		errc <- err
	}()
	<-wctx.doneAsked // past the ctx check, at the send on the full queue
	wctx.End()
	err := <-errc
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ctxd.ErrOutcomeUnknown, "the request never entered the queue")
	assert.Equal(t, cap(hs.queue), len(hs.queue))

	releaseWriter()
	for _, r := range fillers {
		require.NoError(t, (<-r.done).err)
	}
	_, err = hs.Get("default", "k")
	require.ErrorIs(t, err, ctxd.ErrNotFound, "refused before queueing: not applied")
}

// Close commits what is queued: a caller still waiting learns the outcome.
func TestCloseAnswersQueuedWrites(t *testing.T) {
	hs := openHeld(t)
	releaseWriter := hs.holdWriter(t)
	errc := make(chan error, 1)
	go func() {
		_, err := hs.Put(context.Background(), "default", "k", json.RawMessage(`1`), nil, "t")
		errc <- err
	}()
	hs.waitQueued(1)
	closed := make(chan error, 1)
	go func() { closed <- hs.Close() }()
	<-hs.stop
	releaseWriter()
	require.NoError(t, <-errc, "queued before Close: committed and answered")
	require.NoError(t, <-closed)

	s, err := Open(hs.path, Options{})
	require.NoError(t, err)
	defer s.Close()
	rec, err := s.Get("default", "k")
	require.NoError(t, err)
	assert.Equal(t, `1`, string(rec.Value))
}

// A request that gets into the queue after the writer's last look is never
// run: its caller is told so (ErrClosed), even if its ctx has ended too.
func TestQueuedAfterWriterExitIsClosedNotUnknown(t *testing.T) {
	hs := openHeld(t)
	require.NoError(t, hs.Close())
	for _, c := range []context.Context{context.Background(), cancelled()} {
		r := &request{
			writes: []ctxd.Write{{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`1`)}},
			done:   make(chan result, 1),
		}
		hs.queue <- r // what submit's send can do once stop is closed
		_, err := hs.wait(c, r)
		require.True(t, errors.Is(err, ctxd.ErrClosed), "got %v", err)
		require.False(t, errors.Is(err, ctxd.ErrOutcomeUnknown))
		<-hs.queue
	}
}

func cancelled() context.Context {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	return c
}
