package httpapi

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Spools share a budget of file bytes that none passes, alone or
// together: a spool that would take the total past it is refused
// (errSpoolFull while others hold the room, errSpoolTooLarge when it
// would pass it alone), ends at once (its file closed, its bytes given
// back) and refuses every later write; all bytes come back when the
// answers end. Before, a spool already in grew without bound.
func TestSpoolsShareTheBudget(t *testing.T) {
	var held atomic.Int64
	newSpool := func() *spool { return &spool{held: &held, max: 3 << 20} }
	chunk := bytes.Repeat([]byte("x"), 1<<20)

	a, b := newSpool(), newSpool()
	defer a.close()
	defer b.close()
	for range 2 { // 2 MiB: past the memory part, within the budget
		_, err := a.Write(chunk)
		require.NoError(t, err)
	}
	_, err := b.Write(chunk) // in memory
	require.NoError(t, err)
	_, err = b.Write(chunk) // 2 MiB on disk: past the budget with a's
	require.ErrorIs(t, err, errSpoolFull)
	assert.Equal(t, a.mine, held.Load(), "the refused spool gave its bytes back")
	_, err = b.Write([]byte("x"))
	require.ErrorIs(t, err, errSpoolFull, "a refused spool stays refused")

	_, err = a.Write(chunk)
	require.NoError(t, err, "a spool grows up to the budget")
	_, err = a.Write([]byte("x"))
	require.ErrorIs(t, err, errSpoolTooLarge, "not one byte past it, even alone")
	assert.Zero(t, held.Load(), "the refused spool gave its bytes back at once")
	assert.Nil(t, a.f, "and closed its file")

	c := newSpool()
	defer c.close()
	for range 3 {
		_, err = c.Write(chunk)
		require.NoError(t, err, "room again")
	}
	c.close()
	assert.Zero(t, held.Load(), "an answer's end gives its bytes back")
}

// Of two spools that grow together, in turns, past the budget, the one
// whose bytes would pass it is refused and gives them back at once, and
// the other goes to its end: the total never passes the budget. Before,
// both were in once they had spilled, and both grew past it.
func TestOfTwoSpoolsGrowingTogetherOneGoes(t *testing.T) {
	const max = 4 << 20
	var held atomic.Int64
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	a, b := &spool{held: &held, max: max}, &spool{held: &held, max: max}
	defer a.close()
	defer b.close()
	var errA, errB error
	for range 48 { // 3 MiB each: one fits, not two
		if errA == nil {
			_, errA = a.Write(chunk)
		}
		if errB == nil {
			_, errB = b.Write(chunk)
		}
		require.LessOrEqual(t, held.Load(), int64(max))
	}
	require.True(t, (errA == nil) != (errB == nil), "one goes, one is refused: %v, %v", errA, errB)
	refused, went := errA, b
	if refused == nil {
		refused, went = errB, a
	}
	require.ErrorIs(t, refused, errSpoolFull, "the other held the room")
	assert.Equal(t, went.mine, held.Load(), "the refused spool gave its bytes back")
	assert.Equal(t, int64(48*len(chunk)), went.size)
}

// With a leader (as the server's spools have): the oldest spool that
// spills leads, goes on past the shared budget while it fits alone (the
// total then passes it by at most the leader's part), and the others are
// refused; once the leader ends, the role passes to the next that spills.
func TestTheOldestSpoolLeads(t *testing.T) {
	const max = 4 << 20
	var held atomic.Int64
	var leader atomic.Pointer[spool]
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	newSpool := func() *spool { return &spool{held: &held, leader: &leader, max: max} }
	write := func(sp *spool, chunks int) error {
		for range chunks {
			if _, err := sp.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	}
	a, b := newSpool(), newSpool()
	defer b.close()
	// (Past the first MiB, kept in memory, a spool's whole size counts.)
	require.NoError(t, write(a, 24)) // 1.5 MiB
	require.Same(t, a, leader.Load(), "the first to spill leads")
	require.NoError(t, write(b, 24)) // 3 MiB in all
	require.NoError(t, write(a, 32), "the leader goes on past the budget while it fits alone")
	assert.Greater(t, held.Load(), int64(max), "the total passed the budget by the leader's part")
	assert.LessOrEqual(t, held.Load(), int64(2*max))
	require.ErrorIs(t, write(b, 1), errSpoolFull, "a younger spool is refused")
	require.ErrorIs(t, write(a, 16), errSpoolTooLarge, "not past the budget alone")
	assert.Nil(t, leader.Load(), "a refused leader hands the role on")
	assert.Zero(t, held.Load(), "and both gave their bytes back")

	c := newSpool()
	defer c.close()
	require.NoError(t, write(c, 40))
	assert.Same(t, c, leader.Load(), "the next spool to spill leads")
}
