package etcd

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// pushRevisions pushes revisions from..to of the feed, each with changes
// changes.
func pushRevisions(f *feed, from, to uint64, changes int) {
	for rev := from; rev <= to; rev++ {
		cs := make([]ctxd.Change, changes)
		for i := range cs {
			cs[i] = ctxd.Change{Revision: rev, Namespace: "default", Key: "k"}
		}
		f.push(rev, cs)
	}
}

// noByteBound is a feed's byte bound where a test bounds the count alone.
const noByteBound = 1 << 40

// A full feed keeps its newest changes, whole revisions, at most cap of
// them: page answers from what it holds and says so (ok false) below its
// floor, across many pushes past the cap.
func TestFeedKeepsTheNewestWholeRevisions(t *testing.T) {
	var f feed
	f.init(0, 10, noByteBound)
	pushRevisions(&f, 1, 1000, 3) // 3 changes per revision, as a transaction's
	assert.LessOrEqual(t, len(f.recent), 10)
	assert.Equal(t, uint64(1000), f.mark)
	assert.Equal(t, uint64(997), f.floor, "whole revisions: 998-1000 fit, 997 does not")
	changes, mark, _, ok := f.page(997, 100)
	require.True(t, ok)
	assert.Equal(t, uint64(1000), mark)
	require.Len(t, changes, 9)
	for i, c := range changes {
		assert.Equal(t, uint64(998+i/3), c.Revision)
	}
	_, _, _, ok = f.page(996, 100)
	assert.False(t, ok, "below the floor: the caller reads etcd")
	f.waitFor(context.Background(), 1000) // returns: the mark is there
}

// What one push costs once the feed is full (the instance's ring of
// 16,384 changes): constant, not the size of the buffer.
//
//	go test ./store/etcd -run '^$' -bench FeedPushFull -benchmem
func BenchmarkFeedPushFull(b *testing.B) {
	var f feed
	f.init(0, 16384, noByteBound)
	pushRevisions(&f, 1, 20000, 1)
	rev := uint64(20000)
	cs := []ctxd.Change{{Namespace: "default", Key: "k"}}
	for b.Loop() {
		rev++
		cs[0].Revision = rev
		f.push(rev, cs)
	}
}

// BenchmarkFeedPageNewest is the realtime hub's read after each write: the
// newest change of a full buffer, under the lock the watch's push takes.
func BenchmarkFeedPageNewest(b *testing.B) {
	var f feed
	f.init(0, 16384, noByteBound)
	pushRevisions(&f, 1, 20000, 1)
	for b.Loop() {
		if cs, _, _, _ := f.page(19999, 1024); len(cs) != 1 {
			b.Fatalf("page: %d changes, want 1", len(cs))
		}
	}
}

// A progress notification wakes what waits for the watch to be current
// (currentMark's progress channel) and not the followers of the mark
// (Committed's channel, the realtime hub): it moved no mark. A push and
// the close wake the followers.
func TestFeedProgressStaysOffTheBroadcastChannel(t *testing.T) {
	var f feed
	f.init(5, 10, noByteBound)
	changed, progress := f.changed, f.progress
	f.progressed(9)
	assert.Equal(t, uint64(9), f.synced)
	requireClosed(t, progress, "the progress channel after a notification")
	requireOpen(t, changed, "the mark's channel after a notification")

	changed, progress = f.changed, f.progress
	f.progressed(8) // older than synced: nothing new
	requireOpen(t, progress, "the progress channel after an older notification")
	f.push(10, []ctxd.Change{{Revision: 10, Namespace: "default", Key: "k"}})
	requireClosed(t, changed, "the mark's channel after a push")
	requireOpen(t, progress, "the progress channel after a push")

	changed, progress = f.changed, f.progress
	f.close()
	requireClosed(t, changed, "the mark's channel after close")
	requireClosed(t, progress, "the progress channel after close")
}

func requireClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatalf("%s: still open", what)
	}
}

func requireOpen(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: closed", what)
	default:
	}
}

// History read at start goes before the recent changes only while they
// still start where the instance opened: not once pushes filled the
// buffer past its start, nor after a restart (a compaction or a restore
// moved the floor); and only what fits, whole revisions, newest kept.
func TestFeedPrepend(t *testing.T) {
	history := func(from, to uint64, per int) []ctxd.Change {
		var cs []ctxd.Change
		for rev := from; rev <= to; rev++ {
			for range per {
				cs = append(cs, ctxd.Change{Revision: rev, Namespace: "default", Key: "k"})
			}
		}
		return cs
	}
	var f feed
	f.init(100, 10, noByteBound)
	pushRevisions(&f, 101, 102, 1)
	f.prepend(90, 100, history(91, 100, 2)) // 20 changes, room for 8
	assert.Equal(t, uint64(96), f.floor, "revisions 97-100 fit whole")
	changes, _, _, ok := f.page(96, 100)
	require.True(t, ok)
	require.Len(t, changes, 10)
	assert.Equal(t, uint64(97), changes[0].Revision)
	assert.Equal(t, uint64(102), changes[9].Revision)

	var moved feed
	moved.init(100, 10, noByteBound)
	moved.restart(105)
	moved.prepend(90, 100, history(91, 100, 1))
	assert.Equal(t, uint64(105), moved.floor, "the floor moved: the history read no longer joins")
	assert.Empty(t, moved.recent)
}

// The feed's byte bound holds like its count: a prefix of large values
// keeps its newest whole revisions that fit in maxBytes, through pushes,
// a history prepended and a restart, and what it counts is what it holds.
// A revision bigger than the bound alone is not kept: the floor moves to
// it, and its readers go to etcd's history.
func TestFeedBytesBound(t *testing.T) {
	big := func(rev uint64, n int) []ctxd.Change {
		cs := make([]ctxd.Change, n)
		for i := range cs {
			cs[i] = ctxd.Change{Revision: rev, Namespace: "default", Key: "k", Value: make([]byte, 1000)}
		}
		return cs
	}
	one := changeBytes(&big(1, 1)[0])
	var f feed
	f.init(0, 100, 5*one)
	for rev := uint64(1); rev <= 20; rev++ {
		f.push(rev, big(rev, 2))
		require.LessOrEqual(t, f.bytes, 5*one)
		require.Equal(t, bytesOf(f.recent), f.bytes)
	}
	assert.Len(t, f.recent, 4, "two revisions of two changes fit in five changes' bytes")
	assert.Equal(t, uint64(18), f.floor)
	_, _, _, ok := f.page(17, 100)
	assert.False(t, ok, "below the floor")

	f.push(21, big(21, 6)) // alone over the bound
	assert.Empty(t, f.recent)
	assert.Zero(t, f.bytes)
	assert.Equal(t, uint64(21), f.floor)
	assert.Equal(t, uint64(21), f.mark)
	_, _, _, ok = f.page(20, 100)
	assert.False(t, ok, "the revision too big to keep is read from etcd")

	var late feed
	late.init(100, 100, 5*one)
	late.push(101, big(101, 1))
	var history []ctxd.Change
	for rev := uint64(91); rev <= 100; rev++ {
		history = append(history, big(rev, 1)...)
	}
	late.prepend(90, 100, history)
	assert.Equal(t, uint64(96), late.floor, "revisions 97-100 fit beside 101")
	assert.Len(t, late.recent, 5)
	assert.Equal(t, bytesOf(late.recent), late.bytes)

	late.restart(200)
	assert.Zero(t, late.bytes)
}

// A restart at a revision below the mark (a read's switch racing the
// watch, which pushed past it) drops the changes up to it and keeps
// those after it, counted: the feed still answers for every revision
// between the new floor and the mark.
func TestFeedRestartBelowTheMarkKeepsTheChangesAfterIt(t *testing.T) {
	var f feed
	f.init(100, 100, noByteBound)
	pushRevisions(&f, 101, 110, 2)
	f.restart(105)
	assert.Equal(t, uint64(105), f.floor)
	assert.Equal(t, uint64(110), f.mark)
	assert.Equal(t, bytesOf(f.recent), f.bytes)
	changes, _, _, ok := f.page(105, 100)
	require.True(t, ok)
	require.Len(t, changes, 10)
	assert.Equal(t, uint64(106), changes[0].Revision)
	_, _, _, ok = f.page(104, 100)
	assert.False(t, ok, "below the restart: the caller reads etcd")
}
