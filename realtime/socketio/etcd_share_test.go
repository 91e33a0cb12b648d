package socketio_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// On etcd, context_set of several clients in flight at once are committed
// together, in one revision. Each sender gets its confirmation in place of
// its own change (matched by key, not by revision alone), with that
// change's index and count, and every other change of the revision as
// context_updated: each client sees every change once.
//
// Negative control: with the confirmation matched by revision alone (the
// first change of the revision), a sender at index 1 or more lost the
// change at index 0 and got its own twice.
func TestEtcdContextSetsSharingARevision(t *testing.T) {
	endpoint, prefix := etcdkit.Shared(t).Endpoint, etcdkit.Prefix(etcdkit.Name(t))
	srv := testkit.StartServer(t, testkit.WithEtcd(endpoint, prefix))
	const writers, maxRounds = 6, 40
	clients := make([]*sio, writers)
	for i := range clients {
		clients[i] = dial(t, srv, sioOpts{websocket: true})
		connected(t, clients[i], nil)
	}
	type place struct {
		rev          uint64
		index, count int
	}
	shared := 0 // rounds where a sender's change was not first in its revision
	for round := 0; round < maxRounds && shared < 3; round++ {
		var start sync.WaitGroup
		start.Add(1)
		var sent sync.WaitGroup
		for i, c := range clients {
			sent.Go(func() {
				start.Wait()
				c.emit("context_set", map[string]any{"key": fmt.Sprintf("r%d/c%d", round, i), "value": i})
			})
		}
		start.Done()
		sent.Wait()

		places := map[string]place{} // every key of the round, as each client saw it
		sharedRound := false
		for i, c := range clients {
			got := map[string]int{}
			for range writers {
				var e event
				for e = c.nextEvent(); e.Name == "client_stats"; e = c.nextEvent() {
				}
				key, _ := e.Data["key"].(string)
				own := key == fmt.Sprintf("r%d/c%d", round, i)
				want := map[bool]string{true: ctxd.TypeContextSetConfirmed, false: ctxd.TypeContextUpdated}[own]
				require.Equal(t, want, e.Name, "round %d, client %d: %s", round, i, e.Raw)
				got[key]++
				p := place{rev: uint64(e.Data["rev"].(float64)), count: 1}
				if n, ok := e.Data["count"].(float64); ok {
					p.index, p.count = int(e.Data["index"].(float64)), int(n)
				}
				if seen, ok := places[key]; ok {
					assert.Equal(t, seen, p, "round %d, client %d: %s has one place", round, i, key)
				}
				places[key] = p
				if own && p.index > 0 {
					sharedRound = true
				}
			}
			for w := range writers {
				assert.Equal(t, 1, got[fmt.Sprintf("r%d/c%d", round, w)], "round %d, client %d gets every change once: %v", round, i, got)
			}
		}
		if sharedRound {
			shared++
		}
		if t.Failed() {
			return
		}
	}
	require.Positive(t, shared, "no two context_set shared a revision in %d rounds: nothing was checked", maxRounds)
	t.Logf("%d rounds where a sender was not first in its revision", shared)
	for _, c := range clients {
		c.close()
	}
}
