package powerfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The file system is served by a child process: powerfsd (server.go), or
// any program that links this package, run with serveEnv set, which this
// package's init turns into the server.
// Serving FUSE in the process that uses the mount deadlocks as soon as it
// faults in an mmapped page (bbolt reads its file through mmap): the
// faulting thread waits for the server while Go's garbage collector, to
// stop the world, waits for the faulting thread.
const serveEnv = "POWERFS_SERVE"

// The child's control pipes: requests in, responses out.
const (
	ctlInFd  = 3
	ctlOutFd = 4
)

func init() {
	if os.Getenv(serveEnv) == "1" {
		os.Exit(serve(os.NewFile(ctlInFd, "powerfs-requests"), os.NewFile(ctlOutFd, "powerfs-responses")))
	}
}

// request is a message from the test process to the server.
type request struct {
	Op   string // "mount" (first), "cut", "survivors", "unmount"
	Dir  string // mount: the mount point; survivors: the folder to write to
	Opts Options
	// cutOn: the trigger.
	Trigger *Trigger `json:",omitempty"`
}

// response answers a request.
type response struct {
	Err    string
	Report Report
}

// serve is the child process: it mounts, answers requests until
// "unmount", and unmounts (also when the test process goes away).
func serve(in io.Reader, out io.Writer) int {
	// An interrupt (^C) reaches the test process too; this one unmounts
	// when the test process has gone, below.
	signal.Ignore(os.Interrupt)
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	reply := func(rep Report, err error) {
		var r response
		if err != nil {
			r.Err = err.Error()
		}
		r.Report = rep
		_ = enc.Encode(r)
	}
	var req request
	if err := dec.Decode(&req); err != nil || req.Op != "mount" {
		return 2
	}
	l, err := mountLocal(req.Dir, req.Opts)
	reply(Report{}, err)
	if err != nil {
		return 1
	}
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			// The test process is gone: unmount rather than leave a
			// dead mount behind.
			_ = l.unmount()
			return 1
		}
		switch req.Op {
		case "cut":
			reply(l.fs.cutPower())
		case "cut?":
			reply(Report{Cut: l.fs.isCut()}, nil)
		case "cutOn":
			reply(Report{}, l.fs.cutOn(req.Trigger))
		case "survivors":
			reply(Report{}, writeSurvivors(l.fs.surviving(), req.Dir))
		case "unmount":
			reply(Report{}, l.unmount())
			return 0
		default:
			reply(Report{}, fmt.Errorf("powerfs: unknown request %q", req.Op))
		}
	}
}

// local is the file system served by this process.
type local struct {
	dir    string
	fs     *fsys
	server *fuse.Server
	served chan struct{} // closed when the server has stopped
}

// mountLocal mounts and serves the file system in this process.
func mountLocal(dir string, opts Options) (*local, error) {
	s := newFsys(opts)
	if opts.From != "" {
		if err := s.load(opts.From, s.root); err != nil {
			return nil, fmt.Errorf("powerfs: mount: load %s: %w", opts.From, err)
		}
	}
	server, err := fuse.NewServer(s, dir, &fuse.MountOptions{
		// There is no fusermount here: mount(2) directly, as root.
		DirectMountStrict:  true,
		FsName:             "powerfs",
		Name:               "powerfs",
		DisableXAttrs:      true,
		DisableReadDirPlus: true,
		MaxWrite:           1 << 20,
		// No automatic invalidation of cached data when a file's mtime
		// or size changes (FUSE_AUTO_INVAL_DATA): every change comes
		// through the kernel, so the cache is never stale, and dropping
		// it races with writes in flight: as we read the kernel, a fully
		// written page is marked up to date before its WRITE reaches us;
		// dropped then, it is read back from here without that write,
		// and the stale copy stays cached. bbolt read zero pages through its
		// mmap ("Page expected to be N, but self identifies as 0") while
		// a ctxd snapshot read the same file.
		ExplicitDataCacheControl: true,
	})
	if err != nil {
		return nil, fmt.Errorf("powerfs: mount %s: %w", dir, err)
	}
	l := &local{dir: dir, fs: s, server: server, served: make(chan struct{})}
	go func() {
		defer close(l.served)
		server.Serve()
	}()
	if err := server.WaitMount(); err != nil {
		return nil, errors.Join(fmt.Errorf("powerfs: mount %s: %w", dir, err), l.unmount())
	}
	return l, nil
}

// unmount unmounts and waits for the server to stop.
func (l *local) unmount() error {
	if err := unmount(l.dir); err != nil {
		return err
	}
	select {
	case <-l.served:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("powerfs: unmount %s: the FUSE server did not stop", l.dir)
	}
}

// unmount unmounts the file system at dir, even if files are still open.
func unmount(dir string) error {
	err := syscall.Unmount(dir, 0)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("powerfs: unmount %s: %w", dir, err)
	}
	// Still in use. MNT_FORCE makes FUSE abort the connection (every
	// request, pending or future, fails), which lets the server stop;
	// MNT_DETACH takes the mount out of the tree now and frees it when
	// the last file is closed.
	_ = syscall.Unmount(dir, syscall.MNT_FORCE)
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("powerfs: unmount %s: %w", dir, err)
	}
	return nil
}

// load copies the real folder src into d, all durable.
func (s *fsys) load(src string, d *inode) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(src, e.Name())
		info, err := e.Info()
		if err != nil {
			return err
		}
		perm := uint32(info.Mode().Perm())
		switch {
		case info.IsDir():
			n := s.newInode(syscall.S_IFDIR|perm, 0, 0)
			s.addEntry(d, e.Name(), n)
			if err := s.load(p, n); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			n := s.newInode(syscall.S_IFREG|perm, 0, 0)
			if err := readFile(p, &n.cur); err != nil {
				return err
			}
			n.sync()
			s.addEntry(d, e.Name(), n)
		default:
			return fmt.Errorf("%s: only regular files and folders are supported", p)
		}
	}
	d.sync()
	return nil
}

// readFile reads the file at p into c, page by page.
func readFile(p string, c *contents) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, pageSize)
	for off := int64(0); ; off += pageSize {
		n, err := io.ReadFull(f, buf)
		c.writeAt(buf[:n], off)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
