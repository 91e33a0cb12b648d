package etcd_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
	"github.com/framework0/ctxd/store/storetest"
)

// TestConformance runs the backend-neutral suite against a real etcd,
// embedded in the test. Each check gets a prefix of its own on the one
// server: revisions are the server's, shared by the checks, as they are
// by every deployment on a cluster.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t testing.TB, dir string, cfg storetest.Config) store.Backend {
			return open(t, etcd.Options{Prefix: etcdkit.Prefix(dir), Limits: cfg.Limits, Now: cfg.Now})
		},
		Defrag:     false,
		Clock:      true,
		Revisions:  storetest.RevisionPerTxn,
		Compaction: storetest.CompactAtMark,
		Snapshots:  true,
		Restores:   storetest.RestoreRewrites,
		Expiry:     true,
		KeepAlive:  storetest.KeepAlivePutTTL,
	})
}

// open opens a backend on the shared etcd and closes it when the test ends.
func open(t testing.TB, opts etcd.Options) *etcd.Store {
	t.Helper()
	if opts.Endpoints == nil {
		opts.Endpoints = []string{etcdkit.Shared(t).Endpoint}
	}
	s, err := etcd.Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}
