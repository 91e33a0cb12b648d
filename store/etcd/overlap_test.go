package etcd_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// TestNestedPrefixesRefused: a deployment inside another's prefix, in
// its layout's directories or beside them, and a deployment holding
// another's prefix, opened first or already there, are refused; sibling
// prefixes are not.
func TestNestedPrefixesRefused(t *testing.T) {
	endpoint := etcdkit.Shared(t).Endpoint
	base := etcdkit.Prefix(etcdkit.Name(t))
	refused := func(t *testing.T, prefix, names string) {
		t.Helper()
		st, err := etcd.Open(etcd.Options{Endpoints: []string{endpoint}, Prefix: prefix})
		if err == nil {
			_ = st.Close()
		}
		require.ErrorIs(t, err, etcd.ErrPrefixOverlap)
		require.ErrorContains(t, err, "prefix "+prefix+" ")
		require.ErrorContains(t, err, names)
	}
	put := func(t *testing.T, st *etcd.Store) {
		t.Helper()
		_, err := st.Put(t.Context(), "default", "k", []byte(`1`), nil, "test")
		require.NoError(t, err)
	}

	t.Run("inside an existing deployment", func(t *testing.T) {
		outer := base + "a/"
		put(t, openOn(t, endpoint, outer))
		refused(t, outer+"k/default/", outer)
		refused(t, outer+"staging/", outer)
		refused(t, outer+"g/1/x/", outer)
	})
	t.Run("around an existing deployment", func(t *testing.T) {
		outer := base + "b/"
		put(t, openOn(t, endpoint, outer+"staging/"))
		refused(t, outer, outer+"staging/")
		refused(t, base, base)
	})
	t.Run("a deployment nested later beside the layout", func(t *testing.T) {
		// As a build without the check could have let it.
		outer := base + "c/"
		put(t, openOn(t, endpoint, outer))
		cli := etcdClient(t)
		_, err := cli.Put(t.Context(), outer+"staging/meta/born", "")
		require.NoError(t, err)
		refused(t, outer, outer+"staging/meta/born")
	})
	t.Run("siblings", func(t *testing.T) {
		put(t, openOn(t, endpoint, base+"x1/"))
		put(t, openOn(t, endpoint, base+"x2/"))
		put(t, openOn(t, endpoint, base+"x1/")) // and reopened
	})
}
