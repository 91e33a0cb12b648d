package bolt

import (
	"context"
	"sync"
)

// EndCtx is a ctx that is done when the test calls End, not on a timer,
// and then fails with the error it was made with. It is exported for the
// external tests (package bolt_test) too: only tests compile it.
type EndCtx struct {
	context.Context
	err  error
	done chan struct{}
	once sync.Once
}

// NewEndCtx returns an EndCtx whose Err, once ended, is err.
func NewEndCtx(err error) *EndCtx {
	return &EndCtx{Context: context.Background(), err: err, done: make(chan struct{})}
}

func (c *EndCtx) Done() <-chan struct{} { return c.done }

func (c *EndCtx) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// End ends the ctx; ending it again does nothing.
func (c *EndCtx) End() { c.once.Do(func() { close(c.done) }) }
