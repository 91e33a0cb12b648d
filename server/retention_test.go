package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// steadyLoad writes rounds of changes over the same keys to a whole
// server whose history settings are history (compact_interval made short,
// so that the test need not wait minutes for retention), and returns
// bbolt's high-water mark (db_size_bytes: how far the file is used; the
// file itself is that plus up to one 16 MiB growth step) after warm
// rounds and after more rounds again. When retention is on, each round
// waits until it has run up to the round's last revision, as it would on
// a server whose writes are spread over compact_interval.
func steadyLoad(t *testing.T, history configs.History, warm, more int) (afterWarm, afterMore int64) {
	t.Helper()
	history.CompactInterval = 20 * time.Millisecond
	s := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.History = history
		c.Storage.QuotaBytes = 0
	}))
	qs := quotaServer{Server: s, t: t}
	const keys, importsPerRound = 200, 10
	value := bigValue(100)
	var body strings.Builder
	body.WriteString(`{"context":{`)
	for k := range keys {
		if k > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `"steady/key-%03d":%s`, k, value)
	}
	body.WriteString(`}}`)
	round := func() {
		for range importsPerRound {
			code, b := qs.do(http.MethodPost, "/v1/ns/default/import", body.String())
			require.Equal(t, http.StatusOK, code, "%s", b)
		}
		if history.KeepVersions == 0 && history.KeepFor == 0 {
			return
		}
		rev := qs.status().Revision
		if rev <= history.KeepRevisions {
			return
		}
		testkit.Eventually(t, func() bool { return qs.status().CompactedRevision >= rev-history.KeepRevisions },
			"retention runs by itself up to revision %d", rev-history.KeepRevisions)
	}
	for range warm {
		round()
	}
	afterWarm = qs.status().DBSizeBytes
	for range more {
		round()
	}
	afterMore = qs.status().DBSizeBytes
	t.Logf("keep_versions %d, keep_for %v: db_size_bytes %d after %d rounds of %d changes, %d after %d more",
		history.KeepVersions, history.KeepFor, afterWarm, warm, keys*importsPerRound, afterMore, more)
	return afterWarm, afterMore
}

// With the default retention, a steady write load over the same keys
// stops growing the file once retention keeps up: the pages compaction
// frees are reused. The negative control keeps everything
// (history.keep_versions: 0) and grows with every round.
func TestDefaultRetentionBoundsTheFile(t *testing.T) {
	def := configs.Defaults().History
	require.Positive(t, def.KeepVersions, "history is bounded by default")
	// 18 rounds of 2,000 changes: past keep_revisions (10,000), so that
	// retention has run several times before the warm-up is measured.
	// Measured: 5.0 MB after the warm-up, and the same after 60 more
	// rounds (120,000 changes).
	warm, more := steadyLoad(t, def, 18, 36)
	assert.LessOrEqual(t, more, warm+warm/4, "the file kept growing under the default retention (%d -> %d)", warm, more)

	t.Run("negative control: keep everything", func(t *testing.T) {
		all := def
		all.KeepVersions = 0
		warm, more := steadyLoad(t, all, 18, 18)
		assert.GreaterOrEqual(t, more, warm+warm/2, "with history kept whole, twice the changes should take at least 1.5 times the room (%d -> %d)", warm, more)
	})
}
