package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/powerfs"
)

// powerOpts are small segments, so that a short workload rotates, prepares
// spares and releases segments.
var powerOpts = Options{SegmentSize: MinSegmentSize}

// powerRecord is the content of record seq: about 200 bytes, so that a
// segment holds 16 to 20 records.
func powerRecord(seq uint64) string {
	return fmt.Sprintf("%06d", seq) + strings.Repeat(string(rune('a'+seq%26)), 170+int(seq%50))
}

// powerRun is what a writer did before the power went out, and what
// Open found afterwards.
type powerRun struct {
	acked    []uint64 // records whose Append returned nil
	released uint64   // the highest ReleaseBefore called (even if it failed)
	done     bool     // the workload finished (the cut came later)

	recovery Recovery // of the survivors
	extra    int      // records that survived though never acknowledged
}

// powerMode is how the workload appends.
type powerMode struct {
	// noSync makes the log skip its fdatasyncs: a negative control.
	noSync bool
	// pipelined writes the groups with Write while another goroutine
	// syncs them (Sync), as the store's writer and syncer do: a record is
	// acknowledged once a Sync that returned covers it.
	pipelined bool
	// ackAtWrite (with pipelined) acknowledges a group as soon as its
	// Write returns, before any Sync covers it: the negative control of
	// the pipeline.
	ackAtWrite bool
}

// powerGroups are the workload's groups of records, by size.
var powerGroups = []int{1, 1, 5, 1, 3, 1, 8, 1, 1, 2, 12, 1, 1, 4, 1, 7, 1, 16, 1}

// powerWorkload opens a log in dir and appends to it, alone and in
// groups, releasing older segments now and then as the store will, until
// something fails (the power is out) or the workload is done.
func powerWorkload(dir string, mode powerMode) powerRun {
	var run powerRun
	l, err := Open(dir, powerOpts)
	if err != nil {
		return run
	}
	defer l.Close()
	if mode.noSync {
		l.syncData = func(*os.File) error { return nil }
	}
	if mode.pipelined {
		return powerPipelined(l, mode.ackAtWrite)
	}
	for i, n := range powerGroups {
		next := l.LastSeq() + 1
		recs := make([][]byte, n)
		for j := range recs {
			recs[j] = []byte(powerRecord(next + uint64(j)))
		}
		last, err := l.Append(recs...)
		if err != nil {
			return run
		}
		for seq := next; seq <= last; seq++ {
			run.acked = append(run.acked, seq)
		}
		if i%4 == 3 && last > 10 {
			// Once asked, the records below are not needed any more,
			// and may be gone even if the call fails (seen: the spare
			// being prepared meanwhile fsynced the folder, making the
			// unlink durable, and then the power went out before the
			// release's own folder fsync).
			run.released = last - 10
			if err := l.ReleaseBefore(last - 10); err != nil {
				return run
			}
		}
	}
	run.done = l.Close() == nil
	return run
}

// powerPipelined writes the workload's groups to l while a syncer
// goroutine syncs them: a group is written while the fdatasync of the
// ones before it runs. A record is acknowledged once a Sync that covers
// it returned (or, with ackAtWrite, once its Write returned).
func powerPipelined(l *Log, ackAtWrite bool) powerRun {
	var run powerRun
	var mu sync.Mutex
	ack := func(last uint64) {
		mu.Lock()
		defer mu.Unlock()
		next := l.FirstSeq()
		if len(run.acked) > 0 {
			next = run.acked[len(run.acked)-1] + 1
		}
		for seq := next; seq <= last; seq++ {
			run.acked = append(run.acked, seq)
		}
	}
	wrote := make(chan struct{}, 1)
	syncerDone := make(chan error)
	go func() {
		for range wrote {
			last, err := l.Sync()
			if err != nil {
				syncerDone <- err
				return
			}
			if !ackAtWrite {
				ack(last)
			}
		}
		syncerDone <- nil
	}()
	failed := false
	for i, n := range powerGroups {
		next := l.written.Load() + 1
		recs := make([][]byte, n)
		for j := range recs {
			recs[j] = []byte(powerRecord(next + uint64(j)))
		}
		last, err := l.Write(recs...)
		if err != nil {
			failed = true
			break
		}
		if ackAtWrite {
			ack(last)
		}
		select {
		case wrote <- struct{}{}:
		default: // the syncer will sync this one with the next
		}
		if synced := l.LastSeq(); i%4 == 3 && synced > 10 {
			mu.Lock()
			run.released = synced - 10
			mu.Unlock()
			if err := l.ReleaseBefore(synced - 10); err != nil {
				failed = true
				break
			}
		}
	}
	// The last group's Sync.
	select {
	case wrote <- struct{}{}:
	default:
	}
	close(wrote)
	if err := <-syncerDone; err != nil || failed {
		return run
	}
	if l.LastSeq() != l.written.Load() {
		// The last Sync began before the last Write: sync once more.
		last, err := l.Sync()
		if err != nil {
			return run
		}
		ack(last)
	}
	run.done = l.Close() == nil
	return run
}

// powerCut runs the workload on a power-loss file system that cuts the
// power just before its cut-th change (torn writes, seeded with cut),
// then opens what survived and checks it. It returns the run and the
// acknowledged records lost (or an error opening the survivors).
func powerCut(t *testing.T, cut int, mode powerMode) (powerRun, []uint64, error) {
	t.Helper()
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Torn, Seed: int64(cut), CutAfter: cut})
	run := powerWorkload(filepath.Join(fs.Dir(), "wal"), mode)
	_, err := fs.Cut()
	require.NoError(t, err)
	out := t.TempDir()
	require.NoError(t, fs.WriteSurvivors(out))
	require.NoError(t, fs.Unmount())

	dir := filepath.Join(out, "wal")
	l, err := Open(dir, powerOpts)
	if err != nil {
		return run, nil, err
	}
	defer l.Close()
	run.recovery = l.Recovery()
	survived := map[uint64]bool{}
	next := l.FirstSeq()
	err = l.Replay(next-1, func(seq uint64, rec []byte) error {
		if seq != next || string(rec) != powerRecord(seq) {
			return fmt.Errorf("record %d: %.10q..., want record %d", seq, rec, next)
		}
		survived[seq] = true
		next++
		return nil
	})
	require.NoError(t, err, "cut %d", cut)
	var lost []uint64
	for _, seq := range run.acked {
		if seq >= run.released && !survived[seq] {
			lost = append(lost, seq)
		}
	}
	var lastAcked uint64
	if len(run.acked) > 0 {
		lastAcked = run.acked[len(run.acked)-1]
	}
	if next-1 > lastAcked {
		run.extra = int(next - 1 - lastAcked)
	}

	// The recovered log takes appends and keeps them.
	seq, err := l.Append([]byte("after the cut"))
	require.NoError(t, err, "cut %d", cut)
	require.NoError(t, l.Close())
	l, err = Open(dir, powerOpts)
	require.NoError(t, err, "cut %d", cut)
	var got string
	require.NoError(t, l.Replay(seq-1, func(_ uint64, rec []byte) error {
		got = string(rec)
		return nil
	}))
	require.Equal(t, "after the cut", got, "cut %d", cut)
	return run, lost, nil
}

// TestPowerCutKeepsAcknowledgedRecords cuts the power before every change
// the log makes to the file system, one cut per mount: while it creates
// its folder and first segment, between each write and its fdatasync,
// while it prepares a spare (fallocate, zeros, fsync, folder fsync),
// renames it, and releases segments. Unsynced changes may survive in part,
// torn at 512-byte sectors, in any order. Every time, the survivors open
// without a corruption error, replay in order, keep every acknowledged
// record that was not released, and take new appends.
func TestPowerCutKeepsAcknowledgedRecords(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip(err)
	}
	step := 1
	if testing.Short() {
		step = 7
	}
	cutEvery(t, step, powerMode{})
}

// cutEvery runs powerCut for every step-th change, from the first until
// the workload ends before the cut, and checks that each time the
// survivors open and keep every acknowledged record.
func cutEvery(t *testing.T, step int, mode powerMode) {
	t.Helper()
	var acked, cuts, torn, zeroed, extra int
	for cut := 1; ; cut += step {
		run, lost, err := powerCut(t, cut, mode)
		require.NoError(t, err, "cut %d: the survivors do not open", cut)
		require.Empty(t, lost, "cut %d: acknowledged records lost", cut)
		acked += len(run.acked)
		cuts++
		if run.recovery.CutFile != "" {
			torn++
		}
		if run.recovery.ZeroedBytes > 0 {
			zeroed++
		}
		if run.extra > 0 {
			extra++
		}
		if run.done {
			break
		}
		require.Less(t, cut, 2000, "the workload never finished")
	}
	t.Logf("%d power cuts, %d acknowledged records checked; the survivors had a torn record cut in %d, "+
		"leftovers cleared in %d, unacknowledged records kept in %d", cuts, acked, torn, zeroed, extra)
}

// TestPowerCutCatchesALogWithoutFdatasync is the negative control: the
// same workload on a log whose Append skips its fdatasync loses
// acknowledged records (or leaves a log that does not open) at some cut.
func TestPowerCutCatchesALogWithoutFdatasync(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip(err)
	}
	for cut := 10; cut < 200; cut += 10 {
		run, lost, err := powerCut(t, cut, powerMode{noSync: true})
		if len(lost) > 0 || errors.Is(err, ErrCorrupt) {
			t.Logf("cut %d: caught (%d lost of %d acknowledged; open: %v)", cut, len(lost), len(run.acked), err)
			return
		}
		require.NoError(t, err)
		if run.done {
			break
		}
	}
	assert.Fail(t, "no cut lost an acknowledged record of a log that does not sync")
}

// TestPowerCutPipelinedKeepsSyncedRecords is the cut of every 3rd change
// under the store's pipeline: groups written (Write) while the fdatasync
// of the ones before runs (Sync in another goroutine), rotations waiting
// for a Sync in progress. Every record a returned Sync covered survives;
// records written but not yet synced may or may not.
func TestPowerCutPipelinedKeepsSyncedRecords(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip(err)
	}
	step := 3
	if testing.Short() {
		step = 11
	}
	cutEvery(t, step, powerMode{pipelined: true})
}

// TestPowerCutCatchesAcksBeforeTheirSync is the pipeline's negative
// control: acknowledging a group when its Write returns, while the Sync
// of the groups before it may still run, loses acknowledged records at
// some cut.
func TestPowerCutCatchesAcksBeforeTheirSync(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		t.Skip(err)
	}
	for cut := 5; cut < 300; cut += 5 {
		run, lost, err := powerCut(t, cut, powerMode{pipelined: true, ackAtWrite: true})
		if len(lost) > 0 {
			t.Logf("cut %d: caught (%d lost of %d acknowledged)", cut, len(lost), len(run.acked))
			return
		}
		require.NoError(t, err)
		if run.done {
			break
		}
	}
	assert.Fail(t, "no cut lost a record acknowledged before its Sync")
}
