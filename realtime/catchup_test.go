package realtime_test

import (
	"net/url"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// heldReads is a real store whose catch-up log reads from before below
// wait until release is closed: a read of a far-behind client that takes
// long, as one of etcd's history does (a response per 100 ms), made
// deterministic. held is closed when the first such read begins.
// ResumeFrom's reads (limit 1) are not held, nor reads from 0: the hub's
// own first fill of its ring, on its loop, when the loop first runs while
// the test's puts are under way (holding it held the loop, and the test
// failed as if the catch-up read were on it).
type heldReads struct {
	*bolt.Store
	below         uint64
	held, release chan struct{}
	once          sync.Once
}

func (h *heldReads) ReadLog(after uint64, limit int) ([]ctxd.Change, error) {
	if after > 0 && after < h.below && limit > 1 {
		h.once.Do(func() { close(h.held) })
		<-h.release
	}
	return h.Store.ReadLog(after, limit)
}

// A client far behind is caught up by log reads off the hub's loop: while
// its read takes long, the clients at the head get new changes at once,
// and once the read lands the far one gets every change, in order.
// Negative control: with the read on the loop (before), the live client
// gets nothing until the read ends (its Changes wait fails).
func TestSlowCatchUpReadHoldsNoOneElse(t *testing.T) {
	hr := &heldReads{below: 50, held: make(chan struct{}), release: make(chan struct{})}
	ts := startTestServer(&testServer{t: t, opts: realtime.Options{RingSize: 16}, wrap: func(st *bolt.Store) store.Backend {
		hr.Store = st
		return hr
	}})
	released := false
	t.Cleanup(func() {
		if !released {
			close(hr.release)
		}
	})
	ts.putMany(100, func(i int) (string, string) { return "k" + strconv.Itoa(i), "1" })

	far := testkit.DialWatch(t, ts.wsURL(url.Values{"from_rev": {"1"}}), nil)
	far.Expect(ctxd.TypeSubscribed)
	<-hr.held
	live := testkit.DialWatch(t, ts.wsURL(nil), nil)
	live.Expect(ctxd.TypeSubscribed)
	rev := ts.put("default", "k", "2")
	assert.Equal(t, []uint64{rev}, revs(live.Changes(rev)), "the live client, while the far one's read is held")

	close(hr.release)
	released = true
	got := revs(far.Changes(rev))
	require.Len(t, got, int(rev-1))
	checkSeq(t, 2, rev, got, "the far client's changes")
}
