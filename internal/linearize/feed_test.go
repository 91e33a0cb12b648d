package linearize_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	lin "github.com/framework0/ctxd/internal/linearize"
	"github.com/framework0/ctxd/internal/testkit"
)

// TestFeed: the feed of a workload against the in-process server,
// restarted in the middle, holds every acknowledged write once, in
// revision order, with the revision its answer gave; resolved from it,
// the history keeps passing.
func TestFeed(t *testing.T) {
	s := testkit.StartServer(t)
	rec := lin.NewRecorder()
	w := lin.Workload{URLs: []string{s.URL}, Clients: 4, Keys: lin.DefaultKeys(4), Ops: 600, Seed: 2}
	ctx := context.Background()
	feed, err := lin.StartFeed(ctx, w)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := w.Run(ctx, rec)
		done <- err
	}()
	testkit.Eventually(t, func() bool { return rec.Len() >= 300 }, "300 operations")
	s.Restart()
	require.NoError(t, <-done)
	sctx, cancel := context.WithTimeout(ctx, testkit.Deadline)
	defer cancel()
	changes, resumes, err := feed.Stop(sctx)
	require.NoError(t, err)
	require.Positive(t, resumes, "the restart")

	revs := map[string]uint64{} // value → revision
	var last uint64
	for _, ch := range changes {
		require.Greater(t, ch.Rev, last, "%v after revision %d", ch, last)
		last = ch.Rev
		if ch.Op == "put" {
			var v string
			require.NoError(t, json.Unmarshal(ch.Value, &v))
			require.NotContains(t, revs, v, "%v twice", ch)
			revs[v] = ch.Rev
		}
	}
	h := rec.History()
	for _, op := range h {
		in, out := op.Input.(lin.Input), op.Output.(lin.Output)
		if in.Kind == lin.Put && out.Status == lin.OK {
			require.Equal(t, out.Record.ModRev, revs[in.Value], "acknowledged put of %q", in.Value)
		}
	}
	resolved, res := lin.Resolve(h, changes)
	t.Logf("%d changes, %d resumes; %v", len(changes), resumes, res)
	lin.Check(t, resolved, 30*time.Second)
}
