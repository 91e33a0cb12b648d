package etcd

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/framework0/ctxd"
)

// patchLine lines up an instance's single patches of one key: one at a
// time is read, applied and committed. Each commit of a key compares
// its modification revision, so at most one patch of a key lands per
// revision however many race; without the line, n concurrent patches
// of one value made n rounds in which all but one lost, read etcd again
// and retried: n²/2 reads and applies (64 patchers of one document took
// 4 s on a quiet machine). In line, the next patch reads the value the
// previous one wrote (the read cache has it: a write is answered after
// the instance's watch saw it) and wins its compare; races are left to
// other instances' writes, retried as before. Transactions of several
// writes do not line up (two of them could wait for each other).
type patchLine struct {
	mu   sync.Mutex
	keys map[patchKey]*patchTurn
}

// patchKey is a key in its namespace.
type patchKey struct{ ns, key string }

// patchTurn is one key's line: turn holds a token while a patch of the
// key is under way; waiting counts the patches holding or awaiting it.
type patchTurn struct {
	turn    chan struct{}
	waiting int
}

// errPatchLineTooLong: a patch waited its key's line for longer than
// etcd.request_timeout, behind patches etcd was slow to answer; it was
// never sent.
var errPatchLineTooLong = fmt.Errorf("%w: not sent: the patches of the same key before it took longer than etcd.request_timeout", ctxd.ErrUnavailable)

// enter waits for the key's turn, at most timeout or until ctx ends;
// the caller calls the returned leave when its patch is answered.
func (l *patchLine) enter(ctx context.Context, ns, name string, timeout time.Duration) (leave func(), err error) {
	key := patchKey{ns, name}
	l.mu.Lock()
	if l.keys == nil {
		l.keys = make(map[patchKey]*patchTurn)
	}
	t := l.keys[key]
	if t == nil {
		t = &patchTurn{turn: make(chan struct{}, 1)}
		l.keys[key] = t
	}
	t.waiting++
	l.mu.Unlock()

	leave = func() { <-t.turn; l.done(key, t) }
	select {
	case t.turn <- struct{}{}: // the key's line is empty: no timer
		return leave, nil
	default:
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case t.turn <- struct{}{}:
		return leave, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errPatchLineTooLong
	}
	l.done(key, t)
	return nil, err
}

// done forgets the key's line once no patch holds or awaits it.
func (l *patchLine) done(key patchKey, t *patchTurn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.waiting--; t.waiting == 0 {
		delete(l.keys, key)
	}
}
