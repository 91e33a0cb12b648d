package testkit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Deadline bounds every wait of the kit: long enough never to fire on a
// slow machine or under -race, so that a bug fails the test instead of
// hanging it. No test asserts on time with it.
const Deadline = 60 * time.Second

// Eventually waits until cond is true, checking every few milliseconds,
// and fails the test if it is not within Deadline. Tests wait for what
// they need (N writes acknowledged, a client connected) rather than sleep.
func Eventually(t testing.TB, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	require.Eventually(t, cond, Deadline, 5*time.Millisecond, msgAndArgs...)
}
