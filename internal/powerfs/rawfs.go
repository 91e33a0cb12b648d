package powerfs

import (
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The kernel may cache entries and attributes for this long. Zero: every
// lookup and stat asks the file system, so sizes and names are never stale
// (all changes go through the kernel anyway, which updates its own copy).
const cacheTimeout = 0

// Rename flags (linux/fs.h).
const (
	renameNoReplace = 1 << 0
	renameExchange  = 1 << 1
)

// fsys is the FUSE side: the kernel's requests on the in-memory tree. One
// mutex guards everything; go-fuse calls it from many goroutines.
type fsys struct {
	fuse.RawFileSystem // ENOSYS for what is not supported (links, xattrs, locks)

	opts    Options
	mu      sync.Mutex
	changes int  // requests that could change something (see lockChange)
	cut     bool // after the power cut every request fails with EIO
	inodes  map[uint64]*inode
	root    *inode
	nextIno uint64
	dirs    map[uint64][]fuse.DirEntry // open folder listings by handle
	nextFh  uint64
	now     func() time.Time

	// names holds, with Options.KeepUnsyncedNames, the requests' folder
	// changes not yet covered by an fsync of their folder, in order: a
	// power cut keeps a prefix of them.
	names []nameChange

	// trigger is FS.CutOn's; triggered counts the requests that matched it.
	trigger   *Trigger
	triggered int

	// Set by the power cut.
	survivors *survivor
	report    Report
	reported  bool // Cut has returned the report
}

func newFsys(opts Options) *fsys {
	s := &fsys{
		opts:          opts,
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		inodes:        make(map[uint64]*inode),
		dirs:          make(map[uint64][]fuse.DirEntry),
		nextIno:       fuse.FUSE_ROOT_ID,
		now:           time.Now,
	}
	s.root = s.newInode(syscall.S_IFDIR|0o755, 0, 0)
	s.root.parent = s.root
	s.root.links = 1
	s.root.lookups = 1 // the kernel never forgets the root
	return s
}

func (s *fsys) String() string { return "powerfs" }

// newInode adds an inode to the table; mode includes the type bits.
func (s *fsys) newInode(mode, uid, gid uint32) *inode {
	now := s.now()
	n := &inode{ino: s.nextIno, mode: mode, uid: uid, gid: gid, atime: now, mtime: now, ctime: now}
	s.nextIno++
	if n.isDir() {
		n.entries = make(map[string]*inode)
		n.durEntries = make(map[string]*inode)
	}
	s.inodes[n.ino] = n
	return n
}

// forgetIfUnused drops n from the table when neither a name nor the kernel
// refers to it. Durable folder entries may still hold it: it then survives
// a power cut.
func (s *fsys) forgetIfUnused(n *inode) {
	if n != s.root && n.lookups == 0 && n.links == 0 {
		delete(s.inodes, n.ino)
	}
}

// lock takes the mutex and returns EIO after the power cut.
func (s *fsys) lock() fuse.Status {
	s.mu.Lock()
	if s.cut {
		return fuse.EIO
	}
	return fuse.OK
}

// lockChange is lock for a request that may change the file system
// (writes, syncs, names): with Options.CutAfter, the power is cut just
// before the CutAfter-th one.
func (s *fsys) lockChange() fuse.Status {
	if st := s.lock(); !st.Ok() {
		return st
	}
	s.changes++
	if s.opts.CutAfter > 0 && s.changes >= s.opts.CutAfter {
		s.cutLocked()
		return fuse.EIO
	}
	return fuse.OK
}

// node returns the inode for a request's node id (locked).
func (s *fsys) node(id uint64) (*inode, fuse.Status) {
	n := s.inodes[id]
	if n == nil {
		return nil, fuse.ENOENT
	}
	return n, fuse.OK
}

// dir returns the folder for a request's node id (locked).
func (s *fsys) dir(id uint64) (*inode, fuse.Status) {
	n, st := s.node(id)
	if st.Ok() && !n.isDir() {
		return nil, fuse.ENOTDIR
	}
	return n, st
}

// entry fills out for a reply that hands the kernel a reference to n.
func (s *fsys) entry(n *inode, out *fuse.EntryOut) {
	n.lookups++
	out.NodeId = n.ino
	out.Generation = 1
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	n.attr(&out.Attr)
}

func (s *fsys) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lock(); !st.Ok() {
		return st
	}
	d, st := s.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	c := d.entries[name]
	if c == nil {
		return fuse.ENOENT
	}
	s.entry(c, out)
	return fuse.OK
}

func (s *fsys) Forget(id, nlookup uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.inodes[id]; n != nil && n != s.root {
		n.lookups -= min(n.lookups, nlookup)
		s.forgetIfUnused(n)
	}
}

func (s *fsys) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lock(); !st.Ok() {
		return st
	}
	n, st := s.node(in.NodeId)
	if !st.Ok() {
		return st
	}
	n.attr(&out.Attr)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

func (s *fsys) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	n, st := s.node(in.NodeId)
	if !st.Ok() {
		return st
	}
	now := s.now()
	if in.Valid&fuse.FATTR_SIZE != 0 {
		if n.isDir() {
			return fuse.EISDIR
		}
		n.record(op{kind: opTruncate, size: int64(in.Size)}, now)
	}
	if in.Valid&fuse.FATTR_MODE != 0 {
		n.mode = n.mode&syscall.S_IFMT | in.Mode&0o7777
	}
	if in.Valid&fuse.FATTR_UID != 0 {
		n.uid = in.Uid
	}
	if in.Valid&fuse.FATTR_GID != 0 {
		n.gid = in.Gid
	}
	switch {
	case in.Valid&fuse.FATTR_ATIME_NOW != 0:
		n.atime = now
	case in.Valid&fuse.FATTR_ATIME != 0:
		n.atime = time.Unix(int64(in.Atime), int64(in.Atimensec))
	}
	switch {
	case in.Valid&fuse.FATTR_MTIME_NOW != 0:
		n.mtime = now
	case in.Valid&fuse.FATTR_MTIME != 0:
		n.mtime = time.Unix(int64(in.Mtime), int64(in.Mtimensec))
	}
	n.ctime = now
	if in.Valid&fuse.FATTR_CTIME != 0 {
		n.ctime = time.Unix(int64(in.Ctime), int64(in.Ctimensec))
	}
	n.attr(&out.Attr)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

// addEntry gives c the name in d (locked; the name is free).
func (s *fsys) addEntry(d *inode, name string, c *inode) {
	d.entries[name] = c
	c.name = name
	c.links++
	if c.isDir() {
		c.parent = d
	}
	d.change(s.now(), true)
}

// nameChange is what one request did to folder entries: a rename changes
// two names (in one folder or two), the other requests one. A journal
// commits them together.
type nameChange []entryChange

// entryChange is a name of a folder and what it pointed to after the
// request (nil: removed).
type entryChange struct {
	dir  *inode
	name string
	to   *inode
}

// logNames records, with Options.KeepUnsyncedNames, that a request has
// just changed these names (locked; the changes' to is filled in here).
func (s *fsys) logNames(changes ...entryChange) {
	if !s.opts.KeepUnsyncedNames {
		return
	}
	for i := range changes {
		changes[i].to = changes[i].dir.entries[changes[i].name]
	}
	s.names = append(s.names, changes)
}

// syncedNames drops folder d's changes from the log: its fsync has made
// them durable (locked).
func (s *fsys) syncedNames(d *inode) {
	for i, req := range s.names {
		s.names[i] = slices.DeleteFunc(req, func(e entryChange) bool { return e.dir == d })
	}
	s.names = slices.DeleteFunc(s.names, func(req nameChange) bool { return len(req) == 0 })
}

func (s *fsys) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	d, st := s.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	n := d.entries[name]
	switch {
	case n != nil && in.Flags&syscall.O_EXCL != 0:
		return fuse.Status(syscall.EEXIST)
	case n != nil && n.isDir():
		return fuse.EISDIR
	case n != nil:
		if in.Flags&syscall.O_TRUNC != 0 {
			n.record(op{kind: opTruncate}, s.now())
		}
	default:
		n = s.newInode(syscall.S_IFREG|in.Mode&0o7777, in.Uid, in.Gid)
		s.addEntry(d, name, n)
		s.logNames(entryChange{dir: d, name: name})
		s.applied(OpCreate, n, name)
	}
	s.entry(n, &out.EntryOut)
	return fuse.OK
}

func (s *fsys) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lock(); !st.Ok() {
		return st
	}
	n, st := s.node(in.NodeId)
	if !st.Ok() {
		return st
	}
	if n.isDir() {
		return fuse.EISDIR
	}
	if in.Flags&syscall.O_TRUNC != 0 && in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		n.record(op{kind: opTruncate}, s.now())
	}
	// No FOPEN_DIRECT_IO: reads and mmap go through the page cache, which
	// the kernel keeps in step with the writes it sends here. And
	// FOPEN_KEEP_CACHE: every change comes through the kernel, so what it
	// caches is never stale, while dropping it races with writes in flight
	// (see ExplicitDataCacheControl in serve.go).
	out.OpenFlags |= fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (s *fsys) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer s.mu.Unlock()
	if st := s.lock(); !st.Ok() {
		return nil, st
	}
	n, st := s.node(in.NodeId)
	if !st.Ok() {
		return nil, st
	}
	if n.isDir() {
		return nil, fuse.EISDIR
	}
	buf = buf[:min(len(buf), int(in.Size))]
	k := n.cur.readAt(buf, int64(in.Offset))
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (s *fsys) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return 0, st
	}
	n, st := s.node(in.NodeId)
	if !st.Ok() {
		return 0, st
	}
	if n.isDir() {
		return 0, fuse.EISDIR
	}
	// The kernel has chosen the offset (the end of the file for O_APPEND)
	// and holds the page cache to it: write exactly there.
	n.record(op{kind: opWrite, off: int64(in.Offset), data: append([]byte(nil), data...)}, s.now())
	s.applied(OpWrite, n, "")
	return uint32(len(data)), fuse.OK
}

func (s *fsys) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	n, st := s.node(in.NodeId)
	if !st.Ok() {
		return st
	}
	if n.isDir() {
		return fuse.EISDIR
	}
	if !validFallocate(in.Mode) {
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	n.record(op{kind: opFallocate, off: int64(in.Offset), size: int64(in.Length), mode: in.Mode}, s.now())
	return fuse.OK
}

func (s *fsys) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer s.mu.Unlock()
	return s.lock()
}

func (s *fsys) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {}

func (s *fsys) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	n, st := s.node(in.NodeId)
	if !st.Ok() {
		return st
	}
	if s.failing(n) {
		return fuse.EIO
	}
	n.sync()
	if n.isDir() {
		s.syncedNames(n)
	}
	s.applied(OpFsync, n, "")
	return fuse.OK
}

func (s *fsys) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return s.Fsync(nil, in)
}

func (s *fsys) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	d, st := s.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	if d.entries[name] != nil {
		return fuse.Status(syscall.EEXIST)
	}
	n := s.newInode(syscall.S_IFDIR|in.Mode&0o7777, in.Uid, in.Gid)
	s.addEntry(d, name, n)
	s.logNames(entryChange{dir: d, name: name})
	s.entry(n, out)
	return fuse.OK
}

// remove takes the name from d and forgets the inode if nothing else
// refers to it (locked).
func (s *fsys) remove(d *inode, name string) {
	c := d.entries[name]
	delete(d.entries, name)
	c.links--
	now := s.now()
	c.change(now, false)
	d.change(now, true)
	s.forgetIfUnused(c)
}

func (s *fsys) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	d, st := s.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	switch c := d.entries[name]; {
	case c == nil:
		return fuse.ENOENT
	case c.isDir():
		return fuse.EISDIR
	}
	s.remove(d, name)
	s.logNames(entryChange{dir: d, name: name})
	s.applied(OpUnlink, nil, name)
	return fuse.OK
}

func (s *fsys) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	d, st := s.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	switch c := d.entries[name]; {
	case c == nil:
		return fuse.ENOENT
	case !c.isDir():
		return fuse.ENOTDIR
	case len(c.entries) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	s.remove(d, name)
	s.logNames(entryChange{dir: d, name: name})
	return fuse.OK
}

// within reports whether d is dir or inside it (locked).
func within(d, dir *inode) bool {
	for {
		if d == dir {
			return true
		}
		if d.parent == d {
			return false
		}
		d = d.parent
	}
}

// Link gives a file one more name (a hard link). Like any new name, it
// survives a power cut once its folder is synced; each surviving name gets
// the file's contents (WriteSurvivors writes separate files).
func (s *fsys) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	d, st := s.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	n, st := s.node(in.Oldnodeid)
	if !st.Ok() {
		return st
	}
	switch {
	case n.isDir():
		return fuse.EPERM
	case n.links == 0:
		return fuse.ENOENT // unlinked while open: no name to link again
	case d.entries[name] != nil:
		return fuse.Status(syscall.EEXIST)
	}
	s.addEntry(d, name, n)
	s.logNames(entryChange{dir: d, name: name})
	n.change(s.now(), false)
	s.entry(n, out)
	return fuse.OK
}

func (s *fsys) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lockChange(); !st.Ok() {
		return st
	}
	od, st := s.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	nd, st := s.dir(in.Newdir)
	if !st.Ok() {
		return st
	}
	src, dst := od.entries[oldName], nd.entries[newName]
	if src == nil {
		return fuse.ENOENT
	}
	if in.Flags&^(renameNoReplace|renameExchange) != 0 || in.Flags == renameNoReplace|renameExchange {
		return fuse.EINVAL
	}
	if src.isDir() && within(nd, src) {
		return fuse.EINVAL // a folder cannot move into itself
	}
	now := s.now()
	if in.Flags&renameExchange != 0 {
		if dst == nil {
			return fuse.ENOENT
		}
		if dst.isDir() && within(od, dst) {
			return fuse.EINVAL
		}
		od.entries[oldName], nd.entries[newName] = dst, src
		if src.isDir() {
			src.parent = nd
		}
		if dst.isDir() {
			dst.parent = od
		}
		src.change(now, false)
		dst.change(now, false)
		od.change(now, true)
		nd.change(now, true)
		s.logNames(entryChange{dir: od, name: oldName}, entryChange{dir: nd, name: newName})
		return fuse.OK
	}
	if dst != nil {
		switch {
		case in.Flags&renameNoReplace != 0:
			return fuse.Status(syscall.EEXIST)
		case dst == src:
			return fuse.OK
		case src.isDir() && !dst.isDir():
			return fuse.ENOTDIR
		case !src.isDir() && dst.isDir():
			return fuse.EISDIR
		case dst.isDir() && len(dst.entries) > 0:
			return fuse.Status(syscall.ENOTEMPTY)
		}
		s.remove(nd, newName)
	}
	delete(od.entries, oldName)
	src.links-- // addEntry counts the new name: a rename keeps the count
	od.change(now, true)
	s.addEntry(nd, newName, src)
	src.change(now, false)
	s.logNames(entryChange{dir: od, name: oldName}, entryChange{dir: nd, name: newName})
	s.applied(OpRename, src, newName)
	return fuse.OK
}

func (s *fsys) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lock(); !st.Ok() {
		return st
	}
	d, st := s.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	list := []fuse.DirEntry{
		{Name: ".", Mode: syscall.S_IFDIR, Ino: d.ino},
		{Name: "..", Mode: syscall.S_IFDIR, Ino: d.parent.ino},
	}
	for _, name := range sortedNames(d.entries) {
		c := d.entries[name]
		list = append(list, fuse.DirEntry{Name: name, Mode: c.mode, Ino: c.ino})
	}
	for i := range list {
		list[i].Off = uint64(i + 1)
	}
	s.nextFh++
	s.dirs[s.nextFh] = list
	out.Fh = s.nextFh
	return fuse.OK
}

func (s *fsys) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lock(); !st.Ok() {
		return st
	}
	list, ok := s.dirs[in.Fh]
	if !ok {
		return fuse.EBADF
	}
	for i := in.Offset; i < uint64(len(list)); i++ {
		if !out.AddDirEntry(list[i]) {
			break
		}
	}
	return fuse.OK
}

func (s *fsys) ReleaseDir(in *fuse.ReleaseIn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dirs, in.Fh)
}

func (s *fsys) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer s.mu.Unlock()
	if st := s.lock(); !st.Ok() {
		return st
	}
	var used uint64
	for _, n := range s.inodes {
		used += n.cur.blocks() / (pageSize / 512)
	}
	const total = 1 << 20 // 4 GiB of 4 KiB blocks: a size, not a limit
	*out = fuse.StatfsOut{
		Blocks:  total,
		Bfree:   total - min(used, total),
		Bavail:  total - min(used, total),
		Files:   1 << 20,
		Ffree:   1<<20 - min(uint64(len(s.inodes)), 1<<20),
		Bsize:   pageSize,
		Frsize:  pageSize,
		NameLen: 255,
	}
	return fuse.OK
}
