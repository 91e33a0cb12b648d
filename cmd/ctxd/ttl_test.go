package main

import (
	"context"
	"errors"
	"net/http"
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
