package server_test

import (
	"bytes"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// Two instances of an etcd deployment with one dumps folder (dumps.dir, a
// shared volume): a dump written through one is listed and downloaded
// through the other, and dumps both write at once without a name get
// names of their own, each whole. Negative control: an instance with a
// folder of its own knows none of them.
func TestInstancesShareADumpsFolder(t *testing.T) {
	ac, bc, oc := sharingInstances(t, func(c *configs.Config, dir string) { c.Dumps.Dir = dir })
	ctx := t.Context()

	_, err := ac.Put(ctx, "default", "k", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	nightly, err := ac.Dump(ctx, "default", "nightly", client.ExportOptions{})
	require.NoError(t, err)
	listed, err := bc.Dumps(ctx)
	require.NoError(t, err)
	require.Len(t, listed.Dumps, 1)
	assert.Equal(t, nightly.Filename, listed.Dumps[0].Filename, "written through a, listed through b")
	var file bytes.Buffer
	require.NoError(t, bc.DownloadDump(ctx, nightly.Filename, &file))
	assert.Contains(t, file.String(), `"k"`)

	// Unnamed dumps through both at once: named by the second, so most
	// share a name at first.
	var wg sync.WaitGroup
	var mu sync.Mutex
	names := map[string]bool{}
	for i := range 6 {
		c := ac
		if i%2 == 1 {
			c = bc
		}
		wg.Go(func() {
			info, err := c.Dump(ctx, "default", "", client.ExportOptions{})
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			assert.False(t, names[info.Filename], "%s written twice", info.Filename)
			names[info.Filename] = true
		})
	}
	wg.Wait()
	require.Len(t, names, 6)
	for name := range names {
		var f bytes.Buffer
		require.NoError(t, ac.DownloadDump(ctx, name, &f), name)
		assert.Contains(t, f.String(), `"k"`, name)
	}
	listed, err = ac.Dumps(ctx)
	require.NoError(t, err)
	assert.Len(t, listed.Dumps, 7)

	listed, err = oc.Dumps(ctx)
	require.NoError(t, err)
	assert.Empty(t, listed.Dumps, "the control: an instance with a folder of its own")
	require.True(t, client.IsNotFound(oc.DownloadDump(ctx, nightly.Filename, &file)))
}

// dumps.keep reaches the server: after each server-side dump the oldest
// beyond it go. Each dump is dated a minute after the one before (file
// times may not tell dumps a few milliseconds apart). The client deletes
// one too (DeleteDump).
func TestDumpsKeep(t *testing.T) {
	s := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.Dumps.Keep = 2 }))
	c := instanceClient(t, s.URL)
	ctx := t.Context()
	_, err := c.Put(ctx, "default", "k", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)
	dated := time.Now().Add(-time.Hour)
	for _, name := range []string{"one", "two", "three"} {
		info, err := c.Dump(ctx, "default", name, client.ExportOptions{})
		require.NoError(t, err)
		dated = dated.Add(time.Minute)
		require.NoError(t, os.Chtimes(info.Path, dated, dated))
	}
	listed, err := c.Dumps(ctx)
	require.NoError(t, err)
	var names []string
	for _, d := range listed.Dumps {
		names = append(names, d.Filename)
	}
	assert.Equal(t, []string{"three.json", "two.json"}, names)

	ops, err := client.New(s.URL, client.WithWho("ops"))
	require.NoError(t, err)
	require.NoError(t, ops.DeleteDump(ctx, "two.json"))
	assert.Contains(t, s.Logs.String(), `"file":"two.json","who":"ops","time"`, "the client's who is logged")
	require.True(t, client.IsNotFound(c.DeleteDump(ctx, "two.json")))
	listed, err = c.Dumps(ctx)
	require.NoError(t, err)
	require.Len(t, listed.Dumps, 1)
}
