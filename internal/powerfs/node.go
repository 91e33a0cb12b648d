package powerfs

import (
	"maps"
	"slices"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// inode is a file or a folder of the in-memory file system.
type inode struct {
	ino      uint64
	mode     uint32 // type and permission bits, as in stat
	uid, gid uint32
	atime    time.Time
	mtime    time.Time
	ctime    time.Time
	links    int    // its names in current folders (a hard link adds one)
	lookups  uint64 // the kernel's references (lookups not yet forgotten)
	name     string // its name when last added to a folder (for FS.CutOn)

	// Regular files.
	cur contents // what reads see
	dur contents // as of the last fsync or fdatasync
	ops []op     // the changes since then

	// Folders.
	entries    map[string]*inode // current
	durEntries map[string]*inode // as of the last fsync of the folder
	parent     *inode            // current parent (the root is its own)
}

func (n *inode) isDir() bool { return n.mode&syscall.S_IFMT == syscall.S_IFDIR }

// change records that the inode changed now (data or metadata).
func (n *inode) change(now time.Time, data bool) {
	n.ctime = now
	if data {
		n.mtime = now
	}
}

// attr fills out with the inode's attributes.
func (n *inode) attr(out *fuse.Attr) {
	out.Ino = n.ino
	out.Mode = n.mode
	out.Owner = fuse.Owner{Uid: n.uid, Gid: n.gid}
	out.Blksize = pageSize
	out.SetTimes(&n.atime, &n.mtime, &n.ctime)
	if n.isDir() {
		links := 2
		for _, c := range n.entries {
			if c.isDir() {
				links++
			}
		}
		out.Nlink = uint32(links)
		out.Size = pageSize
		out.Blocks = pageSize / 512
		return
	}
	out.Nlink = uint32(n.links)
	out.Size = uint64(n.cur.size)
	out.Blocks = n.cur.blocks()
}

// record applies a change to the current contents and keeps it as
// unsynced.
func (n *inode) record(o op, now time.Time) {
	o.apply(&n.cur)
	n.ops = append(n.ops, o)
	n.change(now, true)
}

// sync makes the current contents durable (fsync, fdatasync).
func (n *inode) sync() {
	if n.isDir() {
		n.durEntries = maps.Clone(n.entries)
		return
	}
	n.dur = n.cur.share()
	n.ops = nil
}

// sortedNames returns the names of entries, sorted.
func sortedNames(entries map[string]*inode) []string {
	return slices.Sorted(maps.Keys(entries))
}
