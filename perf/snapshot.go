package perf

import (
	"context"
	"fmt"
	"slices"
	"time"
)

func (s *suite) snapshotSteps() []step {
	sizes := uniqueSorted(s.cfg.SnapshotKeys...)
	// One server for every size: the database grows from one to the next.
	var ep endpoint
	stop := func() {}
	var steps []step
	for i, k := range sizes {
		name := fmt.Sprintf("snapshot/keys=%d", k)
		est := time.Duration(s.cfg.SnapshotRepeats)*time.Duration(k)*20*time.Microsecond + time.Duration(k)*10*time.Microsecond + 500*time.Millisecond
		prev := 0
		if i > 0 {
			prev = sizes[i-1]
		}
		last := i == len(sizes)-1
		steps = append(steps, step{name: name, estimate: est, run: func(ctx context.Context) error {
			if i == 0 {
				var err error
				if _, ep, stop, err = s.ownServer(false); err != nil {
					return err
				}
			}
			if last {
				defer stop()
			}
			if ep.addr == "" {
				return fmt.Errorf("no server: the first size's step failed")
			}
			return s.snapshotRun(ctx, ep, name, prev, k)
		}})
	}
	return steps
}

// snapshotRun grows the perf-snapshot namespace from prev to k keys, then
// times a snapshot, a server-side JSON dump, a streamed JSON export and a
// full restore of the snapshot, SnapshotRepeats times each, or as many
// times as were done before the run was stopped (Repeats says which).
func (s *suite) snapshotRun(ctx context.Context, ep endpoint, name string, prev, k int) error {
	sr := SnapshotRun{Name: name, Keys: k}
	errs := &errorLog{}
	defer func() {
		sr.RunErrors = errs.result()
		s.report.Snapshot = append(s.report.Snapshot, sr)
	}()
	c := newHTTPConn(ep)
	defer c.Close()
	keys := make([]string, 0, k-prev)
	for i := prev; i < k; i++ {
		keys = append(keys, fmt.Sprintf("snap-%08d", i))
	}
	t := time.Now()
	if err := importKeys(c, nsSnap, keys, s.value); err != nil {
		errs.add(err)
		return err
	}
	sr.LoadSeconds = round6(time.Since(t).Seconds())
	st, settled, err := settledStatus(c, s.settleTimeout())
	if err != nil {
		errs.add(err)
		return err
	}
	sr.FileBytes, sr.Unsettled = st.FileSizeBytes, !settled

	var snap, dump, export, restore []float64
	// The files' sizes of the repeats that made them: a failed one has
	// none (its answer's 0 overwrote an earlier dump's size).
	var snapBytes, dumpBytes []int64
	timed := func(into *[]float64, fn func() error) error {
		t := time.Now()
		err := fn()
		if err == nil {
			*into = append(*into, time.Since(t).Seconds())
		} else {
			errs.add(err)
		}
		return err
	}
	for range s.cfg.SnapshotRepeats {
		if ctx.Err() != nil {
			break // the repeats done are kept
		}
		sr.Repeats++
		var meta snapshotMeta
		if timed(&snap, func() (err error) { meta, err = createSnapshot(c); return err }) != nil {
			continue
		}
		snapBytes = append(snapBytes, meta.Size)
		_ = timed(&dump, func() error {
			d, err := dumpNamespace(c, nsSnap, "perf-"+s.runID)
			if err == nil {
				dumpBytes = append(dumpBytes, d.FileSize)
			}
			return err
		})
		_ = timed(&export, func() error { _, err := exportNamespace(c, nsSnap); return err })
		_ = timed(&restore, func() error { return restoreSnapshot(c, meta.ID) })
		if err := deleteSnapshot(c, meta.ID); err != nil {
			errs.add(err)
		}
	}
	sr.SnapshotSeconds, sr.Spread.SnapshotSeconds = median(snap), round6(stddev(snap))
	sr.DumpSeconds, sr.Spread.DumpSeconds = median(dump), round6(stddev(dump))
	sr.ExportSeconds, sr.Spread.ExportSeconds = median(export), round6(stddev(export))
	sr.RestoreSeconds, sr.Spread.RestoreSeconds = median(restore), round6(stddev(restore))
	sr.SnapshotBytes, sr.DumpBytes = middle(snapBytes), middle(dumpBytes)
	return ctx.Err()
}

// median returns the middle value of vs (see middle), rounded to a
// microsecond; 0 for none.
func median(vs []float64) float64 { return round6(middle(vs)) }

// middle returns the middle value of vs (the mean of the two middle ones
// for an even count); 0 for none.
func middle[T int64 | float64](vs []T) T {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return m
}
