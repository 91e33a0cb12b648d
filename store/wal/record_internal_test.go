package wal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecordIsTiedToItsSegment: the same record bytes verify only in the
// segment they were written for.
func TestRecordIsTiedToItsSegment(t *testing.T) {
	rec := appendRecord(nil, 100, 105, 2, []byte("payload"))
	assert.Len(t, rec, int(recordSize(7)))
	h := parseHeader(rec)
	assert.Equal(t, header{crc: h.crc, length: 7, seq: 105, groupOff: 2, kind: kindData}, h)
	assert.Equal(t, uint64(103), h.groupStart())
	body := rec[headerSize : headerSize+7]
	assert.Equal(t, h.crc, checksum(100, rec, body))
	assert.NotEqual(t, h.crc, checksum(99, rec, body), "the same bytes in another segment")
	assert.Equal(t, make([]byte, len(rec)-headerSize-7), rec[headerSize+7:], "zero padding")
}

// A record that verifies but carries the wrong sequence number (record 4
// where record 3 belongs) is not replayed as record 3.
func TestARecordOutOfSequenceIsNotReplayed(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{SegmentSize: 4096})
	require.NoError(t, err)
	_, err = l.Append([]byte("one"), []byte("two"))
	require.NoError(t, err)
	require.NoError(t, l.Close())
	path := filepath.Join(dir, segmentName(1))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	off := recordSize(3) * 2
	_, err = f.WriteAt(appendRecord(nil, 1, 4, 0, []byte("four")), off)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	l, err = Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		return // refusing the log is fine too
	}
	defer l.Close()
	var got []string
	require.NoError(t, l.Replay(0, func(seq uint64, rec []byte) error { got = append(got, string(rec)); return nil }))
	require.Equal(t, []string{"one", "two"}, got)
	require.Equal(t, uint64(2), l.LastSeq())
}
