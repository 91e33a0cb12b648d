package testkit

import (
	"go.uber.org/goleak"
)

// VerifyNoLeaks runs a package's tests, then the teardown functions (a
// browser the tests shared, a temp folder), then fails the run if any
// goroutine is still running that the tests started: the body of every
// package's TestMain.
//
//	func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }
//
// goleak retries for a while before it reports, so goroutines that are
// finishing (a closed connection's reader) are not taken for leaks.
func VerifyNoLeaks(m goleak.TestingM, teardown ...func()) {
	goleak.VerifyTestMain(runThenTeardown{m, teardown}, LeakOptions()...)
}

// LeakOptions are the goroutines the check ignores, each a long-lived
// goroutine of a library that is not a leak of ours.
func LeakOptions() []goleak.Option {
	return nil
}

type runThenTeardown struct {
	m        goleak.TestingM
	teardown []func()
}

func (r runThenTeardown) Run() int {
	code := r.m.Run()
	for _, f := range r.teardown {
		f()
	}
	return code
}
