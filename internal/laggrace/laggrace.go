// Package laggrace is the rule both change feeds (/v1/watch and Socket.IO)
// cut a slow client by: more than websocket.max_lag changes behind for
// websocket.lag_grace. A burst (an import, a large transaction) puts every
// client behind for a moment; one that keeps reading catches up within
// the grace and is not cut.
package laggrace

import "time"

// Clock follows one client's lag from check to check. The zero value is a
// client within max_lag.
type Clock struct {
	since time.Time // when it last went more than max_lag behind (zero: it is not)
}

// Check records a check at now; over says that the client is more than
// max_lag behind. For a client that is, it returns when its grace ends,
// and whether it has: the client is to be cut. A client found within
// max_lag starts afresh.
func (c *Clock) Check(over bool, now time.Time, grace time.Duration) (end time.Time, cut bool) {
	if !over {
		c.since = time.Time{}
		return time.Time{}, false
	}
	if c.since.IsZero() {
		c.since = now
	}
	end = c.since.Add(grace)
	return end, !now.Before(end)
}

// Behind reports whether the client was more than max_lag behind at the
// last check.
func (c *Clock) Behind() bool { return !c.since.IsZero() }

// Reset forgets the lag: the client is known to be within max_lag.
func (c *Clock) Reset() { c.since = time.Time{} }
