package localcluster_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/localcluster"
	"github.com/framework0/ctxd/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// The plan a parent makes and the initial cluster a member parses back
// agree: names and peer URLs, in order. (Members themselves are started
// by the cluster tests in robustness, as processes.)
func TestPlanAndInitialCluster(t *testing.T) {
	ms, err := localcluster.Plan("/data", []int{2379, 12379, 22379}, []int{2380, 12380, 22380})
	require.NoError(t, err)
	require.Equal(t, localcluster.Member{Name: "m2", Dir: "/data/m2", ClientURL: "http://127.0.0.1:12379", PeerURL: "http://127.0.0.1:12380"}, ms[1])
	ic := localcluster.InitialCluster(ms)
	require.Equal(t, "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:12380,m3=http://127.0.0.1:22380", ic)
	back, err := localcluster.ParseInitialCluster(ic)
	require.NoError(t, err)
	require.Len(t, back, 3)
	for i := range ms {
		require.Equal(t, ms[i].Name, back[i].Name)
		require.Equal(t, ms[i].PeerURL, back[i].PeerURL)
	}
	require.Equal(t, []string{"http://127.0.0.1:2379", "http://127.0.0.1:12379", "http://127.0.0.1:22379"}, localcluster.Endpoints(ms))

	_, err = localcluster.ParseInitialCluster("m1=http://x,m2")
	require.Error(t, err)
	_, err = localcluster.Plan("/data", []int{1, 2}, []int{3})
	require.Error(t, err)

	ports, err := localcluster.FreePorts(6)
	require.NoError(t, err)
	seen := map[int]bool{}
	for _, p := range ports {
		require.False(t, seen[p], "port %d twice", p)
		seen[p] = true
	}
	// Where the kernel says where its ephemeral ports start, the ports
	// are below it: no outgoing connection of another test takes them.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var low, high int
		_, err := fmt.Sscan(string(b), &low, &high)
		require.NoError(t, err)
		for _, p := range ports {
			require.Less(t, p, low, "port %d is in the ephemeral range %d-%d", p, low, high)
		}
	}
}

// PortInUse knows Go's real bind error for the address it is given, and
// nothing else: OnFreePorts starts again on new ports after that error
// alone, and gives up after FreePortTries.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = net.Listen("tcp", addr)
	require.Error(t, err)
	log := "ctxd: listen: " + err.Error() + "\n"
	var inUse *localcluster.PortInUseError
	require.ErrorAs(t, localcluster.PortInUse(log, "127.0.0.1:1", addr), &inUse)
	require.Equal(t, addr, inUse.Addr)
	require.Equal(t, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), inUse.Port())
	require.NoError(t, localcluster.PortInUse(log, "127.0.0.1:1"))
	require.NoError(t, localcluster.PortInUse("listen tcp "+addr+": bind: permission denied", addr))

	var tries [][]int
	err = localcluster.OnFreePorts(2, func(ports []int) error {
		tries = append(tries, ports)
		return fmt.Errorf("member m1: %w", &localcluster.PortInUseError{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0])})
	}, nil)
	require.ErrorAs(t, err, &inUse)
	require.Len(t, tries, localcluster.FreePortTries)
	tries = nil
	other := errors.New("member m1 exited")
	err = localcluster.OnFreePorts(2, func(ports []int) error { tries = append(tries, ports); return other }, nil)
	require.ErrorIs(t, err, other)
	require.Len(t, tries, 1, "another error: no new try")
}
