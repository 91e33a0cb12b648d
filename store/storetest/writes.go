package storetest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// Versions count a key's changes within one life; revisions count every
// change of the backend, across keys and namespaces, from 1 without gaps.
func checkVersionsAndRevisions(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	assert.Equal(t, uint64(0), b.Revision(), "nothing is committed in a new backend")

	r1, err := b.Put(t.Context(), "default", "app.config.debug", json.RawMessage(`true`), nil, "alice")
	require.NoError(t, err)
	assert.Equal(t, "default", r1.Namespace)
	assert.Equal(t, "app.config.debug", r1.Key)
	assert.Equal(t, `true`, string(r1.Value))
	first := r1.ModRev
	b.after(0, first, "the first change")
	assert.Equal(t, []uint64{1, first, first}, []uint64{r1.Version, r1.CreateRev, r1.ModRev}, "version, create and mod revision of a create")
	assert.Equal(t, "alice", r1.Who)

	r2, err := b.Put(t.Context(), "default", "app.config.debug", json.RawMessage(`false`), nil, "bob")
	require.NoError(t, err)
	b.after(r1.ModRev, r2.ModRev, "an update")
	assert.Equal(t, []uint64{2, first}, []uint64{r2.Version, r2.CreateRev}, "an update keeps the create revision")
	assert.Equal(t, "bob", r2.Who)

	r3 := b.put("other", "deploy/prod/version", `{"v":"1.2.3"}`)
	b.after(r2.ModRev, r3.ModRev, "revisions are global across namespaces")
	assert.Equal(t, []uint64{1, r3.ModRev}, []uint64{r3.Version, r3.CreateRev})

	r4 := b.put("default", "app.config.debug", `null`)
	b.after(r3.ModRev, r4.ModRev, "a third change")
	assert.Equal(t, []uint64{3, first}, []uint64{r4.Version, r4.CreateRev})

	got := b.get("default", "app.config.debug")
	assert.Equal(t, recordLine(r4), recordLine(got), "a read gives what the write answered")
	assert.WithinDuration(t, time.Now(), got.UpdatedAt, time.Minute, "the time of the change is recorded")
	assert.Equal(t, r4.ModRev, b.Revision())
	rev, _ := b.Committed()
	assert.Equal(t, r4.ModRev, rev)
	st, err := b.Status()
	require.NoError(t, err)
	assert.Equal(t, r4.ModRev, st.Revision)
	assert.Equal(t, uint64(2), st.Keys)

	log := b.log(0)
	assert.Equal(t, modRevs(r1, r2, r3, r4), revisions(log))
	if assert.Len(t, log, 4) {
		assert.Equal(t, []string{"alice", "bob", "test", "test"}, []string{log[0].Who, log[1].Who, log[2].Who, log[3].Who}, "who made each change")
		for _, c := range log {
			assert.WithinDuration(t, time.Now(), c.Time, time.Minute, "time of change %d", c.Revision)
		}
		assert.Equal(t, recordLine(r2), recordLine(ctxd.Record{Namespace: log[1].Namespace, Key: log[1].Key, Value: log[1].Value,
			Version: log[1].Version, CreateRev: first, ModRev: log[1].Revision, Who: log[1].Who, UpdatedAt: log[1].Time}),
			"the log holds what the write answered")
	}
}

// Values are stored in canonical form: compact (the whitespace outside
// strings removed), and otherwise the bytes the client sent: escapes,
// number text and member order survive, so the same value is the same
// bytes in every answer, on every backend.
func checkValuesStoredCompact(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	values := []struct{ sent, stored string }{
		{`"text"`, `"text"`}, {`42`, `42`}, {`-1.5e10`, `-1.5e10`}, {`1.0`, `1.0`},
		{`123456789012345678901234567890`, `123456789012345678901234567890`},
		{`9007199254740993`, `9007199254740993`}, {`true`, `true`}, {`null`, `null`},
		{`[1,"a",{"b":null}]`, `[1,"a",{"b":null}]`}, {`{"nested":{"deep":[1,2,3]}}`, `{"nested":{"deep":[1,2,3]}}`},
		{`"ünïcödé ✓"`, `"ünïcödé ✓"`}, {`"\u00e9\n"`, `"\u00e9\n"`}, {`"<a & b>"`, `"<a & b>"`},
		{` {"spaced" : 1} `, `{"spaced":1}`}, {"{\n\t\"indented\": true\n}", `{"indented":true}`},
		{`{"b":1,"a":2}`, `{"b":1,"a":2}`}, {`[ "a b" , 1.50 ]`, `["a b",1.50]`},
	}
	for i, v := range values {
		key := fmt.Sprintf("k%02d", i)
		r := b.put("default", key, v.sent)
		assert.Equal(t, v.stored, string(r.Value), "write answer of %s", v.sent)
		assert.Equal(t, v.stored, b.value("default", key), "get of %s", v.sent)
		at, err := b.GetAt("default", key, r.ModRev)
		require.NoError(t, err)
		assert.Equal(t, v.stored, string(at.Value), "get at revision of %s", v.sent)
	}
	for i, c := range b.log(0) {
		assert.Equal(t, values[i].stored, string(c.Value), "log of %s", values[i].sent)
	}
	page, err := b.List("default", ctxd.ListOptions{})
	require.NoError(t, err)
	for i, r := range page.Records {
		assert.Equal(t, values[i].stored, string(r.Value), "list of %s", values[i].sent)
	}
	res, err := b.Txn(t.Context(), []ctxd.Write{put("default", "txn", "[ 1, 2 ]")})
	require.NoError(t, err)
	assert.Equal(t, `[1,2]`, string(res.Records[0].Value), "a transaction's put")
	b.restart()
	assert.Equal(t, `{"spaced":1}`, b.value("default", "k13"), "after a restart")
}

// A delete ends a key's life; a later put starts a new one at version 1,
// and history spans both lives, each change pointing at the one it replaced.
func checkDeleteEndsLife(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	r1 := b.put("default", "k", `1`)
	r2 := b.put("default", "k", `2`)
	r3 := b.put("default", "other", `0`)

	deleted, err := b.Delete(t.Context(), "default", "k", nil, "remover")
	require.NoError(t, err)
	assert.Equal(t, "k", deleted.Key)
	assert.Equal(t, uint64(2), deleted.Version, "a delete answers the version it removed")
	assert.Equal(t, r1.ModRev, deleted.CreateRev)
	b.after(r3.ModRev, deleted.ModRev, "and the delete's revision")
	assert.Nil(t, deleted.Value)

	_, err = b.Get("default", "k")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	page, err := b.List("default", ctxd.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Records, 1, "a deleted key is not listed")
	assert.Equal(t, "other", page.Records[0].Key)

	_, err = b.Delete(t.Context(), "default", "k", nil, "remover")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "deleting a deleted key")
	_, err = b.Delete(t.Context(), "default", "never", nil, "remover")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "deleting a key that never existed")
	_, err = b.Delete(t.Context(), "nowhere", "never", nil, "remover")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "deleting in a namespace that does not exist")
	assert.Equal(t, deleted.ModRev, b.Revision(), "failed deletes take no revision")

	r := b.put("default", "k", `3`)
	b.after(deleted.ModRev, r.ModRev, "a put after the delete")
	assert.Equal(t, []uint64{1, r.ModRev}, []uint64{r.Version, r.CreateRev}, "a new life starts at version 1")

	hist, err := b.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	var got []string
	for _, c := range hist.Changes {
		got = append(got, fmt.Sprintf("@%d %s v%d prev@%d %s", c.Revision, c.Op, c.Version, c.PrevRev, c.Value))
	}
	assert.Equal(t, []string{
		fmt.Sprintf("@%d put v1 prev@0 3", r.ModRev),                     // a create, also after a delete, replaced nothing
		fmt.Sprintf("@%d delete v2 prev@%d ", deleted.ModRev, r2.ModRev), // a delete points at the value it removed
		fmt.Sprintf("@%d put v2 prev@%d 2", r2.ModRev, r1.ModRev),        // an update points at the put before
		fmt.Sprintf("@%d put v1 prev@0 1", r1.ModRev),
	}, got)
	if assert.Len(t, hist.Changes, 4) {
		assert.Equal(t, "remover", hist.Changes[1].Who)
		assert.Nil(t, hist.Changes[1].Value, "a delete has no value")
	}
}

// A write with an expected version applies only if the key has it; 0 means
// "must not exist". A failed check is a *ctxd.ConflictError with the
// key's current version, and takes no revision.
func checkCompareAndSwap(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	r, err := b.Put(ctx, "default", "k", json.RawMessage(`1`), u64(0), "a")
	require.NoError(t, err, "expect 0 creates a missing key")
	assert.Equal(t, uint64(1), r.Version)
	applied := []uint64{r.ModRev}

	_, err = b.Put(ctx, "default", "k", json.RawMessage(`2`), u64(0), "a")
	var ce *ctxd.ConflictError
	require.ErrorAs(t, err, &ce, "expect 0 on an existing key")
	assert.ErrorIs(t, err, ctxd.ErrConflict)
	assert.Equal(t, ctxd.ConflictError{Namespace: "default", Key: "k", Expected: 0, Current: 1}, *ce)

	_, err = b.Put(ctx, "default", "k", json.RawMessage(`2`), u64(7), "a")
	require.ErrorAs(t, err, &ce, "a wrong version")
	assert.Equal(t, ctxd.ConflictError{Namespace: "default", Key: "k", Expected: 7, Current: 1}, *ce)

	r, err = b.Put(ctx, "default", "k", json.RawMessage(`2`), u64(1), "a")
	require.NoError(t, err, "the right version")
	assert.Equal(t, uint64(2), r.Version)
	applied = append(applied, r.ModRev)

	_, err = b.Put(ctx, "default", "missing", json.RawMessage(`1`), u64(1), "a")
	require.ErrorAs(t, err, &ce, "a version on a missing key")
	assert.Equal(t, uint64(0), ce.Current, "a missing key's current version is 0")

	_, err = b.Delete(ctx, "default", "k", u64(1), "a")
	require.ErrorAs(t, err, &ce, "delete with a wrong version")
	assert.Equal(t, ctxd.ConflictError{Namespace: "default", Key: "k", Expected: 1, Current: 2}, *ce)
	assert.Equal(t, `2`, b.value("default", "k"), "a failed delete leaves the key")

	d, err := b.Delete(ctx, "default", "k", u64(2), "a")
	require.NoError(t, err, "delete with the right version")
	applied = append(applied, d.ModRev)

	_, err = b.Put(ctx, "default", "k", json.RawMessage(`3`), u64(2), "a")
	require.ErrorAs(t, err, &ce, "the old version after a delete")
	assert.Equal(t, uint64(0), ce.Current)
	r, err = b.Put(ctx, "default", "k", json.RawMessage(`3`), u64(0), "a")
	require.NoError(t, err, "expect 0 recreates a deleted key")
	assert.Equal(t, uint64(1), r.Version)
	applied = append(applied, r.ModRev)

	assert.Equal(t, r.ModRev, b.Revision(), "failed writes take no revision")
	assert.Equal(t, applied, revisions(b.log(0)), "the log has the applied writes only")
	if !b.perTxn() {
		assert.Equal(t, span(1, 4), applied)
	}
}

// A transaction applies all its writes, each with its own consecutive
// revision, or none of them.
func checkTxnAllOrNothing(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	ra := b.put("default", "a", `1`)
	rb := b.put("default", "b", `1`)
	unchanged := b.checkpoint()

	_, err := b.Txn(ctx, []ctxd.Write{
		expecting(put("default", "a", `2`), 1),
		expecting(put("default", "b", `2`), 7), // fails
		put("x", "c", `2`),
	})
	var ce *ctxd.ConflictError
	require.ErrorAs(t, err, &ce, "one failing expect fails the transaction")
	assert.Equal(t, "b", ce.Key, "the conflict names the write that failed")
	_, err = b.Txn(ctx, []ctxd.Write{put("default", "a", `3`), del("default", "missing")})
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a delete of a missing key fails the transaction")

	unchanged("a failed transaction")

	res, err := b.Txn(ctx, []ctxd.Write{
		expecting(put("default", "a", `2`), 1),
		expecting(del("default", "b"), 1),
		expecting(put("x", "c", `"new"`), 0),
	})
	require.NoError(t, err)
	b.after(rb.ModRev, b.txnRevs(res.Revision, 3)[0], "the transaction's first change")
	require.Len(t, res.Records, 3, "one record per write, in order")
	assert.Equal(t, b.txnRevs(res.Revision, 3), modRevs(res.Records...), "consecutive revisions (RevisionPerChange), or the transaction's one (RevisionPerTxn)")
	assert.Equal(t, []uint64{2, 1, 1}, []uint64{res.Records[0].Version, res.Records[1].Version, res.Records[2].Version})
	assert.Nil(t, res.Records[1].Value, "a delete's record has no value")
	assert.Equal(t, "x", res.Records[2].Namespace)

	_, err = b.Get("default", "b")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	assert.Equal(t, `"new"`, b.value("x", "c"))
	assert.Equal(t, append(modRevs(ra, rb), b.txnRevs(res.Revision, 3)...), revisions(b.log(0)))
}

// A transaction is limited to MaxTxnOps writes and names a key once;
// Import is the same without the limit on the number of writes.
func checkTxnLimitsAndImport(t testing.TB, h Harness) {
	b := open(t, h, Config{Limits: ctxd.Limits{MaxTxnOps: 3}})
	ctx := t.Context()

	_, err := b.Txn(ctx, []ctxd.Write{put("default", "a", `1`), put("default", "b", `1`), put("default", "c", `1`), put("default", "d", `1`)})
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "over MaxTxnOps")
	_, err = b.Txn(ctx, []ctxd.Write{put("default", "a", `1`), del("default", "a")})
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "a key twice")
	_, err = b.Txn(ctx, nil)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "no writes")
	assert.Equal(t, uint64(0), b.Revision(), "refused transactions change nothing")

	res, err := b.Txn(ctx, []ctxd.Write{put("default", "a", `1`), put("default", "b", `1`), put("team", "a", `1`)})
	require.NoError(t, err, "exactly MaxTxnOps writes; the same key in two namespaces is two keys")
	assert.Equal(t, b.txnRevs(res.Revision, 3), modRevs(res.Records...))
	first := res.Revision

	var writes []ctxd.Write
	for i := range 20 {
		writes = append(writes, put("bulk", fmt.Sprintf("k%02d", i), fmt.Sprint(i)))
	}
	res, err = b.Import(ctx, writes)
	require.NoError(t, err, "Import has no limit on the number of writes")
	require.Len(t, res.Records, 20)
	b.after(first, b.txnRevs(res.Revision, 20)[0], "the import's first change")
	assert.Equal(t, b.txnRevs(res.Revision, 20), modRevs(res.Records...), "one transaction's revisions")
	// ChangesPerRevision bounds the changes of one revision, the import's
	// 20 included (a follower bounding its lag in changes relies on it).
	if b.perTxn() {
		assert.GreaterOrEqual(t, b.ChangesPerRevision(), uint64(20), "the import's revision holds 20 changes")
	} else {
		assert.Equal(t, uint64(1), b.ChangesPerRevision(), "a revision per change")
	}
	page, err := b.List("bulk", ctxd.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, page.Records, 20)

	_, err = b.Import(ctx, []ctxd.Write{put("bulk", "new", `1`), put("bulk", "k00", `{nope`)})
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "Import still validates every write")
	_, err = b.Import(ctx, []ctxd.Write{put("bulk", "new", `1`), put("bulk", "new", `2`)})
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "Import still refuses a key twice")
	_, err = b.Import(ctx, []ctxd.Write{put("bulk", "new", `1`), expecting(put("bulk", "k00", `1`), 5)})
	assert.ErrorIs(t, err, ctxd.ErrConflict, "Import still checks expected versions")
	_, err = b.Import(ctx, nil)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "an empty import")
	_, err = b.Get("bulk", "new")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a failed import applies nothing")
	assert.Equal(t, res.Revision, b.Revision())

	// A who that a write is now refused for (a control character) is
	// kept by an import: dumps and snapshots of older data still load.
	old := put("bulk", "old", `1`)
	old.Who = "ops\x1b"
	res, err = b.Import(ctx, []ctxd.Write{old})
	require.NoError(t, err, "Import keeps a who as recorded")
	rec, err := b.Get("bulk", "old")
	require.NoError(t, err)
	assert.Equal(t, "ops\x1b", rec.Who)
}

// Every kind of bad input is refused with ErrInvalid or ErrTooLarge before
// anything is written.
func checkBadInput(t testing.TB, h Harness) {
	limits := ctxd.Limits{MaxKeyBytes: 16, MaxValueBytes: 32, MaxTxnOps: 2}
	b := open(t, h, Config{Limits: limits})
	ctx := t.Context()
	kept := b.put("default", "keep", `1`)
	unchanged := b.checkpoint()

	putErr := func(ns, key, value string) error {
		_, err := b.Put(ctx, ns, key, json.RawMessage(value), nil, "t")
		return err
	}
	deleteKey := func(ns, key string) error {
		_, err := b.Delete(ctx, ns, key, nil, "t")
		return err
	}
	txn := func(writes ...ctxd.Write) error {
		_, err := b.Txn(ctx, writes)
		return err
	}
	good := ctxd.Write{Namespace: "default", Key: "good", Op: ctxd.OpPut, Value: json.RawMessage(`1`)}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"empty key", putErr("default", "", `1`), ctxd.ErrInvalid},
		{"key too long", putErr("default", strings.Repeat("k", 17), `1`), ctxd.ErrTooLarge},
		{"key too long in bytes, not characters", putErr("default", strings.Repeat("é", 9), `1`), ctxd.ErrTooLarge},
		{"control character", putErr("default", "a\x01b", `1`), ctxd.ErrInvalid},
		{"newline", putErr("default", "a\nb", `1`), ctxd.ErrInvalid},
		{"tab", putErr("default", "a\tb", `1`), ctxd.ErrInvalid},
		{"NUL", putErr("default", "a\x00b", `1`), ctxd.ErrInvalid},
		{"DEL", putErr("default", "a\x7fb", `1`), ctxd.ErrInvalid},
		{"C1 control", putErr("default", "a\u0085b", `1`), ctxd.ErrInvalid},
		{"key not UTF-8", putErr("default", "a\xffb", `1`), ctxd.ErrInvalid},
		{"value not JSON", putErr("default", "k", `{nope`), ctxd.ErrInvalid},
		{"two JSON values", putErr("default", "k", `1 2`), ctxd.ErrInvalid},
		{"empty value", putErr("default", "k", ``), ctxd.ErrInvalid},
		{"value not UTF-8", putErr("default", "k", "\"\xff\""), ctxd.ErrInvalid},
		{"value too large", putErr("default", "k", `"`+strings.Repeat("v", 40)+`"`), ctxd.ErrTooLarge},
		{"empty namespace", putErr("", "k", `1`), ctxd.ErrInvalid},
		{"bad namespace", putErr("bad ns!", "k", `1`), ctxd.ErrInvalid},
		{"namespace with a slash", putErr("a/b", "k", `1`), ctxd.ErrInvalid},
		{"namespace too long", putErr(strings.Repeat("n", 65), "k", `1`), ctxd.ErrInvalid},
		{"who too long", func() error {
			_, err := b.Put(ctx, "default", "k", json.RawMessage(`1`), nil, strings.Repeat("w", 257))
			return err
		}(), ctxd.ErrTooLarge},
		{"who with a control character", func() error {
			_, err := b.Put(ctx, "default", "k", json.RawMessage(`1`), nil, "ops\x00")
			return err
		}(), ctxd.ErrInvalid},
		{"who not UTF-8", func() error {
			_, err := b.Delete(ctx, "default", "keep", nil, "\xff")
			return err
		}(), ctxd.ErrInvalid},
		{"delete: empty key", deleteKey("default", ""), ctxd.ErrInvalid},
		{"delete: bad namespace", deleteKey("bad ns!", "keep"), ctxd.ErrInvalid},
		{"txn: one bad write among good ones", txn(good, ctxd.Write{Namespace: "default", Key: "a\x01", Op: ctxd.OpPut, Value: json.RawMessage(`1`)}), ctxd.ErrInvalid},
		{"txn: unknown op", txn(good, ctxd.Write{Namespace: "default", Key: "x", Op: 9}), ctxd.ErrInvalid},
		{"txn: too many writes", txn(good, put("default", "y", `1`), put("default", "z", `1`)), ctxd.ErrTooLarge},
	}
	for _, c := range cases {
		assert.ErrorIs(t, c.err, c.want, c.name)
	}

	_, err := b.Get("default", "")
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "get: empty key")
	_, err = b.Get("bad ns!", "keep")
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "get: bad namespace")
	_, err = b.GetAt("default", "a\x01", 1)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "get at: control character")
	_, err = b.History("default", "", ctxd.HistoryOptions{})
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "history: empty key")
	_, err = b.List("bad ns!", ctxd.ListOptions{})
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "list: bad namespace")

	unchanged("bad input")

	// The limits themselves are allowed: they are maxima, not bounds.
	r := b.put("default", strings.Repeat("k", 16), `"`+strings.Repeat("v", 30)+`"`)
	b.after(kept.ModRev, r.ModRev, "a key and a value exactly at the limits")
}

// limits.max_key_bytes bounds the keys written, not those read: a key
// written under a larger limit (another instance's, on one etcd prefix, or
// before the setting was lowered) can still be read, at a revision too,
// listed, kept alive and deleted; a put of it is refused.
func checkKeysOverALoweredKeyLimit(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	long := strings.Repeat("k", 40)
	res, err := b.Txn(ctx, []ctxd.Write{{Namespace: "default", Key: long, Op: ctxd.OpPut, Value: json.RawMessage(`1`), TTL: time.Hour}})
	require.NoError(t, err)
	put := res.Records[0]

	b.cfg.Limits = ctxd.Limits{MaxKeyBytes: 16}
	b.restart()
	_, err = b.Put(ctx, "default", long, json.RawMessage(`2`), nil, "t")
	require.ErrorIs(t, err, ctxd.ErrTooLarge, "a put of the key is a write under the new limit")
	r, err := b.Get("default", long)
	require.NoError(t, err, "get")
	assert.Equal(t, put.ModRev, r.ModRev)
	_, err = b.GetAt("default", long, put.ModRev)
	require.NoError(t, err, "get at a revision")
	hist, err := b.History("default", long, ctxd.HistoryOptions{})
	require.NoError(t, err, "history")
	assert.Len(t, hist.Changes, 1)
	page, err := b.List("default", ctxd.ListOptions{})
	require.NoError(t, err, "list")
	assert.Len(t, page.Records, 1)
	_, err = b.KeepAlive(ctx, "default", long, time.Hour, nil)
	require.NoError(t, err, "keepalive")
	_, err = b.Delete(ctx, "default", long, nil, "t")
	require.NoError(t, err, "delete")
	_, err = b.Get("default", long)
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
}

// Writers in many goroutines: every acknowledged write is readable at the
// revision it was answered with and is in the log once, in revision order.
// Under RevisionPerChange each write has a revision of its own, with no
// gaps. Under RevisionPerTxn concurrent writes may share one (etcd commits
// writes in flight together in one transaction), never two writes of one
// key, and the log delivers each revision's changes together.
func checkConcurrentWriters(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	const writers, each = 16, 25
	type ack struct {
		key string
		rev uint64
	}
	acks := make(chan ack, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%02d/%02d", w, i)
				r, err := b.Put(t.Context(), "default", key, json.RawMessage(fmt.Sprint(i)), nil, "t")
				if !assert.NoError(t, err, key) {
					return
				}
				acks <- ack{key, r.ModRev}
			}
		})
	}
	wg.Wait()
	close(acks)

	byRev := map[uint64][]string{}
	var all []ack
	for a := range acks {
		all = append(all, a)
		byRev[a.rev] = append(byRev[a.rev], a.key)
		r, err := b.Get("default", a.key)
		if assert.NoError(t, err, "acknowledged write %s", a.key) {
			assert.Equal(t, a.rev, r.ModRev, a.key)
		}
	}
	const n = writers * each
	require.Len(t, all, n)
	revs := sortedRevs(byRev)
	if !b.perTxn() {
		for rev, keys := range byRev {
			assert.Len(t, keys, 1, "revision %d was given to %v", rev, keys)
		}
		assert.Equal(t, span(1, n), revs, "no revision was skipped")
	}
	if assert.NotEmpty(t, revs) {
		assert.Equal(t, revs[len(revs)-1], b.Revision())
	}
	// The log: every acknowledged write once, at its revision, in
	// revision order (within a revision, in any order).
	type change struct {
		rev uint64
		key string
	}
	var logged, acked []change
	for _, c := range b.log(0) {
		logged = append(logged, change{c.Revision, c.Key})
	}
	for _, a := range all {
		acked = append(acked, change{a.rev, a.key})
	}
	byRevKey := func(x, y change) int {
		if x.rev != y.rev {
			return cmp.Compare(x.rev, y.rev)
		}
		return strings.Compare(x.key, y.key)
	}
	assert.True(t, slices.IsSortedFunc(logged, func(x, y change) int { return cmp.Compare(x.rev, y.rev) }), "the log is in revision order")
	slices.SortFunc(logged, byRevKey)
	slices.SortFunc(acked, byRevKey)
	assert.Equal(t, acked, logged, "the log has every acknowledged write once, at its revision")
	st, err := b.Status()
	require.NoError(t, err)
	assert.Equal(t, uint64(n), st.Keys)
}

// Compare-and-swap increments from many goroutines lose no update: each
// conflict is reported, and the retry applies.
func checkConcurrentCAS(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	b.put("default", "counter", `0`)
	const workers, increments = 6, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for done := 0; done < increments; {
				r, err := b.Get("default", "counter")
				if !assert.NoError(t, err) {
					return
				}
				var n int
				if !assert.NoError(t, json.Unmarshal(r.Value, &n)) {
					return
				}
				_, err = b.Put(t.Context(), "default", "counter", json.RawMessage(fmt.Sprint(n+1)), u64(r.Version), "t")
				var ce *ctxd.ConflictError
				if errors.As(err, &ce) {
					if !assert.Greater(t, ce.Current, r.Version, "a conflict means someone else moved the key on") {
						return // a backend this wrong would have us retry forever
					}
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				done++
			}
		})
	}
	wg.Wait()
	r := b.get("default", "counter")
	assert.Equal(t, fmt.Sprint(workers*increments), string(r.Value))
	assert.Equal(t, uint64(workers*increments+1), r.Version)
	assert.Equal(t, r.ModRev, b.Revision())
	assert.Len(t, b.log(0), workers*increments+1, "conflicts take no revision")
}

// A restart keeps data, history, counts, and the revision: revisions
// continue after it and are never reused.
func checkRestartKeepsEverything(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	b.put("default", "a", `1`)
	b.put("default", "a", `{"x":2}`)
	b.put("team", "b/c", `"v"`)
	b.del("team", "b/c")
	b.put("team", "d", `true`)
	stateBefore, revBefore := b.state()
	logBefore := b.log(0)
	nsBefore, err := b.Namespaces()
	require.NoError(t, err)
	historyBefore, err := b.History("default", "a", ctxd.HistoryOptions{})
	require.NoError(t, err)

	b.restart()

	assert.Equal(t, revBefore, b.Revision())
	rev, _ := b.Committed()
	assert.Equal(t, revBefore, rev, "the committed mark starts at the stored revision")
	stateAfter, revAfter := b.state()
	assert.Equal(t, revBefore, revAfter)
	assert.Equal(t, stateBefore, stateAfter, "every record, field for field")
	assert.Equal(t, changeLines(logBefore), changeLines(b.log(0)), "the whole log")
	nsAfter, err := b.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, nsBefore, nsAfter)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 1}, {Name: "team", Keys: 1}}, nsAfter)
	historyAfter, err := b.History("default", "a", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Equal(t, changeLines(historyBefore.Changes), changeLines(historyAfter.Changes))
	assert.NoError(t, b.CheckRevision(logBefore[0].Revision), "history from the first revision is still exact")

	r := b.put("default", "a", `3`)
	b.after(revBefore, r.ModRev, "revisions continue after a restart, never reused")
	assert.Equal(t, uint64(3), r.Version)
	assert.Equal(t, logBefore[0].Revision, r.CreateRev)
}

// sortedRevs is the revisions of a map, in order.
func sortedRevs[V any](m map[uint64]V) []uint64 {
	out := make([]uint64, 0, len(m))
	for rev := range m {
		out = append(out, rev)
	}
	slices.Sort(out)
	return out
}
