package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// ctxd compaction discards a running server's history below a revision
// (default: the current one), keeping --keep-versions per key: history
// shrinks to what is kept, a read below the mark exits 4 (the exit code
// table's "not found": a revision discarded) with compacted, and bad
// arguments exit 2 without reaching the server.
func TestCLICompaction(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir())
	env := []string{"CTXD_SERVER=" + checkedURL(t, srv)}
	var first ctxd.Record
	for i := 1; i <= 4; i++ {
		rec := fromJSON[ctxd.Record](t, cliOK(t, env, "", "put", "k", strconv.Itoa(i), "-o", "json"))
		if i == 1 {
			first = rec
		}
	}
	cliOK(t, env, "", "put", "other", "1")
	history := func() []ctxd.Change {
		return fromJSON[ctxd.HistoryPage](t, cliOK(t, env, "", "history", "k", "-o", "json")).Changes
	}
	require.Len(t, history(), 4)

	// Below revision 3, keeping one version: k's changes at revisions 1
	// and 2 go; 3, in effect at the mark, stays.
	res := fromJSON[ctxd.CompactResult](t, cliOK(t, env, "", "compaction", "3", "--keep-versions", "1", "-o", "json"))
	assert.Equal(t, uint64(3), res.Revision)
	assert.Equal(t, 2, res.Removed)
	assert.Len(t, history(), 2)
	below := strconv.FormatUint(first.ModRev, 10)
	for _, args := range [][]string{
		{"get", "k", "--rev", below},
		{"dump", "--rev", below},
		{"watch", "--from-rev", below},
	} {
		r := cli(t, env, "", args...)
		assert.Equal(t, 4, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stderr, "compacted", "%v", args)
	}

	// Up to now (the table's line): one version of each key left.
	out := cliOK(t, env, "", "compaction", "--keep-versions", "1")
	assert.True(t, strings.HasPrefix(out, "history compacted below revision 5: 1 change removed"), out)
	assert.Len(t, history(), 1)
	out = cliOK(t, env, "", "compaction", "2")
	assert.Equal(t, "history was already compacted below revision 5 (above 2): nothing removed\n", out, "says why nothing went")

	for _, args := range [][]string{{"abc"}, {"0"}, {"--keep-versions", "0"}, {"1", "2"}} {
		r := cli(t, env, "", append([]string{"compaction"}, args...)...)
		assert.Equal(t, 2, r.code, "compaction %v: %s", args, r.stderr)
	}
	r := cli(t, env, "", "compaction", "99")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "future_revision")
	assert.Len(t, history(), 1)
}
