package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	ctxdserver "github.com/framework0/ctxd/server"
)

// TestFirstLoad: without a click, the page shows the status and the keys of
// namespace default, and the live feed connects.
func TestFirstLoad(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "app.config", `{"debug":true}`, "alice")
	s.put("default", "app.status", `"running"`, "alice")
	s.put("team", "deploy/version", `"1.4.2"`, "bob")

	p := openPage(t, s, "/")
	p.waitTextIs("#st-version", "e2e-test")
	p.waitTextIs("#st-revision", "3")
	p.waitTextIs("#st-keys", "3")
	p.waitTextIs("#st-namespaces", "2")
	p.waitText("#key-rows", "app.config", "app.status")
	assert.Equal(t, 2, p.count("#key-rows tr"), "only the keys of default")
	// The list is read without values; a row's value is read when asked for.
	assert.NotContains(t, p.text("#key-rows"), `{"debug":true}`)
	p.click(`#key-rows tr[data-key="app.config"] .show-value`)
	p.waitText(`#key-rows tr[data-key="app.config"]`, `{"debug":true}`)
	assert.NotContains(t, p.text("#key-rows"), `"running"`, "only the value asked for")
	assert.NotContains(t, p.text("#key-rows"), "deploy/version")
	p.waitFor(`#conn[data-state="live"]`)
	p.waitText("#ns-select", "default (2 keys)", "team (1 key)")
	// The feed starts after the revision the status read, before the
	// lists are: nothing written while the page loads falls between them.
	conns := s.ws.connections()
	require.NotEmpty(t, conns)
	assert.Equal(t, "3", conns[0].Get("from_rev"), "the first connection resumes after the status's revision")

	// Another namespace, chosen in the list.
	p.fill("#ns-select", "team")
	p.waitText("#key-rows", "deploy/version")
	assert.Equal(t, 1, p.count("#key-rows tr"))

	// A transaction that moves a key between namespaces leaves the totals
	// as they were: the counts per namespace are read again all the same.
	code, body := s.do(http.MethodPost, "/v1/txn", `{"ops":[{"op":"delete","key":"app.status"},{"op":"put","ns":"team","key":"status","value":"running"}]}`)
	require.Equal(t, http.StatusOK, code, string(body))
	p.waitText("#ns-select", "default (1 key)", "team (2 keys)")
}

// TestSetKeyThroughForm: a key written with the form is in the list, stored
// exactly as typed (a number beyond float64 precision included).
func TestSetKeyThroughForm(t *testing.T) {
	s := newServer(t, serverOptions{})
	p := openPage(t, s, "/")
	p.waitText("#keys-empty", "No keys in default")

	p.fill("#set-key", "greeting")
	p.fill("#set-value", `{"hello": "world", "big": 12345678901234567890}`)
	p.click("#set-form button[type=submit]")
	p.waitText("#set-result", "Saved default/greeting: version 1")
	p.waitFor(`#key-rows tr[data-key="greeting"]`)
	p.waitText(`#key-rows tr[data-key="greeting"]`, `"hello":"world"`)
	// The saved key is shown, digits intact.
	p.waitTextIs("#d-key", "greeting")
	p.waitText("#d-value", `"big": 12345678901234567890`)

	r, ok := s.get("default", "greeting")
	require.True(t, ok)
	assert.Equal(t, "dashboard", r.Who)
	assert.Contains(t, string(r.Value), "12345678901234567890", "the number is stored as typed")

	// Saved again: the page's own change, which the feed brings before the
	// PUT's answer (held here until the page has shown it), is not a
	// change "after you loaded it".
	_, release := s.ws.holdAnswers(http.MethodPut, "")
	defer release()
	p.fill("#set-value", `{"hello": "again"}`)
	p.click("#set-form button[type=submit]")
	p.waitFor(`#live-list li[data-rev="2"]`)
	release()
	p.waitText("#set-result", "Saved default/greeting: version 2")
	assert.False(t, eval[bool](p, `!document.querySelector("#set-stale").hidden`), "no stale warning for the page's own save: %s", p.text("#set-stale"))
	// Someone else's change after it is one.
	s.put("default", "greeting", `"bob's"`, "bob")
	p.waitText("#set-stale", "changed after you loaded it: now version 3, by bob")

	// An expected version that is not a number is refused (a number field
	// reads it as empty: it would have been an unconditional write).
	p.fill("#set-version", "")
	p.do(chromedp.SendKeys("#set-version", "-"))
	p.fill("#set-value", `"no"`)
	p.click("#set-form button[type=submit]")
	p.waitText("#set-error", "Expected version: empty, 0 or a version number")
	r, _ = s.get("default", "greeting")
	assert.Equal(t, uint64(3), r.Version, "nothing written")

	// Keys named "." and "..": a browser cannot send them in a URL path
	// (they read as folder steps); the page says so and what to use.
	s.put("default", "..", `1`, "alice")
	p.fill("#set-key", "..")
	p.fill("#set-version", "")
	p.fill("#set-value", `2`)
	p.click("#set-form button[type=submit]")
	p.waitText("#set-error", `a key named ".." cannot be sent in a URL from a browser`, "ctxd get/put/del/history")
	r, _ = s.get("default", "..")
	assert.Equal(t, `1`, string(r.Value), "nothing written")

	// Bad JSON is refused in the page, and nothing is written.
	p.fill("#set-key", "broken")
	p.fill("#set-value", `{"a": }`)
	p.click("#set-form button[type=submit]")
	p.waitText("#set-error", "not valid JSON")
	_, ok = s.get("default", "broken")
	assert.False(t, ok)

	// Text, stored as a JSON string.
	p.fill("#set-value", `plain text`)
	p.click("#set-as-string")
	p.click("#set-form button[type=submit]")
	p.waitText("#set-result", "Saved default/broken: version 1")
	r, _ = s.get("default", "broken")
	assert.Equal(t, `"plain text"`, string(r.Value))
}

// TestDeeplyNestedValue: a value nested almost as deep as ctxd allows
// is shown in the key panel, its row and on the live feed, where its change
// was dropped (the page's JSON reader exhausted the stack) and the key
// panel could not read it.
func TestDeeplyNestedValue(t *testing.T) {
	s := newServer(t, serverOptions{})
	deep := strings.Repeat("[", 9990) + "1" + strings.Repeat("]", 9990) // 10,000 is too deep for s.put to decode
	s.put("default", "deep", deep, "alice")
	p := openPage(t, s, "/#key=deep")
	p.waitText("#d-value", "[[[[[[1]]]]]]")
	assert.Empty(t, p.text("#d-state"))
	p.waitFor(`#conn[data-state="live"]`)
	s.put("default", "deep", "["+deep+"]", "bob")
	p.waitText(`#live-list li[data-rev="2"]`, "bob", "[[[[")
	p.waitTextIs("#d-version", "2")
	p.waitText(`#key-rows tr[data-key="deep"] .value`, "[[[[")
}

// TestValueShownAsStored: a value is shown, diffed and edited as the text
// ctxd stores, indented: members in their stored order (JavaScript would
// put integer-like names first), a member named twice kept twice, strings
// with their escapes, numbers with their digits. Edit then Save without a
// change writes the same bytes back; a change elsewhere changes only that.
func TestValueShownAsStored(t *testing.T) {
	const stored = `{"b":1,"10":2,"a":3,"2":4,"a":5,"o":{"z":true,"1":null},"s":"\u00e9<&>\"","n":12345678901234567890,"e":{},"l":[[]]}`
	const shown = `{
  "b": 1,
  "10": 2,
  "a": 3,
  "2": 4,
  "a": 5,
  "o": {
    "z": true,
    "1": null
  },
  "s": "\u00e9<&>\"",
  "n": 12345678901234567890,
  "e": {},
  "l": [
    []
  ]
}`
	s := newServer(t, serverOptions{})
	// Sent with spaces: the server stores it compact, nothing else changed.
	s.put("default", "order", strings.ReplaceAll(stored, `,"`, `, "`), "alice")
	r, ok := s.get("default", "order")
	require.True(t, ok)
	require.Equal(t, stored, string(r.Value), "the server keeps the member order, both a members and the escapes")

	p := openPage(t, s, "/#key=order")
	p.waitTextIs("#d-key", "order")
	p.waitJS(`document.querySelector("#d-value").textContent === `+jsString(shown), "the value shown as stored, indented")
	p.click(`#key-rows tr[data-key="order"] .show-value`)
	p.waitText(`#key-rows tr[data-key="order"]`, `{"b":1,"10":2,"a":3,"2":4,"a":5`)
	p.waitText(`#history-rows tr[data-rev="1"]`, `{"b":1,"10":2,"a":3,"2":4,"a":5`)
	// A field's value starts as its stored text too.
	p.fill("#field-path", "o")
	p.waitJS(`document.querySelector("#field-value").value === '{"z":true,"1":null}'`, "the field's stored text")

	// Edit, then Save without a change: the same bytes.
	p.click("#edit-btn")
	p.waitJS(`document.querySelector("#set-value").value === `+jsString(shown), "the editor to start from the text shown")
	p.click("#set-form button[type=submit]")
	p.waitText("#set-result", "Saved default/order: version 2")
	r, _ = s.get("default", "order")
	assert.Equal(t, stored, string(r.Value), "an unedited value is saved as it was")

	// A change of one member changes only that member.
	p.waitFor(`#history-rows tr[data-rev="2"]`) // the history re-read: the diff below has both
	p.fill("#set-value", strings.Replace(shown, `"b": 1`, `"b": 7`, 1))
	p.click("#set-form button[type=submit]")
	p.waitText("#set-result", "Saved default/order: version 3")
	r, _ = s.get("default", "order")
	assert.Equal(t, strings.Replace(stored, `"b":1`, `"b":7`, 1), string(r.Value))

	// The diff and the value at a revision are the stored text too.
	p.waitFor(`#history-rows tr[data-rev="3"]`)
	p.click(`#history-rows tr[data-rev="3"] button[aria-label^="Diff"]`)
	p.waitText("#diff-summary", "1 line removed, 1 added")
	assert.Contains(t, p.text("#diff"), "-   \"b\": 1,\n+   \"b\": 7,\n    \"10\": 2,\n    \"a\": 3,\n    \"2\": 4,\n")
	p.click(`#history-rows tr[data-rev="1"] button[aria-label^="View"]`)
	p.waitText("#d-state", "Value at revision 1")
	p.waitJS(`document.querySelector("#d-value").textContent === `+jsString(shown), "the value at revision 1 as stored")

	// A value the live feed brings is shown as stored as well.
	p.click("#pit-current")
	s.put("default", "order", `{"z":1,"1":2}`, "bob")
	p.waitJS(`document.querySelector("#d-value").textContent === '{\n  "z": 1,\n  "1": 2\n}'`, "the value from the feed as stored")
	p.waitText(`#live-list li[data-rev="4"]`, `{"z":1,"1":2}`)
}

// TestEditOneField: the field form changes one member of an object with a
// JSON Patch; a change another client made to another member meanwhile is
// kept, a number keeps its digits, and a refusal names the pointer.
func TestEditOneField(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "cfg", `{"debug":false,"limits":{"cpu":2},"owner":"ann"}`, "alice")
	p := openPage(t, s, "/")
	p.waitFor(`#key-rows tr[data-key="cfg"]`)
	p.click(`#key-rows tr[data-key="cfg"] th button`)
	p.waitTextIs("#d-key", "cfg")
	p.waitFor("#field-form:not([hidden])")

	// Someone else changes another member after the page loaded the value.
	s.put("default", "cfg", `{"debug":false,"limits":{"cpu":2},"owner":"bob"}`, "bob")
	p.fill("#field-path", "/limits/cpu")
	p.fill("#field-value", "12345678901234567890")
	p.click("#field-form button[type=submit]")
	p.waitText("#field-result", "Saved /limits/cpu of default/cfg: version 3")
	r, ok := s.get("default", "cfg")
	require.True(t, ok)
	assert.Equal(t, `{"debug":false,"limits":{"cpu":12345678901234567890},"owner":"bob"}`, string(r.Value))
	assert.Equal(t, "dashboard", r.Who)
	p.waitText("#d-value", `"cpu": 12345678901234567890`, `"owner": "bob"`)

	// A member name alone is a top-level field.
	p.fill("#field-path", "debug")
	p.fill("#field-value", "true")
	p.click("#field-form button[type=submit]")
	p.waitText("#field-result", "Saved /debug of default/cfg: version 4")

	// A path whose parent does not exist is refused with its pointer.
	p.fill("#field-path", "/nope/deeper")
	p.fill("#field-value", "1")
	p.click("#field-form button[type=submit]")
	p.waitText("#field-error", "Not saved (at /nope/deeper)")
	p.fill("#field-value", "{oops")
	p.click("#field-form button[type=submit]")
	p.waitText("#field-error", "not valid JSON")
	r, _ = s.get("default", "cfg")
	assert.Equal(t, uint64(4), r.Version, "refused fields wrote nothing")

	// An array element is set in place (replace), not inserted before the
	// one shown; "-" appends.
	s.put("default", "arr", `{"list":[1,2,3]}`, "alice")
	p.click(`#key-rows tr[data-key="arr"] th button`)
	p.waitTextIs("#d-key", "arr")
	p.waitText("#d-value", `"list"`) // its value read: the field form is arr's, not cfg's
	p.waitFor("#field-form:not([hidden])")
	p.fill("#field-path", "/list/0")
	p.waitJS(`document.querySelector("#field-value").value === "1"`, "the element's value filled in")
	p.fill("#field-value", "99")
	p.click("#field-form button[type=submit]")
	p.waitText("#field-result", "Saved /list/0 of default/arr: version 2")
	r, _ = s.get("default", "arr")
	assert.Equal(t, `{"list":[99,2,3]}`, string(r.Value))
	p.waitText("#d-value", "99")
	p.fill("#field-path", "/list/-")
	p.waitJS(`document.querySelector("#field-value").value === ""`, "a new field starts empty")
	p.fill("#field-value", "4")
	p.click("#field-form button[type=submit]")
	p.waitText("#field-result", "Saved /list/- of default/arr: version 3")
	r, _ = s.get("default", "arr")
	assert.Equal(t, `{"list":[99,2,3,4]}`, string(r.Value))
}

// TestLiveUpdate: a change made through the REST API appears in the event
// stream and in the key shown, without a reload; pause and filter work.
func TestLiveUpdate(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "app.config", `{"debug":true}`, "alice")
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	p.click(`#key-rows tr[data-key="app.config"] button`)
	p.waitTextIs("#d-version", "1")
	p.do(chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))

	s.put("default", "app.config", `{"debug":false}`, "bob")
	p.waitText(`#live-list li[data-rev="2"]`, "default/app.config", "put", "bob", `{"debug":false}`)
	p.waitText("#d-value", `"debug": false`)
	p.waitTextIs("#d-version", "2")
	p.waitTextIs("#d-who", "bob")
	p.waitText(`#key-rows tr[data-key="app.config"]`, `{"debug":false}`)
	p.waitTextIs("#st-revision", "2")
	p.waitText("#history-rows", "bob", "alice")
	assert.True(t, eval[bool](p, `window.notReloaded === true`), "the page was not reloaded")

	// A new key appears in the list by itself.
	s.put("default", "app.new", `1`, "carol")
	p.waitFor(`#key-rows tr[data-key="app.new"]`)

	// Paused, changes are held and shown on resume.
	p.click("#live-pause")
	p.waitTextIs("#live-pause", "Resume")
	s.put("default", "app.config", `{"debug":"paused"}`, "dave")
	p.waitText("#live-state", "Paused: 1 new change held")
	assert.Zero(t, p.count(`#live-list li[data-rev="4"]`), "nothing is added while paused")
	p.waitText("#d-value", `"debug": "paused"`) // the key itself stays current
	// A filter changed while paused shows no held change (it showed them).
	p.fill("#live-prefix", "app.c")
	p.waitJS(`document.querySelectorAll("#live-list li").length === 1`, "the filter applied to the changes shown")
	assert.Zero(t, p.count(`#live-list li[data-rev="4"]`), "still held after a filter change")
	p.fill("#live-prefix", "")
	p.click("#live-pause")
	p.waitFor(`#live-list li[data-rev="4"]`)

	// The filter by namespace and by prefix.
	s.put("other", "x", `true`, "erin")
	p.waitFor(`#live-list li[data-rev="5"]`)
	p.fill("#live-ns", "other")
	p.waitJS(`document.querySelectorAll("#live-list li").length === 1`, "only the change of namespace other")
	p.fill("#live-ns", "")
	p.fill("#live-prefix", "app.n")
	p.waitJS(`document.querySelectorAll("#live-list li").length === 1 && document.querySelector('#live-list li[data-key="app.new"]') !== null`, "only app.new")
	p.fill("#live-prefix", "")
	p.waitJS(`document.querySelectorAll("#live-list li").length === 4`, "every change again")
}

// TestLiveResume: after the connection drops, the feed reconnects from the
// last revision it handled and shows the change made meanwhile, once.
func TestLiveResume(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "k", `1`, "alice")
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	s.put("default", "k", `2`, "alice")
	p.waitFor(`#live-list li[data-rev="2"]`)

	s.ws.cut()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	p.waitText("#live-state", "resuming after revision 2")
	s.put("default", "k", `3`, "bob") // while disconnected
	s.ws.allow()

	p.waitText(`#live-list li[data-rev="3"]`, "bob")
	p.waitFor(`#conn[data-state="live"]`)
	assert.Equal(t, 1, p.count(`#live-list li[data-rev="2"]`), "no change twice")
	conns := s.ws.connections()
	last := conns[len(conns)-1]
	assert.Equal(t, "2", last.Get("from_rev"), "the reconnection resumes after the last revision")
	assert.Equal(t, "1", conns[0].Get("from_rev"), "the first connection starts after the status's revision")
}

// TestLiveFeedKeepsNoLargeValues: a page left open sees every change of
// every namespace; it keeps the newest 500 on the live feed and values
// for the key list, but not every value: 48 changes of a 1 MB value held
// 48 MB (100 MB after 100, and so on up to 500 MB and more); and still
// not once a key it kept a value of changed again.
//
// 32 values of 1 MiB: twice the 16 MiB the page keeps for the list. The
// heap's bound, 24 MiB, is above what a page that keeps its full 16 MiB
// holds, and under the 33 MiB a page that keeps every value holds
// (measured: 2 MiB with the bound, 33 without). 48 values under 32 MiB
// proved the same with half as many megabytes again, each copied several
// times under -race (the store, the feed, the browser).
func TestLiveFeedKeepsNoLargeValues(t *testing.T) {
	s := newServer(t, serverOptions{})
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	// A key put twice first: its second value replaces the first in the
	// count of the values kept (which went NaN, and bounded nothing since).
	s.put("bulk", "twice", `"x"`, "load")
	s.put("bulk", "twice", `"y"`, "load")
	big := `"` + strings.Repeat("a", 1<<20-2) + `"`
	var last ctxd.Record
	for i := range 32 { // straight into the store: the page's memory is the point, not the PUTs
		var err error
		last, err = s.ks.Backend().Put(context.Background(), "bulk", fmt.Sprintf("k%d", i), json.RawMessage(big), nil, "load")
		require.NoError(t, err)
	}
	p.waitText(fmt.Sprintf(`#live-list li[data-rev="%d"]`, last.ModRev), "bulk/k31", `"aaaa`)
	_, err := chromedp.Call(p.ctx, heapprofiler.CollectGarbage, cdp.Empty{})
	require.NoError(t, err)
	heap, err := chromedp.Call(p.ctx, cdpruntime.GetHeapUsage, cdp.Empty{})
	require.NoError(t, err)
	assert.Less(t, (heap.UsedSize+heap.BackingStorageSize)/(1<<20), 24.0, "MiB of JavaScript heap")
}

// TestLiveLaggedResumes: a feed the server closes for falling behind
// ("lagged", with the from_rev to resume from) reconnects and resumes by
// itself. The notice says that it fell behind and resumed, and after which
// revision, not the server's advice to "reconnect with from_rev", which
// is the page's business; no change is missed.
func TestLiveLaggedResumes(t *testing.T) {
	s := newServer(t, serverOptions{maxLag: 2})
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	last := lagFeed(t, s)
	p.waitText("#notice", "The live feed fell behind", "it reconnected and resumed after revision ", "no change is missed")
	assert.Regexp(t, `resumed after revision [0-9]+:`, p.text("#notice"))
	assert.NotContains(t, p.text("#notice"), "reconnect with", "not the server's advice to a client")
	p.waitFor(fmt.Sprintf(`#live-list li[data-rev="%d"]`, last.Revision))
	p.waitFor(`#conn[data-state="live"]`)
}

// lagFeed writes bursts of 50 changes (keys k0 to k49) in one commit,
// each more than max_lag (serverOptions.maxLag) ahead of the page's feed,
// until the server has closed the feed for lagging; it returns the last
// burst's result.
func lagFeed(t *testing.T, s *server) ctxd.TxnResult {
	t.Helper()
	var last ctxd.TxnResult
	for i := 0; !strings.Contains(s.ks.Logs.String(), "closing lagging WebSocket client"); i++ {
		require.Less(t, i, 50, "the feed never lagged")
		last = burst(t, s, strconv.Itoa(i))
	}
	return last
}

// burst writes keys k0 to k49 of default in one commit, each with value.
func burst(t *testing.T, s *server, value string) ctxd.TxnResult {
	t.Helper()
	var writes []ctxd.Write
	for j := range 50 {
		writes = append(writes, ctxd.Write{Namespace: "default", Key: fmt.Sprintf("k%d", j), Op: ctxd.OpPut, Value: []byte(value), Who: "burst"})
	}
	r, err := s.ks.Backend().Txn(context.Background(), writes)
	require.NoError(t, err)
	return r
}

// TestLiveLaggedThenCompacted: a feed closed for falling behind whose
// resume point is compacted away before it reconnects has not resumed:
// the page never says that it did and that no change is missed (not
// even while the restarted feed connects), but that it missed changes,
// and it re-reads everything.
func TestLiveLaggedThenCompacted(t *testing.T) {
	// The feed starts after revision 1 (from_rev=0 is all history kept).
	s, p, noticesSeen := laggedAndRefused(t)
	// Every change up to the resume point is superseded, then compacted away.
	burst(t, s, `"after"`)
	status, body := s.do(http.MethodPost, "/v1/compact?keep_versions=1", "")
	require.Equal(t, http.StatusOK, status, "%s", body)
	s.ws.allow()

	p.waitText("#notice", "missed changes that history no longer holds")
	p.waitFor(`#conn[data-state="live"]`) // restarted: live once subscribed
	assertNeverResumed(t, noticesSeen)
	assert.Contains(t, p.text("#notice"), "missed changes that history no longer holds")
}

// laggedAndRefused opens the dashboard on a server with max_lag 2 and a
// key at revision 1, records its notices, and cuts its feed lagged while
// the server refuses new feeds: the page is trying to resume when it
// returns. s.ws.allow() lets it.
func laggedAndRefused(t *testing.T) (*server, *page, func() []string) {
	t.Helper()
	s := newServer(t, serverOptions{maxLag: 2})
	s.put("default", "seed", `1`, "alice")
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	noticesSeen := p.recordNotices()
	s.ws.refuseNew() // the feed goes on; its reconnect is refused
	connected := len(s.ws.connections())
	lagFeed(t, s)
	testkit.Eventually(t, func() bool { return len(s.ws.connections()) > connected }, "the page tries to resume after the lagged close")
	return s, p, noticesSeen
}

// assertNeverResumed: no notice the page showed said that the feed
// resumed with no change missed.
func assertNeverResumed(t *testing.T, noticesSeen func() []string) {
	t.Helper()
	seen := noticesSeen()
	for _, n := range seen {
		assert.NotContains(t, n, "no change is missed", "notices shown: %q", seen)
	}
}

// TestLiveLaggedThenReset: a feed closed for falling behind whose
// resume point is past the data of the server it reconnects to (restarted
// on other data, here none) is told reset, not resumed: the page never
// says that no change is missed, not even between the server's
// "subscribed" and its "reset", but that the database was replaced.
func TestLiveLaggedThenReset(t *testing.T) {
	// The resume point, 1 at least, is then past an empty database.
	s, p, noticesSeen := laggedAndRefused(t)
	s.ks.Stop()
	require.NoError(t, os.Remove(filepath.Join(s.ks.DataDir(), ctxdserver.DBFile)))
	require.NoError(t, os.RemoveAll(filepath.Join(s.ks.DataDir(), "wal")))
	s.ks.Start()
	s.ws.allow()

	p.waitFor(`#live-list li.reset`)
	p.waitText("#notice", "The database was replaced")
	assertNeverResumed(t, noticesSeen)
}

// TestLiveResetToALowerRevision: a server restarted on data whose
// revision is below what the page saw (an older backup, or none: here the
// data is gone) says reset when the page reconnects; the status then
// shows the server's revision, not the higher one seen before.
func TestLiveResetToALowerRevision(t *testing.T) {
	s := newServer(t, serverOptions{})
	for i := range 3 {
		s.put("default", "old", strconv.Itoa(i), "alice")
	}
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	p.waitTextIs("#st-revision", "3")

	s.ks.Stop()
	require.NoError(t, os.Remove(filepath.Join(s.ks.DataDir(), ctxdserver.DBFile)))
	require.NoError(t, os.RemoveAll(filepath.Join(s.ks.DataDir(), "wal")))
	s.ks.Start()
	s.put("default", "new", `1`, "bob")

	p.waitFor(`#live-list li.reset`)
	p.waitTextIs("#st-revision", "1")
	p.waitJS(`[...document.querySelectorAll("#key-rows tr")].map((r) => r.dataset.key).join() === "new"`, "the keys read again")
	s.put("default", "new", `2`, "bob")
	p.waitText(`#live-list li[data-rev="2"]`, "bob")
	p.waitTextIs("#st-revision", "2")
}

// TestLiveCompactedRestartsAfterTheStatus: when the changes the feed
// would resume from were compacted away, the page reads the status, then
// restarts the feed after its revision, then re-reads the panels (as the
// first load does), rather than reconnecting from whenever it connects.
func TestLiveCompactedRestartsAfterTheStatus(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "k", `1`, "alice")
	p := openPage(t, s, "/#key=k")
	p.waitFor(`#conn[data-state="live"]`)
	p.waitText("#d-value", "1")

	s.ws.cut()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	s.put("default", "k", `2`, "bob")
	last := s.put("default", "k", `3`, "bob")
	status, body := s.do(http.MethodPost, "/v1/compact?keep_versions=1", "")
	require.Equal(t, http.StatusOK, status, "%s", body)
	s.ws.allow()

	p.waitText("#notice", "missed changes that history no longer holds")
	p.waitTextIs("#d-version", "3")
	p.waitFor(`#conn[data-state="live"]`)
	conns := s.ws.connections()
	require.GreaterOrEqual(t, len(conns), 2)
	assert.Equal(t, strconv.FormatUint(last.ModRev, 10), conns[len(conns)-1].Get("from_rev"),
		"the feed restarts after the revision of the status read before the panels")
	s.put("default", "k", `4`, "carol")
	p.waitText(`#live-list li[data-rev="4"]`, "carol")
}

// TestLiveTransactionOnEtcd: on etcd the changes of a transaction share
// its revision (issue #16). The live feed shows every one of them, not
// only the first (each carries its place, index of count), and after a
// dropped connection resumes after the whole revision: nothing twice,
// nothing lost.
func TestLiveTransactionOnEtcd(t *testing.T) {
	s := newServer(t, serverOptions{etcd: true})
	p := openPage(t, s, "/")
	p.waitFor(`#conn[data-state="live"]`)
	var writes []ctxd.Write
	for _, k := range []string{"t0", "t1", "t2"} {
		writes = append(writes, ctxd.Write{Namespace: "default", Key: k, Op: ctxd.OpPut, Value: []byte(`1`), Who: "txn"})
	}
	res, err := s.ks.Backend().Txn(context.Background(), writes)
	require.NoError(t, err)
	rev := strconv.FormatUint(res.Revision, 10)
	for _, w := range writes {
		p.waitFor(`#live-list li[data-rev="` + rev + `"][data-key="` + w.Key + `"]`)
	}

	s.ws.cut()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	next, err := s.ks.Backend().Put(context.Background(), "default", "next", []byte(`2`), nil, "bob")
	require.NoError(t, err)
	s.ws.allow()
	p.waitFor(`#live-list li[data-rev="` + strconv.FormatUint(next.ModRev, 10) + `"]`)
	assert.Equal(t, 3, p.count(`#live-list li[data-rev="`+rev+`"]`), "each change of the transaction once")
	conns := s.ws.connections()
	last := conns[len(conns)-1]
	assert.Equal(t, rev, last.Get("from_rev"), "the reconnection resumes after the transaction's revision")
	assert.Empty(t, last.Get("from_index"), "the whole revision was handled")
}

// TestHistoryDiffAndPointInTime: a key's history with who, a diff between
// two versions, and its value at an earlier revision.
func TestHistoryDiffAndPointInTime(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "cfg", `{"a":1,"b":"x"}`, "alice")
	s.put("default", "cfg", `{"a":2,"b":"x"}`, "bob")
	s.put("default", "cfg", `{"a":2,"b":"y","c":true}`, "carol")

	p := openPage(t, s, "/#key=cfg") // a link to the key opens it
	p.waitTextIs("#d-key", "cfg")
	p.waitJS(`document.querySelectorAll("#history-rows tr").length === 3`, "three changes in the history")
	p.waitText(`#history-rows tr[data-rev="1"]`, "alice", "put")
	p.waitText(`#history-rows tr[data-rev="2"]`, "bob")
	p.waitText(`#history-rows tr[data-rev="3"]`, "carol")

	p.click(`#history-rows tr[data-rev="3"] button[aria-label^="Diff"]`)
	p.waitText("#diff-summary", "1 line removed, 2 added")
	diff := p.text("#diff")
	assert.Contains(t, diff, `-   "b": "x"`)
	assert.Contains(t, diff, `+   "b": "y",`)
	assert.Contains(t, diff, `+   "c": true`)
	assert.Contains(t, diff, `    "a": 2,`, "context lines are kept")

	// Any two versions, chosen in the form.
	p.do(chromedp.SetValue(chromedp.CSS("#diff-from"), "1"), chromedp.SetValue(chromedp.CSS("#diff-to"), "3"))
	p.click("#diff-form button[type=submit]")
	p.waitText("#diff-summary", "From revision 1", "to revision 3", "2 lines removed, 3 added")

	// Point in time, from the history and from the form.
	p.click(`#history-rows tr[data-rev="1"] button[aria-label^="View"]`)
	p.waitText("#d-state", "Value at revision 1", "Now: version 3")
	p.waitText("#d-value", `"a": 1`)
	p.click("#pit-current")
	p.waitText("#d-value", `"c": true`)
	p.fill("#pit-rev", "2")
	p.click("#pit-form button[type=submit]")
	p.waitText("#d-state", "Value at revision 2")
	p.waitText("#d-value", `"a": 2`, `"b": "x"`)
	p.fill("#pit-rev", "99")
	p.click("#pit-form button[type=submit]")
	p.waitText("#detail-error", "Revision 99 has not happened yet")
}

// TestCASConflict: an edit of a version that changed meanwhile is refused
// and shown as a conflict, with the versions; nothing is overwritten.
func TestCASConflict(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "counter", `1`, "alice")
	p := openPage(t, s, "/")
	p.click(`#key-rows tr[data-key="counter"] button`)
	p.waitTextIs("#d-version", "1")
	p.click("#edit-btn")
	p.waitJS(`document.querySelector("#set-version").value === "1"`, "the editor to expect version 1")

	s.put("default", "counter", `2`, "bob") // someone else, meanwhile
	// The page shows it (the editor still expects the version it was
	// opened with): once it has, nothing re-renders under the click.
	p.waitTextIs("#d-version", "2")
	p.fill("#set-value", "3")
	p.click("#set-form button[type=submit]")
	p.waitText("#set-conflict", "Conflict", "default/counter is at version 2, not version 1", "Nothing was saved")
	assert.True(t, eval[bool](p, `!document.querySelector("#set-conflict").hidden`))
	r, _ := s.get("default", "counter")
	assert.Equal(t, "2", string(r.Value), "the other write is kept")

	// Deciding to overwrite: expect the current version and save again.
	p.click("#conflict-expect")
	p.waitJS(`document.querySelector("#set-version").value === "2"`, "the editor to expect version 2")
	p.click("#set-form button[type=submit]")
	p.waitText("#set-result", "Saved default/counter: version 3")
	r, _ = s.get("default", "counter")
	assert.Equal(t, "3", string(r.Value))

	// A delete sends the version shown, too. With the live feed cut, the
	// page cannot learn of the next change: the delete must conflict.
	p.waitTextIs("#d-version", "3")
	s.ws.cut()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	bob := s.put("default", "counter", `4`, "bob")
	p.click("#delete-btn")
	p.waitFor("#confirm-dialog[open]")
	p.waitText("#confirm-body", "only if it is still at version 3")
	p.click("#confirm-ok")
	p.waitText("#detail-error", "Conflict", "is at version 4, not version 3", "Nothing was deleted")
	r, ok := s.get("default", "counter")
	require.True(t, ok, "nothing was deleted")
	assert.Equal(t, "4", string(r.Value))
	p.waitTextIs("#d-version", "4") // the current version is shown

	// Deleting the version shown now works.
	s.ws.allow()
	// Back live, with bob's change resumed: nothing re-renders under the click.
	p.waitFor(fmt.Sprintf(`#live-list li[data-rev="%d"]`, bob.ModRev))
	p.click("#delete-btn")
	p.waitFor("#confirm-dialog[open]")
	p.click("#confirm-ok")
	p.waitText("#notice", "Deleted default/counter")
	_, ok = s.get("default", "counter")
	assert.False(t, ok)
}

// TestSnapshots: create a snapshot and see it listed; a dry run; a restore
// after a confirmation brings the data back and tells the page.
func TestSnapshots(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "keep", `"v1"`, "alice")
	p := openPage(t, s, "/")
	p.waitText("#snap-empty", "No snapshots yet")
	p.click(`#key-rows tr[data-key="keep"] th button`) // shown through the restore
	p.waitText("#d-value", `"v1"`)

	p.click("#snap-create")
	p.waitText("#snap-result", "created at revision 1")
	p.waitJS(`document.querySelectorAll("#snap-rows tr").length === 1`, "one snapshot listed")
	status, body := s.do(http.MethodGet, "/v1/snapshots", "")
	require.Equal(t, http.StatusOK, status)
	var list struct {
		Snapshots []struct {
			ID string `json:"id"`
		} `json:"snapshots"`
	}
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Snapshots, 1)
	id := list.Snapshots[0].ID
	row := `#snap-rows tr[data-id="` + id + `"]`
	p.waitText(row, id, "default: 1")
	assert.Equal(t, "/v1/snapshots/"+id, eval[string](p, `document.querySelector('`+row+` a').getAttribute("href")`))

	s.put("default", "keep", `"v2"`, "bob")
	s.put("default", "extra", `1`, "bob")
	// The key list above gets a row for extra: once it has, the buttons
	// stay where the click aims (a click lands at the coordinates the
	// button had; a row added in between moved it, and the click was lost).
	p.waitFor(`#key-rows tr[data-key="extra"]`)
	p.waitText("#d-value", `"v2"`)
	p.click(row + ` button[aria-label^="Dry run"]`)
	p.waitText("#snap-dry", "Nothing was changed")
	p.waitText("#snap-dry tbody", "default", "1", "1") // one removed, one changed
	r, _ := s.get("default", "keep")
	assert.Equal(t, `"v2"`, string(r.Value), "a dry run changes nothing")

	// Restore asks first; Cancel changes nothing.
	p.click(row + ` button[aria-label^="Restore"]`)
	p.waitFor("#confirm-dialog[open]")
	p.waitText("#confirm-body", "revision 1")
	p.do(chromedp.KeyEvent(kb.Escape))
	p.waitJS(`!document.querySelector("#confirm-dialog").open`, "the dialog to close")
	r, _ = s.get("default", "keep")
	assert.Equal(t, `"v2"`, string(r.Value))

	p.click(row + ` button[aria-label^="Restore"]`)
	p.waitFor("#confirm-dialog[open]")
	p.click("#confirm-ok")
	p.waitText("#snap-result", "Restored "+id)
	r, _ = s.get("default", "keep")
	assert.Equal(t, `"v1"`, string(r.Value))
	// The key shown is read again after the reset, though the restored
	// record's revision is older than the one it showed.
	p.waitText("#d-value", `"v1"`)
	_, ok := s.get("default", "extra")
	assert.False(t, ok)
	p.waitFor("#live-list li.reset")
	p.waitJS(`document.querySelector('#key-rows tr[data-key="extra"]') === null`, "the list to be re-read")
}

// TestDumps: a dump in each format, listed with a download link.
func TestDumps(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "a", `{"x":1}`, "alice")
	p := openPage(t, s, "/")
	p.waitText("#dump-empty", "No dump files yet")
	for _, format := range []string{"json", "pretty", "csv", "txt"} {
		p.do(chromedp.SetValue(chromedp.CSS("#dump-format"), format))
		p.fill("#dump-filename", "e2e-"+format)
		p.click("#dump-form button[type=submit]")
		p.waitText("#dump-result", "Wrote e2e-"+format+"."+format, "1 key of default at revision 1")
		p.waitFor(`#dump-rows tr[data-file="e2e-` + format + `.` + format + `"]`)
	}
	assert.Equal(t, 4, p.count("#dump-rows tr"))
	href := eval[string](p, `document.querySelector('#dump-rows tr[data-file="e2e-csv.csv"] a').getAttribute("href")`)
	status, body := s.do(http.MethodGet, href, "")
	require.Equal(t, http.StatusOK, status)
	assert.True(t, strings.HasPrefix(string(body), "Key,Value"), "%s", body)
}

// TestToken: with access control on, the page asks for a token, keeps it
// in session storage only, and sends it on fetches and on the WebSocket.
func TestToken(t *testing.T) {
	const secret = "s3cret-token"
	s := newServer(t, serverOptions{token: secret})
	s.put("default", "guarded", `true`, "alice")
	p := openPage(t, s, "/", pageOptions{noWait: true})
	p.waitFor("#token-dialog[open]")
	p.waitText("#token-why", "asks for an access token")

	// Cancel sticks: the next 401 (any panel's) fails without asking again.
	p.click(`#token-form button[value="cancel"]`)
	p.waitJS(`!document.querySelector("#token-dialog").open`, "the dialog closed")
	p.click("#snap-refresh")
	p.waitText("#snap-error", "access token")
	assert.False(t, eval[bool](p, `document.querySelector("#token-dialog").open`), "a 401 after Cancel does not ask again")

	// The button asks again; a refused token is asked for again by the
	// next 401, and the one entered there re-reads every panel.
	p.click("#token-button")
	p.enterToken("wrong")
	p.waitText("#token-why", "refused the token")
	p.waitFor("#token-dialog[open]")

	p.fill("#token-input", secret)
	p.click(`#token-form button[value="ok"]`)
	p.waitReady()
	p.waitTextIs("#st-revision", "1")
	p.waitText("#key-rows", "guarded")
	p.waitJS(`document.querySelector("#snap-error").hidden`, "the snapshots panel re-read with the token")
	p.waitFor(`#conn[data-state="live"]`)
	assert.Equal(t, secret, eval[string](p, `sessionStorage.getItem("ctxd.token")`))
	assert.True(t, eval[bool](p, `localStorage.getItem("ctxd.token") === null && document.cookie === ""`),
		"the token is in session storage only")
	conns := s.ws.connections()
	require.NotEmpty(t, conns, "the WebSocket got through with the token")
	assert.Equal(t, secret, conns[len(conns)-1].Get("token"))

	s.put("default", "guarded", `false`, "bob")
	p.waitText(`#live-list li[data-rev="2"]`, "bob")
}

// TestTokenOfOtherNamespaces: a token limited to namespaces other than
// default (ctxd's access control, a tokens file) lists the first one it
// may read, rather than default's refusal; writes outside its rights are
// refused with the server's reason.
func TestTokenOfOtherNamespaces(t *testing.T) {
	s, _ := newTokensServer(t, testkit.TokenEntry("teamw", "team-secret", "    roles: [write]\n    namespaces: [team]\n"))
	_, err := s.ks.Backend().Put(context.Background(), "team", "t", json.RawMessage(`1`), nil, "alice")
	require.NoError(t, err)
	p := openWithToken(t, s, "/", "team-secret")
	p.waitFor(`#key-rows tr[data-key="t"]`)
	assert.Equal(t, "team", eval[string](p, `document.querySelector("#ns-select").value`))
	assert.True(t, eval[bool](p, `document.querySelector("#keys-error").hidden`), "no refusal shown: %s", p.text("#keys-error"))

	p.fill("#set-ns", "default")
	p.fill("#set-key", "k")
	p.fill("#set-value", "1")
	p.click("#set-form button[type=submit]")
	p.waitText("#set-error", "Not saved: it may not write default", "(403 forbidden)")
}

// TestReadOnlyTokenIsOfferedNoWrite: the page asks what its token may do
// (GET /v1/auth/self): for a read token the editor, a field's save, Edit
// and Delete are disabled, saying why (a notice, and their tooltip),
// rather than met with a 403 on save. A reload that gives the token the
// write role (token_revoked on the feed) enables them; another read
// token entered with the button disables them again.
func TestReadOnlyTokenIsOfferedNoWrite(t *testing.T) {
	viewer := testkit.TokenEntry("viewer", "viewer-secret", "    roles: [read]\n")
	s, tokens := newTokensServer(t, testkit.TokenEntry("board", "board-secret", "    roles: [read]\n"), viewer)
	_, err := s.ks.Backend().Put(context.Background(), "default", "cfg", json.RawMessage(`{"debug":true}`), nil, "alice")
	require.NoError(t, err)
	p := openWithToken(t, s, "/#key=cfg", "board-secret")
	p.waitFor(`#key-rows tr[data-key="cfg"]`)
	p.waitTextIs("#d-version", "1")

	p.waitJS(`document.querySelector("#set-fields").disabled`, "the editor disabled")
	p.waitText("#set-readonly", `The access token "board" (roles read) may not write`)
	assert.False(t, eval[bool](p, `document.querySelector("#set-readonly").hidden`))
	assert.True(t, eval[bool](p, `document.querySelector("#set-form button[type=submit]").matches(":disabled")`), "Save is off")
	assert.True(t, eval[bool](p, `document.querySelector("#field-form button[type=submit]").matches(":disabled")`), "a field's save is off")
	for _, id := range []string{"#edit-btn", "#delete-btn"} {
		assert.True(t, eval[bool](p, `document.querySelector("`+id+`").disabled`), id)
		assert.Contains(t, eval[string](p, `document.querySelector("`+id+`").title`), "may not write", id)
	}
	assert.Contains(t, eval[string](p, `document.querySelector("#set-fields").title`), "may not write")

	// A reload gives board the write role: the feed is told token_revoked,
	// and the page asks again.
	p.waitFor(`#conn[data-state="live"]`)
	writeTokens(t, tokens, testkit.TokenEntry("board", "board-secret", "    roles: [write]\n"), viewer)
	require.Equal(t, 1, s.reloadTokens())
	p.waitJS(`!document.querySelector("#set-fields").disabled`, "the editor enabled for the token's new rights")
	p.waitJS(`!document.querySelector("#delete-btn").disabled`, "Delete enabled")
	assert.True(t, eval[bool](p, `document.querySelector("#set-readonly").hidden`))
	assert.Empty(t, eval[string](p, `document.querySelector("#edit-btn").title`))

	// Another token, entered with the button: read only again.
	p.click("#token-button")
	p.enterToken("viewer-secret")
	p.waitText("#set-readonly", `The access token "viewer" (roles read) may not write`)
	p.waitJS(`document.querySelector("#set-fields").disabled && document.querySelector("#delete-btn").disabled`, "the write controls disabled again")
}

// TestNonAdminTokenIsOfferedNoSnapshots: the snapshot and dump routes
// need the admin role. A token without it finds their controls disabled,
// saying why (a notice above each, and their tooltip), and no 403 in
// their panels, rather than meeting the 403 only on a click. A reload
// that gives the token the admin role (token_revoked on the feed) enables
// them and lists the snapshots and the dumps.
func TestNonAdminTokenIsOfferedNoSnapshots(t *testing.T) {
	s, tokens := newTokensServer(t, testkit.TokenEntry("board", "board-secret", "    roles: [write]\n"))
	p := openWithToken(t, s, "/", "board-secret")
	p.waitFor(`#conn[data-state="live"]`)

	p.waitText("#snap-admin", `The access token "board" (roles write) may not list, create or restore snapshots`, "admin role")
	p.waitText("#dump-admin", `The access token "board" (roles write) may not list or write dumps`, "admin role")
	for _, id := range []string{"#snap-create", "#snap-refresh", "#dump-fields"} {
		assert.True(t, eval[bool](p, `document.querySelector("`+id+`").disabled`), id)
		assert.Contains(t, eval[string](p, `document.querySelector("`+id+`").title`), "needs the admin role", id)
	}
	assert.True(t, eval[bool](p, `document.querySelector("#dump-form button[type=submit]").matches(":disabled")`), "Create dump is off")
	for _, id := range []string{"#snap-error", "#dump-error"} {
		assert.True(t, eval[bool](p, `document.querySelector("`+id+`").hidden`), "no refusal in %s: %s", id, p.text(id))
	}
	assert.False(t, eval[bool](p, `document.querySelector("#set-fields").disabled`), "it may write")

	// A reload gives board the admin role: enabled, and the lists read.
	writeTokens(t, tokens, testkit.TokenEntry("board", "board-secret", "    roles: [admin]\n"))
	require.Equal(t, 1, s.reloadTokens())
	p.waitJS(`!document.querySelector("#snap-create").disabled && !document.querySelector("#dump-fields").disabled`, "the snapshot and dump controls enabled")
	p.waitText("#snap-empty", "No snapshots yet")
	p.waitText("#dump-empty", "No dump files yet")
	assert.True(t, eval[bool](p, `document.querySelector("#snap-admin").hidden && document.querySelector("#dump-admin").hidden`), "no notice")
	assert.Empty(t, eval[string](p, `document.querySelector("#snap-create").title`))
	p.click("#snap-create")
	p.waitText("#snap-result", "created at revision")
}

// TestRightsChangedWhileTheFeedWasAway: a reload of the tokens file while
// the live feed is disconnected sends token_revoked nowhere; the page
// learns what its token may now do when the feed reconnects (it asks
// /v1/auth/self then), not at the next token prompt or page load.
func TestRightsChangedWhileTheFeedWasAway(t *testing.T) {
	s, tokens := newTokensServer(t, testkit.TokenEntry("board", "board-secret", "    roles: [read]\n"))
	p := openWithToken(t, s, "/", "board-secret")
	p.waitFor(`#conn[data-state="live"]`)
	p.waitJS(`document.querySelector("#set-fields").disabled`, "the editor disabled for a read token")

	s.ws.cut()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	writeTokens(t, tokens, testkit.TokenEntry("board", "board-secret", "    roles: [write]\n"))
	require.Equal(t, 1, s.reloadTokens())
	s.ws.allow()

	p.waitFor(`#conn[data-state="live"]`)
	p.waitJS(`!document.querySelector("#set-fields").disabled`, "the editor enabled once the feed reconnected")
	assert.True(t, eval[bool](p, `document.querySelector("#set-readonly").hidden`))
}

// TestReadLostWhileTheFeedWasAway: a reload that takes the read right
// from the token while the live feed is disconnected tells the page
// nothing, and the feed never connects again to make it ask (every try is
// refused, 403): the page asks /v1/auth/self when the feed keeps failing,
// and says once that the token may not read, rather than a status refused
// every 5 seconds and a feed reconnecting for ever.
func TestReadLostWhileTheFeedWasAway(t *testing.T) {
	s, tokens := newTokensServer(t, testkit.TokenEntry("board", "board-secret", "    roles: [read]\n"))
	p := openWithToken(t, s, "/", "board-secret")
	p.waitFor(`#conn[data-state="live"]`)

	s.ws.cut()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	writeTokens(t, tokens, testkit.TokenEntry("board", "board-secret", "    roles: [metrics]\n"))
	require.Equal(t, 1, s.reloadTokens())
	s.ws.allow()

	p.waitText("#noread", `The access token "board" (roles metrics) may not read`)
	p.waitFor(`#conn[data-state="noread"]`)
	assert.True(t, eval[bool](p, `document.querySelector("#keys").hidden`), "the panels hidden")
}

// TestMetricsTokenIsToldItMayNotRead: a metrics token (no read right)
// saw every panel fail with 403. It gets one notice instead, saying what
// the token is and that it may not read; the data panels are hidden, and
// nothing is asked that would be refused (no 403 in the server's log, no
// WebSocket). A reload that gives it the read role is found by itself
// (no feed tells it: the page asks /v1/auth/self instead of the status)
// and the page reads everything.
func TestMetricsTokenIsToldItMayNotRead(t *testing.T) {
	s, tokens := newTokensServer(t, testkit.TokenEntry("prom", "prom-secret", "    roles: [metrics]\n"))
	_, err := s.ks.Backend().Put(context.Background(), "default", "cfg", json.RawMessage(`1`), nil, "alice")
	require.NoError(t, err)
	p := openWithToken(t, s, "/#key=cfg", "prom-secret", pageOptions{fastTimers: 10})

	p.waitText("#noread", `The access token "prom" (roles metrics) may not read`, "GET /metrics", "Access token")
	p.waitFor(`#conn[data-state="noread"]`)
	for _, id := range []string{"#status", "#keys", "#detail", "#editor", "#live", "#snapshots", "#dumps"} {
		assert.True(t, eval[bool](p, `document.querySelector("`+id+`").hidden`), "%s hidden", id)
	}
	assert.Empty(t, eval[string](p, `[...document.querySelectorAll(".error")].filter((e) => !e.hidden).map((e) => e.textContent).join()`), "no failing panel")
	assert.NotContains(t, s.ks.Logs.String(), `"status":403`, "nothing refused was asked")
	assert.Empty(t, s.ws.connections(), "no WebSocket for a token that may not read")

	// The server away while the page asks again: not knowing the token's
	// rights then is no reason to show the panels (and their errors).
	s.ks.Stop()
	testkit.Eventually(t, func() bool { return p.logged("/v1/auth/self", "ERR_CONNECTION_REFUSED") }, "the page asked while the server was away")
	assert.False(t, eval[bool](p, `document.querySelector("#noread").hidden`), "the notice stays")
	assert.True(t, eval[bool](p, `document.querySelector("#keys").hidden`), "the panels stay hidden")
	s.ks.Start()

	writeTokens(t, tokens, testkit.TokenEntry("prom", "prom-secret", "    roles: [metrics, read]\n"))
	require.Equal(t, 1, s.reloadTokens())
	p.waitJS(`document.querySelector("#noread").hidden && !document.querySelector("#keys").hidden`, "the notice gone, the panels shown")
	p.waitFor(`#key-rows tr[data-key="cfg"]`)
	p.waitTextIs("#st-revision", "1")
	p.waitFor(`#conn[data-state="live"]`)
	_, err = s.ks.Backend().Put(context.Background(), "default", "cfg", json.RawMessage(`2`), nil, "bob")
	require.NoError(t, err)
	p.waitText(`#live-list li[data-rev="2"]`, "bob")
}

// statusEvery is app.js's STATUS_EVERY: the wait from a status poll's
// answer to the next poll.
const statusEvery = 5 * time.Second

// pollsFaster is TestPollsWaitForTheirAnswer's pageOptions.fastTimers.
const pollsFaster = 10

// TestPollsWaitForTheirAnswer: the page polls the status (a token that
// may not read: what it may do, GET /v1/auth/self) every 5 seconds after
// the last poll's answer. On a server slower than that it asks no more
// meanwhile, rather than piling up requests. That nothing is asked shows
// only over time: each check lets one and a half polls' time go by on
// the page's clock while the answer is held, and looks at the requests
// the page started meanwhile, on the page's clock too. So the poll's
// timeout (POLL_TIMEOUT, two polls' time, after which the page rightly
// asks again) is no race with the test: a request it starts then is
// after the check's time, however late the test looks. The page's
// timers run pollsFaster times faster. (Counting the requests that
// reached the server, when the test got to it, left it half a poll's
// time before the timeout: not enough at ten times faster on a loaded
// machine, so the timers ran only five times faster.)
func TestPollsWaitForTheirAnswer(t *testing.T) {
	s, tokens := newTokensServer(t, testkit.TokenEntry("prom", "prom-secret", "    roles: [metrics]\n"))
	p := openWithToken(t, s, "/", "prom-secret", pageOptions{fastTimers: pollsFaster})
	p.waitFor(`#conn[data-state="noread"]`)
	// Each request the page starts from now on: its path, when (the
	// page's clock), and whether its answer came.
	p.do(chromedp.Evaluate[chromedp.Void](`(() => {
		window.fetchesSeen = [];
		const real = window.fetch;
		window.fetch = (input, init) => {
			const f = { path: new URL(input instanceof Request ? input.url : input, location.href).pathname, at: performance.now(), answered: false };
			window.fetchesSeen.push(f);
			const answer = real.call(window, input, init);
			answer.then(() => { f.answered = true; }, () => {});
			return answer;
		};
	})()`))
	pollAndHalf := 1.5 * float64(statusEvery.Milliseconds()) / pollsFaster // a poll and a half, in the page's ms
	waitsForItsAnswer := func(path string) {
		t.Helper()
		asked, release := s.ws.holdAnswers(http.MethodGet, path)
		defer release()
		testkit.Eventually(t, func() bool { return asked() == 1 }, "the page polls "+path)
		// The held request: the first of path not answered.
		p.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`void (window.heldFetch = window.fetchesSeen.find(f => f.path === %s && !f.answered))`, jsString(path))))
		p.waitJS(fmt.Sprintf(`performance.now() > window.heldFetch.at + %f`, pollAndHalf), "the time of a poll and a half")
		again := eval[int](p, fmt.Sprintf(`window.fetchesSeen.filter(f => f.path === %s && f !== window.heldFetch && f.at >= window.heldFetch.at && f.at < window.heldFetch.at + %f).length`,
			jsString(path), pollAndHalf))
		assert.Zero(t, again, "%s asked again before its answer", path)
	}
	waitsForItsAnswer("/v1/auth/self")

	// It polls again after the answer: it learns that a reload gave the
	// token read (no feed tells it).
	writeTokens(t, tokens, testkit.TokenEntry("prom", "prom-secret", "    roles: [metrics, read]\n"))
	require.Equal(t, 1, s.reloadTokens())
	p.waitFor(`#conn[data-state="live"]`)
	waitsForItsAnswer("/v1/status")
}

// TestUnansweredStatusPollTimesOut: a status poll the server never
// answers (fetch has no timeout of its own) stopped the polling until it
// answered. It is abandoned after its timeout: the page says the server
// did not answer, as it says it cannot reach it, and polls again; once
// the server answers, the fault goes. The page's timers run ten times
// faster (a poll every half second, a second's timeout).
func TestUnansweredStatusPollTimesOut(t *testing.T) {
	s := newServer(t, serverOptions{})
	p := openPage(t, s, "/", pageOptions{fastTimers: 10})
	p.waitFor(`#conn[data-state="live"]`)

	asked, release := s.ws.holdAnswers(http.MethodGet, "/v1/status")
	defer release()
	p.waitText("#st-error", "Cannot read the status", "did not answer")
	testkit.Eventually(t, func() bool { return asked() >= 2 }, "the page polls again after the unanswered poll")

	release()
	s.put("default", "k", `1`, "alice")
	p.waitTextIs("#st-keys", "1")
	p.waitJS(`document.querySelector("#st-error").hidden`, "the fault gone once the server answers")
}

// TestTokenChangeForgetsTheOldTokensReads: what the page read with one
// token is not left on screen for the token entered in its place, which
// may see less: the live events, and the key shown (its value at a
// revision, a diff of its history) go, and the page reads again with the
// new token.
func TestTokenChangeForgetsTheOldTokensReads(t *testing.T) {
	s, _ := newTokensServer(t, testkit.TokenEntry("team", "team-secret", "    roles: [read]\n    prefixes: [team/]\n"),
		testkit.TokenEntry("public", "public-secret", "    roles: [read]\n    prefixes: [public/]\n"))
	put := func(key, value string) {
		t.Helper()
		_, err := s.ks.Backend().Put(context.Background(), "default", key, json.RawMessage(value), nil, "alice")
		require.NoError(t, err)
	}
	put("team/plan", `{"plan":"classified-1"}`)
	p := openWithToken(t, s, "/#key=team/plan", "team-secret")
	p.waitFor(`#conn[data-state="live"]`)
	put("team/plan", `{"plan":"classified-2"}`)
	p.waitText(`#live-list li[data-key="team/plan"]`, "classified-2")
	p.waitFor(`#history-rows button[aria-label="View the value at revision 1"]`)
	p.click(`#history-rows button[aria-label="View the value at revision 1"]`)
	p.waitText("#d-value", "classified-1")
	p.click(`#history-rows button[aria-label="Diff revision 1 to 2"]`)
	p.waitText("#diff", "classified-1", "classified-2")

	p.click("#token-button")
	p.enterToken("public-secret")
	p.waitText("#keys-limits", `"public"`)
	p.waitJS(`!document.body.innerText.includes("classified") && !document.querySelector("#live-list li[data-key^='team/']")`,
		"the team token's events and values gone")

	// The feed goes on with the new token.
	p.waitFor(`#conn[data-state="live"]`)
	put("team/plan", `{"plan":"classified-3"}`)
	put("public/news", `"hello"`)
	p.waitText(`#live-list li[data-key="public/news"]`, "hello")
	assert.Zero(t, p.count(`#live-list li[data-key^="team/"]`), "no event of what the new token may not read")
	assert.NotContains(t, eval[string](p, `document.body.innerText`), "classified")
}

// TestTokenChangedWhileTheServerIsAway: what one token may do is not
// taken for what the token entered in its place may do. With the server
// away, the new token's /v1/auth/self fails: the old token's rights (and
// name) are not kept for it; once the server is back, the page learns
// the new token's.
func TestTokenChangedWhileTheServerIsAway(t *testing.T) {
	s, _ := newTokensServer(t, testkit.TokenEntry("board", "board-secret", "    roles: [read]\n"),
		testkit.TokenEntry("viewer", "viewer-secret", "    roles: [read]\n"))
	p := openWithToken(t, s, "/", "board-secret")
	p.waitFor(`#conn[data-state="live"]`)
	p.waitText("#set-readonly", `The access token "board" (roles read) may not write`)

	s.ks.Stop()
	p.click("#token-button")
	p.enterToken("viewer-secret")
	p.waitJS(`document.querySelector("#set-readonly").hidden && !document.querySelector("#set-fields").disabled`,
		"board's rights not kept for the token that replaced it")

	s.ks.Start()
	p.waitText("#set-readonly", `The access token "viewer" (roles read) may not write`)
	p.waitJS(`document.querySelector("#set-fields").disabled`, "the editor disabled for viewer")
}

// TestPrefixTokenListsItsPrefix: a token limited to a namespace and a key
// prefix lists under its prefix, in its namespace, from the first load
// (rather than the server's "add ?prefix=" refusal), is offered only its
// namespace, and is told its limits.
func TestPrefixTokenListsItsPrefix(t *testing.T) {
	s, _ := newTokensServer(t, testkit.TokenEntry("deployer", "deploy-secret", "    roles: [write]\n    namespaces: [team, staging]\n    prefixes: [deploy/, app.]\n"))
	for _, kv := range [][2]string{{"team", "deploy/web"}, {"team", "secret"}, {"team", "app.x"}, {"default", "deploy/db"}, {"other", "deploy/z"}} {
		_, err := s.ks.Backend().Put(context.Background(), kv[0], kv[1], json.RawMessage(`1`), nil, "alice")
		require.NoError(t, err)
	}
	p := openWithToken(t, s, "/", "deploy-secret")
	p.waitFor(`#key-rows tr[data-key="deploy/web"]`)
	assert.Equal(t, 1, p.count("#key-rows tr"), "only its prefix: %s", p.text("#key-rows"))
	assert.True(t, eval[bool](p, `document.querySelector("#keys-error").hidden`), "no refusal shown: %s", p.text("#keys-error"))
	assert.Equal(t, "team", eval[string](p, `document.querySelector("#ns-select").value`))
	assert.Equal(t, "deploy/", eval[string](p, `document.querySelector("#prefix").value`))
	assert.Equal(t, []string{"staging", "team"}, eval[[]string](p, `[...document.querySelectorAll("#ns-select option")].map((o) => o.value)`),
		"its namespaces only (staging holds no key yet)")
	p.waitText("#keys-limits", `"deployer"`, "namespaces team, staging", `"deploy/", "app."`)
	assert.False(t, eval[bool](p, `document.querySelector("#set-fields").disabled`), "it may write")
}

// TestAddressedListAfterRightsChange: the namespace and prefix the
// address names are listed while the token may read them. A reload that
// narrows its rights moves the list to what it may read; one that gives
// them back lists the address's choice again.
func TestAddressedListAfterRightsChange(t *testing.T) {
	wide := testkit.TokenEntry("deployer", "deploy-secret", "    roles: [read]\n    namespaces: [team, staging]\n    prefixes: [deploy/, app.]\n")
	s, tokens := newTokensServer(t, wide)
	for _, kv := range [][2]string{{"staging", "app.x"}, {"team", "deploy/web"}} {
		_, err := s.ks.Backend().Put(context.Background(), kv[0], kv[1], json.RawMessage(`1`), nil, "alice")
		require.NoError(t, err)
	}
	p := openWithToken(t, s, "/#ns=staging&prefix=app.", "deploy-secret")
	listed := func(ns, prefix, key string) {
		t.Helper()
		p.waitFor(fmt.Sprintf(`#key-rows tr[data-key=%q]`, key))
		assert.Equal(t, ns, eval[string](p, `document.querySelector("#ns-select").value`))
		assert.Equal(t, prefix, eval[string](p, `document.querySelector("#prefix").value`))
	}
	listed("staging", "app.", "app.x")

	writeTokens(t, tokens, testkit.TokenEntry("deployer", "deploy-secret", "    roles: [read]\n    namespaces: [team]\n    prefixes: [deploy/]\n"))
	require.Equal(t, 1, s.reloadTokens())
	listed("team", "deploy/", "deploy/web")

	writeTokens(t, tokens, wide)
	require.Equal(t, 1, s.reloadTokens())
	listed("staging", "app.", "app.x")
}

// TestTokenAtFirstPrompt: a token entered at the prompt of the first load
// is used by that load, and the feed starts after the status's revision.
func TestTokenAtFirstPrompt(t *testing.T) {
	const secret = "s3cret-token"
	s := newServer(t, serverOptions{token: secret})
	s.put("default", "guarded", `true`, "alice")
	p := openWithToken(t, s, "/", secret)
	p.waitText("#key-rows", "guarded")
	p.waitFor(`#conn[data-state="live"]`)
	conns := s.ws.connections()
	require.NotEmpty(t, conns)
	assert.Equal(t, "1", conns[0].Get("from_rev"))
}

// TestTokenNeeded: after Cancel on the token prompt, the live panel and
// the keys panel say that a token is needed and offer to enter one; the
// live feed does not try to connect while no token is given. A token
// entered there reads every panel and connects the feed.
func TestTokenNeeded(t *testing.T) {
	const secret = "s3cret-token"
	s := newServer(t, serverOptions{token: secret})
	s.put("default", "guarded", `true`, "alice")
	p := openPage(t, s, "/", pageOptions{noWait: true})
	p.waitFor("#token-dialog[open]")
	p.click(`#token-form button[value="cancel"]`)
	p.waitReady()

	p.waitText("#live-state", "The live feed needs an access token", "Enter the access token")
	p.waitFor(`#conn[data-state="token"]`)
	p.waitText("#keys-error", "needs an access token", "Enter the access token")
	assert.NotContains(t, p.text("#keys-error"), "namespaces", "the error names what is missing, not what failed")
	assert.Empty(t, s.ws.connections(), "no WebSocket without a token")

	// The panel's own button asks for the token.
	p.click("#live-state button")
	p.enterToken(secret)
	p.waitText("#key-rows", "guarded")
	p.waitFor(`#conn[data-state="live"]`)
	p.waitJS(`document.querySelector("#keys-error").hidden`, "the keys panel's error gone")
	s.put("default", "guarded", `false`, "bob")
	p.waitText(`#live-list li[data-rev="2"]`, "bob")
}

// TestTokenLaterLosesNoChange: a token entered after a Cancel reads the
// status first and starts the feed after its revision, then reads the
// panels (as the first load does): a change made after the panels were
// read, while the feed could not connect yet, shows up once.
func TestTokenLaterLosesNoChange(t *testing.T) {
	const secret = "s3cret-token"
	s := newServer(t, serverOptions{token: secret})
	s.put("default", "before", `1`, "alice")
	p := openPage(t, s, "/", pageOptions{noWait: true})
	p.waitFor("#token-dialog[open]")
	p.click(`#token-form button[value="cancel"]`)
	p.waitReady()

	s.ws.cut() // the feed cannot connect until allow
	p.click("#token-button")
	p.enterToken(secret)
	p.waitText("#key-rows", "before")
	p.waitTextIs("#st-revision", "1")
	s.put("default", "during", `2`, "bob") // after the panels were read
	s.ws.allow()

	p.waitFor(`#key-rows tr[data-key="during"]`)
	p.waitText(`#live-list li[data-rev="2"]`, "bob")
	p.waitFor(`#conn[data-state="live"]`)
	assert.Equal(t, 1, p.count(`#live-list li[data-rev="2"]`), "no change twice")
	assert.Zero(t, p.count(`#live-list li[data-rev="1"]`), "the change before the status is no event")
	conns := s.ws.connections()
	require.NotEmpty(t, conns)
	assert.Equal(t, "1", conns[len(conns)-1].Get("from_rev"), "the feed starts after the status's revision")
}

// TestPhoneAndKeyboard: at a phone's width nothing overflows the screen;
// every control has a label or a name, and a key opens from the keyboard.
func TestPhoneAndKeyboard(t *testing.T) {
	s := newServer(t, serverOptions{})
	s.put("default", "app.a-rather-long-key-name-that-could-overflow-a-narrow-screen", `{"nested":{"deep":[1,2,3]}}`, "alice")
	// A second version: its history has rows with actions, wider than the screen.
	s.put("default", "app.a-rather-long-key-name-that-could-overflow-a-narrow-screen", `{"nested":{"deep":[1,2,3,4]}}`, "alice")
	s.put("default", "b", `2`, "alice")
	p := openPage(t, s, "/", pageOptions{width: 390, height: 844})
	p.waitText("#key-rows", "b")
	assert.True(t, eval[bool](p, `document.documentElement.scrollWidth <= document.documentElement.clientWidth`),
		"the page is %d px wide on a %d px screen: %v", eval[int](p, `document.documentElement.scrollWidth`), eval[int](p, `document.documentElement.clientWidth`), overflowing(p))

	unlabelled := eval[[]string](p, `[...document.querySelectorAll("input, select, textarea")]
		.filter((e) => e.labels.length === 0 && !e.getAttribute("aria-label")).map((e) => e.id || e.outerHTML)`)
	assert.Empty(t, unlabelled, "form controls without a label")
	unnamed := eval[[]string](p, `[...document.querySelectorAll("button, a")]
		.filter((e) => !e.textContent.trim() && !e.getAttribute("aria-label")).map((e) => e.outerHTML)`)
	assert.Empty(t, unnamed, "buttons and links without a name")

	// Tab from the prefix field reaches the first key; Enter opens it and
	// moves the focus to it.
	p.do(chromedp.Focus(chromedp.CSS("#prefix")))
	for range 5 {
		if eval[bool](p, `document.activeElement.matches("#key-rows button")`) {
			break
		}
		p.do(chromedp.KeyEvent(kb.Tab))
	}
	require.True(t, eval[bool](p, `document.activeElement.matches("#key-rows button")`),
		"Tab reaches the list; the focus is on %s", eval[string](p, `document.activeElement.outerHTML`))
	p.do(chromedp.KeyEvent(kb.Enter))
	p.waitText("#d-value", `"deep"`)
	p.waitJS(`document.activeElement.id === "detail-h"`, "the focus to move to the key")
	p.waitFor("#history-rows tr") // its table's hidden header once overflowed the page
	assert.True(t, eval[bool](p, `document.documentElement.scrollWidth <= document.documentElement.clientWidth`),
		"the open key fits too: the page is %d px wide: %v", eval[int](p, `document.documentElement.scrollWidth`), overflowing(p))
}

// overflowing names the elements that reach past the right edge of the
// page's screen, with how far they reach.
func overflowing(p *page) []string {
	return eval[[]string](p, `[...document.querySelectorAll("body *")]
		.filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5 || (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible"))
		.map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "") + " to " + Math.round(e.getBoundingClientRect().right) + " sw " + e.scrollWidth + "/" + e.clientWidth)`)
}

// requireToken is a stand-in for ctxd's coming access control: /v1/ wants
// "Authorization: Bearer <token>", or ?token= on the WebSocket; the page
// and its assets are public.
func requireToken(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := r.Header.Get("Authorization") == "Bearer "+token ||
			(r.URL.Path == "/v1/watch" && r.URL.Query().Get("token") == token)
		if strings.HasPrefix(r.URL.Path, "/v1/") && !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"a valid access token is needed"}}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TestNotReadyBanner: while the store is unavailable (etcd down: /readyz
// answers 503) the live feed may stay connected to ctxd while every read
// fails. The badge and a banner say that the server is up but not ready,
// with /readyz's reason (the banner not while the server itself is away),
// and clear themselves once it is ready again, when the panels are read
// again.
func TestNotReadyBanner(t *testing.T) {
	e := etcdkit.Own(t)
	s := newServer(t, serverOptions{etcdEndpoint: e.Endpoint})
	s.put("default", "k", `1`, "alice")
	p := openPage(t, s, "/", pageOptions{fastTimers: 10})
	p.waitFor(`#conn[data-state="live"]`)
	p.waitFor(`#key-rows tr[data-key="k"]`)
	assert.True(t, eval[bool](p, `document.querySelector("#ready-alarm").hidden`))

	// The key lists the page asked for (the access log's lines): nothing
	// but a re-read lists the keys again while no key changes.
	lists := func() int { return strings.Count(s.ks.Logs.String(), `"path":"/v1/ns/default/keys"`) }
	e.Stop()
	p.waitText("#ready-alarm", "The server is up but not ready (", "unreachable", "goes by itself")
	p.waitTextIs("#conn", "Live feed: connected, server not ready")
	assert.Contains(t, eval[string](p, `document.querySelector("#conn").title`), "unreachable", "the badge's tooltip: the reason")

	listed := lists()

	// The server itself away: /readyz gets no answer, and the banner goes
	// (the server is not up; the badge says the feed is away).
	s.ks.Stop()
	p.waitFor(`#conn[data-state="reconnecting"]`)
	p.waitJS(`document.querySelector("#ready-alarm").hidden`, "no not-ready banner while the server is away")

	require.NoError(t, e.Start())
	s.ks.Start() // it needs etcd to start
	testkit.Eventually(t, func() bool { return lists() > listed }, "the keys listed again once ready")
	assert.True(t, eval[bool](p, `document.querySelector("#ready-alarm").hidden`), "the banner gone once ready")
	p.waitJS(`document.querySelector("#st-error").hidden`, "the status read again")
	p.waitFor(`#conn[data-state="live"]`)
	s.put("default", "k", `2`, "bob")
	p.waitText(`#key-rows tr[data-key="k"]`, "2")
}

// TestNotReadyThenNoRead: the live badge's tooltip gives the reason the
// server is not ready while the badge says so; once the tab's token may
// not read (another token entered while etcd was down), the badge says
// that, without the old reason as its tooltip. The page's timers run ten
// times faster: it learns that the server is not ready at its next
// status poll, half a second after etcd stops, not five.
func TestNotReadyThenNoRead(t *testing.T) {
	e := etcdkit.Own(t)
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokens(t, tokens, testkit.TokenEntry("board", "board-secret", "    roles: [read]\n"),
		testkit.TokenEntry("prom", "prom-secret", "    roles: [metrics]\n"))
	s := newServer(t, serverOptions{etcdEndpoint: e.Endpoint, tokensFile: tokens})
	p := openWithToken(t, s, "/", "board-secret", pageOptions{fastTimers: 10})
	p.waitFor(`#conn[data-state="live"]`)

	e.Stop()
	p.waitTextIs("#conn", "Live feed: connected, server not ready")
	// The reason /readyz gives (with access control on, where to read it).
	require.NotEmpty(t, eval[string](p, `document.querySelector("#conn").title`), "the badge's tooltip: the reason")

	p.click("#token-button")
	p.enterToken("prom-secret")
	p.waitFor(`#conn[data-state="noread"]`)
	assert.Empty(t, eval[string](p, `document.querySelector("#conn").title`), "no tooltip of the not-ready badge")
	require.NoError(t, e.Start()) // the server's shutdown needs its etcd
}

// TestQuotaBanner: while the storage quota refuses writes, a banner at the
// top of the page says so and what to do, and the status shows the quota;
// once compaction has freed space, the banner goes.
func TestQuotaBanner(t *testing.T) {
	s := newServer(t, serverOptions{quota: 1 << 20})
	p := openPage(t, s, "/")
	p.waitText("#st-quota", "of 1.0 MiB")
	p.waitFor("#quota-alarm[hidden]")

	value := `"` + strings.Repeat("q", 64<<10) + `"`
	for i := 0; ; i++ {
		require.Less(t, i, 100, "the quota never refused a write")
		key := keyPath("default", fmt.Sprint("fill-", i))
		status, _ := s.do(http.MethodPut, key, value)
		if status == http.StatusInsufficientStorage {
			// Refused again once the committer has applied every write:
			// the refusal then stands while nothing is freed.
			testkit.Eventually(t, func() bool { return s.ks.Backend().Stats().Pending == 0 }, "the committer applies every write")
			if status, _ = s.do(http.MethodPut, key, value); status == http.StatusInsufficientStorage {
				break
			}
		}
		require.Equal(t, http.StatusOK, status)
	}
	p.waitFor("#quota-alarm:not([hidden])")
	p.waitText("#quota-alarm", "Writes are refused", "storage.quota_bytes", "POST /v1/compact")

	for i := 0; ; i++ {
		status, _ := s.do(http.MethodDelete, keyPath("default", fmt.Sprint("fill-", i)), "")
		if status == http.StatusNotFound {
			break
		}
		require.Equal(t, http.StatusOK, status)
	}
	status, body := s.do(http.MethodPost, "/v1/compact?keep_versions=1", "")
	require.Equal(t, http.StatusOK, status, "%s", body)
	p.waitFor("#quota-alarm[hidden]")
}
