package httpapi

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Spools share a budget of file bytes: the first to spill is let in and
// grows as its answer needs; another that spills while it holds bytes
// past the budget is refused and gives its bytes back at once; all come
// back when the answers end. Before, a spool already in was refused at its
// next write once another held bytes, and two answers spilling together
// were both refused.
func TestSpoolsShareTheBudget(t *testing.T) {
	var held atomic.Int64
	newSpool := func() *spool { return &spool{held: &held, max: 2 << 20} }
	chunk := bytes.Repeat([]byte("x"), 1<<20)

	a, b := newSpool(), newSpool()
	defer a.close()
	defer b.close()
	for range 3 { // 3 MiB: past the memory part and the budget, alone
		_, err := a.Write(chunk)
		require.NoError(t, err)
	}
	_, err := b.Write(chunk) // in memory
	require.NoError(t, err)
	_, err = b.Write(chunk) // its first bytes on disk
	require.ErrorIs(t, err, errSpoolFull)
	assert.Equal(t, a.mine, held.Load(), "the refused spool gave its bytes back")
	_, err = a.Write(chunk)
	require.NoError(t, err, "a spool already in grows as its answer needs")

	a.close()
	assert.Zero(t, held.Load(), "an answer's end gives its bytes back")
	c := newSpool()
	defer c.close()
	for range 3 {
		_, err = c.Write(chunk)
		require.NoError(t, err, "room again")
	}
}
