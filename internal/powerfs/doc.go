// Package powerfs is a FUSE file system for tests that forgets what was
// not synced when the power is cut, as LazyFS does: a process (ctxd, a
// bbolt database, a test writer) runs on the mount, the test cuts the power
// at a moment of its choosing, and the files that a real disk would hold
// afterwards are written to a folder for the process to restart on.
//
// Only tests import this package; the ctxd binary never links it.
//
// # The model: a disk with a volatile cache
//
// The whole file system is in memory. Each file has its current contents
// (what reads, and mmap, see), its durable contents (as of its last fsync
// or fdatasync; empty for a file created since) and the list of changes
// made since then (writes, truncates, fallocates). An fsync or fdatasync of
// the file makes the current contents durable.
//
// Each folder has its current entries (name to file or folder) and its
// durable entries, as of its last fsync. Creating, unlinking and renaming
// change the current entries only, so a new file survives only once its
// folder is synced, a rename only once its folder is synced (both folders,
// for a rename between two: syncing only the source loses the file, only
// the target leaves it under both names), and an unlinked file comes back
// unless its folder is synced. A new folder is an entry like any other:
// its parent must be synced. The root and the folders loaded From a real
// folder start durable. A file unlinked while open keeps working until it
// is closed.
//
// That is what a file system that commits folders only when they are
// synced would keep. A journaling one (ext4, xfs) commits folder changes
// to its journal in the order they were made, every few seconds or for
// any fsync, so that a prefix of them survives without an fsync of their
// folder. [Options].KeepUnsyncedNames models that: a cut keeps a random
// prefix of the requests' folder changes not covered by an fsync of
// their folder (a rename's two names together), a later one never without
// the earlier ones. A rename then survives with whatever its file's data
// durably is: a file written, renamed over another and not synced comes
// back empty (or, in Torn mode, in part) under the new name.
//
// [FS.Cut] cuts the power: at once every later operation on the mount
// fails with EIO (a process still writing cannot change the outcome), and
// the surviving tree is computed from the root's durable entries,
// recursively. A surviving file has its durable contents in Strict mode; in
// Torn mode, its durable contents plus a random subset of its unsynced
// changes, applied in a random order, each write keeping a random subset
// of its 512-byte sectors: a disk may persist any of what it was given,
// in any order, one sector at a time. [Options].Seed makes the draws
// repeatable. [Options].CutAfter cuts the power by itself at an exact
// point instead (just before the n-th change), to land inside a commit;
// [FS.CutOn] right after the n-th request of a kind on a name from now
// (the 3rd rename to *.wal, say), to land inside a named step;
// [FS.PowerCut] tells whether either has fired.
// [FS.WriteSurvivors] writes the surviving tree to a real folder.
//
// # Basics
//
//	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Torn, Seed: 1})
//	// start a writer (a process) in fs.Dir() ...
//	report, err := fs.Cut()
//	// kill the writer
//	err = fs.WriteSurvivors(dir)
//	// restart on dir; compare what was acknowledged with what survived
//	// (LostAcks)
//
// [Available] tells whether FUSE can be used (tests skip otherwise);
// [MountT] checks it, mounts in a temp folder and unmounts when the test
// ends.
//
// # The server process
//
// Each mount is served by a child process: powerfsd (./powerfsd), a
// program that links this package alone, built once per test process
// without the race detector (server.go), run with POWERFS_SERVE=1, which
// this package's init function turns into the server. A process that
// serves FUSE cannot use the mount through mmap: a page fault waits for
// the server while Go's garbage collector waits for the faulting thread,
// and both hang. With the server apart, the test process may open a bbolt database
// on the mount. The server unmounts by itself if the test process dies.
//
// # Caveats
//
// Mounting needs root (mount(2) on /dev/fuse: there is no fusermount
// fallback). Only regular files and folders exist, and hard links to files
// (ctxd keeps its old database under a second name while it swaps in a new
// one); no symbolic links, devices, extended attributes or permission
// checks. A file that survives under several names is written once per
// name by WriteSurvivors.
// Metadata (modes, times) is not modelled: survivors get their current
// modes. File locks (flock, fcntl) are kept by the kernel, per mount. The
// kernel caches neither names nor attributes (their timeouts are zero), so
// sizes are always the file system's, but it keeps file data in its page
// cache (no direct I/O, so that mmap works, and the kernel may split a
// write in two at a page boundary). After the cut, data still in the cache
// may be read from it, while a read that reaches the file system fails,
// and so does an mmap fault on a page not cached (SIGBUS: bbolt's process
// dies of it), as on a machine without power: cut the power, then kill
// the process.
//
// [FS.Unmount] does not wait for files to be closed: if any are still open
// it aborts the FUSE connection, and they fail with ENOTCONN.
package powerfs
