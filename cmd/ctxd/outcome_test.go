package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/server"
)

// A write whose outcome is unknown exits 6 and says to read the key.
func TestExitCodeOutcomeUnknown(t *testing.T) {
	t.Parallel()

	t.Run("server says outcome_unknown", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":"outcome_unknown","message":"outcome unknown: read the key"}}`)
		}))
		defer srv.Close()
		env := []string{"CTXD_SERVER=" + srv.URL}
		for _, args := range [][]string{{"put", "k", "1"}, {"del", "k"}, {"import", "-"}} {
			r := cli(t, env, `{"k":1}`, args...)
			assert.Equal(t, 6, r.code, "%v: stdout %q stderr %q", args, r.stdout, r.stderr)
			assert.Contains(t, r.stderr, "outcome_unknown")
			assert.Contains(t, r.stderr, "Read the key")
		}
	})

	t.Run("no answer to a write sent", func(t *testing.T) {
		// The real API over a real store whose commits wait behind a held
		// one until the CLI has exited: the CLI's --timeout ends first.
		hook := &testkit.CommitHook{}
		srv := testkit.StartServer(t, testkit.WithServerOptions(server.OnCommit(hook.OnCommit)))
		env := []string{"CTXD_SERVER=" + srv.URL}

		release := hook.Hold(t, func() error {
			if r := cli(t, env, "", "put", "held", "0"); r.code != 0 {
				return fmt.Errorf("put held: exit %d: %s", r.code, r.stderr)
			}
			return nil
		})
		r := cli(t, env, "", "put", "k", "42", "--timeout", "1s")
		release()
		assert.Equal(t, 6, r.code, "stdout %q stderr %q", r.stdout, r.stderr)
		assert.Contains(t, r.stderr, "outcome unknown")
		assert.Contains(t, r.stderr, "Read the key")

		// What the message says to do: the write did apply.
		r = cli(t, env, "", "get", "k", "-o", "value")
		assert.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, "42\n", r.stdout)
	})
}
