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
	feed := followFeed(t, s) // from the instance's start
	w := &writes{s: s}

	// Before: the fills failed, and the watch runs without the cache.
	testkit.Eventually(t, func() bool { return failed() >= 3 }, "the first fills failed")
	for i := range 5 {
		require.NoError(t, w.put(i))
	}
	last := w.last()
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
	stopWriter := w.keepWriting(t, 5)
	defer stopWriter() // should the test fail first
	testkit.Eventually(t, func() bool { return failed() >= 5 }, "two more fills tried after the back-off")
	assert.Len(t, toldNow(), 1, "told once that the fills failed")
	assert.False(t, s.ReadCache().Ready)
	stopFailing()
	testkit.Eventually(t, func() bool { return s.ReadCache().Ready }, "the cache filled again")
	w.waitFor(t, 20)
	stopWriter()

	// After: the cache serves, and the feed holds every write once.
	for i := 0; i < 5; i++ {
		require.NoError(t, w.put(1000+i))
	}
	last = w.last()
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
	t.Logf("%d writes, %d fills failed", len(w.all()), failed())
	feed.holdsEachOnce(t, w.all())
}

// A read that moves an instance to a full restore's switch before the
// instance's watch delivers it swaps the generation first and
// invalidates the cache after: held in between (AfterGenerationSwap)
// while the watch delivers the switch, fills the cache and watches on
// past it, its invalidation comes while that watch runs. The watch then
// ends and fills the cache again, and the feed, whose watch resumes from
// the mark, delivers every change once, in order, across it. Before, the
// watch, past the switch, went on with the cache invalidated: every read
// went to etcd (hits stayed 0) until the watch ended for another reason,
// in a healthy cluster days later.
func TestACacheInvalidatedWhileTheWatchRunsFillsAgain(t *testing.T) {
	a, c, path := replacedSnapshot(t, false)

	holdWatch, watchHeld, releaseWatch := holdOnce(t)
	atSwitch(c, holdWatch)
	defer etcd.AfterCacheApply(c, nil)
	holdSwap, swapHeld, releaseSwap := holdOnce(t)
	etcd.AfterGenerationSwap(c, holdSwap)
	defer etcd.AfterGenerationSwap(c, nil)
	_, err := a.Restore(context.Background(), path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	<-watchHeld // c's watch right after its cache stopped at the switch

	read := make(chan ctxd.Record, 1)
	go func() {
		defer close(read)
		r, err := c.Get("default", "k")
		if assert.NoError(t, err) {
			read <- r
		}
	}()
	<-swapHeld // the read moved c to the restore's generation; the cache is not invalidated yet
	fills := c.ReadCache().Fills
	releaseWatch()
	testkit.Eventually(t, func() bool { st := c.ReadCache(); return st.Ready && st.Fills > fills },
		"c's watch delivered the switch and filled the cache")
	require.Equal(t, a.Generation(), c.Generation())
	fills = c.ReadCache().Fills

	// Writes go on while the read's invalidation comes and the watch
	// fills the cache again.
	feed := followFeed(t, c)
	w := &writes{s: c}
	stopWriter := w.keepWriting(t, 0)
	defer stopWriter() // should the test fail first
	w.waitFor(t, 10)
	releaseSwap()
	r, ok := <-read
	require.True(t, ok, "the read failed")
	assert.JSONEq(t, `"restored"`, string(r.Value))
	testkit.Eventually(t, func() bool { st := c.ReadCache(); return st.Ready && st.Fills > fills },
		"c's cache, invalidated while its watch ran, is filled again")
	w.waitFor(t, 20)
	stopWriter()

	last := putValue(t, c, "k", `"after"`)
	w.add(last)
	hits := c.ReadCache().Hits
	r, err = c.Get("default", "k")
	require.NoError(t, err)
	assert.Equal(t, last.ModRev, r.ModRev)
	assert.Greater(t, c.ReadCache().Hits, hits, "the cache served the read")
	t.Logf("%d writes", len(w.all()))
	feed.holdsEachOnce(t, w.all())
}

// A put of the generation pointer that names no generation (written
// under the prefix by something other than ctxd) stops the read cache,
// which cannot tell whether the data was replaced, while the watch goes
// on past it: no generation to switch to. The watch then ends and fills
// the cache again, failing (the pointer names no generation) and backing
// off until the pointer is gone, when a fill succeeds. Before, the cache
// stayed unready, every read going to etcd, until the watch ended for
// another reason.
func TestACacheStoppedAtAPointerItCannotParseFillsAgain(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s := open(t, etcd.Options{Prefix: prefix})
	feed := followFeed(t, s)
	w := &writes{s: s}
	for i := range 5 {
		require.NoError(t, w.put(i))
	}
	waitValue(t, s, "k4", `4`)
	require.True(t, s.ReadCache().Ready)
	fills := s.ReadCache().Fills

	cli := etcdClient(t)
	_, err := cli.Put(t.Context(), prefix+"meta/gen", "not a generation")
	require.NoError(t, err)
	testkit.Eventually(t, func() bool { return !s.ReadCache().Ready }, "the cache stopped at the pointer's put")
	_, err = cli.Delete(t.Context(), prefix+"meta/gen")
	require.NoError(t, err)
	testkit.Eventually(t, func() bool { st := s.ReadCache(); return st.Ready && st.Fills > fills },
		"the cache is filled again once the pointer is gone")

	for i := 5; i < 10; i++ {
		require.NoError(t, w.put(i))
	}
	hits := s.ReadCache().Hits
	r, err := s.Get("default", "k9")
	require.NoError(t, err)
	assert.JSONEq(t, `9`, string(r.Value))
	assert.Greater(t, s.ReadCache().Hits, hits, "the cache served the read")
	feed.holdsEachOnce(t, w.all())
}

// writes are the writes a test makes through s, in the order they were
// acknowledged.
type writes struct {
	s    *etcd.Store
	mu   sync.Mutex
	done []ctxd.Record
}

// put writes i at one of ten keys, k0 to k9, in "default".
func (w *writes) put(i int) error {
	r, err := w.s.Put(context.Background(), "default", fmt.Sprint("k", i%10), json.RawMessage(fmt.Sprint(i)), nil, "t")
	if err == nil {
		w.add(r)
	}
	return err
}

func (w *writes) add(r ctxd.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = append(w.done, r)
}

func (w *writes) all() []ctxd.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ctxd.Record(nil), w.done...)
}

func (w *writes) last() ctxd.Record {
	all := w.all()
	return all[len(all)-1]
}

// keepWriting puts from i on, one write after the other, until stop.
func (w *writes) keepWriting(t *testing.T, i int) (stop func()) {
	var stopping atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ; !stopping.Load(); i++ {
			if !assert.NoError(t, w.put(i)) {
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { stopping.Store(true); <-done }) }
}

// waitFor waits until n more writes are acknowledged.
func (w *writes) waitFor(t *testing.T, n int) {
	t.Helper()
	from := len(w.all())
	testkit.Eventually(t, func() bool { return len(w.all()) >= from+n }, fmt.Sprintf("%d more writes", n))
}

// feedFollower reads an instance's feed as the realtime hub does: from
// the mark, woken by each rise of it.
type feedFollower struct {
	s        *etcd.Store
	cancel   context.CancelFunc
	done     chan struct{}
	seen     []ctxd.Change // the follower's until done
	followed atomic.Uint64
}

// followFeed follows s's feed from its mark now until the test ends.
func followFeed(t *testing.T, s *etcd.Store) *feedFollower {
	ctx, cancel := context.WithCancel(t.Context())
	f := &feedFollower{s: s, cancel: cancel, done: make(chan struct{})}
	after := s.Revision()
	f.followed.Store(after)
	go func() {
		defer close(f.done)
		for {
			mark, changed := s.Committed()
			for after < mark {
				page, err := s.ReadLog(after, 100)
				if !assert.NoError(t, err) || !assert.NotEmpty(t, page, "nothing after %d below the mark %d", after, mark) {
					return
				}
				f.seen = append(f.seen, page...)
				after = page[len(page)-1].Revision
				f.followed.Store(after)
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(f.stop)
	return f
}

func (f *feedFollower) stop() {
	f.cancel()
	<-f.done
}

// holdsEachOnce waits until the follower reached the last of written,
// every write made through its instance since it started, and checks
// that it saw each of them once, in order, and nothing else.
func (f *feedFollower) holdsEachOnce(t *testing.T, written []ctxd.Record) {
	t.Helper()
	last := written[len(written)-1].ModRev
	testkit.Eventually(t, func() bool { return f.followed.Load() >= last }, "the follower reached the last write")
	f.stop()
	want := make([]string, len(written))
	for i, r := range written {
		want[i] = fmt.Sprintf("%d %s %s", r.ModRev, r.Key, r.Value)
	}
	got := make([]string, len(f.seen))
	for i, c := range f.seen {
		got[i] = fmt.Sprintf("%d %s %s", c.Revision, c.Key, c.Value)
	}
	assert.Equal(t, want, got, "the feed delivered each write once, in order")
}
