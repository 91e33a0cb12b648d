package main

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
)

// TestExpiryDeadlinesSurviveSIGKILL: deadlines are durable. A key put with
// a ttl (ctxd put --ttl) whose deadline passes while the server is down
// (killed with SIGKILL, so only the write-ahead log may hold it) expires
// when the server starts again: gone, with an expiry by ctxd:ttl in its
// history and on the feed (/v1/watch, replayed from before it). A
// keepalive (ctxd keepalive) made before the kill is durable too: that
// key outlives its first deadline.
func TestExpiryDeadlinesSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	p := startServer(t, dir)
	env := []string{"CTXD_SERVER=" + p.URL}
	put := fromJSON[ctxd.Record](t, cliOK(t, env, "", "put", "run/lock", "held", "--ttl", "1s", "-o", "json"))
	require.False(t, put.ExpiresAt.IsZero(), "ctxd put --ttl sets a deadline")
	assert.WithinDuration(t, put.UpdatedAt.Add(time.Second), put.ExpiresAt, 0)
	cliOK(t, env, "", "put", "worker/hb", "alive", "--ttl", "1s")
	ka := fromJSON[ctxd.Record](t, cliOK(t, env, "", "keepalive", "worker/hb", "--ttl", "1h", "--if-version", "1", "-o", "json"))
	assert.Equal(t, uint64(1), ka.Version, "a keepalive makes no version")
	assert.True(t, ka.ExpiresAt.After(time.Now().Add(50*time.Minute)))
	p.Kill()

	// The server is down past the lock's deadline (nothing to wait on).
	time.Sleep(time.Until(put.ExpiresAt.Add(500 * time.Millisecond)))
	p = startServer(t, dir)
	cl, err := client.New(p.URL)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	// The feed replays the expiry after the put.
	from := put.ModRev
	var exp client.WatchEvent
	err = cl.Watch(ctx, client.WatchOptions{FromRev: &from}, func(ev client.WatchEvent) error {
		if ev.Type == client.EventChange && ev.Key == "run/lock" {
			exp = ev
			return errStop
		}
		return nil
	})
	require.True(t, err == nil || errors.Is(err, errStop), "watch: %v", err)
	require.Equal(t, "run/lock", exp.Key, "the expiry came on the feed")
	assert.Equal(t, "delete", exp.Op)
	assert.Equal(t, ctxd.WhoTTL, exp.Who)
	assert.True(t, exp.Expired)
	assert.False(t, exp.Timestamp.Before(put.ExpiresAt), "expired at %s, deadline %s", exp.Timestamp, put.ExpiresAt)

	_, err = cl.Get(ctx, "", "run/lock", client.GetOptions{})
	assert.True(t, client.IsNotFound(err), "the expired key is gone: %v", err)
	hist, err := cl.History(ctx, "", "run/lock", client.HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, hist.Changes, 2)
	assert.Equal(t, exp.Rev, hist.Changes[0].Revision)
	assert.True(t, hist.Changes[0].Expired)
	assert.Equal(t, ctxd.WhoTTL, hist.Changes[0].Who)

	hb, err := cl.Get(ctx, "", "worker/hb", client.GetOptions{})
	require.NoError(t, err, "the kept-alive key outlived its first deadline")
	assert.Equal(t, ka.ExpiresAt, hb.ExpiresAt, "the keepalive survived the kill")

	// Keepalive on a missing key: exit code 4, as for other missing keys.
	r := cli(t, env, "", "keepalive", "run/lock", "--ttl", "1m", "--server", p.URL)
	assert.Equal(t, 4, r.code, r.stderr)
	resp, err := http.Get(p.URL + "/v1/ns/default/keys/worker/hb")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

var errStop = errors.New("stop watching")

// expiresCell matches a table's EXPIRES cell of a key that expires.
var expiresCell = regexp.MustCompile(`\bin ((?:\d+h)?(?:\d+m)?\d+s)\b`)

// expiresIn returns the time left that the table line shows.
func expiresIn(t *testing.T, line string) time.Duration {
	t.Helper()
	m := expiresCell.FindStringSubmatch(line)
	require.NotNil(t, m, "no EXPIRES cell in %q", line)
	d, err := time.ParseDuration(m[1])
	require.NoError(t, err)
	return d
}

// lineOf returns the line of out that starts with prefix.
func lineOf(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no line starting with %q in:\n%s", prefix, out)
	return ""
}

// The CLI shows expiry (through the OpenAPI proxy): put --ttl, get, ls and
// keepalive tables gain an EXPIRES column ("in 59m59s") when a key shown
// expires, and only then; dumps carry the deadline; a dump imported
// elsewhere keeps it, and import's table says what it skipped.
func TestCLIShowsExpiry(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}

	out := cliOK(t, env, "", "put", "perm", "1")
	assert.NotContains(t, out, "EXPIRES", "no key shown expires: no column")
	out = cliOK(t, env, "", "put", "run/lock", "held", "--ttl", "1h")
	assert.Contains(t, lineOf(t, out, "NS"), "EXPIRES")
	left := expiresIn(t, lineOf(t, out, "default"))
	assert.True(t, left > 0 && left <= time.Hour, "%s", left)

	out = cliOK(t, env, "", "get", "run/lock", "-o", "table")
	assert.Contains(t, lineOf(t, out, "NS"), "EXPIRES")
	expiresIn(t, lineOf(t, out, "default"))
	assert.Equal(t, "held\n", cliOK(t, env, "", "get", "run/lock"), "-o value is the value only")

	out = cliOK(t, env, "", "ls")
	assert.Regexp(t, `^KEY\s+VERSION\s+REVISION\s+WHO\s+UPDATED\s+EXPIRES\s+VALUE$`, lineOf(t, out, "KEY"))
	assert.Regexp(t, `\s-\s+1$`, lineOf(t, out, "perm "), "a permanent key's EXPIRES is -")
	expiresIn(t, lineOf(t, out, "run/lock"))
	assert.NotContains(t, cliOK(t, env, "", "ls", "perm"), "EXPIRES", "a page of permanent keys has no column")

	out = cliOK(t, env, "", "keepalive", "run/lock", "--ttl", "2h")
	left = expiresIn(t, lineOf(t, out, "default"))
	assert.True(t, left > time.Hour && left <= 2*time.Hour, "%s", left)
	rec := fromJSON[ctxd.Record](t, cliOK(t, env, "", "get", "run/lock", "-o", "json"))
	require.False(t, rec.ExpiresAt.IsZero())

	deadline := rec.ExpiresAt.UTC().Format(time.RFC3339Nano)
	assert.Contains(t, cliOK(t, env, "", "dump", "--format", "txt"), "run/lock=held\n# expires_at "+deadline+"\n")
	assert.Contains(t, cliOK(t, env, "", "dump", "--format", "csv"), ","+deadline+"\r\n")
	dump := cliOK(t, env, "", "dump")
	out = cliOK(t, env, dump, "import", "-n", "copy", "-")
	assert.Regexp(t, `^NS\s+IMPORTED\s+SKIPPED_EXPIRED\s+REVISION$`, lineOf(t, out, "NS"))
	assert.Regexp(t, `^copy\s+2\s+0\s+\d+$`, lineOf(t, out, "copy"))
	cp := fromJSON[ctxd.Record](t, cliOK(t, env, "", "get", "-n", "copy", "run/lock", "-o", "json"))
	assert.False(t, cp.ExpiresAt.Before(rec.ExpiresAt), "the deadline came along: %s, %s", cp.ExpiresAt, rec.ExpiresAt)

	out = cliOK(t, env, strings.Replace(dump, deadline, "2001-01-01T00:00:00Z", 1), "import", "-n", "old", "-")
	assert.Regexp(t, `^old\s+1\s+1\s+\d+$`, lineOf(t, out, "old"), "the passed deadline is skipped")
}
