package etcd_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// A snapshot or a view (dumps, exports) taken through one instance holds
// every write another instance acknowledged before it, even while the
// first instance's watch is behind: it waits for its watch to reach
// etcd's current revision, not only for its own mark.
func TestSnapshotAndViewHoldWritesOfOtherInstances(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	b := open(t, etcd.Options{Prefix: prefix})
	// b's watch applies each response 50 ms late: its own mark lags.
	etcd.LagReadCache(b, 50*time.Millisecond)
	for i := range 3 {
		w, err := a.Put(context.Background(), "default", "k", json.RawMessage(`1`), nil, "a")
		require.NoError(t, err)

		_, info := testkit.WriteSnapshot(t, b)
		assert.GreaterOrEqual(t, info.Revision, w.ModRev, "round %d: the snapshot holds the write acknowledged before it", i)

		var got ctxd.Record
		require.NoError(t, b.View(func(v store.View) error {
			assert.GreaterOrEqual(t, v.Revision(), w.ModRev, "round %d: the view is at or after the write", i)
			return v.ForEach("default", "k", func(r ctxd.Record) error { got = r; return nil })
		}))
		assert.Equal(t, w.ModRev, got.ModRev, "round %d: the view reads the write", i)
		_, err = a.Delete(context.Background(), "default", "k", nil, "a")
		require.NoError(t, err)
	}
}
