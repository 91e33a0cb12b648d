// Package storetest is the conformance suite of store.Backend: one set of
// checks that every storage backend of ctxd runs unchanged, so that what
// sits above storage (the HTTP API, the WebSocket hub, snapshots,
// maintenance) behaves the same whichever backend serves it.
//
// # Using it for a new backend
//
// Call Run from a test in the backend's package, with a Harness that opens
// the backend on a folder:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			Open: func(t testing.TB, dir string, cfg storetest.Config) store.Backend {
//				b, err := mybackend.Open(dir, mybackend.Options{Limits: cfg.Limits, Now: cfg.Now})
//				require.NoError(t, err)
//				t.Cleanup(func() { require.NoError(t, b.Close()) })
//				return b
//			},
//			Defrag: false, // Defrag answers ctxd.ErrNotSupported
//			Clock:  true,  // changes are stamped with cfg.Now
//		})
//	}
//
// Every check opens its own backend in a new, empty folder. To restart a
// backend, the suite closes it and calls Open again with the same folder:
// the data must still be there. The suite closes backends itself (restarts,
// the close checks), so the cleanup's Close may be a second one; the
// contract makes that harmless. A backend whose data lives elsewhere (a
// server) derives the name of its data from dir and keeps folders apart.
// store/bolt/conformance_test.go is a complete example; it also checks the
// database file each time a store is closed.
//
// What legitimately differs between backends is a field of Harness, with
// its consequence spelled out; everything else is asserted for every
// backend. Where the contract allows more than one answer, the suite
// accepts each: a closed backend refuses work with ctxd.ErrClosed or an
// error matching ctxd.ErrUnavailable (bolt answers ctxd.ErrClosed); a
// read at the revision of a full restore answers the snapshot's data or
// a *ctxd.CompactedError (bolt answers the latter); compaction with keep
// 1 may drop a delete in effect at the mark, or keep it (bolt drops it).
// When a check fails for a new backend, either the backend is
// wrong or the contract is: then change store.Backend's comments first and
// this suite with them, never a copy of the suite.
//
// Each behaviour is one subtest, so that one can be run alone:
//
//	go test ./store/bolt -run 'TestConformance/CompareAndSwap'
//
// A backend's own tests keep what only that backend has: its file layout
// and file checks, fuzzing of its files, the internals of its
// defragmentation, its write batching.
package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// Harness is what a backend gives the suite: how to open it, and what it
// legitimately cannot do.
type Harness struct {
	// Open opens the backend whose data lives in dir, with cfg, creating
	// it empty when there is none. Called again with the same dir after
	// the backend there was closed, it must find the same data: that is a
	// restart. Open fails t when it cannot open, and registers on t
	// whatever the backend needs when the test ends (closing it, checking
	// its files).
	Open func(t testing.TB, dir string, cfg Config) store.Backend

	// Defrag says the backend defragments online. When false, the suite
	// asserts that Defrag answers ctxd.ErrNotSupported and changes nothing.
	Defrag bool

	// Revisions is how the backend numbers changes (the zero value is
	// bolt's RevisionPerChange). Under RevisionPerTxn the checks take
	// each write's revision from its answer, expect the changes of a
	// transaction to share one, and expect ReadLog never to end a page
	// inside a revision (a page may exceed its limit to finish one).
	Revisions RevisionRule

	// Restores is how a full restore numbers the restored data (the zero
	// value is bolt's RestoreKeepsRevisions).
	Restores RestoreRule

	// Snapshots says the backend writes, opens and restores snapshots.
	// When false, the suite asserts that every snapshot operation answers
	// ctxd.ErrNotSupported and changes nothing.
	Snapshots bool

	// Compaction is what the backend's compaction can keep (the zero
	// value is bolt's CompactPerKey). Under CompactAtMark the suite
	// asserts that keeping more than the change in effect per key, and
	// retention by age, answer ctxd.ErrNotSupported and change nothing.
	Compaction CompactionRule

	// Expiry says the backend expires keys: ctxd.Write.TTL and
	// KeepAlive. When false, the suite asserts that a write with a TTL
	// and a keepalive answer ctxd.ErrNotSupported and change nothing.
	Expiry bool

	// KeepAlive is which TTL a keepalive takes (the zero value is bolt's
	// KeepAliveAnyTTL). Under KeepAlivePutTTL the suite asserts that a
	// keepalive with another TTL than the key's put answers
	// ctxd.ErrInvalid and changes nothing; either way a keepalive makes
	// no version.
	KeepAlive KeepAliveRule

	// TTLUnit is how finely the backend keeps deadlines: the TTL checks
	// put TTLs of a few units, wait for them in real time, and expect an
	// expiry within about a unit of its deadline, a restart within less
	// (the zero value is a second: etcd's leases count whole seconds,
	// and its lessor looks for expired ones twice a second). A backend
	// that expires keys on time sets less, so that those checks take
	// less time; they put TTLs as short as a unit (Config.Limits.MinTTL).
	TTLUnit time.Duration

	// Clock says the backend stamps changes (Record.UpdatedAt, Change.Time)
	// with Config.Now and measures RetentionPolicy.KeepFor against it.
	// When false, Config.Now is ignored, and retention by age is checked
	// only as far as the real clock allows (a recent cut-off removes
	// nothing); the exact cut-off checks are skipped.
	Clock bool
}

// ttlUnit is h.TTLUnit, a second when unset.
func (h Harness) ttlUnit() time.Duration {
	if h.TTLUnit > 0 {
		return h.TTLUnit
	}
	return time.Second
}

// ttlConfig is the Config of the checks that wait for expiries: TTLs as
// short as a unit are valid.
func (h Harness) ttlConfig() Config {
	return Config{Limits: ctxd.Limits{MinTTL: h.ttlUnit()}}
}

// RevisionRule is how a backend numbers its changes: the one difference
// between backends that the feed's rule settles. Both rules agree on
// what a follower relies on: revisions only grow, and ReadLog delivers
// the changes of one revision together, so that resuming after a
// revision never skips or repeats a change.
type RevisionRule int

const (
	// RevisionPerChange: every change has a revision of its own, a
	// transaction's changes consecutive ones; revisions start at 1 and
	// skip none (bolt).
	RevisionPerChange RevisionRule = iota
	// RevisionPerTxn: the changes of one transaction share its revision,
	// and so may concurrent writes, committed together (etcd commits
	// single writes in flight together in one transaction), never two of
	// one key; revisions grow but may skip numbers the engine spent
	// elsewhere (etcd: its first revision, other prefixes of the cluster).
	RevisionPerTxn
)

// RestoreRule is how a full restore numbers what it restores.
type RestoreRule int

const (
	// RestoreKeepsRevisions: the restored data keeps the snapshot's
	// revisions, and its history is readable at them; the restored state
	// takes the revision after the current one, and the revisions between
	// the snapshot's and it are discarded. A snapshot of another store
	// shares no history with this one: every revision this one had is
	// discarded, and the restored state takes the snapshot's revision when
	// that is above them (bolt).
	RestoreKeepsRevisions RestoreRule = iota
	// RestoreRewrites: the snapshot's changes are written again at new
	// revisions, above every revision before the restore, and the
	// restore's revision is the one at which the restored data replaced
	// the old (etcd, whose revisions cannot be set). Every revision below
	// it is discarded, answered as compacted with RestoredFrom the
	// snapshot's revision; values, versions, who and time are the
	// snapshot's.
	RestoreRewrites
)

// CompactionRule is what a backend's compaction can keep below the mark.
type CompactionRule int

const (
	// CompactPerKey: CompactKeep keeps the keep newest changes of each
	// key, and retention caps versions per key and drops by age (bolt).
	CompactPerKey CompactionRule = iota
	// CompactAtMark: compaction keeps exactly the change in effect at
	// the mark for every key (etcd); keep > 1, KeepVersions > 1 and
	// KeepFor answer ctxd.ErrNotSupported.
	CompactAtMark
)

// KeepAliveRule is which TTL a keepalive may move a key's deadline by.
type KeepAliveRule int

const (
	// KeepAliveAnyTTL: a keepalive takes any TTL within the limits
	// (bolt).
	KeepAliveAnyTTL KeepAliveRule = iota
	// KeepAlivePutTTL: a keepalive renews the key for the TTL it was put
	// with, and refuses another with ctxd.ErrInvalid (etcd: a lease
	// renews to the TTL it was granted; moving the key to a new lease is
	// a put, which would be a version).
	KeepAlivePutTTL
)

// Config is how the suite wants a backend opened.
type Config struct {
	// Limits are the backend's limits; zero fields mean ctxd.DefaultLimits.
	Limits ctxd.Limits
	// Now, when set, is the clock the backend stamps changes with (see
	// Harness.Clock); nil means the real clock.
	Now func() time.Time
}

// check is one behaviour of the contract, run against fresh backends.
type check struct {
	name string
	run  func(t testing.TB, h Harness)
}

// checks is the suite, in the order of store.Backend's contract.
//
// A check takes a testing.TB so that storetest_test.go can run it against
// deliberately broken backends and see it fail (add a case there for a new
// kind of breakage). Goroutines a check starts report with assert, never
// require (FailNow must run on the check's own goroutine), and stop when
// the backend misbehaves rather than retry forever. Nothing waits by
// sleeping: wait on the Committed channel (waitClosed).
var checks = []check{
	// Writes.
	{"VersionsAndRevisions", checkVersionsAndRevisions},
	{"ValuesAreStoredCompact", checkValuesStoredCompact},
	{"DeleteEndsLifeAndRecreateStartsAtOne", checkDeleteEndsLife},
	{"CompareAndSwap", checkCompareAndSwap},
	{"TxnAllOrNothing", checkTxnAllOrNothing},
	{"TxnLimitsAndImport", checkTxnLimitsAndImport},
	{"BadInputIsRefusedAndChangesNothing", checkBadInput},
	{"KeysOverALoweredKeyLimitStayReadable", expiring(checkKeysOverALoweredKeyLimit)},
	{"ConcurrentWritersLoseNothing", checkConcurrentWriters},
	{"ConcurrentCompareAndSwapIsExact", checkConcurrentCAS},
	{"RestartKeepsEverything", checkRestartKeepsEverything},
	// Patches.
	{"PatchAppliesToTheCurrentValue", checkPatchApplies},
	{"PatchCompareAndSwap", checkPatchCompareAndSwap},
	{"FailedPatchWritesNothing", checkFailedPatchWritesNothing},
	{"PatchKeepsRepeatedMembers", checkPatchKeepsRepeatedMembers},
	{"PatchesOfARequestShareOneBudget", checkPatchesShareOneBudget},
	{"ConcurrentPatchesLoseNothing", checkConcurrentPatches},
	{"ConcurrentPatchesOfSeveralKeysLoseNothing", checkConcurrentPatchesOfSeveralKeys},
	// Expiring keys.
	{"KeysExpireAsChanges", expiring(checkTTLExpiry)},
	{"KeepAliveMovesTheDeadlineWithoutAVersion", expiring(checkKeepAlive)},
	{"DeadlinesPassedWhileDownExpireAtStartUp", expiring(checkExpiryAtStartUp)},
	{"DeadlinesInSnapshotsAndRestores", expiring(checkDeadlinesInSnapshots)},
	{"BadTTLIsRefused", expiring(checkTTLBadInput)},
	{"PatchKeepsTheDeadline", expiring(checkPatchKeepsTheDeadline)},
	{"ImportTakesTheTimeLeft", expiring(checkImportTakesTheTimeLeft)},
	{"KeepAlivesRacingWritesAnswerTheKeyAsItIs", expiring(checkKeepAlivesRacingWrites)},
	// Reads.
	{"ListPagesByPrefixAndCursor", checkListPaging},
	{"NamespacesCountLiveKeys", checkNamespaces},
	{"ListWithoutValuesAndCount", checkListWithoutValuesAndCount},
	{"HistoryPagesNewestFirst", checkHistoryPaging},
	{"PointInTimeReads", checkPointInTimeReads},
	{"ViewIsConsistentWhileWritesContinue", checkViewConsistent},
	{"ViewReadsEachKeysOwnChange", checkViewChangeOfEachKey},
	// Feed.
	{"CommittedMarkWakesFollowers", checkCommittedMark},
	{"ReadLogInOrderWithoutGaps", checkReadLog},
	// Compaction and retention.
	{"CompactionHidesHistoryBelowTheMark", checkCompaction},
	{"CompactKeepKeepsNewestChangesPerKey", checkCompactKeep},
	{"HistorySaysWhereCompactionCutIt", checkHistoryTruncated},
	{"RetentionByVersions", checkRetentionByVersions},
	{"RetentionByAge", checkRetentionByAge},
	// Snapshots and restore.
	{"SnapshotIsConsistentAtItsRevision", checkSnapshot},
	{"BadSnapshotsAreRefused", checkBadSnapshots},
	{"FullRestore", checkFullRestore},
	{"FullRestoreOfAnotherStore", checkFullRestoreOfAnotherStore},
	{"FullRestoreAnswersItsRevisionUnderWrites", checkFullRestoreUnderWrites},
	{"PartialRestore", checkPartialRestore},
	{"PartialRestoreOfDeadlines", checkPartialRestoreOfDeadlines},
	// Maintenance, readiness, shutdown.
	{"Defrag", checkDefrag},
	{"ReadyWhileServing", checkReady},
	{"ClosedBackendRefusesWork", checkClosed},
	{"CloseCommitsAcceptedWrites", checkCloseCommitsAcceptedWrites},
}

// Run runs every check of the suite as a subtest of t, each against a
// backend of its own opened through h.
func Run(t *testing.T, h Harness) {
	require.NotNil(t, h.Open, "storetest: Harness.Open is required")
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.run(t, h) })
	}
}

// backend is a backend under test with the folder it lives in, so that a
// check can restart it.
type backend struct {
	store.Backend
	t   testing.TB
	h   Harness
	dir string
	cfg Config
}

// open opens a fresh backend in a new folder.
func open(t testing.TB, h Harness, cfg Config) *backend {
	t.Helper()
	b := &backend{t: t, h: h, dir: t.TempDir(), cfg: cfg}
	b.Backend = h.Open(t, b.dir, cfg)
	require.NotNil(t, b.Backend, "Harness.Open returned no backend")
	return b
}

// restart closes the backend and opens it again on the same data.
func (b *backend) restart() {
	b.t.Helper()
	require.NoError(b.t, b.Close(), "close before restart")
	b.Backend = b.h.Open(b.t, b.dir, b.cfg)
	require.NotNil(b.t, b.Backend, "Harness.Open returned no backend")
}

// perTxn reports whether a transaction's changes share one revision.
func (b *backend) perTxn() bool { return b.h.Revisions == RevisionPerTxn }

// after asserts that rev is a revision committed after prev: the next one
// under RevisionPerChange, a later one under RevisionPerTxn.
func (b *backend) after(prev, rev uint64, what string) {
	b.t.Helper()
	if b.perTxn() {
		assert.Greater(b.t, rev, prev, "%s: revisions grow", what)
		return
	}
	assert.Equal(b.t, prev+1, rev, "%s: the next revision", what)
}

// txnRevs is the revisions of the n changes of a transaction committed
// at rev (its last revision): each its own under RevisionPerChange, all
// rev under RevisionPerTxn.
func (b *backend) txnRevs(rev uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = rev
		if !b.perTxn() {
			out[i] = rev - uint64(n-1-i)
		}
	}
	return out
}

// put writes a value as "test" and fails the check if it is refused.
func (b *backend) put(ns, key, value string) ctxd.Record {
	b.t.Helper()
	r, err := b.Put(b.t.Context(), ns, key, json.RawMessage(value), nil, "test")
	require.NoError(b.t, err, "put %s/%s", ns, key)
	return r
}

// del deletes a key as "test" and fails the check if it is refused.
func (b *backend) del(ns, key string) ctxd.Record {
	b.t.Helper()
	r, err := b.Delete(b.t.Context(), ns, key, nil, "test")
	require.NoError(b.t, err, "delete %s/%s", ns, key)
	return r
}

// get reads a key that must exist.
func (b *backend) get(ns, key string) ctxd.Record {
	b.t.Helper()
	r, err := b.Get(ns, key)
	require.NoError(b.t, err, "get %s/%s", ns, key)
	return r
}

// value reads a key's current value as text.
func (b *backend) value(ns, key string) string {
	b.t.Helper()
	return string(b.get(ns, key).Value)
}

// log reads the whole retained log after a revision, page by page.
func (b *backend) log(after uint64) []ctxd.Change {
	b.t.Helper()
	var all []ctxd.Change
	for {
		page, err := b.ReadLog(after, 100)
		require.NoError(b.t, err, "read log after %d", after)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Revision
	}
}

// historyRevs lists the revisions of a key's whole history, newest first.
func (b *backend) historyRevs(ns, key string) []uint64 {
	b.t.Helper()
	h, err := b.History(ns, key, ctxd.HistoryOptions{Limit: ctxd.MaxListLimit})
	require.NoError(b.t, err, "history of %s/%s", ns, key)
	revs := []uint64{}
	for _, c := range h.Changes {
		revs = append(revs, c.Revision)
	}
	return revs
}

// checkpoint records what the backend holds: its live records, revision
// and namespaces. The function it returns asserts that none of them has
// changed since, as what (e.g. "a failed transaction") must not change them.
func (b *backend) checkpoint() (unchanged func(what string)) {
	b.t.Helper()
	before, rev := b.state()
	namespaces, err := b.Namespaces()
	require.NoError(b.t, err)
	return func(what string) {
		b.t.Helper()
		after, _ := b.state()
		assert.Equal(b.t, before, after, "%s writes nothing", what)
		assert.Equal(b.t, rev, b.Revision(), "%s takes no revision", what)
		nsAfter, err := b.Namespaces()
		require.NoError(b.t, err)
		assert.Equal(b.t, namespaces, nsAfter, "%s creates no namespace", what)
	}
}

// state reads everything live through one View: ns/key -> recordLine, and
// the revision it is at.
func (b *backend) state() (map[string]string, uint64) {
	b.t.Helper()
	var out map[string]string
	var rev uint64
	require.NoError(b.t, b.View(func(v store.View) error {
		rev = v.Revision()
		out = viewState(b.t, v)
		return nil
	}))
	return out, rev
}

// writeSnapshot writes a snapshot to a new file and returns its path.
func (b *backend) writeSnapshot() (string, ctxd.SnapshotInfo) {
	b.t.Helper()
	path := filepath.Join(b.t.TempDir(), "snapshot")
	f, err := os.Create(path)
	require.NoError(b.t, err)
	info, err := b.WriteSnapshot(f)
	require.NoError(b.t, err, "write snapshot")
	require.NoError(b.t, f.Close())
	return path, info
}

// viewState reads every live record of a view: ns/key -> recordLine.
func viewState(t testing.TB, v store.View) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ns := range v.Namespaces() {
		require.NoError(t, v.ForEach(ns.Name, "", func(r ctxd.Record) error {
			out[ns.Name+"/"+r.Key] = recordLine(r)
			return nil
		}))
	}
	return out
}

// replay is the state the log gives up to and including revision upTo
// (ns/key -> recordLine): what every read at upTo must show. The log must
// start at revision 1 (no compaction).
func replay(log []ctxd.Change, upTo uint64) map[string]string {
	live := map[string]ctxd.Record{}
	for _, c := range log {
		if c.Revision > upTo {
			break
		}
		id := c.Namespace + "/" + c.Key
		if c.Op == ctxd.OpDelete {
			delete(live, id)
			continue
		}
		created := c.Revision
		if prev, ok := live[id]; ok {
			created = prev.CreateRev
		}
		live[id] = ctxd.Record{Namespace: c.Namespace, Key: c.Key, Value: c.Value, Version: c.Version,
			CreateRev: created, ModRev: c.Revision, Who: c.Who, UpdatedAt: c.Time}
	}
	out := map[string]string{}
	for id, r := range live {
		out[id] = recordLine(r)
	}
	return out
}

// recordLine renders every field of a record, the time as an instant, so
// that records compare whatever their time's location.
func recordLine(r ctxd.Record) string {
	return fmt.Sprintf("%s/%s=%s v%d created@%d mod@%d who=%q t=%d",
		r.Namespace, r.Key, r.Value, r.Version, r.CreateRev, r.ModRev, r.Who, r.UpdatedAt.UnixNano())
}

// changeLine renders every field of a change, like recordLine.
func changeLine(c ctxd.Change) string {
	return fmt.Sprintf("@%d %s %s/%s=%s v%d prev@%d who=%q t=%d",
		c.Revision, c.Op, c.Namespace, c.Key, c.Value, c.Version, c.PrevRev, c.Who, c.Time.UnixNano())
}

// recordContent renders a record without its revisions: what a snapshot
// of etcd keeps of it when it numbered a transaction's changes apart.
func recordContent(r ctxd.Record) string {
	return fmt.Sprintf("%s/%s=%s v%d who=%q t=%d", r.Namespace, r.Key, r.Value, r.Version, r.Who, r.UpdatedAt.UnixNano())
}

func recordLines(rs []ctxd.Record) map[string]string {
	out := make(map[string]string, len(rs))
	for _, r := range rs {
		out[r.Namespace+"/"+r.Key] = recordLine(r)
	}
	return out
}

// contentLines renders changes without their revisions (see recordContent).
func contentLines(cs []ctxd.Change) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s %s/%s=%s v%d who=%q t=%d", c.Op, c.Namespace, c.Key, c.Value, c.Version, c.Who, c.Time.UnixNano()))
	}
	return out
}

func changeLines(cs []ctxd.Change) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, changeLine(c))
	}
	return out
}

func revisions(cs []ctxd.Change) []uint64 {
	out := make([]uint64, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Revision)
	}
	return out
}

// modRevs is the revisions of records.
func modRevs(rs ...ctxd.Record) []uint64 {
	out := make([]uint64, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.ModRev)
	}
	return out
}

// span returns the revisions from..to, inclusive.
func span(from, to uint64) []uint64 {
	out := []uint64{}
	for r := from; r <= to; r++ {
		out = append(out, r)
	}
	return out
}

func u64(v uint64) *uint64 { return &v }

// put is a write of a transaction.
func put(ns, key, value string) ctxd.Write {
	return ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpPut, Value: json.RawMessage(value), Who: "test"}
}

// del is a delete of a transaction.
func del(ns, key string) ctxd.Write {
	return ctxd.Write{Namespace: ns, Key: key, Op: ctxd.OpDelete, Who: "test"}
}

// expecting returns w with an expected version.
func expecting(w ctxd.Write, version uint64) ctxd.Write {
	w.Expect = u64(version)
	return w
}

// assertCompacted asserts that err is a *ctxd.CompactedError matching
// ctxd.ErrCompacted, and returns it (nil if it is not one).
func assertCompacted(t testing.TB, err error, msgAndArgs ...any) *ctxd.CompactedError {
	t.Helper()
	var ce *ctxd.CompactedError
	if !assert.ErrorAs(t, err, &ce, msgAndArgs...) {
		return nil
	}
	assert.ErrorIs(t, err, ctxd.ErrCompacted, msgAndArgs...)
	return ce
}

// assertRefused asserts that err is how a stopped backend refuses work.
// The contract allows either error: both mean "503, nothing was applied".
func assertRefused(t testing.TB, err error, op string) {
	t.Helper()
	if !errors.Is(err, ctxd.ErrClosed) && !errors.Is(err, ctxd.ErrUnavailable) {
		t.Errorf("%s on a closed backend: got %v, want an error matching ctxd.ErrClosed or ctxd.ErrUnavailable", op, err)
	}
}

// waitClosed waits for a Committed channel to close; the timeout only
// keeps a broken backend from hanging the suite.
func waitClosed(t testing.TB, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the Committed channel was not closed", msg)
	}
}

// isClosed reports whether a Committed channel is closed already.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// fileBytes reads a file that must exist.
func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// writeFile writes a file into a new folder and returns its path.
func writeFile(t testing.TB, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, content, 0o600))
	return path
}

// sortedKeys returns a map's keys in order, for readable failures.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fakeClock is a clock the test moves; backends call it from their own
// goroutines.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(start time.Time) *fakeClock { return &fakeClock{now: start} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
