package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
)

func mergePatch(doc string) ctxd.Patch {
	return ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(doc)}
}

func jsonPatch(doc string) ctxd.Patch {
	return ctxd.Patch{Type: ctxd.JSONPatch, Doc: json.RawMessage(doc)}
}

// A patch applies to the value as it is, and is recorded as a put of the
// result: in the answer, the key, its history and the log, and after a
// restart (a backend that replays a log must replay the result, not the
// patch: an append replayed would append twice).
func checkPatchApplies(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	created := b.put("default", "doc", `{"name":"a","list":[1],"n":9007199254740993}`) // 1

	r, err := b.Patch(ctx, "default", "doc", mergePatch(`{"name":"b","extra":{"x":true}}`), nil, "merger") // 2
	require.NoError(t, err)
	want := `{"name":"b","list":[1],"n":9007199254740993,"extra":{"x":true}}`
	assert.Equal(t, want, string(r.Value), "merge patch answer")
	assert.Equal(t, uint64(2), r.Version)
	assert.Equal(t, b.get("default", "doc").ModRev, r.ModRev)
	patchRev := r.ModRev
	assert.Equal(t, "merger", r.Who)
	assert.Equal(t, want, b.value("default", "doc"))

	r, err = b.Patch(ctx, "default", "doc", jsonPatch(`[{"op":"test","path":"/name","value":"b"},{"op":"add","path":"/list/-","value":2},{"op":"remove","path":"/extra"}]`), nil, "jp") // 3
	require.NoError(t, err)
	want = `{"name":"b","list":[1,2],"n":9007199254740993}`
	assert.Equal(t, want, string(r.Value), "JSON patch answer")
	assert.Equal(t, uint64(3), r.Version)

	log := b.log(0)
	require.Len(t, log, 3)
	for _, c := range log {
		assert.Equal(t, ctxd.OpPut, c.Op, "a patch is logged as a put")
	}
	assert.Equal(t, want, string(log[2].Value), "the log holds the result")
	assert.Equal(t, patchRev, log[2].PrevRev)
	hist, err := b.History("default", "doc", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, hist.Changes, 3)
	assert.Equal(t, want, string(hist.Changes[0].Value))

	// A patch inside a transaction sees the writes before it.
	res, err := b.Txn(ctx, []ctxd.Write{
		put("default", "other", `{"a":1}`),
		{Namespace: "default", Key: "doc", Op: ctxd.OpPatch, Patch: mergePatch(`{"n":1}`), Who: "txn"},
	}) // 4, 5
	require.NoError(t, err)
	assert.Equal(t, `{"name":"b","list":[1,2],"n":1}`, string(res.Records[1].Value))
	assert.Equal(t, res.Records[1].ModRev, res.Revision)

	first, err := b.GetAt("default", "doc", created.ModRev)
	require.NoError(t, err)
	assert.Equal(t, `{"name":"a","list":[1],"n":9007199254740993}`, string(first.Value), "the values patched are intact")

	b.restart()
	assert.Equal(t, `{"name":"b","list":[1,2],"n":1}`, b.value("default", "doc"), "after a restart, once")
	assert.Equal(t, res.Revision, b.Revision())
	r, err = b.Patch(ctx, "default", "doc", jsonPatch(`[{"op":"add","path":"/list/-","value":3}]`), nil, "jp")
	require.NoError(t, err)
	assert.Equal(t, `{"name":"b","list":[1,2,3],"n":1}`, string(r.Value))
	b.restart()
	assert.Equal(t, `{"name":"b","list":[1,2,3],"n":1}`, b.value("default", "doc"), "a patch right before a restart, once")
}

// A patch with an expected version applies only at that version.
func checkPatchCompareAndSwap(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	b.put("default", "k", `{"a":1}`)
	_, err := b.Patch(ctx, "default", "k", mergePatch(`{"b":2}`), u64(5), "t")
	var ce *ctxd.ConflictError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, ctxd.ConflictError{Namespace: "default", Key: "k", Expected: 5, Current: 1}, *ce)
	assert.Equal(t, `{"a":1}`, b.value("default", "k"))

	r, err := b.Patch(ctx, "default", "k", mergePatch(`{"b":2}`), u64(1), "t")
	require.NoError(t, err)
	assert.Equal(t, `{"a":1,"b":2}`, string(r.Value))
	assert.Equal(t, uint64(2), r.Version)
}

// A patch that does not apply fails alone with the pointer that failed,
// takes no revision and changes nothing, in a transaction too.
func checkFailedPatchWritesNothing(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	b.put("default", "doc", `{"state":"idle","list":[1]}`)
	b.put("default", "scalar", `42`)
	unchanged := b.checkpoint()

	_, err := b.Patch(ctx, "default", "doc", jsonPatch(`[{"op":"replace","path":"/state","value":"busy"},{"op":"test","path":"/state","value":"idle"}]`), nil, "t")
	var pe *ctxd.PatchError
	require.ErrorAs(t, err, &pe, "a failed test")
	assert.ErrorIs(t, err, ctxd.ErrPatchTestFailed)
	assert.Equal(t, 1, pe.Index)
	assert.Equal(t, "/state", pe.Pointer)

	_, err = b.Patch(ctx, "default", "doc", jsonPatch(`[{"op":"remove","path":"/list/3"}]`), nil, "t")
	require.ErrorAs(t, err, &pe, "a path that does not exist")
	assert.ErrorIs(t, err, ctxd.ErrPatchFailed)
	assert.Equal(t, "/list/3", pe.Pointer)

	_, err = b.Patch(ctx, "default", "scalar", jsonPatch(`[{"op":"add","path":"/a","value":1}]`), nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrPatchFailed, "a JSON patch of a number")
	_, err = b.Patch(ctx, "default", "missing", mergePatch(`{"a":1}`), nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a missing key")
	_, err = b.Patch(ctx, "default", "doc", jsonPatch(`[{"op":"jump","path":"/a"}]`), nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "an unknown operation")
	_, err = b.Patch(ctx, "default", "doc", ctxd.Patch{Type: "text/plain", Doc: json.RawMessage(`{}`)}, nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "an unknown patch type")
	_, err = b.Patch(ctx, "default", "doc", mergePatch(`{"a":`), nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "a patch that is not JSON")
	_, err = b.Txn(ctx, []ctxd.Write{
		put("default", "new", `1`),
		{Namespace: "default", Key: "doc", Op: ctxd.OpPatch, Patch: jsonPatch(`[{"op":"test","path":"/state","value":"busy"}]`), Who: "t"},
	})
	assert.ErrorIs(t, err, ctxd.ErrPatchTestFailed, "a transaction with a failing patch")
	unchanged("failed patches")

	small := open(t, h, Config{Limits: ctxd.Limits{MaxValueBytes: 32}})
	small.put("default", "k", `{"a":"x"}`)
	_, err = small.Patch(ctx, "default", "k", mergePatch(`{"b":"0123456789012345678901234567"}`), nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "a result over the value limit")
	assert.Equal(t, `{"a":"x"}`, small.value("default", "k"))
}

// A value that names a member twice in one object is stored as sent, and
// a patch never rewrites that object: a JSON Patch through it, or a merge
// patch that sets the member, is refused with a patch error naming it
// and writes nothing, alone or in a transaction (the library wrote both
// copies with the last one's value: /b replaced in {"a":1,"a":2,"b":0}
// gave {"a":2,"a":2,"b":5}). A patch elsewhere keeps both copies.
func checkPatchKeepsRepeatedMembers(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	const value = `{"a":1,"a":2,"b":0,"x":{"k":1,"k":2},"y":{"n":0}}`
	b.put("default", "doc", value)
	unchanged := b.checkpoint()
	for _, c := range []struct {
		p       ctxd.Patch
		pointer string
	}{
		{jsonPatch(`[{"op":"replace","path":"/b","value":5}]`), "/b"},
		{jsonPatch(`[{"op":"add","path":"/x/c","value":5}]`), "/x/c"},
		{mergePatch(`{"a":5}`), "/a"},
	} {
		_, err := b.Patch(ctx, "default", "doc", c.p, nil, "t")
		var pe *ctxd.PatchError
		if assert.ErrorAs(t, err, &pe, "%s", c.p.Doc) {
			assert.ErrorIs(t, err, ctxd.ErrPatchFailed)
			assert.Equal(t, c.pointer, pe.Pointer, "%s", c.p.Doc)
			assert.Contains(t, pe.Reason, "twice", "%s", c.p.Doc)
		}
		_, err = b.Txn(ctx, []ctxd.Write{put("default", "new", `1`), {Namespace: "default", Key: "doc", Op: ctxd.OpPatch, Patch: c.p, Who: "t"}})
		assert.ErrorIs(t, err, ctxd.ErrPatchFailed, "in a transaction: %s", c.p.Doc)
	}
	unchanged("patches through an object that names a member twice")
	assert.Equal(t, value, b.value("default", "doc"))

	r, err := b.Patch(ctx, "default", "doc", mergePatch(`{"b":5,"x":{"c":1}}`), nil, "t")
	require.NoError(t, err)
	want := `{"a":1,"a":2,"b":5,"x":{"k":1,"k":2,"c":1},"y":{"n":0}}`
	assert.Equal(t, want, string(r.Value), "a merge patch of other members")
	assert.Equal(t, want, b.value("default", "doc"))
	b.put("default", "nested", `{"x":{"k":1,"k":2},"y":{"n":0}}`)
	r, err = b.Patch(ctx, "default", "nested", jsonPatch(`[{"op":"replace","path":"/y/n","value":5},{"op":"add","path":"/z","value":1}]`), nil, "t")
	require.NoError(t, err)
	want = `{"x":{"k":1,"k":2},"y":{"n":5},"z":1}`
	assert.Equal(t, want, string(r.Value), "a JSON Patch that does not go through the object")
	assert.Equal(t, want, b.value("default", "nested"))
}

// The patches of one request share one budget of work (patch.WorkBytes),
// on every backend: a transaction of patches each within it, but not
// together, is refused whole as too large and changes nothing (128 JSON
// Patches of a transaction, each just under a bound of its own, held
// bolt's writer for 92 s); each alone applies, and so does a transaction
// whose patches stay within it. A merge patch counts too, its value once.
func checkPatchesShareOneBudget(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	big := `{"n":0,"s":"` + strings.Repeat("x", 30_000) + `"}`
	for _, k := range []string{"a", "b", "c", "d"} {
		b.put("default", k, big)
	}
	patchOf := func(key string, p ctxd.Patch) ctxd.Write {
		return ctxd.Write{Namespace: "default", Key: key, Op: ctxd.OpPatch, Patch: p, Who: "t"}
	}
	unchanged := b.checkpoint()

	threeFifths := workPatch(len(big), patch.WorkBytes*3/5)
	_, err := b.Txn(ctx, []ctxd.Write{put("default", "new", `1`), patchOf("a", threeFifths), patchOf("b", threeFifths)})
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "two patches of three fifths of the budget each, in one transaction")
	merge := mergePatch(`{"n":1}`)
	// It leaves room for one merge patch of a value of big's size, and
	// less than three (an operation is about one merge patch's work).
	nearlyAll := workPatch(len(big), patch.WorkBytes-len(big)-len(merge.Doc))
	_, err = b.Txn(ctx, []ctxd.Write{patchOf("a", nearlyAll), patchOf("b", merge), patchOf("c", merge), patchOf("d", merge)})
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "merge patches after a JSON Patch that took nearly all the budget")
	unchanged("a transaction whose patches together are over the budget")

	r, err := b.Patch(ctx, "default", "b", threeFifths, nil, "t")
	require.NoError(t, err, "one of them alone")
	assert.Equal(t, uint64(2), r.Version)
	res, err := b.Txn(ctx, []ctxd.Write{patchOf("a", nearlyAll), patchOf("c", merge)})
	require.NoError(t, err, "a transaction whose patches stay within the budget")
	assert.True(t, strings.HasPrefix(string(res.Records[0].Value), `{"n":2,`), "the JSON Patch applied")
	assert.True(t, strings.HasPrefix(string(res.Records[1].Value), `{"n":1,`), "the merge patch applied")
}

// workPatch is a JSON Patch whose work (patch.WorkBytes) on a value of
// size bytes with member "n" 0 is at most target, and within one
// operation of it: tests of "n", then a replace of it by 2.
func workPatch(size, target int) ctxd.Patch {
	const test = `{"op":"test","path":"/n","value":0},`
	doc := func(ops int) string {
		return "[" + strings.Repeat(test, ops-1) + `{"op":"replace","path":"/n","value":2}]`
	}
	ops := target / size
	for ops > 1 && ops*(size+len(doc(ops))) > target {
		ops--
	}
	return jsonPatch(doc(ops))
}

// Many writers patching their own member of one value at once: every
// member lands (the writer applies each patch to the value as the ones
// before it left it), and each patch gets its own version.
func checkConcurrentPatches(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	b.put("default", "doc", `{}`)
	const patchers = 64
	var wg sync.WaitGroup
	for i := range patchers {
		wg.Go(func() {
			p := mergePatch(fmt.Sprintf(`{"f%02d":%d}`, i, i))
			if i%2 == 1 {
				p = jsonPatch(fmt.Sprintf(`[{"op":"add","path":"/f%02d","value":%d}]`, i, i))
			}
			_, err := b.Patch(t.Context(), "default", "doc", p, nil, fmt.Sprint("p", i))
			assert.NoError(t, err, "patcher %d", i)
		})
	}
	wg.Wait()
	r := b.get("default", "doc")
	var got map[string]int
	require.NoError(t, json.Unmarshal(r.Value, &got))
	for i := range patchers {
		assert.Equal(t, i, got[fmt.Sprintf("f%02d", i)], "patcher %d's member", i)
	}
	assert.Len(t, got, patchers)
	assert.Equal(t, uint64(patchers+1), r.Version, "one version per patch")
}

// checkConcurrentPatchesOfSeveralKeys: 32 patchers each patch 4 documents
// in turn (each from a different one), 5 rounds, while 8 writers put keys
// of their own: a backend that commits concurrent writes together (etcd's
// groups, bolt's batches) mixes them. Every patch lands on the value as it
// is when it commits: each document ends with every patcher's last
// round, one version per patch, and every put is there.
func checkConcurrentPatchesOfSeveralKeys(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	const patchers, docs, rounds, writers = 32, 4, 5, 8
	for d := range docs {
		b.put("default", fmt.Sprint("doc", d), `{}`)
	}
	var wg sync.WaitGroup
	for i := range patchers {
		wg.Go(func() {
			for r := range rounds {
				for k := range docs {
					doc := fmt.Sprint("doc", (i+k)%docs)
					_, err := b.Patch(t.Context(), "default", doc, mergePatch(fmt.Sprintf(`{"f%02d":%d}`, i, r)), nil, fmt.Sprint("p", i))
					assert.NoError(t, err, "patcher %d, %s, round %d", i, doc, r)
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for r := range rounds * docs {
				_, err := b.Put(t.Context(), "default", fmt.Sprintf("w%d-%d", w, r), json.RawMessage(fmt.Sprint(r)), nil, "w")
				assert.NoError(t, err, "writer %d, put %d", w, r)
			}
		})
	}
	wg.Wait()
	for d := range docs {
		r := b.get("default", fmt.Sprint("doc", d))
		var got map[string]int
		require.NoError(t, json.Unmarshal(r.Value, &got))
		for i := range patchers {
			assert.Equal(t, rounds-1, got[fmt.Sprintf("f%02d", i)], "doc%d: patcher %d's last round", d, i)
		}
		assert.Len(t, got, patchers)
		assert.Equal(t, uint64(patchers*rounds+1), r.Version, "doc%d: one version per patch", d)
	}
	for w := range writers {
		for r := range rounds * docs {
			assert.JSONEq(t, fmt.Sprint(r), string(b.get("default", fmt.Sprintf("w%d-%d", w, r)).Value))
		}
	}
}
