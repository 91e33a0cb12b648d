package realtime_test

import (
	"fmt"
	"net/url"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
)

// While no one watches the hub follows no commit, and the first session
// after an idle spell starts its ring over at the mark (DESIGN.md, "Idle").
// A client resuming from before that point must still get every change
// once, in order, from the log, then the live ones; twice, the second time
// after a client came and went. It fails if the changes made while idle
// are lost to the ring's restart.
func TestResumeAfterIdleSpells(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			ts := startServer(t, realtime.Options{})
			write := func(lo, hi int) uint64 {
				var rev uint64
				for i := lo; i <= hi; i++ {
					rev = ts.put("default", "k"+strconv.Itoa(i), strconv.Itoa(i))
				}
				return rev
			}
			resume := func(from uint64) *wsClient {
				q := filter{batch: batch}.query()
				q.Set("from_rev", strconv.FormatUint(from, 10))
				c := testkit.DialWatch(t, ts.wsURL(q), nil)
				c.Expect(ctxd.TypeSubscribed)
				return c
			}

			top := write(1, 20) // idle since start
			c := resume(5)
			checkSeq(t, 6, top, revs(c.Changes(top)), "after the first idle spell")
			live := write(21, 25)
			checkSeq(t, top+1, live, revs(c.Changes(live)), "live")
			require.NoError(t, c.Conn.Close())
			testkit.Eventually(t, func() bool { return ts.hub.Clients() == 0 }, "the client is gone")

			top = write(26, 60) // idle again
			c = resume(22)
			checkSeq(t, 23, top, revs(c.Changes(top)), "after the second idle spell")
			live = write(61, 61)
			checkSeq(t, live, live, revs(c.Changes(live)), "live")

			// A client without from_rev starts at the mark: only what follows.
			plain := testkit.DialWatch(t, ts.wsURL(url.Values{}), nil)
			require.Equal(t, live, plain.Expect(ctxd.TypeSubscribed).Rev)
			next := write(62, 62)
			checkSeq(t, next, next, revs(plain.Changes(next)), "from now")
		})
	}
}
