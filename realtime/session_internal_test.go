package realtime

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// walk steps s, between two revisions, through the changes of the
// revisions after its position up to upTo (revs: each revision's keys,
// in order), as feedLocked does with an unlimited window, and returns
// those it sends, as "rev/index key".
func walk(s *session, revs map[uint64][]string, upTo uint64) []string {
	var sent []string
	for rev := s.pos + 1; rev <= upTo; rev++ {
		for i, key := range revs[rev] {
			e := &entry{rev: rev, idx: i, last: i == len(revs[rev])-1, ns: "default", key: key}
			s.stepLocked(e)
			if s.matches(e) {
				sent = append(sent, uitoa(rev)+"/"+uitoa(uint64(i))+" "+key)
			}
		}
	}
	return sent
}

func sub0(prefix string) ctxd.Subscription {
	return ctxd.Subscription{Namespace: "default", Prefix: prefix}
}

// A subscribe without from_rev handled before the hub fed a session that
// resumed inside revision R (from_index=k: the client has R's first k
// changes) starts where the client is, (R, k): a change of R before k
// that matches both subscriptions is not sent again, and the resume
// point stays (R, k). The end-to-end test (TestEtcdSubscribeInsideRevision)
// reaches this order of events only by chance: the hub feeds a session
// as soon as it connects.
func TestSubscribeBeforeFeedAfterResumeInsideRevision(t *testing.T) {
	const R, k = 5, 3
	revs := map[uint64][]string{R: {"a/0", "a/1", "a/2", "a/3", "a/4"}, R + 1: {"a/5"}}
	s := &session{pos: R - 1}
	s.setSubsLocked([]sub{{Subscription: sub0("a/"), skipRev: R, skipN: k}})

	since, skip := s.frontierLocked()
	s.addSubsLocked([]ctxd.Subscription{sub0("a/1")}, since, skip, R+1)
	rev, index := s.resumePointLocked()
	require.Equal(t, [2]any{uint64(R), k}, [2]any{rev, index}, "the resume point")
	require.Equal(t, []string{"5/3 a/3", "5/4 a/4", "6/0 a/5"}, walk(s, revs, R+1))
}

// A session that moved back for a subscribe with from_rev has sent its
// other subscriptions' changes up to where it was: a subscription added
// then without from_rev starts there too, not at the moved-back position
// (it would get again what the others sent). The same on bolt, whose
// revisions have one change each.
func TestSubscribeAfterMovingBack(t *testing.T) {
	revs := map[uint64][]string{}
	for r := uint64(1); r <= 10; r++ {
		revs[r] = []string{"k" + uitoa(r)}
	}
	s := &session{pos: 8}
	s.setSubsLocked([]sub{{Subscription: sub0("k")}})
	s.addSubsLocked([]ctxd.Subscription{sub0("k1")}, 3, 0, 8) // from_rev=3
	since, skip := s.frontierLocked()
	require.Equal(t, [2]any{uint64(8), 0}, [2]any{since, skip})
	s.addSubsLocked([]ctxd.Subscription{sub0("k5")}, since, skip, 8)
	require.Equal(t, []string{"9/0 k9", "10/0 k10"}, walk(s, revs, 10), "k5, sent before the move back, came again")
}
