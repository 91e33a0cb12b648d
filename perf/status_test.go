package perf

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// settledStatus waits for the committer: right after an import the
// database file does not hold the acknowledged writes yet (here the
// committer waits a second between commits), and its sizes lag them.
func TestSettledStatusWaitsForTheCommitter(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.WAL.CommitInterval = time.Second }))
	ep, err := parseEndpoint(srv.URL)
	require.NoError(t, err)
	c := newHTTPConn(ep)
	defer c.Close()
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%05d", i)
	}
	require.NoError(t, importKeys(c, "settle", keys, makeValue(200)))
	st, err := getStatus(c)
	require.NoError(t, err)
	require.Greater(t, st.UsedBytes, st.InUseBytes, "the file lags the writes (the case settledStatus is for)")
	st, err = settledStatus(c)
	require.NoError(t, err)
	require.LessOrEqual(t, st.UsedBytes, st.InUseBytes, "settled: the file holds every write")
	require.Greater(t, st.InUseBytes, int64(2000*200))
}
