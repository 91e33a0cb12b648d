package bolt_test

import (
	"context"
	"encoding/json"
	"net/http"
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

// A write the writer has taken and committed, whose caller stops waiting
// before the answer, is "outcome unknown": and it did apply. The writer is
// held in the commit hook until the caller has returned, so the caller
// cannot see the answer: no timing is involved.
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
	// Both ends come from the commit hook, never from a timer, so the
	// caller always stops waiting after the write committed.
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
				h := &testkit.CommitHook{}
				s := openStore(t, bolt.Options{OnCommit: h.OnCommit})
				s.put("default", "k", `1`)
				before := s.Revision()

				wctx, cancel := end.ctx()
				defer cancel()
				returned := make(chan struct{})
				h.Once(func() {
					cancel()
					<-returned // the answer waits until the caller gave up
				})
				err := op(s, wctx)
				close(returned)

				require.ErrorIs(t, err, ctxd.ErrOutcomeUnknown)
				assert.ErrorIs(t, err, end.cause, "the ctx's error stays in the chain, for logs")
				assert.NotErrorIs(t, err, ctxd.ErrUnavailable)
				assert.Contains(t, err.Error(), "read the key")
				status, code, ok := ctxd.Classify(err)
				assert.True(t, ok)
				assert.Equal(t, http.StatusServiceUnavailable, status)
				assert.Equal(t, ctxd.CodeOutcomeUnknown, code)

				// What the client is told to do: read the key. The write
				// was committed before the hook ran, so it applied.
				rec, gerr := s.Get("default", "k")
				if opName == "delete" {
					assert.ErrorIs(t, gerr, ctxd.ErrNotFound)
				} else {
					require.NoError(t, gerr)
					assert.Equal(t, `2`, string(rec.Value))
				}
				// The answer (and the committed mark) follow once the writer
				// goes on: a write queued next is answered after them.
				next := s.put("default", "next", `0`)
				assert.Greater(t, next.ModRev, before+1)
			})
		}
	}
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
