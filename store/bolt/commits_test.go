package bolt_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// A commit in the stats (and OnCommit) is an fdatasync that made writes
// durable: a write the store refuses (a compare-and-swap that lost) writes
// no record and takes none, and is not counted as one. Under CAS
// contention 'commits' was ten times the fdatasyncs.
func TestRefusedWritesAreNoCommit(t *testing.T) {
	var hooked int
	s := openStore(t, bolt.Options{OnCommit: func(store.CommitInfo) { hooked++ }})
	s.put("default", "k", `1`)
	before, hookedBefore := s.Stats(), hooked
	stale := uint64(7)
	for range 5 {
		_, err := s.Put(ctx, "default", "k", []byte(`2`), &stale, "t")
		require.ErrorIs(t, err, ctxd.ErrConflict)
	}
	after := s.Stats()
	assert.Equal(t, before.Commits, after.Commits, "refused writes took no fdatasync")
	assert.Equal(t, hookedBefore, hooked)
	s.put("default", "k", `3`)
	assert.Equal(t, before.Commits+1, s.Stats().Commits, "a write that applied is one")
}
