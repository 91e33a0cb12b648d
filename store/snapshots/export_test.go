package snapshots

import "time"

// SetNow sets the clock that names m's snapshots.
func SetNow(m *Manager, now func() time.Time) { m.now = now }

// ClaimTick is claimTick: it claims a scheduled snapshot's tick for m.
func ClaimTick(m *Manager, interval time.Duration, mine int64) (n int64, ok bool) {
	n, _, ok = m.claimTick(interval, mine)
	return n, ok
}
