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
)

// A dump, a snapshot or a defrag's copy that would leave less than
// storage.reserve_bytes free on the data disk is refused (507, nothing
// kept) while the disk still has room for it: that room is the store's.
// The store goes on taking writes, a small dump still fits, and with the
// reserve off the same dump is written (the negative control: it was the
// reserve that refused it, not a full disk).
func TestFilesBesideTheStoreKeepTheReserveFree(t *testing.T) {
	disk := testkit.SmallDisk(t, 48<<20)
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.DataDir = filepath.Join(disk, "data") // dumps and snapshots in it too
		c.WAL.SegmentBytes = 1 << 20
		c.Storage.QuotaBytes = 0
		c.Storage.ReserveBytes = 0
	}))
	cl, err := client.New(srv.URL)
	require.NoError(t, err)
	ctx := t.Context()
	big := json.RawMessage(`"` + strings.Repeat("x", 100<<10) + `"`)
	for i := range 40 { // 4 MiB: its dump, the snapshot and the database are larger than 2 MiB
		_, err := cl.Put(ctx, "big", fmt.Sprint("k", i), big, client.PutOptions{})
		require.NoError(t, err)
	}
	_, err = cl.Put(ctx, "small", "k", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)

	// Room for 2 MiB more beside the reserve, measured on the running
	// server (its log's segments in place).
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(disk, &st))
	free := int64(st.Bavail) * int64(st.Bsize)
	srv.Stop()
	srv.Config.Storage.ReserveBytes = fsutil.Reserve(free - 2<<20)
	srv.Start()
	cl, err = client.New(srv.URL) // no connection kept from before the restart
	require.NoError(t, err)

	_, err = cl.Dump(ctx, "big", "big", client.ExportOptions{})
	require.ErrorIs(t, err, ctxd.ErrInsufficientStorage, "a 4 MiB dump with 2 MiB to spare: %v", err)
	assert.Contains(t, err.Error(), "storage.reserve_bytes")
	_, err = cl.CreateSnapshot(ctx)
	require.ErrorIs(t, err, ctxd.ErrInsufficientStorage, "a snapshot: %v", err)
	_, err = cl.Defrag(ctx)
	require.ErrorIs(t, err, ctxd.ErrInsufficientStorage, "a defrag: %v", err)
	for _, dir := range []string{"dumps", "snapshots"} {
		entries, err := os.ReadDir(filepath.Join(srv.Config.DataDir, dir))
		require.NoError(t, err)
		for _, e := range entries {
			assert.True(t, e.Name() == fsutil.WritersLock || strings.HasPrefix(e.Name(), ".claim"), "nothing kept in %s: %s", dir, e.Name())
		}
	}

	_, err = cl.Put(ctx, "small", "after", json.RawMessage(`2`), client.PutOptions{})
	require.NoError(t, err, "the store goes on")
	info, err := cl.Dump(ctx, "small", "small", client.ExportOptions{})
	require.NoError(t, err, "a small dump fits beside the reserve")
	assert.Equal(t, 2, info.KeyCount)

	srv.Stop()
	srv.Config.Storage.ReserveBytes = 0
	srv.Start()
	cl, err = client.New(srv.URL)
	require.NoError(t, err)
	info, err = cl.Dump(ctx, "big", "big", client.ExportOptions{})
	require.NoError(t, err, "without the reserve the dump fits on the disk")
	assert.Equal(t, 40, info.KeyCount)
}
