package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExpiringKey: the key list and the key shown count down to an
// expiring key's deadline, live; a permanent key shows none; a put with a
// short ttl arrives on the feed with its deadline, and when the key
// expires (a delete by ctxd:ttl, on the feed) it leaves the list and the
// detail says it expired, with the expiry in its history.
func TestExpiringKey(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "perm", `1`, "alice")
	status, body := s.do(http.MethodPut, keyPath("default", "run/lock")+"?ttl=10m&who=worker", `"w7"`)
	require.Equal(t, http.StatusOK, status, "%s", body)

	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	lock := `#key-rows tr[data-key="run/lock"] td.expires`
	// "in 9m 58s": to the second below an hour (10 minutes leave room for a
	// slow machine).
	p.waitJS(`/^in \d+m \d+s$/.test(document.querySelector(`+jsString(lock)+`)?.textContent ?? "")`, "a countdown in the row")
	assert.Equal(t, "—", p.text(`#key-rows tr[data-key="perm"] td.expires`), "a permanent key has no deadline")
	first := p.text(lock)
	p.waitJS(`document.querySelector(`+jsString(lock)+`).textContent !== `+jsString(first), "the countdown to move on")

	p.click(`#key-rows tr[data-key="run/lock"] th button`)
	p.waitTextIs("#d-key", "run/lock")
	p.waitJS(`/^in \d+m \d+s$/.test(document.querySelector("#d-expires").textContent)`, "a countdown in the key shown")
	p.click(`#key-rows tr[data-key="perm"] th button`)
	p.waitTextIs("#d-expires", "never")
	p.click(`#key-rows tr[data-key="run/lock"] th button`)
	p.waitText("#d-expires", "in ")

	// A put with a short ttl: the feed brings the new deadline, then the
	// expiry.
	status, body = s.do(http.MethodPut, keyPath("default", "run/lock")+"?ttl=1s&who=worker", `"w8"`)
	require.Equal(t, http.StatusOK, status, "%s", body)
	p.waitJS(`!document.querySelector('#key-rows tr[data-key="run/lock"]')`, "the expired key to leave the list")
	p.waitText("#d-state", "Expired at revision", "ttl ran out", "ctxd:ttl")
	p.waitTextIs("#d-expires", "—")
	p.waitText("#history-rows", "(expired)")
	assert.Equal(t, 1, p.count("#key-rows tr"), "the permanent key stays")
	_, ok := s.get("default", "run/lock")
	assert.False(t, ok, "the key is gone on the server too")
}

// TestEditKeepsTheDeadline: saving an expiring key from the editor keeps
// its deadline (the box ticked by default); it made the key permanent,
// silently. Unticked, the save makes it permanent, as the box says.
func TestEditKeepsTheDeadline(t *testing.T) {
	s := newServer(t, serverOptions{})
	status, body := s.do(http.MethodPut, keyPath("default", "lease")+"?ttl=1h", `"a"`)
	require.Equal(t, http.StatusOK, status, "%s", body)
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	p.click(`#key-rows tr[data-key="lease"] th button`)
	p.waitText("#d-expires", "in ")
	p.click("#edit-btn")
	p.waitJS(`!document.querySelector("#set-ttl-row").hidden`, "the deadline's box")
	p.fill("#set-value", `"b"`)
	p.click("#set-form button[type=submit]")
	p.waitText("#set-result", "version 2")
	r, ok := s.get("default", "lease")
	require.True(t, ok)
	assert.JSONEq(t, `"b"`, string(r.Value))
	require.False(t, r.ExpiresAt.IsZero(), "the deadline is kept")
	assert.WithinDuration(t, time.Now().Add(time.Hour), r.ExpiresAt, time.Minute)

	p.click("#set-keep-ttl") // untick
	p.fill("#set-value", `"c"`)
	p.click("#set-form button[type=submit]")
	p.waitText("#set-result", "version 3")
	r, _ = s.get("default", "lease")
	assert.True(t, r.ExpiresAt.IsZero(), "unticked: permanent")
}

// TestUnreadableKeyIsNotDeleted: a key the page cannot read (the server is
// away) is not shown as one that does not exist (Edit became "Create it
// again", Delete was off, for good): the panel says it cannot read it, and
// reads it once the live feed is back.
func TestUnreadableKeyIsNotDeleted(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "a", `1`, "alice")
	s.put("default", "b", `{"n":2}`, "alice")
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	p.waitFor(`#key-rows tr[data-key="b"]`)
	s.ks.Stop()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	p.click(`#key-rows tr[data-key="b"] th button`)
	p.waitText("#d-state", "Cannot read default/b now", "not known")
	assert.NotContains(t, p.text("#d-state"), "does not exist")
	assert.True(t, eval[bool](p, `document.querySelector("#edit-btn").disabled`), "no \"Create it again\" for a key that may exist")

	s.ks.Start()
	p.waitFor(`#conn[data-state="live"]`)
	p.waitText("#d-value", `"n": 2`)
	p.waitJS(`document.querySelector("#d-state").hidden`, "the banner gone")
	assert.Equal(t, "Edit", p.text("#edit-btn"))
}
