package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// Concurrent patches of one key through one instance take turns: each
// reads the value the one before wrote and wins its compare, none is
// applied again. Before, all of them read the same value, one won per
// round and the others read etcd and retried: 32 patchers made hundreds
// of lost rounds (and 64 took 4 s). Those of another instance still race
// with them, and lose nothing (TestGroupedPatches).
func TestPatchesOfOneKeyOnOneInstanceTakeTurns(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	putValue(t, s, "doc", `{}`)
	const patchers = 32
	var wg sync.WaitGroup
	for i := range patchers {
		wg.Go(func() {
			_, err := patchOf(t, s, "doc", fmt.Sprintf(`{"f%02d":%d}`, i, i))()
			assert.NoError(t, err, "patcher %d", i)
		})
	}
	wg.Wait()
	r, err := s.Get("default", "doc")
	require.NoError(t, err)
	var got map[string]int
	require.NoError(t, json.Unmarshal(r.Value, &got))
	assert.Len(t, got, patchers, "every patch landed")
	assert.Equal(t, uint64(patchers+1), r.Version)
	assert.Zero(t, s.Stats().PatchRetries, "no patch lost a race to one of its own instance")
}

// A patch waiting for its key's turn longer than etcd.request_timeout is
// answered unavailable, never sent; one whose request ends meanwhile
// gives up its place. Neither joins a group.
func TestAPatchWaitingItsTurnIsNotSentPastTheRequestTimeout(t *testing.T) {
	s := open(t, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(t)), RequestTimeout: 500 * time.Millisecond})
	putValue(t, s, "doc", `{"n":0}`)
	queued, release := etcd.HoldGroups(s)
	first := make(chan error, 1)
	go func() { _, err := patchOf(t, s, "doc", `{"n":1}`)(); first <- err }()
	testkit.Eventually(t, func() bool { return queued() == 1 }, "the first patch queued")

	second := make(chan error, 1)
	go func() { _, err := patchOf(t, s, "doc", `{"n":2}`)(); second <- err }()
	var err error
	select {
	case err = <-second:
	case <-time.After(testkit.Deadline):
		release() // it joined the held group
		t.Fatal("the patch waiting its turn was not answered")
	}
	require.ErrorIs(t, err, ctxd.ErrUnavailable)
	assert.Contains(t, err.Error(), "same key")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = s.Patch(ctx, "default", "doc", ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(`{"n":3}`)}, nil, "t")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 1, queued(), "only the first patch joined a group")
	release()
	<-first
	r, err := s.Get("default", "doc")
	require.NoError(t, err)
	assert.NotContains(t, []string{`{"n":2}`, `{"n":3}`}, string(r.Value), "no patch that waited its turn was sent")
}
