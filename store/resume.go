package store

import (
	"errors"
	"strconv"

	"github.com/framework0/ctxd"
)

// ResumeFrom turns a follower's resume point into the place to read the
// log from. A resume point is a revision rev and, optionally, index: the
// follower has every change before rev and, when index is nil, every
// change of rev; otherwise only the changes of rev whose place in the
// revision is below *index (on etcd the changes of one transaction share
// its revision, and a one-change-per-message feed can be cut between
// them). The follower then reads the log after `after` and leaves out the
// first `skip` changes of the first revision after it (which is rev).
//
// The answer is the whole revision (after = rev, skip = 0) whenever the
// log shows that rev holds no more than *index changes, or none it still
// has (a bolt revision, a restore's floor): so a resume point of either
// backend is accepted by both. A follower inside a revision the log no
// longer holds (compacted at it) gets the *ctxd.CompactedError: the rest
// of the revision is gone. An index of 0 (none of rev) is a resume from
// rev-1. When the log has nothing after rev-1 yet
// (another etcd instance that has not caught up with rev), the skip
// stands: it leaves out the first changes of rev when they come, and
// nothing if rev has none. A *ctxd.CompactedError says the changes after
// rev are gone, as ReadLog(rev, 1) would; rev 0, "every change history
// still holds", is never refused so: it starts at the oldest one.
// maxSkip bounds a skip taken on trust (the revision is not in the log
// yet): more than any revision holds.
const maxSkip = 1 << 30

func ResumeFrom(f Feed, rev uint64, index *uint64) (after uint64, skip int, err error) {
	rev, index = noneOf(rev, index)
	if _, err := f.ReadLog(rev, 1); err != nil {
		var ce *ctxd.CompactedError
		if rev != 0 || !errors.As(err, &ce) || ce.Compacted == 0 {
			return 0, 0, err
		}
		// From 0 is every change history still holds: the oldest on (a
		// compaction keeps the change at its mark; a whole restore's
		// revision holds no change to send).
		start := ce.Compacted - 1
		if ce.RestoredFrom != 0 {
			start = ce.Compacted
		}
		if _, err := f.ReadLog(start, 1); err != nil {
			return 0, 0, err
		}
		return start, 0, nil
	}
	if index == nil || rev == 0 {
		return rev, 0, nil
	}
	// A page never ends inside a revision: one read of one change holds
	// every change of the first revision after rev-1.
	changes, err := f.ReadLog(rev-1, 1)
	var ce *ctxd.CompactedError
	if errors.As(err, &ce) {
		if ce.RestoredFrom == 0 {
			// Compacted at rev: the rest of rev, which the follower
			// never got, is gone with it.
			return 0, 0, err
		}
		return rev, 0, nil // a restore's floor: rev has no changes to send again
	}
	if err != nil {
		return 0, 0, err
	}
	if len(changes) == 0 {
		return rev - 1, int(min(*index, maxSkip)), nil
	}
	n := 0
	for n < len(changes) && changes[n].Revision == rev {
		n++
	}
	if uint64(n) <= *index {
		return rev, 0, nil
	}
	return rev - 1, int(*index), nil
}

// noneOf makes a resume point with an index of 0 (none of rev) the one
// from rev-1 it is, whatever became of rev (a restore discarded it, say,
// where rev-1 resumes; it is past the database, where rev-1 is not).
func noneOf(rev uint64, index *uint64) (uint64, *uint64) {
	if index != nil && *index == 0 && rev > 0 {
		return rev - 1, nil
	}
	return rev, index
}

// Ahead reports whether the resume point (rev, index) is past every
// revision the backend has: a follower that has seen rev followed
// another database (this one was replaced by an older backup, or lost
// and started empty, or it is another deployment). Such a resume point would wait, silent, until the
// revisions caught up with it, and then skip the changes before it; a
// feed tells the follower to re-read the state instead (reset). It asks
// the backend only when rev is past this instance's committed mark, and
// asks the authority then (on etcd the cluster, which an instance's mark
// may trail): a resume point an instance has not caught up with yet is
// not ahead. An error of the backend's (etcd unreachable) is not ahead
// either: the resume goes on as before.
func Ahead(b Backend, rev uint64, index *uint64) bool {
	rev, _ = noneOf(rev, index)
	if committed, _ := b.Committed(); rev <= committed {
		return false
	}
	return errors.Is(b.CheckRevision(rev), ctxd.ErrFutureRevision)
}

// AheadReason says why a follower whose resume point fromRev is Ahead of
// rev, the database's last revision, is told to reset.
func AheadReason(fromRev, rev uint64) string {
	return "from_rev " + strconv.FormatUint(fromRev, 10) + " is past this database's last revision (" + strconv.FormatUint(rev, 10) +
		"): it was replaced by an older backup or lost, or this is another deployment"
}
