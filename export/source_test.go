package export_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// AtRevision answers, at every revision, what GetAt answers for every key:
// across updates, deletes, re-creates, other namespaces, and compaction.
func TestAtRevision(t *testing.T) {
	st := openStore(t, bolt.Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "c", "d/e", "f.g", "h"}
	for i := range 300 {
		ns := "default"
		if i%7 == 0 {
			ns = "other"
		}
		key := keys[rng.IntN(len(keys))]
		if _, err := st.Get(ns, key); err == nil && rng.IntN(3) == 0 {
			del(t, st, ns, key, "w")
			continue
		}
		put(t, st, ns, key, strconv.Itoa(i), "w"+strconv.Itoa(i%3))
	}
	check := func(t *testing.T, from uint64) {
		cur := st.Revision()
		for rev := from; rev <= cur; rev++ {
			require.NoError(t, st.View(func(v store.View) error {
				src, err := export.AtRevision(v, rev)
				require.NoError(t, err)
				assert.Equal(t, rev, src.Revision())
				got := map[string]ctxd.Record{}
				var order []string
				require.NoError(t, src.ForEach("default", "", func(r ctxd.Record) error {
					got[r.Key] = r
					order = append(order, r.Key)
					return nil
				}))
				assert.IsIncreasing(t, order, "key order at revision %d", rev)
				for _, k := range keys {
					want, err := st.GetAt("default", k, rev)
					if errors.Is(err, ctxd.ErrNotFound) {
						assert.NotContains(t, got, k, "%s at revision %d", k, rev)
						continue
					}
					require.NoError(t, err)
					require.Contains(t, got, k, "%s at revision %d", k, rev)
					g := got[k]
					assert.Equal(t, string(want.Value), string(g.Value), "%s at revision %d", k, rev)
					assert.Equal(t, want.Version, g.Version)
					assert.Equal(t, want.ModRev, g.ModRev)
					assert.Equal(t, want.Who, g.Who)
					assert.True(t, want.UpdatedAt.Equal(g.UpdatedAt))
				}
				var last uint64
				require.NoError(t, src.ForEachChange("", func(c ctxd.Change) error {
					last = c.Revision
					return nil
				}))
				assert.LessOrEqual(t, last, rev)
				return nil
			}))
		}
	}
	t.Run("full history", func(t *testing.T) { check(t, 1) })
	require.NoError(t, st.Compact(bg, 150))
	t.Run("after compaction", func(t *testing.T) { check(t, 150) })

	// A dump at an earlier revision records it.
	require.NoError(t, st.View(func(v store.View) error {
		src, err := export.AtRevision(v, 200)
		require.NoError(t, err)
		var buf bytes.Buffer
		res, err := export.Write(&buf, export.JSON, src, export.Options{Namespace: "default"})
		require.NoError(t, err)
		assert.Equal(t, uint64(200), res.Revision)
		assert.Equal(t, uint64(200), decodeStrict[jsonDump](t, buf.Bytes()).Revision)
		return nil
	}))
}

func TestAtRevisionBounds(t *testing.T) {
	st := openStore(t, bolt.Options{})
	put(t, st, "default", "a", `1`, "w")
	require.NoError(t, st.View(func(v store.View) error {
		_, err := export.AtRevision(v, 0)
		require.ErrorIs(t, err, ctxd.ErrInvalid)
		_, err = export.AtRevision(v, 2)
		require.ErrorIs(t, err, ctxd.ErrFutureRevision)
		src, err := export.AtRevision(v, 1)
		require.NoError(t, err)
		assert.Same(t, v, src, "the current revision needs no adapter")
		return nil
	}))
}
