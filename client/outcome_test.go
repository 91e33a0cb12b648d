package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/server"
)

func TestOutcomeUnknownAnswer(t *testing.T) {
	ctx := context.Background()
	c, _ := fake(t, 503, `{"error":{"code":"outcome_unknown","message":"outcome unknown: read the key"}}`)
	_, err := c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	require.Error(t, err)
	assert.True(t, IsOutcomeUnknown(err), "%v", err)
	assert.ErrorIs(t, err, ctxd.ErrOutcomeUnknown)
	assert.NotErrorIs(t, err, ctxd.ErrUnavailable, "not 'refused': it may have applied")
	assert.NotErrorIs(t, err, ctxd.ErrClosed)
	assert.False(t, IsConnectionError(err))
	var ae *APIError
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, CodeOutcomeUnknown, ae.Code)
	assert.Equal(t, ctxd.CodeOutcomeUnknown, CodeOutcomeUnknown)

	c, _ = fake(t, 503, `{"error":{"code":"unavailable","message":"store closed"}}`)
	_, err = c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	require.Error(t, err)
	assert.False(t, IsOutcomeUnknown(err))
	assert.ErrorIs(t, err, ctxd.ErrUnavailable)
	assert.ErrorIs(t, err, ctxd.ErrClosed)
}

// cutOffAnswer reads each request in full and answers status, announcing
// a body of 100 bytes, of which it sends partial alone before it closes
// the connection.
func cutOffAnswer(status int, partial string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, partial)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}
}

// hangingServer receives each request in full, then never answers: it
// waits until the client has gone.
func hangingServer(t *testing.T) (c *Client, received <-chan struct{}) {
	t.Helper()
	got := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		got <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	require.NoError(t, err)
	return c, got
}

// sentCtx is a cancellable ctx whose channel is closed once the client has
// written the whole request (after the client's own trace saw it).
func sentCtx() (context.Context, context.CancelFunc, <-chan struct{}) {
	wrote := make(chan struct{})
	var once atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil && once.CompareAndSwap(false, true) {
				close(wrote)
			}
		},
	})
	return ctx, cancel, wrote
}

// A write sent in full whose answer never comes is outcome unknown; a read
// in the same situation is not (nothing to be unsure about).
func TestSentWriteWithoutAnswerIsOutcomeUnknown(t *testing.T) {
	calls := map[string]struct {
		write bool
		call  func(ctx context.Context, c *Client) error
	}{
		"put": {true, func(ctx context.Context, c *Client) error {
			_, err := c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
			return err
		}},
		"delete": {true, func(ctx context.Context, c *Client) error {
			_, err := c.Delete(ctx, "", "k", DeleteOptions{})
			return err
		}},
		"txn": {true, func(ctx context.Context, c *Client) error {
			_, err := c.Txn(ctx, []TxnOp{{Op: "put", Key: "k", Value: json.RawMessage(`1`)}}, TxnOptions{})
			return err
		}},
		"import": {true, func(ctx context.Context, c *Client) error {
			_, err := c.Import(ctx, "", strings.NewReader(`{"k":1}`))
			return err
		}},
		"get": {false, func(ctx context.Context, c *Client) error {
			_, err := c.Get(ctx, "", "k", GetOptions{})
			return err
		}},
	}
	for name, tc := range calls {
		t.Run(name, func(t *testing.T) {
			c, received := hangingServer(t)
			ctx, cancel, wrote := sentCtx()
			defer cancel()
			go func() {
				<-received
				<-wrote
				cancel()
			}()
			err := tc.call(ctx, c)
			require.Error(t, err)
			assert.ErrorIs(t, err, context.Canceled, "the cause stays in the chain")
			assert.Equal(t, tc.write, IsOutcomeUnknown(err), "%v", err)
			if tc.write {
				assert.Contains(t, err.Error(), "read the key")
			}
		})
	}
}

// A write that was never sent was not applied: not outcome unknown.
func TestUnsentWriteIsNotOutcomeUnknown(t *testing.T) {
	c := noServer(t)
	_, err := c.Put(context.Background(), "", "k", json.RawMessage(`1`), PutOptions{})
	require.Error(t, err)
	assert.True(t, IsConnectionError(err), "%v", err)
	assert.False(t, IsOutcomeUnknown(err), "connection refused: nothing was sent")

	c, _ = fake(t, 200, `{}`)
	_, err = c.Put(canceled(), "", "k", json.RawMessage(`1`), PutOptions{})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, IsOutcomeUnknown(err), "ctx ended before sending: nothing was sent")
}

// Against the real server: the write is sent and made durable, and the
// store's commit hook holds its answer until the client has given up (no
// timing involved); the error is outcome unknown, and reading the key
// shows that it applied.
func TestOutcomeUnknownThenReadTheKey(t *testing.T) {
	hook := &testkit.CommitHook{}
	srv := testkit.StartServer(t, testkit.WithServerOptions(server.OnCommit(hook.OnCommit)))
	c, err := New(srv.URL)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gaveUp := make(chan struct{})
	hook.Once(func() {
		cancel()
		<-gaveUp
	})
	_, err = c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	close(gaveUp)
	require.True(t, IsOutcomeUnknown(err), "%v", err)

	rec, err := c.Get(context.Background(), "", "k", GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, `1`, string(rec.Value), "it did apply")
}

// A write answered with success whose answer is cut off mid-body (here
// 200 announcing 100 bytes, the connection closed after a few) applied:
// its error is outcome unknown, never the plain error of a write that was
// not applied, which a caller sends again. A read cut off so is not.
func TestSuccessAnswerLostIsOutcomeUnknown(t *testing.T) {
	srv := httptest.NewServer(cutOffAnswer(http.StatusOK, `{"ns":"def`))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	require.NoError(t, err)
	ctx := context.Background()
	snapshot := filepath.Join(t.TempDir(), "snap.db")
	require.NoError(t, os.WriteFile(snapshot, []byte("not a snapshot: the server's answer is all that matters"), 0o600))

	writes := map[string]func() error{
		"put": func() error {
			_, err := c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
			return err
		},
		"txn": func() error {
			_, err := c.Txn(ctx, []TxnOp{{Op: "delete", Key: "k"}}, TxnOptions{})
			return err
		},
		"import": func() error {
			_, err := c.Import(ctx, "", strings.NewReader(`{"context":{}}`))
			return err
		},
		"upload snapshot": func() error {
			_, err := c.UploadSnapshot(ctx, snapshot)
			return err
		},
	}
	for name, write := range writes {
		err := write()
		require.Error(t, err, name)
		assert.True(t, IsOutcomeUnknown(err), "%s: %v", name, err)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "%s: the cause stays in the chain", name)
		assert.Contains(t, err.Error(), "answered 200 (success) but its answer was lost", name)
	}
	_, err = c.Get(ctx, "", "k", GetOptions{})
	require.Error(t, err)
	assert.False(t, IsOutcomeUnknown(err), "a read: %v", err)
}

// A write answered 503 whose body is cut off (here announcing 100 bytes,
// the connection closed after a few) may be ctxd's outcome_unknown as
// well as its unavailable: no telling which, so it is outcome unknown,
// never the plain 503 of a write that was not applied, which a caller
// sends again. Its message says the answer was cut off, not that it was
// someone else's. A read cut off so is not outcome unknown.
func TestErrorAnswerCutOffLeavesAWriteUncertain(t *testing.T) {
	srv := httptest.NewServer(cutOffAnswer(http.StatusServiceUnavailable, `{"error":{"code":"outc`))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL)
	require.NoError(t, err)
	ctx := context.Background()

	_, err = c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	require.Error(t, err)
	assert.True(t, IsOutcomeUnknown(err), "%v", err)
	assert.NotErrorIs(t, err, ctxd.ErrUnavailable)
	assert.Contains(t, err.Error(), "cut off")
	assert.NotContains(t, err.Error(), "not a ctxd answer")
	var ae *APIError
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, http.StatusServiceUnavailable, ae.Status)

	_, err = c.Import(ctx, "", strings.NewReader(`{"context":{}}`))
	assert.True(t, IsOutcomeUnknown(err), "import: %v", err)

	_, err = c.Get(ctx, "", "k", GetOptions{})
	require.Error(t, err)
	assert.False(t, IsOutcomeUnknown(err), "a read: %v", err)
	assert.Contains(t, err.Error(), "cut off")
}
