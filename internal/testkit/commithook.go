package testkit

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store"
)

// CommitHook runs a function once where a bolt store lands its next
// commit, after it is durable and before its requests are answered: open
// the store with bolt.Options{OnCommit: h.OnCommit}, then call Once before
// the write. A lone write lands in its caller's goroutine, so a function
// that blocks holds that caller (and every commit after it): Hold uses it
// to keep a write waiting behind another.
type CommitHook struct{ fn atomic.Pointer[func()] }

// OnCommit is the store's commit hook (bolt.Options.OnCommit): it runs the
// function given to Once, if any, and forgets it.
func (h *CommitHook) OnCommit(store.CommitInfo) {
	if f := h.fn.Swap(nil); f != nil {
		(*f)()
	}
}

// Once makes f run after the next commit only.
func (h *CommitHook) Once(f func()) { h.fn.Store(&f) }

// Hold runs write (a write to the store, e.g. a put of a key of the
// test's own) in a goroutine and holds its commit in the hook, durable and
// not answered, until release is called. Every write made meanwhile is
// written to the log and waits behind it: a caller that gives up waiting
// gets "outcome unknown", with no timing involved in the hold. release
// lets it go, then calls write again, whose answer comes after every
// write made before it: those are then applied and readable.
func (h *CommitHook) Hold(t testing.TB, write func() error) (release func()) {
	t.Helper()
	held, let := make(chan struct{}), make(chan struct{})
	h.Once(func() {
		close(held)
		<-let
	})
	done := make(chan error, 1)
	go func() { done <- write() }()
	<-held
	return func() {
		t.Helper()
		close(let)
		require.NoError(t, <-done, "the held write")
		require.NoError(t, write(), "the write after the held one")
	}
}
