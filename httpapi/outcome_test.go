package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// serveWithContext sends a request straight into the real handler chain
// with a context the test controls: over a socket, the server's request
// context ends only when the client has gone and can no longer read the
// answer.
func (e *env) serveWithContext(ctx context.Context, method, path, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd).WithContext(ctx)
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	if err := e.api.Check(req, []byte(body), rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		e.t.Error(err)
	}
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

var outcomeRoutes = []struct {
	name, method, path, body string
	compat                   bool
	// deleted: the write deletes k (else it sets k to 2).
	deleted bool
}{
	{name: "put", method: http.MethodPut, path: keyPath("default", "k"), body: `2`},
	{name: "delete", method: http.MethodDelete, path: keyPath("default", "k"), deleted: true},
	{name: "txn", method: http.MethodPost, path: "/v1/txn", body: `{"ops":[{"op":"put","key":"k","value":2},{"op":"put","key":"k2","value":3}]}`},
	{name: "import", method: http.MethodPost, path: "/v1/ns/default/import", body: `{"context":{"k":2,"k2":3}}`},
	{name: "compat set", method: http.MethodPost, path: "/ctx", body: `{"key":"k","value":2}`, compat: true},
	{name: "compat delete", method: http.MethodDelete, path: "/ctx/k", compat: true, deleted: true},
}

// A write whose request context ends after the store took it answers 503
// outcome_unknown, on every write route; reading the key then tells whether
// it applied (here it did: it waited in the log behind a held commit
// until the handler had answered).
func TestWriteCancelledMidWriteIsOutcomeUnknown(t *testing.T) {
	for _, rt := range outcomeRoutes {
		t.Run(rt.name, func(t *testing.T) {
			h := &testkit.CommitHook{}
			e := newEnv(t, envOptions{store: bolt.Options{OnCommit: h.OnCommit}})
			e.put("k", `1`)

			release := h.Hold(t, func() error {
				_, err := e.st.Put(context.Background(), "held", "h", json.RawMessage(`0`), nil, "t")
				return err
			})
			// The write reaches the store at once and waits there: the
			// deadline only has to come after that (a request refused
			// before it would answer unavailable, and fail the test).
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			r := e.serveWithContext(ctx, rt.method, rt.path, rt.body)
			release()

			var ae apiError
			if rt.compat {
				ae = requireCtxError(t, r, http.StatusServiceUnavailable, "outcome_unknown").apiError
			} else {
				ae = requireError(t, r, http.StatusServiceUnavailable, "outcome_unknown")
			}
			assert.Contains(t, ae.Error.Message, "read the key")

			got := e.do(http.MethodGet, keyPath("default", "k"), "")
			if rt.deleted {
				requireError(t, got, http.StatusNotFound, "not_found")
			} else {
				require.Equal(t, http.StatusOK, got.status, string(got.body))
				assert.Equal(t, json.RawMessage(`2`), decode[ctxd.Record](t, got).Value)
			}
		})
	}
}

// A write whose request context had ended before the store queued it is
// refused: 503 unavailable, and nothing changed.
func TestWriteCancelledBeforeQueueingIsUnavailable(t *testing.T) {
	for _, rt := range outcomeRoutes {
		t.Run(rt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.put("k", `1`)
			rev := e.revision()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			r := e.serveWithContext(ctx, rt.method, rt.path, rt.body)
			require.Equal(t, http.StatusServiceUnavailable, r.status, "body: %s", r.body)
			assert.Contains(t, string(r.body), `"code":"unavailable"`)
			assert.Equal(t, rev, e.revision())
		})
	}
}
