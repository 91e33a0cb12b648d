package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/etcd"
)

// liveKeys is every live key of st: ns/key -> value who version.
func liveKeys(t *testing.T, st store.Backend) map[string]string {
	t.Helper()
	out := map[string]string{}
	nss, err := st.Namespaces()
	require.NoError(t, err)
	for _, ns := range nss {
		page, err := st.List(ns.Name, ctxd.ListOptions{Limit: 1000})
		require.NoError(t, err)
		for _, r := range page.Records {
			out[ns.Name+"/"+r.Key] = string(r.Value) + " " + r.Who + " v" + strconv.FormatUint(r.Version, 10)
		}
	}
	return out
}

// `ctxd restore --etcd-endpoints` restores a bolt snapshot into an etcd
// prefix: a dry run changes nothing, an empty prefix is restored, a
// prefix with data is refused without --force and replaced with it, a
// bad snapshot changes nothing; and a snapshot of that etcd prefix
// restores into a new data folder with `ctxd restore --data`.
func TestRestoreIntoEtcdPrefixAndBack(t *testing.T) {
	ctx := context.Background()
	srv, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	const prefix = "/restored/"

	src := testkit.OpenBolt(t, bolt.Options{})
	for i := range 4 {
		_, err := src.Put(ctx, "default", "k"+strconv.Itoa(i), json.RawMessage(strconv.Itoa(i)), nil, "bolt-writer")
		require.NoError(t, err)
	}
	_, err = src.Put(ctx, "team", "k1", json.RawMessage(`{"a":1}`), nil, "bolt-writer")
	require.NoError(t, err)
	_, err = src.Put(ctx, "team", "k1", json.RawMessage(`{"a":2}`), nil, "bolt-writer")
	require.NoError(t, err)
	boltSnap, _ := testkit.WriteSnapshot(t, src)
	want := liveKeys(t, src)
	require.Len(t, want, 5)

	args := []string{"restore", "--from", boltSnap, "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", prefix}
	openPrefix := func() *etcd.Store {
		st, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint}, Prefix: prefix})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}

	for _, bad := range [][]string{{"--ns", "Bad/Name"}, {"--lock-timeout", "5s"}} {
		r := cli(t, nil, "", append(args, bad...)...)
		assert.Equal(t, 2, r.code, "%q is a usage error: %s", bad, r.stderr)
		assert.Contains(t, r.stderr, bad[0])
	}

	out := cliOK(t, nil, "", append(args, "--dry-run")...)
	assert.Contains(t, out, "dry run")
	dst := openPrefix()
	assert.Empty(t, liveKeys(t, dst), "a dry run writes nothing")
	assert.Zero(t, dst.Revision())

	out = cliOK(t, nil, "", args...)
	assert.Contains(t, out, "restored into the etcd prefix "+prefix)
	dst = openPrefix()
	assert.Equal(t, want, liveKeys(t, dst), "the snapshot's keys, values, who and versions")

	marker, err := dst.Put(ctx, "default", "marker", json.RawMessage(`1`), nil, "t")
	require.NoError(t, err)
	r := cli(t, nil, "", args...)
	assert.NotEqual(t, 0, r.code, "a prefix with data is refused without --force")
	assert.Contains(t, r.stderr, "--force")
	got, err := dst.Get("default", "marker")
	require.NoError(t, err, "the refused restore changed nothing")
	assert.Equal(t, marker.ModRev, got.ModRev)

	bad := filepath.Join(t.TempDir(), "bad.db")
	whole, err := os.ReadFile(boltSnap)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bad, whole[:len(whole)/2], 0o600))
	r = cli(t, nil, "", "restore", "--from", bad, "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", prefix, "--force")
	assert.NotEqual(t, 0, r.code, "a bad snapshot is refused")
	_, err = dst.Get("default", "marker")
	require.NoError(t, err, "a bad snapshot changed nothing")

	cliOK(t, nil, "", append(args, "--force")...)
	_, err = dst.Get("default", "marker")
	assert.ErrorIs(t, err, ctxd.ErrNotFound, "--force replaced the data")
	assert.Equal(t, want, liveKeys(t, dst))

	// Back: the etcd prefix's snapshot into a new data folder.
	etcdSnap, _ := testkit.WriteSnapshot(t, dst)
	dataDir := filepath.Join(t.TempDir(), "new")
	cliOK(t, nil, "", "restore", "--data", dataDir, "--from", etcdSnap)
	back := testkit.OpenBoltAt(t, filepath.Join(dataDir, dbFile), bolt.Options{})
	assert.Equal(t, want, liveKeys(t, back), "etcd's snapshot in a new data folder")
	h, err := back.History("team", "k1", ctxd.HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, h.Changes, 2, "the history travelled both ways")
	assert.JSONEq(t, `{"a":1}`, string(h.Changes[1].Value))
}
