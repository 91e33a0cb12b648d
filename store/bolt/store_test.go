package bolt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store/bolt"
)

var ctx = context.Background()

func TestPutGetVersionsAndRevisions(t *testing.T) {
	s := openStore(t, bolt.Options{})
	r1 := s.put("default", "app.config.debug", `true`)
	assert.Equal(t, uint64(1), r1.Version)
	assert.Equal(t, uint64(1), r1.ModRev)
	assert.Equal(t, uint64(1), r1.CreateRev)

	r2 := s.put("default", "app.config.debug", `false`)
	assert.Equal(t, uint64(2), r2.Version)
	assert.Equal(t, uint64(2), r2.ModRev)
	assert.Equal(t, uint64(1), r2.CreateRev)

	r3 := s.put("other", "deploy/prod/version", `{"v":"1.2.3"}`)
	assert.Equal(t, uint64(1), r3.Version)
	assert.Equal(t, uint64(3), r3.ModRev)

	got, err := s.Get("default", "app.config.debug")
	require.NoError(t, err)
	assert.JSONEq(t, `false`, string(got.Value))
	assert.Equal(t, "test", got.Who)
	assert.Equal(t, uint64(2), got.Version)
	assert.WithinDuration(t, time.Now(), got.UpdatedAt, time.Minute)
	assert.Equal(t, uint64(3), s.Revision())
}

func TestValuesRoundTripExactly(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i, v := range []string{`"text"`, `42`, `-1.5e10`, `true`, `null`, `[1,"a",{"b":null}]`, `{"nested":{"deep":[1,2,3]}}`, `"ünïcödé ✓"`, ` {"spaced" : 1} `} {
		key := fmt.Sprintf("k%d", i)
		s.put("default", key, v)
		got, err := s.Get("default", key)
		require.NoError(t, err)
		assert.Equal(t, v, string(got.Value), "bytes sent are the bytes returned")
	}
}

func TestDeleteEndsLifeAndRecreateStartsAtOne(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)
	s.put("default", "k", `2`)
	del, err := s.Delete(ctx, "default", "k", nil, "remover")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), del.Version)
	assert.Equal(t, uint64(3), del.ModRev)
	assert.Nil(t, del.Value)

	_, err = s.Get("default", "k")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	_, err = s.Delete(ctx, "default", "k", nil, "remover")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)

	r := s.put("default", "k", `3`)
	assert.Equal(t, uint64(1), r.Version)
	assert.Equal(t, uint64(4), r.CreateRev)

	h, err := s.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, h.Changes, 4)
	var ops []string
	for _, c := range h.Changes {
		ops = append(ops, fmt.Sprintf("%d:%s:v%d", c.Revision, c.Op, c.Version))
	}
	assert.Equal(t, []string{"4:put:v1", "3:delete:v2", "2:put:v2", "1:put:v1"}, ops)
	assert.Equal(t, "remover", h.Changes[1].Who)
	assert.Equal(t, uint64(2), h.Changes[1].PrevRev, "a delete points at the value it removed")
}

func TestCompareAndSwap(t *testing.T) {
	s := openStore(t, bolt.Options{})
	_, err := s.Put(ctx, "default", "k", json.RawMessage(`1`), u64(0), "a")
	require.NoError(t, err, "expect 0 = create only")

	_, err = s.Put(ctx, "default", "k", json.RawMessage(`2`), u64(0), "a")
	var ce *ctxd.ConflictError
	require.ErrorAs(t, err, &ce)
	assert.ErrorIs(t, err, ctxd.ErrConflict)
	assert.Equal(t, uint64(1), ce.Current)
	assert.Equal(t, uint64(0), ce.Expected)

	_, err = s.Put(ctx, "default", "k", json.RawMessage(`2`), u64(1), "a")
	require.NoError(t, err)
	_, err = s.Delete(ctx, "default", "k", u64(1), "a")
	assert.ErrorIs(t, err, ctxd.ErrConflict)
	_, err = s.Delete(ctx, "default", "k", u64(2), "a")
	require.NoError(t, err)

	got, err := s.Get("default", "missing")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "%v", got)
	assert.Equal(t, uint64(3), s.Revision(), "failed writes take no revision")
}

func TestTxnAllOrNothing(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "a", `1`)
	s.put("default", "b", `1`)

	_, err := s.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "a", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Expect: u64(1)},
		{Namespace: "default", Key: "b", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Expect: u64(7)},
		{Namespace: "x", Key: "c", Op: ctxd.OpPut, Value: json.RawMessage(`2`)},
	})
	require.ErrorIs(t, err, ctxd.ErrConflict)
	a, _ := s.Get("default", "a")
	assert.JSONEq(t, `1`, string(a.Value), "nothing of a failed txn is applied")
	_, err = s.Get("x", "c")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	assert.Equal(t, uint64(2), s.Revision())

	res, err := s.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "a", Op: ctxd.OpPut, Value: json.RawMessage(`2`), Expect: u64(1), Who: "t"},
		{Namespace: "default", Key: "b", Op: ctxd.OpDelete, Expect: u64(1), Who: "t"},
		{Namespace: "x", Key: "c", Op: ctxd.OpPut, Value: json.RawMessage(`"new"`), Expect: u64(0), Who: "t"},
	})
	require.NoError(t, err)
	assert.Equal(t, uint64(5), res.Revision)
	require.Len(t, res.Records, 3)
	assert.Equal(t, []uint64{3, 4, 5}, []uint64{res.Records[0].ModRev, res.Records[1].ModRev, res.Records[2].ModRev})
	_, err = s.Get("default", "b")
	assert.ErrorIs(t, err, ctxd.ErrNotFound)

	// A delete of a missing key fails the whole transaction too.
	_, err = s.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "a", Op: ctxd.OpPut, Value: json.RawMessage(`3`)},
		{Namespace: "default", Key: "b", Op: ctxd.OpDelete},
	})
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	assert.Equal(t, uint64(5), s.Revision())
}

func TestBadInputIsRefusedAndWritesNothing(t *testing.T) {
	s := openStore(t, bolt.Options{Limits: ctxd.Limits{MaxKeyBytes: 16, MaxValueBytes: 32, MaxTxnOps: 2}})
	put := func(ns, key, value string) error {
		_, err := s.Put(ctx, ns, key, json.RawMessage(value), nil, "t")
		return err
	}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"empty key", put("default", "", `1`), ctxd.ErrInvalid},
		{"key too long", put("default", strings.Repeat("k", 17), `1`), ctxd.ErrTooLarge},
		{"control character", put("default", "a\x01b", `1`), ctxd.ErrInvalid},
		{"newline", put("default", "a\nb", `1`), ctxd.ErrInvalid},
		{"NUL", put("default", "a\x00b", `1`), ctxd.ErrInvalid},
		{"C1 control", put("default", "a\u0085b", `1`), ctxd.ErrInvalid},
		{"invalid UTF-8", put("default", "a\xffb", `1`), ctxd.ErrInvalid},
		{"value not JSON", put("default", "k", `{nope`), ctxd.ErrInvalid},
		{"two JSON values", put("default", "k", `1 2`), ctxd.ErrInvalid},
		{"empty value", put("default", "k", ``), ctxd.ErrInvalid},
		{"value too large", put("default", "k", `"`+strings.Repeat("v", 40)+`"`), ctxd.ErrTooLarge},
		{"empty namespace", put("", "k", `1`), ctxd.ErrInvalid},
		{"bad namespace", put("bad ns!", "k", `1`), ctxd.ErrInvalid},
		{"namespace slash", put("a/b", "k", `1`), ctxd.ErrInvalid},
		{"namespace too long", put(strings.Repeat("n", 65), "k", `1`), ctxd.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { assert.ErrorIs(t, c.err, c.want) })
	}
	_, err := s.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "a", Op: ctxd.OpPut, Value: json.RawMessage(`1`)},
		{Namespace: "default", Key: "b", Op: ctxd.OpPut, Value: json.RawMessage(`1`)},
		{Namespace: "default", Key: "c", Op: ctxd.OpPut, Value: json.RawMessage(`1`)},
	})
	assert.ErrorIs(t, err, ctxd.ErrTooLarge, "too many ops")
	_, err = s.Txn(ctx, []ctxd.Write{
		{Namespace: "default", Key: "a", Op: ctxd.OpPut, Value: json.RawMessage(`1`)},
		{Namespace: "default", Key: "a", Op: ctxd.OpDelete},
	})
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "duplicate key")
	_, err = s.Txn(ctx, nil)
	assert.ErrorIs(t, err, ctxd.ErrInvalid, "empty txn")

	_, err = s.Get("default", "")
	assert.ErrorIs(t, err, ctxd.ErrInvalid)
	_, err = s.List("bad ns!", ctxd.ListOptions{})
	assert.ErrorIs(t, err, ctxd.ErrInvalid)

	assert.Equal(t, uint64(0), s.Revision(), "no bad input was written")
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, uint64(0), st.Keys)
}

func TestListPrefixCursorAndLimit(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := 0; i < 25; i++ {
		s.put("default", fmt.Sprintf("app/%02d", i), `1`)
	}
	s.put("default", "apple", `1`)
	s.put("default", "zzz", `1`)

	var keys []string
	after := ""
	pages := 0
	for {
		p, err := s.List("default", ctxd.ListOptions{Prefix: "app/", After: after, Limit: 10})
		require.NoError(t, err)
		pages++
		for _, r := range p.Records {
			keys = append(keys, r.Key)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	assert.Equal(t, 3, pages)
	require.Len(t, keys, 25)
	assert.Equal(t, "app/00", keys[0])
	assert.Equal(t, "app/24", keys[24])

	all, err := s.List("default", ctxd.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, all.Records, 27)
	assert.Empty(t, all.Next)

	exact, err := s.List("default", ctxd.ListOptions{Limit: 27})
	require.NoError(t, err)
	assert.Len(t, exact.Records, 27)
	assert.Empty(t, exact.Next, "no next cursor when the page ends exactly at the last key")

	none, err := s.List("nope", ctxd.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, none.Records)
}

func TestHistoryPagesNewestFirst(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := 1; i <= 7; i++ {
		s.put("default", "k", fmt.Sprint(i))
		s.put("default", "k2", fmt.Sprint(i)) // interleaved with another key
	}
	var values []string
	var before uint64
	for {
		p, err := s.History("default", "k", ctxd.HistoryOptions{Before: before, Limit: 3})
		require.NoError(t, err)
		for _, c := range p.Changes {
			assert.Equal(t, "k", c.Key)
			values = append(values, string(c.Value))
		}
		if p.Next == 0 {
			break
		}
		before = p.Next
	}
	assert.Equal(t, []string{"7", "6", "5", "4", "3", "2", "1"}, values)

	_, err := s.History("default", "never", ctxd.HistoryOptions{})
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
}

func TestPointInTimeReads(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `"a"`)                      // rev 1
	s.put("default", "x", `0`)                        // rev 2
	s.put("default", "k", `"b"`)                      // rev 3
	_, err := s.Delete(ctx, "default", "k", nil, "t") // rev 4
	require.NoError(t, err)
	s.put("default", "k", `"c"`) // rev 5

	for rev, want := range map[uint64]string{1: `"a"`, 2: `"a"`, 3: `"b"`, 5: `"c"`} {
		r, err := s.GetAt("default", "k", rev)
		require.NoError(t, err, "rev %d", rev)
		assert.Equal(t, want, string(r.Value), "rev %d", rev)
	}
	_, err = s.GetAt("default", "k", 4)
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "deleted at rev 4")
	_, err = s.GetAt("default", "x", 1)
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "x did not exist yet")
	_, err = s.GetAt("default", "k", 6)
	assert.ErrorIs(t, err, ctxd.ErrFutureRevision)
	_, err = s.GetAt("default", "k", 0)
	assert.ErrorIs(t, err, ctxd.ErrInvalid)
}

func TestCompaction(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)                           // 1
	s.put("default", "gone", `1`)                        // 2
	s.put("default", "k", `2`)                           // 3
	_, err := s.Delete(ctx, "default", "gone", nil, "t") // 4
	require.NoError(t, err)
	s.put("default", "stable", `"s"`) // 5
	s.put("default", "k", `3`)        // 6

	require.NoError(t, s.Compact(ctx, 5))
	_, err = s.GetAt("default", "k", 4)
	var ce *ctxd.CompactedError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, uint64(5), ce.Compacted)
	assert.ErrorIs(t, err, ctxd.ErrCompacted)

	r, err := s.GetAt("default", "k", 5)
	require.NoError(t, err, "the change in effect at the compaction revision is kept")
	assert.Equal(t, `2`, string(r.Value))
	_, err = s.GetAt("default", "gone", 5)
	assert.ErrorIs(t, err, ctxd.ErrNotFound)

	h, err := s.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, h.Changes, 2)
	assert.Equal(t, uint64(6), h.Changes[0].Revision)
	assert.Equal(t, uint64(3), h.Changes[1].Revision)

	_, err = s.ReadLog(2, 10)
	assert.ErrorIs(t, err, ctxd.ErrCompacted)
	changes, err := s.ReadLog(4, 10)
	require.NoError(t, err)
	require.Len(t, changes, 2)
	assert.Equal(t, uint64(5), changes[0].Revision)

	assert.ErrorIs(t, s.Compact(ctx, 99), ctxd.ErrFutureRevision)
	s.reopen()
	_, err = s.GetAt("default", "k", 4)
	assert.ErrorIs(t, err, ctxd.ErrCompacted, "the compaction mark survives a restart")
	r, err = s.Get("default", "stable")
	require.NoError(t, err)
	assert.Equal(t, `"s"`, string(r.Value))
}

func TestRestartKeepsEverything(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "a", `1`)
	s.put("default", "a", `{"x":2}`)
	s.put("team", "b/c", `"v"`)
	_, err := s.Delete(ctx, "team", "b/c", nil, "t")
	require.NoError(t, err)
	s.put("team", "d", `true`)
	before, err := s.Status()
	require.NoError(t, err)

	s.reopen()

	assert.Equal(t, uint64(5), s.Revision())
	a, err := s.Get("default", "a")
	require.NoError(t, err)
	assert.Equal(t, `{"x":2}`, string(a.Value))
	assert.Equal(t, uint64(2), a.Version)
	h, err := s.History("default", "a", ctxd.HistoryOptions{})
	require.NoError(t, err)
	assert.Len(t, h.Changes, 2)
	after, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, before.Keys, after.Keys)
	assert.Equal(t, uint64(2), after.Keys)
	ns, err := s.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 1}, {Name: "team", Keys: 1}}, ns)

	r := s.put("default", "a", `3`)
	assert.Equal(t, uint64(6), r.ModRev, "revisions continue after a restart, never reused")
	assert.Equal(t, uint64(3), r.Version)
}

func TestNamespacesDefaultAlwaysExists(t *testing.T) {
	s := openStore(t, bolt.Options{})
	ns, err := s.Namespaces()
	require.NoError(t, err)
	assert.Equal(t, []ctxd.Namespace{{Name: "default", Keys: 0}}, ns)
}

func TestConcurrentWritersShareCommitsAndLoseNothing(t *testing.T) {
	s := openStore(t, bolt.Options{})
	const writers, each = 32, 50
	var wg sync.WaitGroup
	revs := make(chan uint64, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r, err := s.Put(ctx, "default", fmt.Sprintf("w%d/%d", w, i), json.RawMessage(fmt.Sprint(i)), nil, "t")
				if !assert.NoError(t, err) {
					return
				}
				revs <- r.ModRev
			}
		}()
	}
	wg.Wait()
	close(revs)
	seen := map[uint64]bool{}
	for r := range revs {
		assert.False(t, seen[r], "revision %d given twice", r)
		seen[r] = true
	}
	assert.Len(t, seen, writers*each)
	assert.Equal(t, uint64(writers*each), s.Revision())
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, uint64(writers*each), st.Keys)
}

func TestConcurrentCASIncrementsAreExact(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "counter", `0`)
	const workers, incs = 16, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < incs; {
				r, err := s.Get("default", "counter")
				if !assert.NoError(t, err) {
					return
				}
				var n int
				require.NoError(t, json.Unmarshal(r.Value, &n))
				_, err = s.Put(ctx, "default", "counter", json.RawMessage(fmt.Sprint(n+1)), u64(r.Version), "t")
				if errors.Is(err, ctxd.ErrConflict) {
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				done++
			}
		}()
	}
	wg.Wait()
	r, err := s.Get("default", "counter")
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprint(workers*incs), string(r.Value))
	assert.Equal(t, uint64(workers*incs+1), r.Version)
	t.Logf("%d conflicts", conflicts)
}

// A conflicting request grouped into the same commit as valid ones fails
// alone. Requests are queued before the writer can take any, by holding
// bbolt's write lock through a slow compaction-free path: we simply fire
// many goroutines at once and check every outcome individually.
func TestOneBadRequestDoesNotFailItsGroup(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "cas", `0`)
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i%2 == 0 {
				_, errs[i] = s.Put(ctx, "default", "cas", json.RawMessage(`1`), u64(99), "t") // always conflicts
			} else {
				_, errs[i] = s.Put(ctx, "default", fmt.Sprintf("ok%d", i), json.RawMessage(`1`), nil, "t")
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 {
			assert.ErrorIs(t, err, ctxd.ErrConflict)
		} else {
			assert.NoError(t, err)
		}
	}
	assert.Equal(t, uint64(1+n/2), s.Revision())
}

func TestCommittedMarkAndReadLog(t *testing.T) {
	s := openStore(t, bolt.Options{})
	rev, changed := s.Committed()
	assert.Equal(t, uint64(0), rev)
	s.put("default", "a", `1`)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("commit did not close the changed channel")
	}
	rev, _ = s.Committed()
	assert.Equal(t, uint64(1), rev)
	s.put("default", "b", `2`)
	_, err := s.Delete(ctx, "default", "a", nil, "t")
	require.NoError(t, err)

	log, err := s.ReadLog(0, 100)
	require.NoError(t, err)
	require.Len(t, log, 3)
	for i, c := range log {
		assert.Equal(t, uint64(i+1), c.Revision)
	}
	assert.Equal(t, ctxd.OpDelete, log[2].Op)
	assert.Nil(t, log[2].Value)
	page, err := s.ReadLog(1, 1)
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, "b", page[0].Key)
	none, err := s.ReadLog(3, 10)
	require.NoError(t, err)
	assert.Empty(t, none)
}

func TestClosedStoreRefusesWork(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "a", `1`)
	require.NoError(t, s.Close())
	_, err := s.Put(ctx, "default", "a", json.RawMessage(`2`), nil, "t")
	assert.ErrorIs(t, err, ctxd.ErrClosed)
	_, err = s.Get("default", "a")
	assert.ErrorIs(t, err, ctxd.ErrClosed)
	s.open() // so the cleanup's check has an open store
	a, err := s.Get("default", "a")
	require.NoError(t, err)
	assert.Equal(t, `1`, string(a.Value))
}

func TestHistoryOfUnknownKeyIsNotFoundWithAnyCursor(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)
	_, err := s.History("default", "other", ctxd.HistoryOptions{Before: 5})
	assert.ErrorIs(t, err, ctxd.ErrNotFound)
	p, err := s.History("default", "k", ctxd.HistoryOptions{Before: 1})
	require.NoError(t, err, "past the oldest change of a known key: an empty page")
	assert.Empty(t, p.Changes)
}

func TestPrevRevisionPointsAtTheValueReplaced(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)                        // 1
	s.put("default", "k", `2`)                        // 2
	_, err := s.Delete(ctx, "default", "k", nil, "t") // 3
	require.NoError(t, err)
	s.put("default", "k", `3`) // 4
	h, err := s.History("default", "k", ctxd.HistoryOptions{})
	require.NoError(t, err)
	var prev []uint64
	for _, c := range h.Changes {
		prev = append(prev, c.PrevRev)
	}
	assert.Equal(t, []uint64{0, 2, 1, 0}, prev, "recreate: none; delete: the value removed; update: the put before")
}
