package realtime_test

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// afterView is the store with a function run once, after the next View
// returns: there, between a subscribe's snapshot and its answer.
type afterView struct {
	*bolt.Store
	after atomic.Pointer[func()]
}

func (v *afterView) View(fn func(store.View) error) error {
	err := v.Store.View(fn)
	if f := v.after.Swap(nil); f != nil {
		(*f)()
	}
	return err
}

// A restore that lands while a subscribe's snapshot is read: the client
// never gets a snapshot of the replaced data after it was told "reset"
// (the subscribe reads it again). Before, it got reset, then the old
// snapshot, and kept keys the restore had removed.
func TestASubscribeSnapshotAcrossARestore(t *testing.T) {
	var hooked *afterView
	ts := startTestServer(&testServer{t: t, wrap: func(st *bolt.Store) store.Backend {
		hooked = &afterView{Store: st}
		return hooked
	}})
	for i := range 5 {
		ts.put("a", fmt.Sprintf("k%d", i), "1")
	}
	snap := ts.snapshot()
	for i := range 5 {
		ts.put("a", fmt.Sprintf("later%d", i), "2") // undone by the restore
	}
	w := testkit.DialWatch(t, ts.wsURL(url.Values{"ns": {"default"}}), nil)
	w.Expect(ctxd.TypeSubscribed)
	restore := func() {
		_, err := ts.st.Restore(context.Background(), snap, ctxd.RestoreOptions{})
		require.NoError(t, err)
		ts.put("default", "wake", "1") // wakes the hub, which resets the session
		time.Sleep(300 * time.Millisecond)
	}
	hooked.after.Store(&restore)
	w.SendJSON(map[string]any{"type": "subscribe", "id": 1, "ns": "a", "snapshot": true})
	var keys []string
	for done := false; !done; {
		m := w.Next()
		for _, k := range m.Keys {
			keys = append(keys, k.Key)
		}
		done = m.Type == ctxd.TypeContextSnapshot
	}
	assert.Equal(t, []string{"k0", "k1", "k2", "k3", "k4"}, keys, "the snapshot is of the restored data")
}
