package powerfs_test

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
)

// record is the i-th record of a writer's log: a fixed-size line with a
// checksum, so that a torn or zeroed record is not taken for a whole one.
func record(i int) string {
	return fmt.Sprintf("rec %06d %08x\n", i, crc32.ChecksumIEEE(fmt.Appendf(nil, "%d", i)))
}

// records returns the whole records in a log.
func records(log []byte) []string {
	var out []string
	for line := range bytes.Lines(log) {
		var i int
		if _, err := fmt.Sscanf(string(line), "rec %06d", &i); err == nil && string(line) == record(i) {
			out = append(out, string(line))
		}
	}
	return out
}

// ackWriter appends records to a log file and acknowledges them (appends
// to acked) as its policy says, until a write or sync fails.
type ackWriter struct {
	name string
	// ackBeforeSync acknowledges a record once written, syncing every
	// syncEvery records (never if 0): the bug the harness must catch.
	// Otherwise each record is written, synced, then acknowledged.
	ackBeforeSync bool
	syncEvery     int
}

func (w ackWriter) run(f *os.File, ack func(string)) {
	for i := 0; ; i++ {
		rec := record(i)
		if _, err := f.WriteString(rec); err != nil {
			return
		}
		if w.ackBeforeSync {
			ack(rec)
			if w.syncEvery > 0 && i%w.syncEvery == w.syncEvery-1 {
				if err := f.Sync(); err != nil {
					return
				}
			}
			continue
		}
		if err := f.Sync(); err != nil {
			return
		}
		ack(rec)
	}
}

// lostAcks runs w on a fresh mount, cuts the power after it has
// acknowledged n records (it keeps writing meanwhile), and returns the
// acknowledged records that did not survive.
func lostAcks(t *testing.T, w ackWriter, opts powerfs.Options, n int) []string {
	t.Helper()
	fs := powerfs.MountT(t, opts)
	p := filepath.Join(fs.Dir(), "log")
	create(t, p, "", true)
	syncDir(t, fs.Dir())
	f := open(t, p)

	var mu sync.Mutex
	var acked []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(f, func(rec string) {
			mu.Lock()
			defer mu.Unlock()
			acked = append(acked, rec)
		})
	}()
	testkit.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= n
	}, "%d records acknowledged", n)
	_, err := fs.Cut()
	require.NoError(t, err)
	<-done // the writer stops at its first failed write or sync

	log, err := os.ReadFile(filepath.Join(survivors(t, fs), "log"))
	require.NoError(t, err)
	return powerfs.LostAcks(acked, records(log))
}

// The negative control: the harness catches a writer that acknowledges
// before its data is synced, and finds nothing wrong with one that syncs
// first. A harness that cannot fail is worth nothing.
func TestHarnessCatchesEarlyAcknowledgement(t *testing.T) {
	writers := []ackWriter{
		{name: "sync then ack"},
		{name: "ack then sync every 8", ackBeforeSync: true, syncEvery: 8},
		{name: "ack, never sync", ackBeforeSync: true},
	}
	cases := []powerfs.Options{{Mode: powerfs.Strict}}
	for seed := int64(1); seed <= 5; seed++ {
		cases = append(cases, powerfs.Options{Mode: powerfs.Torn, Seed: seed})
	}
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			total := 0
			for i, o := range cases {
				lost := lostAcks(t, w, o, 20+7*i)
				t.Logf("%v seed %d: %d acknowledged records lost", o.Mode, o.Seed, len(lost))
				if !w.ackBeforeSync {
					assert.Empty(t, lost, "%v seed %d", o.Mode, o.Seed)
				}
				if w.ackBeforeSync && w.syncEvery == 0 {
					assert.NotEmpty(t, lost, "%v seed %d: nothing is ever synced", o.Mode, o.Seed)
				}
				total += len(lost)
			}
			if w.ackBeforeSync {
				assert.Positive(t, total, "the early acknowledgements are caught")
			}
		})
	}
}

func TestLostAcks(t *testing.T) {
	assert.Equal(t, []int{2, 4}, powerfs.LostAcks([]int{1, 2, 3, 4}, []int{3, 1, 5}))
	assert.Empty(t, powerfs.LostAcks([]string{"a"}, []string{"a", "b"}))
	assert.Empty(t, powerfs.LostAcks(nil, []string{"a"}))
}
