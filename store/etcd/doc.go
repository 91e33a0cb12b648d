// Package etcd is ctxd's storage backend on an etcd cluster: several
// stateless ctxd instances share one etcd prefix and serve the same data,
// implementing store.Backend over etcd's Go client.
//
// # Basics
//
// Revisions are etcd's revisions and versions are etcd's per-key versions
// (1 on create, +1 per change, a delete ends the key's life). Each ctxd
// key is one etcd key under the prefix (default "/ctxd/"):
//
//	<prefix>k/<ns>/<key>   the live value, in an envelope with who and when
//	<prefix>t/<ns>/<key>   the last delete of the key: who and when
//
// A write is one etcd transaction whose compares are the expected
// versions (If-Match); etcd acknowledges it once a quorum has it in its
// write-ahead log. Every change of a transaction shares its revision (one
// etcd transaction, one revision), where the bolt backend gives each its
// own; the feed's rule for both is that the changes of one revision are
// read and delivered together (ReadLog never ends a page inside a
// revision). Point-in-time reads are etcd reads at a revision; history is
// walked back through etcd's MVCC history, one read per change; compaction
// is etcd's compaction, cluster-wide.
//
// An expiring key is on an etcd lease of its own, with its deadline
// record (<prefix>d/<ns>/<key>): etcd deletes both when the lease runs
// out, and every instance's watch reports that delete as the expiry (a
// delete by ctxd.WhoTTL, Expired), once, whether or not an instance ran
// at the deadline. A keepalive renews the lease and moves the deadline
// record, without a version.
//
// Each instance holds one etcd watch on its prefix. It raises the
// instance's committed mark and keeps the recent changes in memory for
// the change feed; a follower older than them is served by a watch of its
// own from its revision, which ends when it has read its page.
//
// # Caveats
//
// What has no etcd equivalent answers ctxd.ErrNotSupported: Defrag
// (etcd's defragmentation is per member, run by its operator), compaction
// keeping more than the change in effect per key, and retention by age.
// Snapshots are the bolt backend's file (either backend restores the
// other's); a full restore writes a new generation of the prefix and
// switches to it in one transaction (generation.go). TTLs count whole
// seconds (etcd's leases do), one below etcd's minimum lease TTL is
// refused, and a keepalive takes only the TTL its key was put with (a
// lease cannot change its TTL). Compaction compacts the whole etcd
// cluster, every prefix on it, and so etcd allows it only to users of its
// root role: for another user it is ErrNotSupported too. A request etcd
// refuses the instance's user is ErrUnavailable (nothing applied).
// DESIGN.md in this folder has the choices and what was measured.
package etcd
