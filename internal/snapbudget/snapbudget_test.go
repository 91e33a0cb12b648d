package snapbudget_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/internal/testkit"
)

func TestAGrantWaitsForRoomAndShrinks(t *testing.T) {
	b := snapbudget.New(100)
	first, err := b.Acquire(context.Background(), 80)
	require.NoError(t, err)
	assert.Equal(t, snapbudget.Stats{Capacity: 100, Held: 80}, b.Stats())

	got := make(chan *snapbudget.Grant)
	go func() {
		g, err := b.Acquire(context.Background(), 60)
		assert.NoError(t, err)
		got <- g
	}()
	testkit.Eventually(t, func() bool { return b.Stats().Waiting == 1 })
	select {
	case <-got:
		t.Fatal("a reservation that does not fit was granted")
	default:
	}

	first.Shrink(30) // built: 30 bytes wait to be written, 50 are free
	second := <-got
	assert.Equal(t, snapbudget.Stats{Capacity: 100, Held: 90, Waited: 1}, b.Stats())

	first.Release()
	first.Release() // twice: nothing more
	second.Shrink(200)
	assert.Equal(t, int64(60), b.Stats().Held, "shrinking to more than held keeps what it holds")
	second.Release()
	assert.Equal(t, int64(0), b.Stats().Held)
}

func TestAReservationLargerThanTheBudgetTakesItAll(t *testing.T) {
	b := snapbudget.New(10)
	g, err := b.Acquire(context.Background(), 1<<30)
	require.NoError(t, err)
	assert.Equal(t, int64(10), b.Stats().Held)
	g.Release()
	assert.Equal(t, int64(0), b.Stats().Held)
}

func TestAWaitEndsWithItsContext(t *testing.T) {
	b := snapbudget.New(10)
	g, err := b.Acquire(context.Background(), 10)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = b.Acquire(ctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, snapbudget.Stats{Capacity: 10, Held: 10, Waited: 1}, b.Stats())
	g.Release()
	g2, err := b.Acquire(context.Background(), 10)
	require.NoError(t, err, "the abandoned wait took nothing")
	g2.Release()
}

func TestReleaseAfter(t *testing.T) {
	b := snapbudget.New(10)
	g, err := b.Acquire(context.Background(), 10)
	require.NoError(t, err)
	g.ReleaseAfter(10 * time.Millisecond)
	testkit.Eventually(t, func() bool { return b.Stats().Held == 0 })
	g.Release() // already released: nothing more
	g2, err := b.Acquire(context.Background(), 10)
	require.NoError(t, err)
	assert.Equal(t, int64(10), b.Stats().Held, "one release, not two")
	g2.Release()
}

func TestANilBudgetGrantsEverything(t *testing.T) {
	var b *snapbudget.Budget
	g, err := b.Acquire(context.Background(), 1<<40)
	require.NoError(t, err)
	g.Shrink(1)
	g.Release()
	assert.Equal(t, snapbudget.Stats{}, b.Stats())
}
