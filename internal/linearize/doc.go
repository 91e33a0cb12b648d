// Package linearize checks that histories of concurrent ctxd clients are
// linearizable, with the porcupine checker and a model of ctxd's key
// semantics. It is a test-only library: only tests import it, and the ctxd
// binary never links it (nor porcupine).
//
// # Basics
//
// Concurrent clients report each operation to a [Recorder]: [Recorder.Invoke]
// before the request is sent, then [Recorder.Return] with what the server
// answered, or [Recorder.Unknown] when no answer tells whether a write took
// effect (the connection broke, the server was killed, 503
// outcome_unknown). [Check] runs porcupine on [Recorder.History] with
// [Model] and fails the test when no order of the operations, each taking
// effect at one instant between its invocation and its answer, explains
// every answer; porcupine's HTML visualization of the history is then
// written to a kept file whose path the test logs. [Verify] is the same
// check returning the verdict, for tests that expect a violation.
//
// [Workload] drives N clients doing gets, puts, compare-and-swap puts,
// deletes, patches and transactions on a few hot keys of one or more servers and
// records everything; it keeps going when a server is killed and
// restarted, so a test can crash the server in the middle of it.
//
// # The model
//
// The state is, per key, whether it exists, its value, its version, its
// create and mod revisions; and a lower bound of the global revision.
//
//   - A put makes version 1 for an absent key and version+1 otherwise; a
//     delete ends the key's life (its answer holds the deleted version), and
//     a later put starts again at 1.
//   - A patch (a merge patch that is a JSON string: it replaces the value)
//     is a put that needs the key to exist: of an absent key it is not
//     found, unless its If-Match already failed. It checks how a server
//     applies patches (a read, then a commit on condition that the value
//     read is still current), not the patch format.
//   - If-Match compares the key's version (not a revision): 0 means "the key
//     must not exist". A failed comparison is a conflict whose current
//     version is the key's version (0 when absent), and changes nothing. A
//     delete of an absent key is not found, unless its If-Match already
//     failed (If-Match: 3 on an absent key is a conflict).
//   - A transaction applies all its puts and deletes or none. Every
//     comparison is against the state before the transaction (a key appears
//     once in it). When one fails nothing changes, and the error must be
//     one of the failed ops' (a conflict with its current version, or a
//     delete's not found); if the answer names a key, that op's.
//   - Every write takes a revision above every revision before it in the
//     linearization, the ops of a transaction in their order, or all of
//     them the transaction's one revision (etcd's rule; never a mix). A
//     write may also take the revision of the write just before it when
//     the two were in flight together and no read came between (etcd's
//     grouped writes: one transaction, at one instant inside both calls;
//     Verify gives the model each operation's call and return times). A record's
//     create revision is the revision of the put that created the key; a
//     read returns the mod revision of the key's last write. Revisions are
//     compared only when reported (non-zero) and only within a partition
//     (below), so the model also fits a server whose revisions are shared
//     with other writers, but it does not check that they have no gaps.
//   - A write whose outcome is unknown may or may not have taken effect, at
//     any moment after its invocation: the model holds both states (a
//     porcupine NondeterministicModel). When it took effect its revisions
//     are not known; a later read of the key tells them.
//
// Operations on keys that no transaction links are independent, and
// porcupine checks each group of linked keys on its own (in parallel):
// long histories on a few keys stay cheap to check.
//
// # Resolving unknown outcomes
//
// Each write of unknown outcome doubles the ways porcupine must try, and
// an illegal history with a few dozen of them cannot be refused in time.
// A [Feed] records ctxd's change feed (/v1/watch) of the workload's keys
// during the run, resuming on another server across faults, and
// [Resolve] decides from it, before the check:
//
//   - A put or patch, or a transaction with a put, took effect iff its value (each
//     write writes one of its own) is in the feed: it is then answered OK
//     with the revision and version the feed shows, each op of a
//     transaction from its consecutive changes. When none of its values
//     is there it did not take effect and leaves the history (never
//     answered and without effect, it is as if never sent). A value
//     shown twice, or a transaction shown in part, stays unknown.
//   - A delete carries no value. The feed's deletes of a key that no
//     answered (or resolved) operation's revision explains were made by
//     unknown ones: when there is none, no unknown delete of that key
//     took effect, and they leave the history; when there is one and one
//     unknown delete of that key, it is that one. Otherwise they stay
//     unknown.
//   - An operation answered so returns when the first operation of its
//     partition returns that reports a revision at or above its own (and
//     returned after it was invoked); with none it stays pending to the
//     end of the history, deterministic all the same.
//
// Resolution never makes a history pass that would fail: each step only
// takes away orders porcupine tried already. Leaving out an unknown
// write is its "no effect" branch placed last; answering it with the
// feed's records is its "took effect" branch with revisions the model
// would have left unknown (checked instead of learnt); the return time
// keeps only the orders where it comes before an operation that reports
// its revision or a later one, which the model requires anyway (after
// such an operation the state's revision is at least that one, and a
// write's revision must be above it). So a wrong feed can only make a
// correct history fail, never a wrong one pass; and a feed that shows a
// write a read contradicts makes the history fail where, unresolved, the
// write could have been taken as lost.
//
// # Caveats
//
// Every key starts absent: a workload must use keys nobody else writes
// (Workload picks a fresh prefix by default). Values are compared as
// strings, so each write should write a value of its own, as Workload
// does: a value that two writes wrote cannot tell which one a read saw.
// Checking is NP-hard; a long history with many operations in flight on
// one group of keys (or many unknown outcomes) can take porcupine longer
// than its timeout, which Check reports as a failure, never as a pass:
// resolve them from the feed (above). Resolve needs the feed of every key
// of the history from before its first operation to after its last.
package linearize
