package storetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// Committed is the feed's mark: it rises with every commit and closes the
// channel handed out before it. A follower that waits on the channel and
// reads the log from the last revision it saw gets every change, in order.
func checkCommittedMark(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	rev, changed := b.Committed()
	assert.Equal(t, uint64(0), rev)
	assert.False(t, isClosed(changed), "nothing committed yet")

	first := b.put("default", "a", `1`)
	waitClosed(t, changed, "after a put")
	rev, changed = b.Committed()
	assert.Equal(t, first.ModRev, rev)

	res, err := b.Txn(t.Context(), []ctxd.Write{put("default", "b", `1`), put("default", "c", `1`), del("default", "a")})
	require.NoError(t, err)
	waitClosed(t, changed, "after a transaction")
	rev, _ = b.Committed()
	assert.Equal(t, res.Revision, rev, "a transaction raises the mark to its last revision")
	assert.Equal(t, b.Revision(), rev)

	// A follower, as the WebSocket hub runs one: wait, then read from the
	// last revision seen until the log is dry.
	const writes = 30
	got := make(chan []uint64, 1)
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var revs []uint64
		seen, changed := b.Committed()
		close(start)
		for len(revs) < writes {
			for {
				page, err := b.ReadLog(seen, 7)
				if !assert.NoError(t, err) {
					got <- revs
					return
				}
				if len(page) == 0 {
					break
				}
				for _, c := range page {
					revs = append(revs, c.Revision)
				}
				seen = page[len(page)-1].Revision
			}
			if len(revs) >= writes {
				break
			}
			<-changed
			_, changed = b.Committed()
		}
		got <- revs
	})
	<-start
	var written []uint64
	for i := range writes {
		written = append(written, b.put("default", fmt.Sprintf("f%02d", i), fmt.Sprint(i)).ModRev)
	}
	wg.Wait()
	assert.Equal(t, written, <-got, "the follower saw every change once, in order")
}

// ReadLog returns changes after a revision in order, without gaps, page by
// page, the same after a restart.
func checkReadLog(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	r1 := b.put("default", "a", `1`).ModRev
	r2 := b.put("default", "a", `2`).ModRev
	res, err := b.Txn(ctx, []ctxd.Write{put("team", "b", `"x"`), del("default", "a")})
	require.NoError(t, err)
	txn := b.txnRevs(res.Revision, 2)
	r5 := b.put("default", "a", `3`).ModRev

	log, err := b.ReadLog(0, 100)
	require.NoError(t, err)
	require.Equal(t, []uint64{r1, r2, txn[0], txn[1], r5}, revisions(log), "every change, in order, no gap")
	var got []string
	for _, c := range log {
		got = append(got, fmt.Sprintf("@%d %s %s/%s=%s v%d prev@%d", c.Revision, c.Op, c.Namespace, c.Key, c.Value, c.Version, c.PrevRev))
	}
	assert.Equal(t, []string{
		fmt.Sprintf("@%d put default/a=1 v1 prev@0", r1),
		fmt.Sprintf("@%d put default/a=2 v2 prev@%d", r2, r1),
		fmt.Sprintf("@%d put team/b=\"x\" v1 prev@0", txn[0]),
		fmt.Sprintf("@%d delete default/a= v2 prev@%d", txn[1], r2),
		fmt.Sprintf("@%d put default/a=3 v1 prev@0", r5),
	}, got)
	assert.Nil(t, log[3].Value, "a delete has no value")

	for _, limit := range []int{1, 2, 3, 5} {
		var paged []ctxd.Change
		for after := uint64(0); ; {
			page, err := b.ReadLog(after, limit)
			require.NoError(t, err)
			if !b.perTxn() {
				assert.LessOrEqual(t, len(page), limit)
			} else if len(page) > limit {
				assert.Equal(t, page[limit-1].Revision, page[len(page)-1].Revision, "a page exceeds its limit only to finish a revision")
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1].Revision
		}
		assert.Equal(t, changeLines(log), changeLines(paged), "pages of %d", limit)
	}
	mid, err := b.ReadLog(r2, 2)
	require.NoError(t, err)
	assert.Equal(t, txn, revisions(mid), "strictly after the given revision")
	one, err := b.ReadLog(r2, 1)
	require.NoError(t, err)
	if b.perTxn() {
		assert.Equal(t, txn, revisions(one), "a page never ends inside a revision: a follower that resumes after it misses nothing")
	} else {
		assert.Equal(t, txn[:1], revisions(one))
	}
	end, err := b.ReadLog(r5, 10)
	require.NoError(t, err)
	assert.Empty(t, end, "nothing after the last revision")

	b.restart()
	assert.Equal(t, changeLines(log), changeLines(b.log(0)), "the log survives a restart")
	r6 := b.put("default", "after-restart", `1`).ModRev
	b.after(r5, r6, "a write after the restart")
	next, err := b.ReadLog(r5, 10)
	require.NoError(t, err)
	if assert.Len(t, next, 1) {
		assert.Equal(t, r6, next[0].Revision, "a follower resumes across a restart without a gap")
		assert.Equal(t, "after-restart", next[0].Key)
	}
}
