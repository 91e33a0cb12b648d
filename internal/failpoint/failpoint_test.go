package failpoint_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/failpoint"
)

func TestParse(t *testing.T) {
	got, err := failpoint.Parse(" snapshot-before-meta=crash ; defrag-catch-up=sleep(250ms)@2;commit-before-answer=crash@3;")
	require.NoError(t, err)
	assert.Equal(t, map[failpoint.Name]failpoint.Action{
		failpoint.SnapshotBeforeMeta: {Kind: failpoint.Crash},
		failpoint.DefragCatchUp:      {Kind: failpoint.Sleep, Sleep: 250 * time.Millisecond, At: 2},
		failpoint.CommitBeforeAnswer: {Kind: failpoint.Crash, At: 3},
	}, got)
	for n, a := range got {
		again, err := failpoint.Parse(string(n) + "=" + a.String())
		require.NoError(t, err)
		assert.Equal(t, a, again[n], "String spells what Parse reads")
	}

	empty, err := failpoint.Parse("")
	require.NoError(t, err)
	assert.Empty(t, empty)
}

func TestParseRefuses(t *testing.T) {
	for spec, want := range map[string]string{
		"snapshot-before-metadata=crash":                        `unknown failpoint "snapshot-before-metadata"`,
		"snapshot-before-meta":                                  "is not name=action",
		"snapshot-before-meta=boom":                             `unknown action "boom"`,
		"snapshot-before-meta=crash@0":                          "from 1",
		"snapshot-before-meta=crash@x":                          "from 1",
		"snapshot-before-meta=sleep(soon)":                      "needs a duration",
		"snapshot-before-meta=crash;snapshot-before-meta=crash": "armed twice",
	} {
		_, err := failpoint.Parse(spec)
		require.Error(t, err, spec)
		assert.Contains(t, err.Error(), want, spec)
		assert.Contains(t, err.Error(), failpoint.EnvVar, spec)
	}
}

func TestActs(t *testing.T) {
	crash := failpoint.Action{Kind: failpoint.Crash}
	assert.True(t, crash.Acts(1))
	assert.False(t, crash.Acts(2), "a crash acts once: there is no second hit after it")
	third := failpoint.Action{Kind: failpoint.Crash, At: 3}
	assert.Equal(t, []bool{false, false, true, false}, []bool{third.Acts(1), third.Acts(2), third.Acts(3), third.Acts(4)})
	sleep := failpoint.Action{Kind: failpoint.Sleep, Sleep: time.Millisecond}
	assert.True(t, sleep.Acts(1))
	assert.True(t, sleep.Acts(7), "a sleep without @N acts at every hit")
}

// TestHitIsInert: without -tags failpoints, Hit does nothing whatever the
// environment says.
func TestHitIsInert(t *testing.T) {
	t.Setenv(failpoint.EnvVar, "commit-before-answer=crash")
	for _, n := range failpoint.All {
		failpoint.Hit(n)
	}
}

func TestAllDistinct(t *testing.T) {
	seen := map[failpoint.Name]bool{}
	for _, n := range failpoint.All {
		assert.False(t, seen[n], "%s listed twice", n)
		seen[n] = true
		assert.Regexp(t, `^[a-z]+(-[a-z]+)+$`, string(n))
	}
}
