package bolt_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store/bolt"
)

// A write that meets a key whose deadline has passed, before the expirer
// deleted it, meets it gone: the key is expired first (who ctxd:ttl, its
// own revision), then the write applies. A patch in that window made the
// key permanent (its deadline was dropped: a key that never expired). The
// clock jumps past the deadline, so the expirer sleeps on the old
// deadline and every write below lands in the window.
func TestWritesInTheExpiryWindowMeetTheKeyGone(t *testing.T) {
	start := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	var moved atomic.Int64 // what the test moved the store's clock by
	s := openStore(t, bolt.Options{Now: func() time.Time { return start.Add(time.Duration(moved.Load())) }})
	ctx := context.Background()
	put := func(key string) ctxd.Record {
		res, err := s.Txn(ctx, []ctxd.Write{{Namespace: "ns", Key: key, Op: ctxd.OpPut, Value: []byte(`{"a":1}`), TTL: time.Hour, Who: "test"}})
		require.NoError(t, err)
		return res.Records[0]
	}
	for _, k := range []string{"patched", "txn-patched", "kept-alive", "expected", "put", "deleted"} {
		put(k)
	}
	moved.Add(int64(time.Hour + time.Second))

	_, err := s.Patch(ctx, "ns", "patched", ctxd.Patch{Type: ctxd.MergePatch, Doc: []byte(`{"b":2}`)}, nil, "test")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a patch after the deadline")
	_, err = s.Txn(ctx, []ctxd.Write{{Namespace: "ns", Key: "txn-patched", Op: ctxd.OpPatch, Patch: ctxd.Patch{Type: ctxd.MergePatch, Doc: []byte(`{"b":2}`)}, Who: "test"}})
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a patch in a transaction")
	_, err = s.KeepAlive(ctx, "ns", "kept-alive", time.Hour, nil)
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a keepalive")
	_, err = s.Put(ctx, "ns", "expected", []byte(`2`), u64(1), "test")
	var ce *ctxd.ConflictError
	require.ErrorAs(t, err, &ce, "an expected version")
	assert.Equal(t, uint64(0), ce.Current)
	_, err = s.Delete(ctx, "ns", "deleted", nil, "test")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "a delete")
	r, err := s.Put(ctx, "ns", "put", []byte(`2`), nil, "test")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), r.Version, "a put makes the key anew")

	for _, k := range []string{"patched", "txn-patched", "kept-alive", "expected", "deleted"} {
		_, err := s.Get("ns", k)
		assert.ErrorIs(t, err, ctxd.ErrNotFound, "%s is gone, not kept forever", k)
	}
	for _, k := range []string{"patched", "txn-patched", "kept-alive", "expected", "put", "deleted"} {
		h, err := s.History("ns", k, ctxd.HistoryOptions{Limit: 10})
		require.NoError(t, err)
		i := len(h.Changes) - 2 // newest first: the put, then its expiry
		require.GreaterOrEqual(t, i, 0, "%s: %+v", k, h.Changes)
		assert.Equal(t, ctxd.OpDelete, h.Changes[i].Op, k)
		assert.Equal(t, ctxd.WhoTTL, h.Changes[i].Who, "%s: expired, once", k)
		assert.True(t, h.Changes[i].Expired, k)
	}
}
