package server_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// On etcd a snapshot is built in a scratch file before it is written out:
// the scratch file is in the snapshots folder, under the disk reserve, as
// the snapshot is. With 2 MiB to spare beside the reserve, a snapshot of
// 4 MiB is refused by its scratch file (507, the message names it; before,
// the scratch file went to the system's temporary folder, unbounded, and
// only the copy was refused), nothing is left in the folder, and without
// the reserve the same snapshot is taken and its scratch file removed.
func TestEtcdSnapshotIsBuiltUnderTheReserve(t *testing.T) {
	e, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(e.Close)
	disk := testkit.SmallDisk(t, 32<<20)
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{e.Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t))
		c.DataDir = filepath.Join(disk, "data") // the snapshots folder in it
		c.Storage.ReserveBytes = 0
	}))
	cl, err := client.New(srv.URL)
	require.NoError(t, err)
	ctx := t.Context()
	big := json.RawMessage(`"` + strings.Repeat("x", 100<<10) + `"`)
	for i := range 40 { // 4 MiB: the scratch file and the snapshot are larger than 2 MiB
		_, err := cl.Put(ctx, "big", fmt.Sprint("k", i), big, client.PutOptions{})
		require.NoError(t, err)
	}
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(disk, &st))
	free := int64(st.Bavail) * int64(st.Bsize)
	srv.Stop()
	srv.Config.Storage.ReserveBytes = fsutil.Reserve(free - 2<<20)
	srv.Start()
	cl, err = client.New(srv.URL)
	require.NoError(t, err)

	snapshots := filepath.Join(srv.Config.DataDir, "snapshots")
	leftInFolder := func() (names []string) {
		entries, err := os.ReadDir(snapshots)
		require.NoError(t, err)
		for _, e := range entries {
			if e.Name() != fsutil.WritersLock && !strings.HasPrefix(e.Name(), ".claim") {
				names = append(names, e.Name())
			}
		}
		return names
	}
	_, err = cl.CreateSnapshot(ctx)
	require.ErrorIs(t, err, ctxd.ErrInsufficientStorage, "a 4 MiB snapshot with 2 MiB to spare: %v", err)
	assert.Contains(t, err.Error(), "scratch file")
	assert.Contains(t, err.Error(), "storage.reserve_bytes")
	assert.Empty(t, leftInFolder(), "nothing kept")

	srv.Stop()
	srv.Config.Storage.ReserveBytes = 0
	srv.Start()
	cl, err = client.New(srv.URL)
	require.NoError(t, err)
	meta, err := cl.CreateSnapshot(ctx)
	require.NoError(t, err, "without the reserve the snapshot fits on the disk")
	assert.ElementsMatch(t, []string{meta.ID + ".db", meta.ID + ".json"}, leftInFolder(), "the scratch file is removed")
}
