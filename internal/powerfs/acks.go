package powerfs

// LostAcks returns the records a writer acknowledged that are not among
// those that survived a power cut, in acknowledgement order: each one is
// a durability bug (the writer acknowledged before its data was synced),
// and a correct writer has none.
func LostAcks[T comparable](acked, survived []T) []T {
	have := make(map[T]bool, len(survived))
	for _, r := range survived {
		have[r] = true
	}
	var lost []T
	for _, r := range acked {
		if !have[r] {
			lost = append(lost, r)
		}
	}
	return lost
}
