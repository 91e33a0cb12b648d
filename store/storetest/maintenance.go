package storetest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// Defrag, where the backend has it, runs while writes continue and loses
// nothing; where it has not, it answers ctxd.ErrNotSupported.
func checkDefrag(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	// Overwritten and compacted history leaves space to give back.
	value := `"` + strings.Repeat("x", 200) + `"`
	for range 3 {
		var writes []ctxd.Write
		for i := range 200 {
			writes = append(writes, put("default", fmt.Sprintf("big/%03d", i), value))
		}
		_, err := b.Import(ctx, writes)
		require.NoError(t, err)
	}
	_, err := b.CompactKeep(ctx, b.Revision(), 1)
	require.NoError(t, err)
	before, rev := b.state()
	gen := b.Generation()

	if !h.Defrag {
		_, err := b.Defrag(ctx)
		assert.ErrorIs(t, err, ctxd.ErrNotSupported)
		after, afterRev := b.state()
		assert.Equal(t, rev, afterRev)
		assert.Equal(t, before, after, "an unsupported defrag changes nothing")
		return
	}

	var stop atomic.Bool
	acked := make(chan string, 100_000)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("live/%d/%d", w, i)
				if _, err := b.Put(ctx, "default", key, []byte(fmt.Sprint(i)), nil, "w"); !assert.NoError(t, err, "a write during defrag") {
					return
				}
				acked <- key
			}
		})
	}
	res, err := b.Defrag(ctx)
	stop.Store(true)
	wg.Wait()
	close(acked)
	require.NoError(t, err)
	assert.Positive(t, res.SizeBefore)
	assert.Positive(t, res.SizeAfter)
	assert.GreaterOrEqual(t, res.Revision, rev)
	assert.Equal(t, gen, b.Generation(), "a defrag replaces no data: followers need no reset")

	after, _ := b.state()
	for id, line := range before {
		assert.Equal(t, line, after[id], "%s survived the defrag", id)
	}
	n := 0
	for key := range acked {
		_, err := b.Get("default", key)
		assert.NoError(t, err, "acknowledged write %s survived the defrag", key)
		n++
	}
	assert.Len(t, after, len(before)+n, "nothing else appeared")
	assert.Equal(t, span(rev+1, b.Revision()), revisions(b.log(rev)), "the log after the defrag has no gap")
	assert.NoError(t, b.CheckRevision(rev), "history at the compaction mark is still exact")

	b.restart()
	restarted, _ := b.state()
	assert.Equal(t, after, restarted, "the defragmented data survives a restart")
}

// Ready is nil while the backend serves.
func checkReady(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	assert.NoError(t, b.Ready(), "a new backend")
	b.put("default", "a", `1`)
	b.put("default", "a", `2`)
	assert.NoError(t, b.Ready(), "after writes")
	_, err := b.CompactKeep(t.Context(), 2, 1)
	require.NoError(t, err)
	assert.NoError(t, b.Ready(), "after a compaction")
	if h.Snapshots {
		_, err = b.WriteSnapshot(io.Discard)
		require.NoError(t, err)
		assert.NoError(t, b.Ready(), "after a snapshot")
	}
	b.restart()
	assert.NoError(t, b.Ready(), "after a restart")
}

// A closed backend refuses writes and reads with ctxd.ErrClosed or an
// error matching ctxd.ErrUnavailable (both answer 503), applies nothing,
// and Close answers the same every time.
func checkClosed(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	first := b.put("default", "a", `1`)
	require.NoError(t, b.Close())
	assert.NoError(t, b.Close(), "a second Close answers what the first did")

	_, err := b.Put(ctx, "default", "a", []byte(`2`), nil, "t")
	assertRefused(t, err, "Put")
	_, err = b.Delete(ctx, "default", "a", nil, "t")
	assertRefused(t, err, "Delete")
	_, err = b.Txn(ctx, []ctxd.Write{put("default", "b", `1`)})
	assertRefused(t, err, "Txn")
	_, err = b.Import(ctx, []ctxd.Write{put("default", "c", `1`)})
	assertRefused(t, err, "Import")

	_, err = b.Get("default", "a")
	assertRefused(t, err, "Get")
	_, err = b.GetAt("default", "a", 1)
	assertRefused(t, err, "GetAt")
	_, err = b.List("default", ctxd.ListOptions{})
	assertRefused(t, err, "List")
	_, err = b.History("default", "a", ctxd.HistoryOptions{})
	assertRefused(t, err, "History")
	_, err = b.Namespaces()
	assertRefused(t, err, "Namespaces")
	_, err = b.Status()
	assertRefused(t, err, "Status")
	_, err = b.ReadLog(0, 10)
	assertRefused(t, err, "ReadLog")
	assertRefused(t, b.CheckRevision(1), "CheckRevision")
	assertRefused(t, b.View(func(store.View) error { return nil }), "View")
	_, err = b.WriteSnapshot(io.Discard)
	assertRefused(t, err, "WriteSnapshot")
	_, err = b.CompactKeep(ctx, 1, 1)
	assertRefused(t, err, "CompactKeep")
	_, err = b.ApplyRetention(ctx, store.RetentionPolicy{KeepVersions: 1})
	assertRefused(t, err, "ApplyRetention")
	assertRefused(t, b.Ready(), "Ready")

	b.restart()
	assert.Equal(t, first.ModRev, b.Revision(), "nothing refused was applied")
	assert.Equal(t, `1`, b.value("default", "a"))
	for _, key := range []string{"b", "c"} {
		_, err := b.Get("default", key)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, key)
	}
}

// Close waits for every write it accepted: a write acknowledged before or
// during Close is there after a restart, and a write refused by Close is
// not (a write whose outcome is unknown may be either).
func checkCloseCommitsAcceptedWrites(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	var mu sync.Mutex
	var acked, refused, unknown []string
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d/%d", w, i)
				_, err := b.Put(t.Context(), "default", key, []byte(fmt.Sprint(i)), nil, "t")
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, key)
				case errors.Is(err, ctxd.ErrOutcomeUnknown):
					unknown = append(unknown, key)
				case errors.Is(err, ctxd.ErrClosed) || errors.Is(err, ctxd.ErrUnavailable):
					refused = append(refused, key)
				default:
					t.Errorf("write %s while closing: %v", key, err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	for rev, changed := b.Committed(); rev < 40; rev, changed = b.Committed() {
		waitClosed(t, changed, "writers are writing")
	}
	closeErr := b.Close()
	wg.Wait()
	require.NoError(t, closeErr)
	assert.Equal(t, 8, len(refused)+len(unknown), "every writer was stopped by the close")

	b.restart()
	for _, key := range acked {
		_, err := b.Get("default", key)
		assert.NoError(t, err, "acknowledged write %s", key)
	}
	for _, key := range refused {
		_, err := b.Get("default", key)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "refused write %s was not applied", key)
	}
	applied := len(acked)
	for _, key := range unknown {
		if _, err := b.Get("default", key); err == nil {
			applied++
		}
	}
	assert.Len(t, b.log(0), applied, "every change in the log is a write that applied")
	if !b.perTxn() {
		assert.Equal(t, uint64(applied), b.Revision(), "every revision is a write that applied")
	}
}
