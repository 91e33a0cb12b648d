package wal

import (
	"fmt"
	"os"
	"slices"
)

// Replay calls fn with each record whose sequence number is above after,
// in order, up to the last durable record when Replay was called. rec is
// valid only until fn returns. An error from fn stops Replay and is
// returned as it is.
//
// Replay returns ErrReleased (wrapped) when records above after were
// released already, and a *CorruptError when a record no longer verifies.
// It reads its own file handles, so Append and ReleaseBefore may run
// meanwhile.
func (l *Log) Replay(after uint64, fn func(seq uint64, rec []byte) error) error {
	segs, files, last, err := l.replayFiles(after)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for j, sg := range segs {
		st, err := files[j].Stat()
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		stop := last + 1 // the first record not to read in this segment
		if j+1 < len(segs) {
			stop = min(stop, segs[j+1].first)
		}
		sc := newScanner(files[j], sg.path, st.Size(), sg.first)
		for sc.next < stop {
			rec, e, err := sc.scan()
			if err != nil {
				return err
			}
			switch e {
			case endZero, endRoom:
				return &CorruptError{File: sg.path, Offset: sc.off, Reason: fmt.Sprintf("record %d is missing", sc.next)}
			case endBad:
				return &CorruptError{File: sg.path, Offset: sc.off, Reason: sc.reason}
			}
			if seq := sc.next - 1; seq > after {
				if err := fn(seq, rec); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// replayFiles opens the segments that hold the records after after, up to
// the last durable record, which it returns too.
func (l *Log) replayFiles(after uint64) ([]segment, []*os.File, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, 0, ErrClosed
	}
	last := l.last.Load()
	if after >= last {
		return nil, nil, last, nil
	}
	if after+1 < l.segs[0].first {
		return nil, nil, 0, fmt.Errorf("%w: replay after record %d: the log starts at record %d", ErrReleased, after, l.segs[0].first)
	}
	i := len(l.segs) - 1
	for l.segs[i].first > after+1 {
		i--
	}
	segs := slices.Clone(l.segs[i:])
	files := make([]*os.File, 0, len(segs))
	for _, sg := range segs {
		f, err := os.Open(sg.path)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, 0, fmt.Errorf("wal: %w", err)
		}
		files = append(files, f)
	}
	return segs, files, last, nil
}
