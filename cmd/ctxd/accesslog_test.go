package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// TestAccessLogWrittenOnShutdown: the access log is buffered and written
// by a goroutine of its own (internal/asynclog); a clean stop writes every
// line, the last ones ("stopped") included, and none was dropped.
func TestAccessLogWrittenOnShutdown(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())

	const clients, perClient = 8, 250
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for i := range perClient {
				id := "flush-" + strconv.Itoa(c) + "-" + strconv.Itoa(i)
				method, body := http.MethodGet, ""
				if i%10 == 0 {
					method, body = http.MethodPut, `{"i":`+strconv.Itoa(i)+`}`
				}
				req, err := http.NewRequest(method, srv.URL+"/v1/ns/default/keys/k"+strconv.Itoa(c), strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("X-Request-Id", id)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	metrics := getBody(t, srv.URL+"/metrics")
	assert.Contains(t, metrics, "\nctxd_log_dropped_lines_total 0\n")

	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(10*time.Second))

	seen := map[string]int{}
	var last string
	for _, line := range strings.Split(strings.TrimSuffix(srv.Stderr.String(), "\n"), "\n") {
		var ev struct {
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &ev), "a whole JSON line: %q", line)
		if ev.Message == "request" {
			seen[ev.RequestID]++
		}
		last = ev.Message
	}
	for c := range clients {
		for i := range perClient {
			id := "flush-" + strconv.Itoa(c) + "-" + strconv.Itoa(i)
			assert.Equal(t, 1, seen[id], "access log lines of %s", id)
		}
	}
	assert.Equal(t, "stopped", last, "the last line logged is written too")
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, string(b))
	return string(b)
}

// The log gives a duration as text, with its unit ("interval":"1h0m0s"),
// as "shutting down" gives its timeout ("10s"): the lines of scheduled
// snapshots and of a defrag gave a bare number of milliseconds
// ("interval":3600000), which a reader took for seconds or for nothing.
func TestLogLinesGiveDurationsAsText(t *testing.T) {
	t.Parallel()
	srv := testkit.StartServe(t, bin, t.TempDir(), testkit.ServeOptions{Env: testkit.CleanEnv("CTXD_SNAPSHOTS_INTERVAL=1h")})
	cliOK(t, []string{"CTXD_SERVER=" + srv.URL}, "", "defrag")
	srv.Signal(syscall.SIGTERM)
	require.Equal(t, 0, srv.Wait(10*time.Second))
	log := srv.Stderr.String()
	assert.Contains(t, log, `"interval":"1h0m0s","keep":7`)
	assert.Regexp(t, `"pause":"[0-9.]+[µnm]?s","time":"[^"]+","message":"defragmented"`, log)
	assert.Contains(t, log, `"timeout":"10s"`)
}
