package testkit

import (
	"fmt"
	"testing"
	"time"
)

// Deadline bounds every wait of the kit: long enough never to fire on a
// slow machine or under -race, so that a bug fails the test instead of
// hanging it. No test asserts on time with it.
const Deadline = 60 * time.Second

// Eventually waits until cond is true, checking every few milliseconds,
// and fails the test if it is not within Deadline; msgAndArgs (a format
// and its arguments) says what was awaited. Tests wait for what they need
// (N writes acknowledged, a client connected) rather than sleep. Unlike
// testify's Eventually, cond runs in the caller's goroutine: it may use
// require, and share variables with the test without locks.
func Eventually(t testing.TB, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: %s", Deadline, message(msgAndArgs))
		}
		<-tick.C
	}
}

func message(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return "condition"
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(f, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}
