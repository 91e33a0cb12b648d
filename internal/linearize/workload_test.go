package linearize_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	lin "github.com/framework0/ctxd/internal/linearize"
	"github.com/framework0/ctxd/internal/testkit"
)

// TestWorkload: the driver against the in-process server, restarted in
// the middle, records a history that passes the check, with every kind
// of operation and outcome the mix aims at.
func TestWorkload(t *testing.T) {
	s := testkit.StartServer(t)
	rec := lin.NewRecorder()
	w := lin.Workload{URLs: []string{s.URL}, Clients: 4, Ops: 800, Seed: 1}
	done := make(chan struct{})
	var (
		stats lin.Stats
		err   error
	)
	go func() {
		defer close(done)
		stats, err = w.Run(context.Background(), rec)
	}()
	testkit.Eventually(t, func() bool { return rec.Len() >= 300 }, "300 operations")
	s.Restart()
	<-done
	require.NoError(t, err)
	t.Logf("workload: %v", stats)
	require.Equal(t, 800, stats.Ops)
	for name, n := range map[string]int{"gets": stats.Gets, "puts": stats.Puts, "CAS puts": stats.CASPuts,
		"deletes": stats.Deletes, "txns": stats.Txns, "ok": stats.OK, "not found": stats.NotFound, "conflicts": stats.Conflict} {
		require.Positive(t, n, name)
	}
	r := lin.Check(t, rec.History(), 30*time.Second)
	require.Equal(t, 2, r.Partitions, "transactions link the keys two by two")

	// A run bounded by time.
	rec = lin.NewRecorder()
	w = lin.Workload{URLs: []string{s.URL}, Clients: 2, Duration: 200 * time.Millisecond}
	stats, err = w.Run(context.Background(), rec)
	require.NoError(t, err)
	require.Positive(t, stats.Ops)
	lin.Check(t, rec.History(), 30*time.Second)
}

// TestSequence: the given operations go out in turn, recorded as one
// client's, counted by kind and outcome.
func TestSequence(t *testing.T) {
	s := testkit.StartServer(t)
	rec := lin.NewRecorder()
	keys := lin.DefaultKeys(2)
	w := lin.Workload{URLs: []string{s.URL}, Clients: 3, Keys: keys}
	stats, err := w.Sequence(context.Background(), rec,
		lin.Input{Kind: lin.Put, Key: keys[0], Value: "a"}, lin.Input{Kind: lin.Get, Key: keys[0]},
		lin.Input{Kind: lin.Delete, Key: keys[0]}, lin.Input{Kind: lin.Get, Key: keys[0]})
	require.NoError(t, err)
	require.Equal(t, lin.Stats{Ops: 4, OK: 3, NotFound: 1, Gets: 2, Puts: 1, Deletes: 1}, stats)
	h := rec.History()
	require.Len(t, h, 4)
	for i, kind := range []lin.Kind{lin.Put, lin.Get, lin.Delete, lin.Get} {
		require.Equal(t, kind, h[i].Input.(lin.Input).Kind, "operation %d", i)
		require.Equal(t, h[0].ClientId, h[i].ClientId, "operation %d is another client's", i)
	}
	got := h[1].Output.(lin.Output)
	require.Equal(t, lin.Record{Value: "a", Version: 1, CreateRev: got.Record.ModRev, ModRev: got.Record.ModRev}, got.Record, "the Get after the put")
	lin.Check(t, h, lin.DefaultTimeout)
}
