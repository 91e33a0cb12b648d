package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// An instance whose fills of the read cache fail (etcd slow or away)
// watches without its cache, every read going to etcd, and fills it
// again by itself after a back-off while etcd never ends its watch: the
// cache then serves, and the feed, whose watch each retry ends and starts
// again from the mark, delivers every change once, in order, across the
// retries and the refill. The instance says so once when the fills
// failed and once when the cache is filled again. Before, the cache
// stayed unfilled until etcd ended the watch: in a healthy cluster, days.
func TestReadCacheFillsAgainAfterItsFillsFailed(t *testing.T) {
	opts := etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))}
	failed, stopFailing := etcd.FailCacheFills(&opts)
	var toldMu sync.Mutex
	var told []error
	opts.OnReadCacheFill = func(err error) {
		toldMu.Lock()
		defer toldMu.Unlock()
		told = append(told, err)
	}
	toldNow := func() []error {
		toldMu.Lock()
		defer toldMu.Unlock()
		return append([]error(nil), told...)
	}
	s := open(t, opts)

	// The feed's subscriber, from the instance's start.
	ctx, cancel := context.WithCancel(t.Context())
	var seen []ctxd.Change
	var followed atomic.Uint64
	followDone := make(chan struct{})
	go func() {
		defer close(followDone)
		after := s.Revision()
		for {
			mark, changed := s.Committed()
			for after < mark {
				page, err := s.ReadLog(after, 100)
				if !assert.NoError(t, err) || !assert.NotEmpty(t, page, "nothing after %d below the mark %d", after, mark) {
					return
				}
				seen = append(seen, page...)
				after = page[len(page)-1].Revision
				followed.Store(after)
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-followDone }()

	var writtenMu sync.Mutex
	var written []ctxd.Record
	write := func(i int) error {
		r, err := s.Put(context.Background(), "default", fmt.Sprint("k", i%10), json.RawMessage(fmt.Sprint(i)), nil, "t")
		if err == nil {
			writtenMu.Lock()
			written = append(written, r)
			writtenMu.Unlock()
		}
		return err
	}

	// Before: the fills failed, and the watch runs without the cache.
	testkit.Eventually(t, func() bool { return failed() >= 3 }, "the first fills failed")
	for i := range 5 {
		require.NoError(t, write(i))
	}
	last := written[len(written)-1]
	testkit.Eventually(t, func() bool { return s.Revision() >= last.ModRev }, "the watch delivered the writes")
	r, err := s.Get("default", "k4")
	require.NoError(t, err)
	assert.JSONEq(t, `4`, string(r.Value))
	st, err := s.Status()
	require.NoError(t, err)
	assert.Equal(t, ctxd.ReadCacheFilling, st.ReadCache.State)
	assert.Zero(t, st.ReadCache.Hits)
	assert.Positive(t, st.ReadCache.Fallbacks, "the read went to etcd")

	// During: writes go on while the back-off ends the watch to fill
	// again (twice, failing), and while the fill succeeds.
	var stopWriting atomic.Bool
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 5; !stopWriting.Load(); i++ {
			if !assert.NoError(t, write(i)) {
				return
			}
		}
	}()
	stopWriter := func() {
		stopWriting.Store(true)
		<-writerDone
	}
	defer stopWriter() // should the test fail first
	testkit.Eventually(t, func() bool { return failed() >= 5 }, "two more fills tried after the back-off")
	assert.Len(t, toldNow(), 1, "told once that the fills failed")
	assert.False(t, s.ReadCache().Ready)
	stopFailing()
	testkit.Eventually(t, func() bool { return s.ReadCache().Ready }, "the cache filled again")
	writtenMu.Lock()
	atReady := len(written)
	writtenMu.Unlock()
	testkit.Eventually(t, func() bool {
		writtenMu.Lock()
		defer writtenMu.Unlock()
		return len(written) >= atReady+20
	}, "writes after the refill")
	stopWriter()

	// After: the cache serves, and the feed holds every write once.
	for i := 0; i < 5; i++ {
		require.NoError(t, write(1000+i))
	}
	last = written[len(written)-1]
	r, err = s.Get("default", last.Key)
	require.NoError(t, err)
	assert.Equal(t, last.ModRev, r.ModRev)
	st, err = s.Status()
	require.NoError(t, err)
	assert.Equal(t, ctxd.ReadCacheReady, st.ReadCache.State)
	assert.Positive(t, st.ReadCache.Hits, "the cache served the read")
	assert.Equal(t, uint64(1), st.ReadCache.Fills, "%+v", st.ReadCache)
	if got := toldNow(); assert.Len(t, got, 2) {
		assert.ErrorIs(t, got[0], ctxd.ErrUnavailable)
		assert.NoError(t, got[1], "told the cache is filled again")
	}

	testkit.Eventually(t, func() bool { return followed.Load() >= last.ModRev }, "the subscriber reached the last write")
	cancel()
	<-followDone
	want := make([]string, len(written))
	for i, r := range written {
		want[i] = fmt.Sprintf("%d %s %s", r.ModRev, r.Key, r.Value)
	}
	got := make([]string, len(seen))
	for i, c := range seen {
		got[i] = fmt.Sprintf("%d %s %s", c.Revision, c.Key, c.Value)
	}
	t.Logf("%d writes, %d fills failed", len(written), failed())
	assert.Equal(t, want, got, "the feed delivered each write once, in order")
}
