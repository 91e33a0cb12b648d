package wal

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
