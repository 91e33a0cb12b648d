package testkit

import "github.com/framework0/ctxd/store/wal"

// SmallLogSegmentSize is the write-ahead log's segment size in the test
// processes that call SmallLogSegments: room for the largest value of the
// default limits (1 MiB) with its envelope, four times over.
const SmallLogSegmentSize = 4 << 20

// SmallLogSegments lowers the default size of the write-ahead log's
// segments, for the stores this test process opens, from 64 MiB to
// SmallLogSegmentSize. Call it first in TestMain.
//
// Opening a store reads its log's last segment whole (recovery looks past a
// torn tail for records written after it, see store/wal), and the race
// detector makes every byte read costly: with 64 MiB segments, reading
// preallocated zeros was over half of store/bolt's test time. Nothing else
// changes: every size is valid, the wal package's own tests keep the
// default, and ctxd processes that tests start (crash and power-loss tests)
// run with the default.
func SmallLogSegments() { wal.DefaultSegmentSize = SmallLogSegmentSize }
