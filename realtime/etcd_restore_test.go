package realtime_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/etcd"
)

// A full restore into etcd from a snapshot taken on the bolt backend,
// with two ctxd instances on the prefix, a watcher on each and a writer
// writing through the other instance meanwhile: each watcher gets the
// changes before the restore, then exactly one "reset" at the restore's
// revision, then only changes above it. The data is the snapshot's on
// both instances, and no write acknowledged after the switch was lost in
// the replaced generation.
func TestEtcdFullRestoreResetsWatchersOfEveryInstance(t *testing.T) {
	ctx := context.Background()
	src := testkit.OpenBolt(t, bolt.Options{})
	for i := range 5 {
		_, err := src.Put(ctx, "default", "snap"+strconv.Itoa(i), json.RawMessage(strconv.Itoa(i*10)), nil, "bolt")
		require.NoError(t, err)
	}
	path, _ := testkit.WriteSnapshot(t, src)

	a, b := openEtcd(t, etcdkit.Name(t)), openEtcd(t, etcdkit.Name(t))
	watch := func(st *etcd.Store) *testkit.WS {
		ws := testkit.DialWatch(t, watchServer(t, st)(url.Values{}), nil)
		ws.Expect(ctxd.TypeSubscribed)
		return ws
	}
	watchers := []*testkit.WS{watch(a), watch(b)}
	_, err := a.Put(ctx, "default", "replaced", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)

	// The writer writes through b until it has 3 writes acknowledged
	// after the restore.
	var restoredAt atomic.Uint64
	type ack struct {
		key string
		rev uint64
		val int
	}
	var acks []ack
	var wg sync.WaitGroup
	wg.Go(func() {
		after := 0
		for i := 0; after < 3; i++ {
			key := "w" + strconv.Itoa(i%4)
			// Bounded: a write lost in a replaced generation would wait
			// for its revision on the feed forever.
			wctx, cancel := context.WithTimeout(ctx, testkit.Deadline)
			r, err := b.Put(wctx, "default", key, json.RawMessage(strconv.Itoa(i)), nil, "writer")
			cancel()
			if !assert.NoError(t, err) {
				return
			}
			acks = append(acks, ack{key, r.ModRev, i})
			if at := restoredAt.Load(); at > 0 && r.ModRev > at {
				after++
			}
		}
	})
	res, err := a.Restore(ctx, path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	restoredAt.Store(res.Revision)
	wg.Wait()
	assert.NotEqual(t, uint64(0), a.Generation())
	assert.Equal(t, a.Generation(), b.Generation(), "both instances are on the new generation")
	last, err := a.Put(ctx, "default", "last", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)

	for i, ws := range watchers {
		resets := 0
		var prev uint64
		for {
			m := ws.Next()
			if m.Type == ctxd.TypeReset {
				resets++
				assert.Equal(t, res.Revision, m.Rev, "watcher %d: the reset names the restore's revision", i)
				prev = m.Rev
				continue
			}
			require.Equal(t, ctxd.TypeContextUpdated, m.Type, "watcher %d: %+v", i, m)
			if resets == 0 {
				assert.Less(t, m.Rev, res.Revision, "watcher %d: a change before the reset is older than the restore", i)
			} else {
				assert.Greater(t, m.Rev, prev, "watcher %d: after the reset, only newer changes, in order", i)
				prev = m.Rev
			}
			if m.Key == "last" {
				break
			}
		}
		assert.Equal(t, 1, resets, "watcher %d sees the restore as one reset", i)
	}

	latest := map[string]ack{}
	for _, w := range acks {
		latest[w.key] = w
	}
	for _, st := range []*etcd.Store{a, b} {
		for i := range 5 {
			r, err := st.Get("default", "snap"+strconv.Itoa(i))
			require.NoError(t, err)
			assert.Equal(t, strconv.Itoa(i*10), string(r.Value))
			assert.Equal(t, "bolt", r.Who)
			assert.Equal(t, uint64(1), r.Version)
		}
		_, err := st.Get("default", "replaced")
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "the replaced generation's key")
		for key, w := range latest {
			if w.rev < res.Revision {
				continue
			}
			r, err := st.Get("default", key)
			if assert.NoError(t, err, "%s, acknowledged at %d after the restore at %d", key, w.rev, res.Revision) {
				assert.Equal(t, strconv.Itoa(w.val), string(r.Value), key)
			}
		}
		_, err = st.GetAt("default", "snap0", last.ModRev)
		assert.NoError(t, err)
	}
}

// generationAfter is the real etcd store whose Generation first runs
// before, when set: the hub's loop takes the committed mark and then
// looks at the generation, so what before does lands between the two.
type generationAfter struct {
	*etcd.Store
	before atomic.Pointer[func()]
}

func (s *generationAfter) Generation() uint64 {
	if f := s.before.Load(); f != nil {
		(*f)()
	}
	return s.Store.Generation()
}

// A full restore whose switch lands between the hub's look at the
// committed mark and its look at the generation (woken by a write just
// before the restore) resets the hub's clients once, at the restore's
// revision, and they get the changes after it. Before, the hub reset
// them at the mark taken before the switch, and its next read of the log
// there, below the switch in the restored generation, closed them with
// "compacted".
func TestEtcdRestoreBetweenTheHubsMarkAndGenerationResetsAtTheSwitch(t *testing.T) {
	ctx := context.Background()
	name := etcdkit.Name(t)
	a, b := openEtcd(t, name), openEtcd(t, name)
	_, err := a.Put(ctx, "default", "k", json.RawMessage(`"restored"`), nil, "t")
	require.NoError(t, err)
	path, _ := testkit.WriteSnapshot(t, a)
	held := &generationAfter{Store: b}
	_, wsURL := etcdHub(t, held, realtime.Options{}, 0)
	ws := testkit.DialWatch(t, wsURL(url.Values{}), nil)
	ws.Expect(ctxd.TypeSubscribed)

	replaced := b.Generation()
	var (
		once       sync.Once
		res        ctxd.RestoreResult
		restoreErr error
	)
	restore := func() {
		once.Do(func() {
			res, restoreErr = a.Restore(ctx, path, ctxd.RestoreOptions{})
			// Until b's feed has followed the switch (its watch).
			for {
				_, changed := b.Committed()
				if b.Generation() != replaced {
					return
				}
				select {
				case <-changed:
				case <-time.After(testkit.Deadline):
					return
				}
			}
		})
	}
	held.before.Store(&restore)
	// The write wakes b's hub, which takes the mark at it and then looks
	// at the generation: the restore comes in between.
	_, err = a.Put(ctx, "default", "k", json.RawMessage(`"replaced"`), nil, "t")
	require.NoError(t, err)

	m := ws.Next()
	require.NoError(t, restoreErr)
	require.NotEqual(t, replaced, b.Generation(), "b followed the restore")
	require.Equal(t, ctxd.TypeReset, m.Type, "%+v", m)
	assert.Equal(t, res.Revision, m.Rev, "the reset names the restore's revision")
	after, err := a.Put(ctx, "default", "after", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	m = ws.Next()
	require.Equal(t, ctxd.TypeContextUpdated, m.Type, "the change after the restore, not %+v", m)
	assert.Equal(t, "after", m.Key)
	assert.Equal(t, after.ModRev, m.Rev)
}
