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
// deletes and transactions on a few hot keys of one or more servers and
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
//     linearization; the ops of a transaction take revisions in their
//     order, equal or rising (etcd gives a transaction one revision,
//     bolt each op its own); a record's
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
// # Caveats
//
// Every key starts absent: a workload must use keys nobody else writes
// (Workload picks a fresh prefix by default). Values are compared as
// strings, so each write should write a value of its own, as Workload
// does: a value that two writes wrote cannot tell which one a read saw.
// Checking is NP-hard; a long history with many operations in flight on
// one group of keys (or many unknown outcomes) can take porcupine longer
// than its timeout, which Check reports as a failure, never as a pass.
package linearize
