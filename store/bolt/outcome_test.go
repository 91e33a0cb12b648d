package bolt_test

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// deadlineCtx is a ctx with a deadline, which passes when the test says so
// (End), not on a timer.
type deadlineCtx struct{ *bolt.EndCtx }

func newDeadlineCtx() deadlineCtx { return deadlineCtx{bolt.NewEndCtx(context.DeadlineExceeded)} }

func (deadlineCtx) Deadline() (time.Time, bool) { return time.Now().Add(time.Hour), true }

// A write written to the log behind another group, whose caller stops
// waiting before the answer, is "outcome unknown": and it does apply. The
// group before it is held before its fdatasync until the caller has
// returned, so the caller cannot see the answer: no timing is involved.
func TestWriteAbandonedAfterQueueingIsOutcomeUnknown(t *testing.T) {
	ops := map[string]func(s *testStore, ctx context.Context) error{
		"put": func(s *testStore, ctx context.Context) error {
			_, err := s.Put(ctx, "default", "k", json.RawMessage(`2`), nil, "t")
			return err
		},
		"delete": func(s *testStore, ctx context.Context) error {
			_, err := s.Delete(ctx, "default", "k", nil, "t")
			return err
		},
		"txn": func(s *testStore, ctx context.Context) error {
			_, err := s.Txn(ctx, []ctxd.Write{
				{Namespace: "default", Key: "k", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Who: "t"},
				{Namespace: "default", Key: "k2", Op: ctxd.OpPut, Value: json.RawMessage(`3`), Who: "t"},
			})
			return err
		},
	}
	// Both ends come from the test once the write is in the log, never
	// from a timer.
	ends := map[string]struct {
		ctx   func() (context.Context, context.CancelFunc)
		cause error
	}{
		"cancelled": {
			ctx:   func() (context.Context, context.CancelFunc) { return context.WithCancel(ctx) },
			cause: context.Canceled,
		},
		"deadline": {
			ctx: func() (context.Context, context.CancelFunc) {
				dc := newDeadlineCtx()
				return dc, dc.End
			},
			cause: context.DeadlineExceeded,
		},
	}
	for opName, op := range ops {
		for endName, end := range ends {
			t.Run(opName+"/"+endName, func(t *testing.T) {
				gate := newSyncGate()
				s := openStore(t, gate.options(bolt.Options{}))
				s.put("default", "k", `1`)
				before := s.Revision()

				// A lone write, held before its fdatasync: the write
				// under test follows it through the pipeline.
				gate.armed.Store(true)
				first := goTxn(s.Store, putWrite("first", `1`, nil))
				<-gate.held
				wctx, cancel := end.ctx()
				defer cancel()
				gate.watching.Store(true)
				errc := make(chan error, 1)
				go func() { errc <- op(s, wctx) }()
				<-gate.wrote
				gate.watching.Store(false)
				cancel()
				err := <-errc
				gate.open()
				require.NoError(t, (<-first).err)

				require.ErrorIs(t, err, ctxd.ErrOutcomeUnknown)
				assert.ErrorIs(t, err, end.cause, "the ctx's error stays in the chain, for logs")
				assert.NotErrorIs(t, err, ctxd.ErrUnavailable)
				assert.Contains(t, err.Error(), "read the key")
				status, code, ok := ctxd.Classify(err)
				assert.True(t, ok)
				assert.Equal(t, http.StatusServiceUnavailable, status)
				assert.Equal(t, ctxd.CodeOutcomeUnknown, code)

				// What the client is told to do: read the key. The write
				// was in the log: it applies, and a write queued after it
				// is answered after it.
				next := s.put("default", "next", `0`)
				assert.Greater(t, next.ModRev, before+1)
				rec, gerr := s.Get("default", "k")
				if opName == "delete" {
					assert.ErrorIs(t, gerr, ctxd.ErrNotFound)
				} else {
					require.NoError(t, gerr)
					assert.Equal(t, `2`, string(rec.Value))
				}
			})
		}
	}
}

// A lone write, the pipeline idle, commits in its caller's goroutine: its
// group is checked, logged, made durable and published there, with no
// hand-off to the writer or the syncer. Its caller so waits for its own
// fdatasync, and learns the exact outcome even when its ctx ends during
// the commit. The commit hook (run where the group lands, before the
// answer) looks at its own stack, and ends the ctx.
func TestLoneWriteCommitsInItsCallersGoroutine(t *testing.T) {
	h := &testkit.CommitHook{}
	s := openStore(t, bolt.Options{OnCommit: h.OnCommit})
	s.put("default", "k", `1`)
	for i := range 20 {
		wctx, cancel := context.WithCancel(ctx)
		var stack string
		h.Once(func() {
			buf := make([]byte, 64<<10)
			stack = string(buf[:runtime.Stack(buf, false)])
			cancel()
		})
		rec, err := s.Put(wctx, "default", "k", json.RawMessage(strconv.Itoa(i+2)), nil, "t")
		require.NoError(t, err, "a lone write's caller gets its exact answer")
		assert.Equal(t, uint64(i+2), rec.Version)
		require.Contains(t, stack, "bolt.(*Store).submitAlone(", "the lone write landed in its caller's goroutine")
		require.Contains(t, stack, "bolt.(*Store).Put(")
	}
	got, err := s.Get("default", "k")
	require.NoError(t, err)
	assert.Equal(t, `21`, string(got.Value))
}

// Writes refused before they were queued changed nothing, and say so: they
// never match ErrOutcomeUnknown.
func TestWriteRefusedBeforeQueueingIsNotOutcomeUnknown(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)
	rev := s.Revision()

	t.Run("ctx already done", func(t *testing.T) {
		done, cancel := context.WithCancel(ctx)
		cancel()
		// Many times: a done ctx must be refused every time, not queued
		// whenever a select happens to pick the queue.
		for range 200 {
			_, err := s.Put(done, "default", "k", json.RawMessage(`2`), nil, "t")
			require.ErrorIs(t, err, context.Canceled)
			require.NotErrorIs(t, err, ctxd.ErrOutcomeUnknown)
			_, code, _ := ctxd.Classify(err)
			require.Equal(t, ctxd.CodeUnavailable, code)
		}
		_, err := s.Txn(done, []ctxd.Write{{Namespace: "default", Key: "n", Op: ctxd.OpPut, Value: json.RawMessage(`1`)}})
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ctxd.ErrOutcomeUnknown)
		assert.Equal(t, rev, s.Revision(), "nothing was applied")
	})

	t.Run("invalid", func(t *testing.T) {
		_, err := s.Put(ctx, "default", "", json.RawMessage(`2`), nil, "t")
		require.ErrorIs(t, err, ctxd.ErrInvalid)
		require.NotErrorIs(t, err, ctxd.ErrOutcomeUnknown)
	})

	t.Run("closed", func(t *testing.T) {
		require.NoError(t, s.Close())
		_, err := s.Put(ctx, "default", "k", json.RawMessage(`3`), nil, "t")
		require.ErrorIs(t, err, ctxd.ErrClosed)
		require.NotErrorIs(t, err, ctxd.ErrOutcomeUnknown)
		s.open() // for the cleanup's check
		r, err := s.Get("default", "k")
		require.NoError(t, err)
		assert.Equal(t, `1`, string(r.Value))
		assert.Equal(t, rev, s.Revision())
	})
}
