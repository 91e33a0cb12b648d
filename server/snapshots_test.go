package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/server"
	"github.com/framework0/ctxd/store/bolt"
)

// Two instances of an etcd deployment with one snapshots folder
// (snapshots.dir, a shared volume): a snapshot taken through one is
// listed, downloaded and restored through the other, and snapshots both
// take at once, of the same revision, get distinct ids and stay whole.
// Negative control: with a folder each, the other instance does not know
// the snapshot.
func TestInstancesShareASnapshotsFolder(t *testing.T) {
	ac, bc, oc := sharingInstances(t, func(c *configs.Config, dir string) { c.Snapshots.Dir = dir })

	_, err := ac.Put(t.Context(), "default", "k", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	snap, err := ac.CreateSnapshot(t.Context())
	require.NoError(t, err)
	_, err = ac.Put(t.Context(), "default", "k", json.RawMessage(`2`), client.PutOptions{})
	require.NoError(t, err)

	listed, err := bc.Snapshots(t.Context())
	require.NoError(t, err)
	require.Len(t, listed, 1)
	assert.Equal(t, snap.ID, listed[0].ID, "taken through a, listed through b")
	var file bytes.Buffer
	_, err = bc.DownloadSnapshot(t.Context(), snap.ID, &file)
	require.NoError(t, err)
	assert.EqualValues(t, snap.Size, file.Len())
	_, err = bc.RestoreSnapshot(t.Context(), snap.ID, client.RestoreOptions{})
	require.NoError(t, err, "restored through b")
	rec, err := ac.Get(t.Context(), "default", "k", client.GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `1`, string(rec.Value))

	_, err = oc.RestoreSnapshot(t.Context(), snap.ID, client.RestoreOptions{DryRun: true})
	require.ErrorIs(t, err, ctxd.ErrNotFound, "the control: an instance with a folder of its own does not know it")

	// Both at once, of the same revision (nothing is written meanwhile).
	var wg sync.WaitGroup
	metas := make([]client.SnapshotMeta, 2)
	errs := make([]error, 2)
	for i, c := range []*client.Client{ac, bc} {
		wg.Go(func() { metas[i], errs[i] = c.CreateSnapshot(t.Context()) })
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	assert.Equal(t, metas[0].Revision, metas[1].Revision)
	assert.NotEqual(t, metas[0].ID, metas[1].ID)
	listed, err = ac.Snapshots(t.Context())
	require.NoError(t, err)
	assert.Len(t, listed, 3)
	for _, m := range metas {
		_, err := bc.RestoreSnapshot(t.Context(), m.ID, client.RestoreOptions{DryRun: true})
		assert.NoError(t, err, "snapshot %s is whole", m.ID)
	}
}

// sharingInstances starts two instances of one etcd deployment whose
// configurations share sets to one folder, and a third with its own, and
// returns their clients.
func sharingInstances(t *testing.T, share func(c *configs.Config, dir string)) (a, b, own *client.Client) {
	t.Helper()
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(etcdkit.Name(t))
	dir := filepath.Join(t.TempDir(), "shared")
	withShared := testkit.WithConfig(func(c *configs.Config) { share(c, dir) })
	sa := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix), withShared)
	sb := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix), withShared)
	so := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	return instanceClient(t, sa.URL), instanceClient(t, sb.URL), instanceClient(t, so.URL)
}

func instanceClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.New(url)
	require.NoError(t, err)
	return c
}

// A full disk under the snapshots and dumps folders (a real tmpfs): taking
// or uploading a snapshot and a server-side dump answer 507
// insufficient_storage naming the file, and leave nothing in the folder
// (they answered 500 "internal server error", the cause only in the log).
func TestAFullSnapshotsDiskIs507(t *testing.T) {
	disk := testkit.SmallDisk(t, 256<<10)
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Snapshots.Dir = filepath.Join(disk, "snapshots")
		c.Dumps.Dir = filepath.Join(disk, "dumps")
		c.Storage.ReserveBytes = 0 // the disk fills, not the reserve (TestFilesBesideTheStoreKeepTheReserveFree)
	}))
	cl, err := client.New(srv.URL)
	require.NoError(t, err)
	big := json.RawMessage(`"` + strings.Repeat("x", 20<<10) + `"`)
	for i := range 30 { // 600 KiB of values: no copy fits
		_, err := cl.Put(t.Context(), "default", fmt.Sprint("k", i), big, client.PutOptions{})
		require.NoError(t, err)
	}
	upload, _ := testkit.WriteSnapshot(t, srv.Backend())

	full := func(what string, err error) {
		t.Helper()
		var ae *client.APIError
		require.ErrorAs(t, err, &ae, what)
		assert.Equal(t, 507, ae.Status, "%s: %v", what, err)
		assert.Equal(t, ctxd.CodeInsufficientStorage, ae.Code, what)
		assert.Contains(t, ae.Message, "no space left on device", what)
	}
	_, err = cl.CreateSnapshot(t.Context())
	full("create a snapshot", err)
	_, err = cl.UploadSnapshot(t.Context(), upload)
	full("upload a snapshot", err)
	_, err = cl.Dump(t.Context(), "default", "nightly", client.ExportOptions{})
	full("a server-side dump", err)
	assert.Equal(t, []string{}, testkit.DirNames(t, filepath.Join(disk, "snapshots")), "nothing kept")
	assert.Equal(t, []string{}, testkit.DirNames(t, filepath.Join(disk, "dumps")), "nothing kept")
}

// A full data disk (a real tmpfs) fails the store: writes answer 503, reads
// of keys go on, and snapshots, server-side dumps and exports are refused
// too (503), even into a folder on another disk, as the README says:
// a view of the whole database first applies the log's writes to the file.
func TestAFullDataDiskRefusesSnapshotsAndDumps(t *testing.T) {
	full := fillDataDisk(t)
	srv, cl, acked := full.srv, full.cl, full.acked
	_, err := cl.Put(t.Context(), "default", "after", json.RawMessage(`1`), client.PutOptions{})
	require.ErrorIs(t, err, ctxd.ErrUnavailable, "the full disk failed the store: %v", err)
	_, err = cl.Get(t.Context(), "default", "k0", client.GetOptions{})
	require.NoError(t, err, "reads of keys go on")
	// A snapshot, a dump or an export is a view of the whole database:
	// refused while acknowledged writes are in the log only (applying them
	// needs the full disk), served when the committer had applied every
	// one before the store failed (which of the two depends on when the
	// disk filled, and on the log's wait for room to prepare its next
	// segment, during which the committer goes on), and then holding
	// every acknowledged write. (The write that failed may be there too.)
	meta, err := cl.CreateSnapshot(t.Context())
	if err != nil {
		assert.ErrorIs(t, err, ctxd.ErrUnavailable, "a snapshot: %v", err)
	} else {
		require.Len(t, meta.Namespaces, 1)
		assert.Contains(t, []uint64{uint64(acked), uint64(acked + 1)}, meta.Namespaces[0].Keys, "a snapshot holds every acknowledged write")
	}
	info, err := cl.Dump(t.Context(), "default", "nightly", client.ExportOptions{})
	if err != nil {
		assert.ErrorIs(t, err, ctxd.ErrUnavailable, "a server-side dump: %v", err)
	} else {
		assert.Contains(t, []int{acked, acked + 1}, info.KeyCount, "a server-side dump holds every acknowledged write")
	}
	var exported bytes.Buffer
	_, err = cl.Export(t.Context(), "default", client.ExportOptions{}, &exported)
	if err != nil {
		assert.ErrorIs(t, err, ctxd.ErrUnavailable, "an export: %v", err)
	} else {
		for k := range acked {
			assert.Contains(t, exported.String(), fmt.Sprintf(`"k%d"`, k), "an export holds every acknowledged write")
		}
	}
	srv.StopFailed(ctxd.ErrUnavailable)
	// Room again: the cleanup's check opens the folder (replaying its log).
	testkit.GrowSmallDisk(t, full.disk, 128<<20)
}

// fullDataDisk is a server whose store failed because its data disk
// filled, made by fillDataDisk.
type fullDataDisk struct {
	srv  *testkit.Server
	cl   *client.Client
	disk string // the data disk, a tmpfs: GrowSmallDisk gives it room again
	// acked are the keys written, k0 .. k(acked-1); k(acked) met the
	// full disk.
	acked int
}

// fillDataDisk starts a server whose data folder is on a 3 MiB disk (a
// real tmpfs) and writes values of 10 KiB until one fails: the disk is
// full, and the store failed. The test stops the server (StopFailed) and
// gives the disk room again (the cleanup's check opens the folder).
//
// The disk holds six of the log's 512 KiB segments, each about 50
// values, as the 6 MiB disk, 1 MiB segments and 20 KiB values it had
// did, at half the bytes (each costs CPU under -race). The log's
// rotation waits 100 ms, not 5 s, for room to come back: when the disk
// fills as it prepares a segment, it fails the same way, sooner.
func fillDataDisk(t *testing.T) fullDataDisk {
	t.Helper()
	disk := testkit.SmallDisk(t, 3<<20)
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.DataDir = filepath.Join(disk, "data")
		c.Snapshots.Dir = filepath.Join(t.TempDir(), "snapshots") // another disk
		c.Dumps.Dir = filepath.Join(t.TempDir(), "dumps")
		c.WAL.SegmentBytes = 512 << 10
		c.Storage.QuotaBytes = 0 // the disk fills, not the quota
	}), testkit.WithServerOptions(server.StoreOptions(func(o *bolt.Options) { o.WALResourceWait = 100 * time.Millisecond })))
	cl, err := client.New(srv.URL)
	require.NoError(t, err)
	big := json.RawMessage(`"` + strings.Repeat("x", 10<<10) + `"`)
	acked := 0
	for ; ; acked++ {
		require.Less(t, acked, 1000, "3 MiB hold fewer than 1,000 values of 10 KiB")
		_, err = cl.Put(t.Context(), "default", fmt.Sprint("k", acked), big, client.PutOptions{})
		if err != nil {
			break
		}
	}
	// The write that met the full disk is unavailable or, when its log
	// record was being written, outcome unknown; the store has failed.
	require.True(t, errors.Is(err, ctxd.ErrUnavailable) || errors.Is(err, ctxd.ErrOutcomeUnknown), "%v", err)
	return fullDataDisk{srv: srv, cl: cl, disk: disk, acked: acked}
}
