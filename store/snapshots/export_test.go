package snapshots

import "time"

// SetNow sets the clock that names m's snapshots.
func SetNow(m *Manager, now func() time.Time) { m.now = now }
