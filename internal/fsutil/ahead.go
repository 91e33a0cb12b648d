package fsutil

import (
	"slices"
	"time"
)

// AheadSlack is how far ahead of the clock a file in a shared folder (a
// dump, a snapshot) may be dated and still count as recent: the clocks of
// instances sharing the folder differ a little.
const AheadSlack = time.Minute

// DatedAhead reports a date more than AheadSlack after now: a file
// written while the clock was ahead, before a step back.
func DatedAhead(date, now time.Time) bool { return date.After(now.Add(AheadSlack)) }

// AheadLast moves the items dated ahead of now (DatedAhead) to the end of
// items, newest first, keeping the order of the others: a folder's
// retention counts them as the oldest, or after a step back of the clock
// they would outlive everything written since (each new file pushing the
// one before out).
func AheadLast[T any](items []T, date func(T) time.Time, now time.Time) {
	slices.SortStableFunc(items, func(a, b T) int {
		aheadA, aheadB := DatedAhead(date(a), now), DatedAhead(date(b), now)
		switch {
		case aheadA == aheadB:
			return 0
		case aheadB:
			return -1
		}
		return 1
	})
}
