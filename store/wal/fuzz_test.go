package wal_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/framework0/ctxd/store/wal"
)

// FuzzOpen opens a log whose first segment holds random bytes, followed
// or not by an empty segment named by next: Open must never panic, and
// must either refuse the log as corrupt or give back records that replay
// in order and a log that takes an append and keeps it across a reopen.
func FuzzOpen(f *testing.F) {
	opts := wal.Options{SegmentSize: small}
	src := f.TempDir()
	l, err := wal.Open(src, opts)
	if err != nil {
		f.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := l.Append(payload(i)[:i*7]); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := l.Append([]byte("g1"), nil, []byte("g3")); err != nil {
		f.Fatal(err)
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(src, segName(1)))
	if err != nil {
		f.Fatal(err)
	}
	good = bytes.TrimRight(good, "\x00")
	f.Add(good, uint64(0))
	f.Add(good, uint64(9))  // the next segment follows
	f.Add(good, uint64(4))  // an overlap
	f.Add(good, uint64(20)) // a gap
	f.Add(good[:len(good)/2], uint64(0))
	f.Add(good[:len(good)-3], uint64(0))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/3] ^= 1
	f.Add(flipped, uint64(0))
	f.Add(flipped, uint64(9))
	f.Add([]byte{}, uint64(0))
	f.Add(bytes.Repeat([]byte{0xff}, 100), uint64(2))

	f.Fuzz(func(t *testing.T, data []byte, next uint64) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if next > 1 {
			if err := os.WriteFile(filepath.Join(dir, segName(next)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		l, err := wal.Open(dir, opts)
		if err != nil {
			if !errors.Is(err, wal.ErrCorrupt) {
				t.Fatalf("Open failed, but not as corrupt: %v", err)
			}
			return
		}
		defer l.Close()
		first, last := l.FirstSeq(), l.LastSeq()
		n := first
		if err := l.Replay(first-1, func(seq uint64, _ []byte) error {
			if seq != n {
				t.Fatalf("record %d, want %d", seq, n)
			}
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != last+1 {
			t.Fatalf("replayed up to %d, LastSeq is %d", n-1, last)
		}
		seq, err := l.Append([]byte("appended"))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = wal.Open(dir, opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		var got []byte
		if err := l.Replay(seq-1, func(_ uint64, rec []byte) error {
			got = bytes.Clone(rec)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if l.LastSeq() != seq || string(got) != "appended" {
			t.Fatalf("after reopen: last %d %q, want %d %q", l.LastSeq(), got, seq, "appended")
		}
	})
}
