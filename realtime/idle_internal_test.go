package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store/bolt"
)

// With no session the hub's loop does not follow commits: 50 lone writes
// wake it at most once (its first pass may come after the count starts),
// where following the mark woke it for nearly every one. The wake was on
// each write's path (realtime/DESIGN.md, "Idle").
func TestHubSleepsWithoutSessions(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "ctxd.db"), bolt.Options{})
	require.NoError(t, err)
	h := New(st, Options{}, zerolog.Nop())
	t.Cleanup(func() {
		require.NoError(t, h.Close())
		require.NoError(t, st.Close())
	})
	before := h.stats.wakes.Load()
	for i := range 50 {
		_, err := st.Put(context.Background(), "default", fmt.Sprintf("k%d", i), json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, h.stats.wakes.Load()-before, uint64(1), "the loop followed commits with no session")
}
