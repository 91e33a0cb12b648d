package storetest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
)

// List pages through a namespace's live keys in byte order: Prefix
// selects, After is the cursor, Next the cursor of the next page ("" on
// the last one, also when it ends exactly at the last key).
func checkListPaging(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	var writes []ctxd.Write
	for i := range 25 {
		writes = append(writes, put("default", fmt.Sprintf("app/%02d", i), fmt.Sprint(i)))
	}
	writes = append(writes, put("default", "apple", `1`), put("default", "zzz", `1`), put("default", "Zed", `1`), put("default", "é", `1`), put("default", "app/gone", `1`))
	imported, err := b.Import(ctx, writes)
	require.NoError(t, err)
	b.del("default", "app/gone")
	appleRev := imported.Records[25].ModRev

	var keys []string
	after, pages := "", 0
	for {
		p, err := b.List("default", ctxd.ListOptions{Prefix: "app/", After: after, Limit: 10})
		require.NoError(t, err)
		pages++
		for _, r := range p.Records {
			keys = append(keys, r.Key)
		}
		if p.Next == "" {
			break
		}
		require.Less(t, pages, 10, "paging does not end")
		after = p.Next
	}
	assert.Equal(t, 3, pages)
	require.Len(t, keys, 25, "every live key with the prefix, once; no deleted key")
	for i, k := range keys {
		assert.Equal(t, fmt.Sprintf("app/%02d", i), k)
	}

	all, err := b.List("default", ctxd.ListOptions{})
	require.NoError(t, err)
	require.Len(t, all.Records, 29)
	assert.Empty(t, all.Next)
	assert.Equal(t, "Zed", all.Records[0].Key, "byte order: upper case first")
	assert.Equal(t, "apple", all.Records[26].Key)
	assert.Equal(t, "zzz", all.Records[27].Key)
	assert.Equal(t, "é", all.Records[28].Key, "byte order: UTF-8 after ASCII")
	r := all.Records[26]
	assert.Equal(t, []any{"default", `1`, uint64(1), appleRev, appleRev, "test"},
		[]any{r.Namespace, string(r.Value), r.Version, r.CreateRev, r.ModRev, r.Who}, "a listed record is the whole record")

	exact, err := b.List("default", ctxd.ListOptions{Limit: 29})
	require.NoError(t, err)
	assert.Len(t, exact.Records, 29)
	assert.Empty(t, exact.Next, "no next cursor when the page ends exactly at the last key")

	mid, err := b.List("default", ctxd.ListOptions{Prefix: "app/", After: "app/21"})
	require.NoError(t, err)
	assert.Len(t, mid.Records, 3, "After is exclusive")
	early, err := b.List("default", ctxd.ListOptions{Prefix: "app/", After: "a", Limit: 1})
	require.NoError(t, err)
	require.Len(t, early.Records, 1)
	assert.Equal(t, "app/00", early.Records[0].Key, "a cursor before the prefix starts at the prefix")
	past, err := b.List("default", ctxd.ListOptions{Prefix: "app/", After: "b"})
	require.NoError(t, err)
	assert.Empty(t, past.Records, "a cursor past the prefix")

	none, err := b.List("nope", ctxd.ListOptions{})
	require.NoError(t, err, "a namespace without keys is an empty page")
	assert.Empty(t, none.Records)
	assert.Empty(t, none.Next)

	// Page sizes: 0 is the default of 100, more than MaxListLimit is capped.
	writes = writes[:0]
	for i := range ctxd.MaxListLimit + 1 {
		writes = append(writes, put("many", fmt.Sprintf("k%04d", i), `1`))
	}
	_, err = b.Import(ctx, writes)
	require.NoError(t, err)
	def, err := b.List("many", ctxd.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, def.Records, 100, "the default page size")
	assert.Equal(t, "k0099", def.Next)
	capped, err := b.List("many", ctxd.ListOptions{Limit: 5 * ctxd.MaxListLimit})
	require.NoError(t, err)
	assert.Len(t, capped.Records, ctxd.MaxListLimit, "page size capped at MaxListLimit")
	rest, err := b.List("many", ctxd.ListOptions{After: capped.Next, Limit: ctxd.MaxListLimit})
	require.NoError(t, err)
	assert.Len(t, rest.Records, 1)
	assert.Empty(t, rest.Next)
}

// Namespaces lists every namespace with its live key count, by name, and
// "default" always exists; the view, Status and List agree with it.
func checkNamespaces(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ns, err := b.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 0}}, ns, "a new backend has the default namespace")
	st, err := b.Status()
	require.NoError(t, err)
	assert.Equal(t, 1, st.Namespaces)
	assert.Equal(t, uint64(0), st.Keys)

	b.put("team", "a", `1`)
	ns, err = b.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 0}, {Name: "team", Keys: 1}}, ns, "default stays without keys")

	b.put("team", "b", `1`)
	b.put("team", "b", `2`) // an update is no new key
	b.put("Alpha", "x", `1`)
	b.put("default", "k", `1`)
	b.put("zeta.1_-", "k", `1`)
	b.del("team", "a")
	want := []ctxd.Namespace{{Name: "Alpha", Keys: 1}, {Name: "default", Keys: 1}, {Name: "team", Keys: 1}, {Name: "zeta.1_-", Keys: 1}}
	ns, err = b.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, want, ns, "by name (byte order), live keys only")
	require.NoError(t, b.View(func(v store.View) error {
		assert.Equal(t, want, v.Namespaces(), "the view counts the same")
		return nil
	}))
	st, err = b.Status()
	require.NoError(t, err)
	assert.Equal(t, 4, st.Namespaces)
	assert.Equal(t, uint64(4), st.Keys)
	for _, n := range want {
		page, err := b.List(n.Name, ctxd.ListOptions{})
		require.NoError(t, err)
		assert.Len(t, page.Records, int(n.Keys), "list of %s", n.Name)
	}
}

// A listing without values has every record of the listing with values
// but the value, page for page; Count counts the live keys under a
// prefix, across deletes, re-creates and a restart.
func checkListWithoutValuesAndCount(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	for i := range 12 {
		b.put("ns", fmt.Sprintf("app/%02d", i), fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 1000)))
	}
	b.put("ns", "other", `1`)
	b.put("ns", "app/03", `"updated"`)
	b.del("ns", "app/05")
	b.put("ns", "app/zz", `null`)
	compare := func(what string) {
		for _, prefix := range []string{"", "app/", "app/0", "nope"} {
			var all []ctxd.Record
			after := ""
			for {
				full, err := b.List("ns", ctxd.ListOptions{Prefix: prefix, After: after, Limit: 5})
				require.NoError(t, err)
				bare, err := b.List("ns", ctxd.ListOptions{Prefix: prefix, After: after, Limit: 5, NoValues: true})
				require.NoError(t, err)
				require.Len(t, bare.Records, len(full.Records), "%s: prefix %q after %q", what, prefix, after)
				assert.Equal(t, full.Next, bare.Next, "%s: the same cursor", what)
				for i := range full.Records {
					assert.Nil(t, bare.Records[i].Value, "%s: no value for %s", what, bare.Records[i].Key)
					withValue := full.Records[i]
					withValue.Value = nil
					assert.Equal(t, withValue, bare.Records[i], "%s: the rest of the record", what)
				}
				all = append(all, full.Records...)
				if full.Next == "" {
					break
				}
				after = full.Next
			}
			n, err := b.Count("ns", prefix)
			require.NoError(t, err)
			assert.Equal(t, uint64(len(all)), n, "%s: count of prefix %q", what, prefix)
		}
	}
	compare("before a restart")
	n, err := b.Count("ns", "app/")
	require.NoError(t, err)
	assert.Equal(t, uint64(12), n, "11 of the first 12 live, and app/zz")
	b.restart()
	compare("after a restart")
	b.put("ns", "app/05", `1`)
	b.del("ns", "app/00")
	b.put("ns", "app/new", `1`)
	compare("after more writes")
	n, err = b.Count("ns", "app/")
	require.NoError(t, err)
	assert.Equal(t, uint64(13), n)
	n, err = b.Count("empty", "")
	require.NoError(t, err)
	assert.Zero(t, n, "a namespace without keys")
	_, err = b.Count("bad ns!", "")
	assert.ErrorIs(t, err, ctxd.ErrInvalid)
}

// History pages through one key's changes newest first, across its lives,
// with Before as the cursor and Next the cursor of the next page.
func checkHistoryPaging(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	for i := 1; i <= 4; i++ {
		b.put("default", "k", fmt.Sprint(i))
		b.put("default", "k2", fmt.Sprint(i)) // another key's changes in between
	}
	b.del("default", "k")
	for i := 5; i <= 7; i++ {
		b.put("default", "k", fmt.Sprint(i))
	}
	var got []string
	var before uint64
	pages := 0
	for {
		p, err := b.History("default", "k", ctxd.HistoryOptions{Before: before, Limit: 3})
		require.NoError(t, err)
		pages++
		assert.LessOrEqual(t, len(p.Changes), 3)
		for _, c := range p.Changes {
			assert.Equal(t, "k", c.Key)
			assert.Equal(t, "default", c.Namespace)
			if before > 0 {
				assert.Less(t, c.Revision, before, "Before is exclusive")
			}
			got = append(got, fmt.Sprintf("%s:%s", c.Op, c.Value))
		}
		if p.Next == 0 {
			break
		}
		require.Less(t, pages, 10, "paging does not end")
		before = p.Next
	}
	assert.Equal(t, []string{"put:7", "put:6", "put:5", "delete:", "put:4", "put:3", "put:2", "put:1"}, got, "newest first, across a delete and a new life")
	assert.Equal(t, 3, pages)

	all, err := b.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Len(t, all.Changes, 8)
	assert.Zero(t, all.Next, "no next cursor on the last page")
	exact, err := b.History("default", "k", ctxd.HistoryOptions{Limit: 8})
	require.NoError(t, err)
	assert.Len(t, exact.Changes, 8)
	assert.Zero(t, exact.Next, "no next cursor when the page ends exactly at the oldest change")
	revs := revisions(all.Changes)
	for i := 1; i < len(revs); i++ {
		assert.Greater(t, revs[i-1], revs[i], "strictly newest first")
	}
	beyond, err := b.History("default", "k", ctxd.HistoryOptions{Before: revs[0] + 1000})
	require.NoError(t, err, "a cursor above the current revision")
	assert.Equal(t, revisions(all.Changes), revisions(beyond.Changes), "a cursor above the current revision lists the whole history")

	_, err = b.History("default", "never", ctxd.HistoryOptions{})
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a key that never existed")
	_, err = b.History("default", "never", ctxd.HistoryOptions{Before: 5})
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a key that never existed, with a cursor")
	_, err = b.History("nowhere", "k", ctxd.HistoryOptions{})
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a namespace that does not exist")
	p, err := b.History("default", "k", ctxd.HistoryOptions{Before: 1})
	require.NoError(t, err, "past the oldest change of a known key: an empty page")
	assert.Empty(t, p.Changes)
	assert.Zero(t, p.Next)
}

// GetAt reads a key as it was at any revision still in history; a key
// deleted (or not yet created) at that revision is not found; a revision
// not committed yet is ErrFutureRevision. CheckRevision agrees.
func checkPointInTimeReads(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	r1 := b.put("default", "k", `"a"`).ModRev
	r2 := b.put("default", "x", `0`).ModRev
	r3 := b.put("default", "k", `"b"`).ModRev
	r4 := b.del("default", "k").ModRev
	r5 := b.put("default", "k", `"c"`).ModRev
	a := fmt.Sprintf(`"a" v1 created@%d mod@%d`, r1, r1)
	for rev, want := range map[uint64]string{r1: a, r2: a, r3: fmt.Sprintf(`"b" v2 created@%d mod@%d`, r1, r3), r5: fmt.Sprintf(`"c" v1 created@%d mod@%d`, r5, r5)} {
		r, err := b.GetAt("default", "k", rev)
		if assert.NoError(t, err, "rev %d", rev) {
			assert.Equal(t, want, fmt.Sprintf("%s v%d created@%d mod@%d", r.Value, r.Version, r.CreateRev, r.ModRev), "rev %d", rev)
			assert.Equal(t, "test", r.Who)
		}
	}
	now := b.get("default", "k")
	at, err := b.GetAt("default", "k", r5)
	require.NoError(t, err)
	assert.Equal(t, recordLine(now), recordLine(at), "a read at the current revision is the current record")

	_, err = b.GetAt("default", "k", r4)
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "deleted at the delete's revision")
	_, err = b.GetAt("default", "x", r1)
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "x did not exist yet")
	// The answers' messages are worded alike on every backend.
	assert.EqualError(t, err, ctxd.KeyNotFound("default", "x", r1).Error())
	_, err = b.Get("default", "nope")
	assert.EqualError(t, err, ctxd.KeyNotFound("default", "nope", 0).Error())
	_, err = b.GetAt("nowhere", "x", r1)
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a namespace that does not exist")
	_, err = b.GetAt("default", "k", r5+1)
	assert.ErrorIs(t, err, ctxd.ErrFutureRevision)
	assert.Regexp(t, fmt.Sprintf(`^revision not yet committed: revision %d, current revision is \d+$`, r5+1), err.Error(),
		"worded alike on every backend")
	_, err = b.GetAt("default", "k", 0)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "there is no revision 0")
	// Past etcd's int64 revisions too: not wrapped to a revision a
	// backend reads as its head.
	for _, far := range []uint64{1 << 63, math.MaxUint64} {
		_, err = b.GetAt("default", "k", far)
		assert.ErrorIs(t, err, ctxd.ErrFutureRevision, "revision %d", far)
		_, err = b.GetAt("default", "nope", far)
		assert.ErrorIs(t, err, ctxd.ErrFutureRevision, "revision %d of a key that never was", far)
		assert.ErrorIs(t, b.CheckRevision(far), ctxd.ErrFutureRevision, "revision %d", far)
		h, err := b.History("default", "k", ctxd.HistoryOptions{Before: far})
		require.NoError(t, err, "a history bound past the head lists from the newest")
		assert.Len(t, h.Changes, 4, "history before %d", far)
	}

	for rev := r1; rev <= r5; rev++ {
		assert.NoError(t, b.CheckRevision(rev), "revision %d", rev)
	}
	assert.ErrorIs(t, b.CheckRevision(r5+1), ctxd.ErrFutureRevision)
	assert.ErrorIs(t, b.CheckRevision(0), ctxd.ErrInvalid, "there is no revision 0")
}

// A View reads everything at one revision, however many writes commit
// while it runs: what it yields is exactly the log replayed up to its
// revision, and a change after its revision is not in it.
func checkViewConsistent(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	for i := range 10 {
		b.put("default", fmt.Sprintf("k%d", i), fmt.Sprint(i))
		b.put("team", fmt.Sprintf("t%d", i), fmt.Sprint(i))
	}
	b.del("default", "k3")

	// A writer keeps committing puts and deletes in both namespaces while
	// the view runs: readers never block writers, so commits go on while
	// the view is open, and the view stays at its revision.
	// Values of 16 KiB make the data grow by megabytes in the 125
	// revisions the view waits for (an engine that must remap its file
	// for that must not wait for readers to do it); few commits of large
	// values grow it as much as many of small ones, in less time.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			ns := []string{"default", "team"}[i%2]
			key := fmt.Sprintf("w%d", i%7)
			value := fmt.Sprintf(`"%d %s"`, i, strings.Repeat("x", 16<<10))
			_, err := b.Put(t.Context(), ns, key, []byte(value), nil, "writer")
			if !assert.NoError(t, err) {
				return
			}
			if i%3 == 0 {
				_, err = b.Delete(t.Context(), ns, key, nil, "writer")
				if !assert.NoError(t, err) {
					return
				}
			}
		}
	})
	var viewRev uint64
	var seen, again map[string]string
	var counts []ctxd.Namespace
	var changes, teamChanges []ctxd.Change
	errStop := errors.New("stop here")
	err := b.View(func(v store.View) error {
		viewRev = v.Revision()
		counts = v.Namespaces()
		seen = viewState(t, v)
		require.NoError(t, v.ForEachChange("", func(c ctxd.Change) error { changes = append(changes, c); return nil }))
		require.NoError(t, v.ForEachChange("team", func(c ctxd.Change) error { teamChanges = append(teamChanges, c); return nil }))
		newest := changes[len(changes)-1]
		last, err := v.Change(newest.Namespace, newest.Key, viewRev)
		if assert.NoError(t, err, "the change at the view's revision") {
			assert.Equal(t, newest, last)
		}
		_, err = v.Change(newest.Namespace, newest.Key, viewRev+1)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "a change after the view's revision, committed or not")
		var prefixed []string
		require.NoError(t, v.ForEach("team", "t1", func(r ctxd.Record) error { prefixed = append(prefixed, r.Key); return nil }))
		assert.Equal(t, []string{"t1"}, prefixed, "ForEach with a prefix")
		require.NoError(t, v.ForEach("nowhere", "", func(r ctxd.Record) error {
			t.Errorf("a namespace that does not exist yielded %s", r.Key)
			return nil
		}))
		assert.Eventually(t, func() bool { return b.Revision() > viewRev+125 }, 20*time.Second, time.Millisecond,
			"writes commit while a view is open")
		again = viewState(t, v)
		assert.Equal(t, viewRev, v.Revision())
		return errStop
	})
	assert.ErrorIs(t, err, errStop, "View returns the function's error")
	stop.Store(true)
	wg.Wait()

	assert.GreaterOrEqual(t, viewRev, uint64(21))
	assert.Equal(t, seen, again, "reading twice through one view gives the same")
	log := b.log(0)
	assert.Equal(t, replay(log, viewRev), seen, "the view is the log replayed up to its revision")
	var upTo, team []ctxd.Change
	for _, c := range log {
		if c.Revision <= viewRev {
			upTo = append(upTo, c)
			if c.Namespace == "team" {
				team = append(team, c)
			}
		}
	}
	assert.Equal(t, changeLines(upTo), changeLines(changes), "ForEachChange: every change up to the view's revision, oldest first")
	assert.Equal(t, changeLines(team), changeLines(teamChanges), "ForEachChange of one namespace")
	perNS := map[string]uint64{}
	for id := range seen {
		ns, _, _ := strings.Cut(id, "/")
		perNS[ns]++
	}
	for _, n := range counts {
		assert.Equal(t, perNS[n.Name], n.Keys, "the view's count of %s", n.Name)
	}
}

// A view reads a key's change by key and revision: under RevisionPerTxn
// a transaction's changes share its revision, and the one asked for is
// the key's own, never the first of the revision. What reads a key's
// life back through its previous revisions depends on it: a dump at a
// past revision (export.AtRevision) and the value before each change of
// a history dump.
func checkViewChangeOfEachKey(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	res, err := b.Txn(t.Context(), []ctxd.Write{
		{Namespace: "default", Key: "a", Op: ctxd.OpPut, Value: []byte(`"a1"`), Who: "test"},
		{Namespace: "default", Key: "b", Op: ctxd.OpPut, Value: []byte(`"b1"`), Who: "test"},
		{Namespace: "default", Key: "c", Op: ctxd.OpPut, Value: []byte(`"c1"`), Who: "test"},
	})
	require.NoError(t, err)
	a2 := b.put("default", "a", `"a2"`)
	b.put("default", "b", `"b2"`)
	b.del("default", "c")
	b.put("default", "c", `"c2"`)
	if h.Expiry {
		b.putTTL("team", "leased", `1`, time.Hour) // a put with a deadline
		b.putTTL("team", "leased", `2`, time.Hour)
	}

	require.NoError(t, b.View(func(v store.View) error {
		for _, r := range res.Records {
			c, err := v.Change(r.Namespace, r.Key, r.ModRev)
			if assert.NoError(t, err, r.Key) {
				assert.Equal(t, r.Key, c.Key, "the change of the key asked for")
				assert.Equal(t, string(r.Value), string(c.Value), r.Key)
			}
		}
		_, err := v.Change("default", "b", a2.ModRev)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "a revision without a change of the key")
		// Every change, put or delete, read back by key: what the log has.
		require.NoError(t, v.ForEachChange("", func(c ctxd.Change) error {
			got, err := v.Change(c.Namespace, c.Key, c.Revision)
			if assert.NoError(t, err, changeLine(c)) {
				assert.Equal(t, changeLine(c), changeLine(got))
				assert.True(t, c.ExpiresAt.Equal(got.ExpiresAt), changeLine(c))
			}
			return nil
		}))

		// The dump at the transaction's revision: each key once, as the
		// transaction left it.
		past, err := export.AtRevision(v, res.Revision)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"a": `"a1"`, "b": `"b1"`, "c": `"c1"`}, keysOnce(t, past), "the keys at the transaction's revision")

		// Each change of the history dump with the key's own value before it.
		var before []string
		require.NoError(t, export.ForEachEntry(v, "default", nil, func(e *export.Entry) error {
			before = append(before, fmt.Sprintf("%s %s/%s %s<-%s", e.Op, e.Namespace, e.Key, e.After(), e.Before))
			return nil
		}))
		assert.Equal(t, []string{
			`put default/a "a1"<-`, `put default/b "b1"<-`, `put default/c "c1"<-`,
			`put default/a "a2"<-"a1"`, `put default/b "b2"<-"b1"`,
			`delete default/c <-"c1"`, `put default/c "c2"<-`,
		}, before)
		return nil
	}))

	// A backend that views a past revision directly gives the same.
	past, ok := b.Backend.(store.PastViewer)
	if !ok {
		return
	}
	require.NoError(t, past.ViewAt(res.Revision, func(v store.View) error {
		assert.Equal(t, res.Revision, v.Revision())
		assert.Equal(t, map[string]string{"a": `"a1"`, "b": `"b1"`, "c": `"c1"`}, keysOnce(t, v), "ViewAt the transaction's revision")
		var changes []string
		require.NoError(t, v.ForEachChange("default", func(c ctxd.Change) error { changes = append(changes, c.Key); return nil }))
		assert.Equal(t, []string{"a", "b", "c"}, changes, "the history up to the view's revision")
		_, err := v.Change("default", "a", a2.ModRev)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "a change after the view's revision")
		return nil
	}))
	err = past.ViewAt(0, func(store.View) error { return nil })
	assert.ErrorIs(t, err, ctxd.ErrInvalid)
	err = past.ViewAt(b.Revision()+1000, func(store.View) error { return nil })
	assert.ErrorIs(t, err, ctxd.ErrFutureRevision)
	err = past.ViewAt(1<<63, func(store.View) error { return nil })
	assert.ErrorIs(t, err, ctxd.ErrFutureRevision, "past etcd's int64 revisions")
}

// keysOnce is the keys of namespace default in src with their values,
// each of which must come once.
func keysOnce(t testing.TB, src export.Source) map[string]string {
	got := map[string]string{}
	require.NoError(t, src.ForEach("default", "", func(r ctxd.Record) error {
		assert.NotContains(t, got, r.Key, "a key listed twice at the past revision")
		got[r.Key] = string(r.Value)
		return nil
	}))
	return got
}
