package laggrace

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A client is cut once it has been behind for the whole grace, measured
// from the first check that found it behind; a check that finds it within
// max_lag starts it afresh. A grace of 0 cuts at the first check.
func TestClock(t *testing.T) {
	const grace = 10 * time.Second
	t0 := time.Unix(1000, 0)
	var c Clock
	end, cut := c.Check(true, t0, grace)
	assert.Equal(t, t0.Add(grace), end)
	assert.False(t, cut, "within the grace")
	assert.True(t, c.Behind())
	end, cut = c.Check(true, t0.Add(5*time.Second), grace)
	assert.Equal(t, t0.Add(grace), end, "the grace runs from the first check that found it behind")
	assert.False(t, cut)
	_, cut = c.Check(false, t0.Add(6*time.Second), grace)
	assert.False(t, cut)
	assert.False(t, c.Behind(), "caught up: afresh")
	end, cut = c.Check(true, t0.Add(7*time.Second), grace)
	assert.Equal(t, t0.Add(7*time.Second+grace), end)
	assert.False(t, cut)
	_, cut = c.Check(true, t0.Add(17*time.Second), grace)
	assert.True(t, cut, "behind for the whole grace")
	c.Reset()
	assert.False(t, c.Behind())

	var now Clock
	_, cut = now.Check(true, t0, 0)
	assert.True(t, cut, "a grace of 0 cuts at once")
}
