// Package store is the storage contract of ctxd: the Backend interface that
// everything above storage uses (writes, reads at the head and at a
// revision, history, the change feed's committed mark and log reads,
// consistent views, snapshots, restore, compaction, defrag, readiness), and
// the types that go with it.
//
// Implementations live in sub-packages: store/bolt, the embedded default on
// one bbolt file, and store/etcd, several ctxd instances on one etcd
// cluster. store/storetest is the conformance suite every backend
// runs unchanged; docs/CONTRACT.md describes the promises it checks.
package store
