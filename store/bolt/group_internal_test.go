package bolt

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A group that begins a new read transaction part-way (the committer
// moved the overlay's base past the one it had) keeps its view of the
// groups written before it and not yet published: a key one of them
// changed still has that state, not the older one of the overlay or
// bbolt. (Beginning again used to drop that view with the transaction,
// so a later CAS or version in the same group was checked against state
// that earlier, pipelined groups had already changed.)
func TestGroupKeepsUnpublishedGroupsAcrossANewReadTransaction(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ctxd.db"), Options{CommitInterval: time.Hour})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	for _, key := range []string{"x", "y1"} {
		_, err := s.Put(context.Background(), "default", key, json.RawMessage(`1`), nil, "t")
		require.NoError(t, err)
	}
	// The writer is idle: stand in for it. An earlier group, written
	// and not yet published, made x's version 7.
	earlier := &group{id: s.groups + 1000, keys: map[nsKeyName]keyState{{"default", "x"}: {kvRecord: kvRecord{version: 7, createRev: 1, modRev: 99}, live: true, value: []byte(`7`)}}}
	s.inflight = append(s.inflight, earlier)
	defer func() { s.inflight = s.inflight[:0] }()
	g := s.newGroup()
	defer g.close()

	_, err = g.state("default", "y2") // in neither: begins the read transaction
	require.NoError(t, err)
	require.NotNil(t, g.tx)
	require.NoError(t, s.applyPending()) // the committer moves the base past it
	st, err := g.state("default", "y3")  // begins another
	require.NoError(t, err)
	require.False(t, st.live)
	st, err = g.state("default", "x")
	require.NoError(t, err)
	require.Equal(t, uint64(7), st.version, "x's state is the unpublished group's, not the overlay's or bbolt's")
}
