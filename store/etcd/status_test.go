package etcd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// A status costs the same etcd requests at 3,000 namespaces as at 10:
// its keys and namespaces are the read cache's counts, at its revision.
// Counted from etcd, with 2 requests per namespace, /readyz and every
// /metrics scrape took seconds at a thousand namespaces and failed at
// 5,000. With the cache not ready (etcd.read_cache false) they are still
// counted from etcd (a page of keys a request), and right.
func TestStatusRequestsDoNotGrowWithNamespaces(t *testing.T) {
	opts := etcd.Options{Endpoints: []string{etcdkit.Shared(t).Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))}
	requests := etcd.CountRequests(&opts)
	s, err := etcd.Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	direct, err := etcd.Open(etcd.Options{Endpoints: opts.Endpoints, Prefix: opts.Prefix, DirectReads: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, direct.Close()) })

	statusAt := func(namespaces int) (requestsMade int64) {
		t.Helper()
		testkit.Eventually(t, func() bool {
			rc := s.ReadCache()
			return rc.Ready && rc.Keys == int64(namespaces)
		}, "the cache holds the %d keys", namespaces)
		before := requests()
		st, err := s.Status()
		require.NoError(t, err)
		requestsMade = requests() - before
		require.Equal(t, uint64(namespaces), st.Keys)
		require.Equal(t, namespaces+1, st.Namespaces, "with default, which has no key")
		require.Equal(t, s.ReadCache().Revision, st.ReadCache.Revision, "counted at the cache's revision")
		fromEtcd, err := direct.Status()
		require.NoError(t, err)
		require.Equal(t, st.Keys, fromEtcd.Keys)
		require.Equal(t, st.Namespaces, fromEtcd.Namespaces)
		return requestsMade
	}

	put := func(from, to int) {
		var writes []ctxd.Write
		flush := func() {
			_, err := s.Txn(context.Background(), writes)
			require.NoError(t, err)
			writes = writes[:0]
		}
		for i := from; i < to; i++ {
			writes = append(writes, ctxd.Write{Namespace: fmt.Sprintf("ns%05d", i), Key: "k", Op: ctxd.OpPut, Value: []byte(`1`)})
			if len(writes) == 100 {
				flush()
			}
		}
		if len(writes) > 0 {
			flush()
		}
	}
	put(0, 10)
	statusAt(10)
	put(10, 3000)
	// The count takes in the instance's own requests meanwhile (its
	// watch's and cache's upkeep): a bound, far below one request per
	// namespace, rather than equality with the status at 10.
	require.Less(t, statusAt(3000), int64(100), "etcd requests of one status at 3,000 namespaces")
}

// The store learns etcd's version at Open, for the start's log and its
// warning when etcd is older than ctxd supports (README: v3.5 or later).
// An etcd 3.4 (Debian's etcd-server) was taken without a word before.
func TestServerVersionIsLearntAtOpen(t *testing.T) {
	s, err := etcd.Open(etcd.Options{Endpoints: []string{etcdkit.Shared(t).Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.Regexp(t, `^3\.[0-9]+\.[0-9]+`, s.ServerVersion())
	require.False(t, etcd.VersionBefore(s.ServerVersion(), etcd.MinServerVersion), "the test kit's etcd %s is supported", s.ServerVersion())

	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"3.4.23", true}, {"2.3.8", true}, {"3.5.0", false}, {"3.5.17", false}, {"3.7.3", false}, {"3.10.0", false}, {"4.0.0", false},
		{"", false}, {"3", false}, {"x.y.z", false}, // unreadable: not warned of
	} {
		require.Equal(t, tc.want, etcd.VersionBefore(tc.v, etcd.MinServerVersion), tc.v)
	}
}

// The status of an instance without a ready read cache (here direct
// reads) whose watch has not delivered a full restore's switch (held at
// it) counts the restored keys, and names the restore: it reads the
// pointer before it counts. Before, it counted the replaced generation's
// keys, which the restorer had deleted: 0 keys, and no last restore.
func TestStatusBehindARestoreSwitchCountsTheRestoredKeys(t *testing.T) {
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	a := open(t, etcd.Options{Prefix: prefix})
	c := open(t, etcd.Options{Prefix: prefix, DirectReads: true})
	putValue(t, a, "k", `1`)
	path, _ := testkit.WriteSnapshot(t, a)
	putValue(t, a, "x", `2`)
	putValue(t, a, "y", `3`)
	waitValue(t, c, "y", `3`)
	res, release := restoreHeld(t, a, c, path, atSwitch)
	require.NotEqual(t, a.Generation(), c.Generation(), "c's watch is behind the switch")

	st, err := c.Status()
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Keys, "the restored keys")
	require.NotNil(t, st.LastRestore)
	assert.Equal(t, res.Revision, st.LastRestore.Revision)
	release()
}

// A member that went silent with its connection open (paused, or
// overloaded; here a proxy that stops forwarding) costs /readyz nothing
// while another member answers: the probe asks every member at once.
// Before, it went where round robin sent it, and the one sent to the
// silent member answered 503 at the request timeout (each instance's
// first probe after a follower of make cluster was paused). The same
// for the status (/v1/status, every /metrics scrape): its compaction
// mark and etcd's alarms went where round robin sent them.
func TestReadyWithASilentMember(t *testing.T) {
	shared := etcdkit.Shared(t)
	proxy := testkit.StartTCPProxy(t, strings.TrimPrefix(shared.Endpoint, "http://"))
	s, err := etcd.Open(etcd.Options{Endpoints: []string{"http://" + proxy.Addr(), shared.Endpoint},
		Prefix: etcdkit.Prefix(etcdkit.Name(t)), RequestTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoError(t, s.Ready())
	// The status of a ready read cache: its keys are the cache's, its
	// other fields etcd's.
	testkit.Eventually(t, func() bool { return s.ReadCache().Ready }, "the read cache is ready")
	proxy.Blackhole()
	t.Cleanup(proxy.Heal) // before the store closes
	// Round robin alternates between the two connections: of 4 probes
	// in a row, some go to the silent one.
	for i := range 4 {
		require.NoError(t, s.Ready(), "probe %d", i)
		_, err := s.Status()
		require.NoError(t, err, "status %d", i)
	}
}
