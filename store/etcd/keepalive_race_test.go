package etcd_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// TestKeepAlivesRacingWritesOfTheirKeys: clients of two instances put
// (with a TTL), patch, delete and keep alive a few keys at once, so that
// keepalives race writes of their keys through the cache, etcd reads and
// groups. A keepalive without If-Match answers the key as it is then, or
// not found: never a conflict it did not ask about (which it answered
// when its key moved between its read and its rewrite), never another
// error; a keepalive's answer carries its deadline. At the end both
// instances agree on every key.
func TestKeepAlivesRacingWritesOfTheirKeys(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	stores := []*etcd.Store{open(t, etcd.Options{Prefix: prefix}), open(t, etcd.Options{Prefix: prefix, DirectReads: true})}
	const keys = 6
	var mu sync.Mutex
	answers := map[string]int{}
	end := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 23))
			for time.Now().Before(end) {
				s, key := stores[r.IntN(len(stores))], fmt.Sprint("k", r.IntN(keys))
				var (
					op  string
					err error
				)
				switch n := r.IntN(10); {
				case n < 3:
					op = "put with a ttl"
					_, err = s.Txn(t.Context(), []ctxd.Write{{Namespace: "default", Key: key, Op: ctxd.OpPut, Value: json.RawMessage(`{"n":1}`), Who: "t", TTL: time.Hour}})
				case n < 7:
					op = "keepalive"
					var rec ctxd.Record
					if rec, err = s.KeepAlive(t.Context(), "default", key, time.Hour, nil); err == nil && rec.ExpiresAt.IsZero() {
						err = errors.New("a keepalive answered no deadline")
					}
				case n < 9:
					op = "patch"
					_, err = s.Patch(t.Context(), "default", key, ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(fmt.Sprintf(`{"m":%d}`, r.IntN(100)))}, nil, "t")
				default:
					op = "delete"
					_, err = s.Delete(t.Context(), "default", key, nil, "t")
				}
				answer := "ok"
				switch {
				case errors.Is(err, ctxd.ErrNotFound):
					answer = "not found"
				case err != nil:
					answer = err.Error()
				}
				mu.Lock()
				answers[op+": "+answer]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for a, n := range answers {
		t.Logf("%5d %s", n, a)
	}
	for _, op := range []string{"put with a ttl", "keepalive", "patch", "delete"} {
		assert.Positive(t, answers[op+": ok"], "some %ss applied", op)
	}
	for a, n := range answers {
		switch a {
		case "put with a ttl: ok", "keepalive: ok", "keepalive: not found", "patch: ok", "patch: not found", "delete: ok", "delete: not found":
		default:
			t.Errorf("%d answered %s", n, a)
		}
	}
	for i := range keys {
		key := fmt.Sprint("k", i)
		a, errA := stores[0].Get("default", key)
		b, errB := stores[1].Get("default", key)
		require.Equal(t, errA == nil, errB == nil, "%s: %v / %v", key, errA, errB)
		assert.Equal(t, a, b, key)
	}
}

// TestKeepAliveAfterAFullRestoreThroughAnotherInstance: a keepalive sent
// to an instance right after another instance's full restore renews the
// restored key (which comes back with its deadline, on a lease of its
// own), whether or not the instance had seen the switch yet.
func TestKeepAliveAfterAFullRestoreThroughAnotherInstance(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	s, other := open(t, etcd.Options{Prefix: prefix}), open(t, etcd.Options{Prefix: prefix})
	first := putTTL(t, s, "hb", `1`, time.Hour)
	path, _ := testkit.WriteSnapshot(t, s)
	_, err := s.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
	require.NoError(t, err)
	_, err = other.Restore(t.Context(), path, ctxd.RestoreOptions{})
	require.NoError(t, err)
	k, err := s.KeepAlive(t.Context(), "default", "hb", time.Hour, nil)
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(k.Value))
	assert.True(t, k.ExpiresAt.After(first.ExpiresAt), "renewed")
	r, err := other.Get("default", "hb")
	require.NoError(t, err)
	assert.Equal(t, k.ExpiresAt, r.ExpiresAt, "the restored key's deadline moved")
	assert.Equal(t, other.Generation(), s.Generation())
}
