package testkit

import (
	"sync/atomic"

	"github.com/framework0/ctxd/store"
)

// CommitHook runs a function once in a bolt store's writer goroutine, after
// the next commit is durable and before its requests are answered: open
// the store with bolt.Options{OnCommit: h.OnCommit}, then call Once before
// the write. A function that blocks holds the writer there, so that a test
// decides when the caller may see the answer (a caller that gives up first
// gets "outcome unknown"), with no timing involved.
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
