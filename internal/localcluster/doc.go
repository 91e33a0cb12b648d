// Package localcluster runs an etcd cluster of several members on one
// machine, each member in a process of its own, for `make cluster`
// (cmd/ctxd-cluster) and for the cluster tests (robustness): a member can
// then be killed with SIGKILL for real and restarted from its data
// folder.
//
// # Basics
//
// [Plan] names the members (m1, m2, ...) and gives each its data folder
// and its client and peer URLs on 127.0.0.1. A member process runs
// [RunMember] (cmd/ctxd-cluster's `member` subcommand): the etcd server
// embedded from go.etcd.io/etcd/server/v3/embed, at the same version as
// the test kit's etcdkit, with its write-ahead log fsynced at every commit
// as in production. The parent starts the processes with [StartMember],
// all at once (a member of a new cluster is ready only once a quorum of
// its peers is up), and waits for each [MemberProcess.Ready].
//
// # Caveats
//
// Free ports ([FreePorts]) are found by listening and closing, below the
// kernel's ephemeral range where it is known: another process may still
// take one before the member binds it (the member then fails to start,
// with Go's bind error in its log: [PortInUse] finds it, and
// [OnFreePorts] starts again on new free ports), but no outgoing
// connection will. A member restarted from its
// folder ignores the initial cluster and rejoins the one it belongs to:
// its URLs must not change.
//
// The package imports etcd's server: the ctxd binary must never import
// it (cmd/ctxd-cluster is a module of its own; the tests check).
package localcluster
