package robustness_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/localcluster"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// TestClusterRestoreCrashAfterSwitch: a ctxd instance doing a full
// restore into etcd is killed (SIGKILL, at failpoint
// etcd-restore-after-switch) after switching to the restored generation
// and before deleting the replaced one. First with no other instance
// running: the replaced keys are left (the control: the crash is real and
// the check sees them), and the next instance to start removes them.
// Then with an instance running: it saw the switch, and removes the
// replaced generation itself. The restored data is read back each time.
func TestClusterRestoreCrashAfterSwitch(t *testing.T) {
	c := startCluster(t, 0)
	ctx := context.Background()
	prefix := "/ctxd-cluster-test/"
	count := etcdkit.KeyCounter(t, localcluster.Endpoints(c.members), prefix)
	cli, err := clientv3.New(clientv3.Config{Endpoints: localcluster.Endpoints(c.members), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	currentGen := func() string {
		resp, err := cli.Get(ctx, prefix+"meta/gen")
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, "a generation switch")
		id, _, _ := strings.Cut(string(resp.Kvs[0].Value), " ")
		return "g/" + id + "/"
	}
	armedEnv := append(slices.Clone(c.env), failpoint.EnvVar+"="+string(failpoint.EtcdRestoreAfterSwitch)+"=crash")
	put := func(cl *client.Client, key, value string) {
		_, err := cl.Put(ctx, "default", key, []byte(value), client.PutOptions{})
		require.NoError(t, err)
	}
	get := func(cl *client.Client, key string) string {
		rec, err := cl.Get(ctx, "default", key, client.GetOptions{})
		if err != nil {
			require.ErrorIs(t, err, ctxd.ErrNotFound)
			return ""
		}
		return string(rec.Value)
	}
	restoreCrash := func(armed *testkit.Process, id string) {
		t.Helper()
		ac := newClient(t, armed.URL)
		require.NoError(t, crashAt(armed, failpoint.EtcdRestoreAfterSwitch, func() error {
			_, err := ac.RestoreSnapshot(ctx, id, client.RestoreOptions{})
			return err
		}))
	}

	// Alone: the crash leaves generation 0's keys.
	armed := testkit.StartServe(t, failpointBin, t.TempDir(), testkit.ServeOptions{Env: armedEnv})
	ac := newClient(t, armed.URL)
	put(ac, "a", "1")
	snap, err := ac.CreateSnapshot(ctx)
	require.NoError(t, err)
	put(ac, "b", "2")
	restoreCrash(armed, snap.ID)
	gen1 := currentGen()
	require.Positive(t, count(gen1), "the restored generation")
	require.Positive(t, count("k/"), "the replaced generation's keys, left by the crash")

	inst := testkit.StartServe(t, ctxdBin, t.TempDir(), testkit.ServeOptions{Env: c.env})
	ic := newClient(t, inst.URL)
	testkit.Eventually(t, func() bool { return count("k/")+count("t/") == 0 }, "the replaced generation removed by the next instance to start")
	require.Equal(t, "1", get(ic, "a"))
	require.Empty(t, get(ic, "b"), "b came after the snapshot")
	restored := count(gen1)

	// With an instance running: it sees the switch and removes what the
	// dead restorer left.
	armed = testkit.StartServe(t, failpointBin, t.TempDir(), testkit.ServeOptions{Env: armedEnv})
	ac = newClient(t, armed.URL)
	put(ic, "c", "3")
	snap, err = ac.CreateSnapshot(ctx)
	require.NoError(t, err)
	restoreCrash(armed, snap.ID)
	gen2 := currentGen()
	require.NotEqual(t, gen1, gen2)
	t.Logf("generations: %s (%d keys), then %s", gen1, restored, gen2)
	testkit.Eventually(t, func() bool { return count(gen1) == 0 }, "the replaced generation removed by the running instance")
	testkit.Eventually(t, func() bool { return get(ic, "c") == "3" }, "the running instance on the restored generation")
	require.Equal(t, "1", get(ic, "a"))
	require.Positive(t, count(gen2))

	// Alone again, the restorer paused after its switch: its own watch
	// has seen the switch but leaves the replaced generation to the
	// restore (with a cleaner of its own, the first phase's control would
	// race it to the crash), which removes it once it goes on.
	inst.Kill()
	pause := 3 * time.Second
	paused := testkit.StartServe(t, failpointBin, t.TempDir(), testkit.ServeOptions{
		Env: append(slices.Clone(c.env), failpoint.EnvVar+"="+string(failpoint.EtcdRestoreAfterSwitch)+"=sleep("+pause.String()+")")})
	pc := newClient(t, paused.URL)
	snap, err = pc.CreateSnapshot(ctx)
	require.NoError(t, err)
	put(pc, "d", "4")
	restoredAt := make(chan error, 1)
	go func() {
		_, err := pc.RestoreSnapshot(ctx, snap.ID, client.RestoreOptions{})
		restoredAt <- err
	}()
	testkit.Eventually(t, func() bool { return firedLine(paused.Stderr.String(), failpoint.EtcdRestoreAfterSwitch) }, "the restore at its switch")
	gen3 := currentGen()
	require.NotEqual(t, gen2, gen3)
	testkit.Eventually(t, func() bool { return get(pc, "d") == "" }, "the restorer's instance on the restored generation (its watch saw the switch)")
	require.Positive(t, count(gen2), "the replaced generation, while its restorer is paused after the switch")
	require.NoError(t, <-restoredAt)
	require.Zero(t, count(gen2), "the replaced generation, removed by the restore")
}
