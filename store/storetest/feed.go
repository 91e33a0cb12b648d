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

	b.put("default", "a", `1`)
	waitClosed(t, changed, "after a put")
	rev, changed = b.Committed()
	assert.Equal(t, uint64(1), rev)

	_, err := b.Txn(t.Context(), []ctxd.Write{put("default", "b", `1`), put("default", "c", `1`), del("default", "a")})
	require.NoError(t, err)
	waitClosed(t, changed, "after a transaction")
	rev, _ = b.Committed()
	assert.Equal(t, uint64(4), rev, "a transaction raises the mark by its writes")
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
	for i := range writes {
		b.put("default", fmt.Sprintf("f%02d", i), fmt.Sprint(i))
	}
	wg.Wait()
	assert.Equal(t, span(rev+1, rev+writes), <-got, "the follower saw every change once, in order")
}

// ReadLog returns changes after a revision in order, without gaps, page by
// page, the same after a restart.
func checkReadLog(t testing.TB, h Harness) {
	b := open(t, h, Config{})
	ctx := t.Context()
	b.put("default", "a", `1`)                                                       // 1
	b.put("default", "a", `2`)                                                       // 2
	_, err := b.Txn(ctx, []ctxd.Write{put("team", "b", `"x"`), del("default", "a")}) // 3, 4
	require.NoError(t, err)
	b.put("default", "a", `3`) // 5

	log, err := b.ReadLog(0, 100)
	require.NoError(t, err)
	require.Equal(t, span(1, 5), revisions(log), "every change, in order, no gap")
	var got []string
	for _, c := range log {
		got = append(got, fmt.Sprintf("@%d %s %s/%s=%s v%d prev@%d", c.Revision, c.Op, c.Namespace, c.Key, c.Value, c.Version, c.PrevRev))
	}
	assert.Equal(t, []string{
		"@1 put default/a=1 v1 prev@0",
		"@2 put default/a=2 v2 prev@1",
		"@3 put team/b=\"x\" v1 prev@0",
		"@4 delete default/a= v2 prev@2",
		"@5 put default/a=3 v1 prev@0",
	}, got)
	assert.Nil(t, log[3].Value, "a delete has no value")

	for _, limit := range []int{1, 2, 3, 5} {
		var paged []ctxd.Change
		for after := uint64(0); ; {
			page, err := b.ReadLog(after, limit)
			require.NoError(t, err)
			assert.LessOrEqual(t, len(page), limit)
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1].Revision
		}
		assert.Equal(t, changeLines(log), changeLines(paged), "pages of %d", limit)
	}
	mid, err := b.ReadLog(2, 2)
	require.NoError(t, err)
	assert.Equal(t, []uint64{3, 4}, revisions(mid), "strictly after the given revision")
	end, err := b.ReadLog(5, 10)
	require.NoError(t, err)
	assert.Empty(t, end, "nothing after the last revision")

	b.restart()
	assert.Equal(t, changeLines(log), changeLines(b.log(0)), "the log survives a restart")
	b.put("default", "after-restart", `1`)
	next, err := b.ReadLog(5, 10)
	require.NoError(t, err)
	if assert.Len(t, next, 1) {
		assert.Equal(t, uint64(6), next[0].Revision, "a follower resumes across a restart without a gap")
		assert.Equal(t, "after-restart", next[0].Key)
	}
}
