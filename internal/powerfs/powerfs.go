package powerfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Mode chooses what survives of the changes not made durable.
type Mode int

const (
	// Strict: nothing unsynced survives; every file has its last synced
	// contents.
	Strict Mode = iota
	// Torn: a random subset of each file's unsynced changes survives, in
	// a random order, each write torn at 512-byte sector boundaries.
	Torn
)

func (m Mode) String() string {
	switch m {
	case Strict:
		return "strict"
	case Torn:
		return "torn"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Options configure a mount.
type Options struct {
	// Mode is what survives a power cut of the unsynced changes.
	Mode Mode
	// KeepUnsyncedNames makes a power cut keep a random prefix, in the
	// order they were made, of the folder changes (creates, links,
	// unlinks, renames, mkdirs, rmdirs) not covered by an fsync of their
	// folder, as a journaling file system (ext4, xfs) may: it commits
	// them to its journal in order, every few seconds or for any fsync.
	// So a rename can survive without an fsync of its folder, pointing
	// at data that was never synced. Off: they are all lost.
	KeepUnsyncedNames bool
	// Seed makes the random choices of Torn mode and KeepUnsyncedNames
	// repeatable: the same changes cut with the same seed leave the same
	// files.
	Seed int64
	// From, when set, is a real folder whose files and folders become the
	// initial contents, all durable (only regular files and folders).
	From string
	// CutAfter, when positive, makes the file system cut the power by
	// itself just before the CutAfter-th request that could change it
	// (a write, truncate, fallocate, fsync, create, mkdir, unlink, rmdir
	// or rename; counted from the mount, failed ones included): an exact,
	// repeatable cut point, inside a commit say. That request and all
	// later ones fail with EIO; Cut then returns the report.
	CutAfter int
}

// Trigger names a request for FS.CutOn: the Count-th one (from 1) of kind
// Op on a file or folder whose name matches Name (path.Match). The name is
// the file's name when it was created or last renamed; for a rename, the
// new name.
type Trigger struct {
	Op    string // OpWrite, OpFsync, OpCreate, OpRename or OpUnlink
	Name  string
	Count int
	// Fail (set by FS.FailOn) makes that request fail rather than cut
	// the power.
	Fail bool
}

// The kinds of request a Trigger counts. OpFsync counts fsync and
// fdatasync of files and folders; OpCreate new files (not folders).
const (
	OpWrite  = "write"
	OpFsync  = "fsync"
	OpCreate = "create"
	OpRename = "rename"
	OpUnlink = "unlink"
)

func (t Trigger) String() string { return fmt.Sprintf("%s of %s #%d", t.Op, t.Name, t.Count) }

// FS is a mounted power-loss file system, served by a child process (see
// the package doc). Its methods are safe for concurrent use.
type FS struct {
	dir string

	mu        sync.Mutex // one request at a time
	cmd       *exec.Cmd
	requests  *os.File // to the server
	responses *os.File // from the server
	enc       *json.Encoder
	dec       *json.Decoder
	unmounted bool
	err       error // Unmount's result
}

// Mount mounts a new file system at mountpoint, created if needed.
func Mount(mountpoint string, opts Options) (*FS, error) {
	dir, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("powerfs: mount: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("powerfs: mount: %w", err)
	}
	if opts.From != "" {
		if opts.From, err = filepath.Abs(opts.From); err != nil {
			return nil, fmt.Errorf("powerfs: mount: %w", err)
		}
	}
	exe, err := serverProgram() // server.go
	if err != nil {
		return nil, fmt.Errorf("powerfs: mount: %w", err)
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("powerfs: mount: %w", err)
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, fmt.Errorf("powerfs: mount: %w", err)
	}
	cmd := exec.Command(exe)
	// Under -race the child would sleep a second at exit, waiting for
	// goroutines to report races.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), serveEnv+"=1", "GORACE="+gorace)
	cmd.ExtraFiles = []*os.File{reqR, respW} // fds 3 and 4 (ctlInFd, ctlOutFd)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	err = cmd.Start()
	reqR.Close()
	respW.Close()
	if err != nil {
		reqW.Close()
		respR.Close()
		return nil, fmt.Errorf("powerfs: mount: start the server: %w", err)
	}
	f := &FS{dir: dir, cmd: cmd, requests: reqW, responses: respR, enc: json.NewEncoder(reqW), dec: json.NewDecoder(respR)}
	if _, err := f.call(request{Op: "mount", Dir: dir, Opts: opts}); err != nil {
		f.unmounted = true
		f.stop()
		return nil, err
	}
	return f, nil
}

// call sends a request to the server and waits for its answer (locked).
func (f *FS) call(req request) (Report, error) {
	if f.unmounted {
		return Report{}, fmt.Errorf("powerfs: %s %s: unmounted", req.Op, f.dir)
	}
	if err := f.enc.Encode(req); err != nil {
		return Report{}, fmt.Errorf("powerfs: %s %s: the server is gone: %w", req.Op, f.dir, err)
	}
	var resp response
	if err := f.dec.Decode(&resp); err != nil {
		return Report{}, fmt.Errorf("powerfs: %s %s: the server is gone: %w", req.Op, f.dir, err)
	}
	if resp.Err != "" {
		return resp.Report, errors.New(resp.Err)
	}
	return resp.Report, nil
}

// stop closes the pipes (the server unmounts if it has not) and waits for
// the server process.
func (f *FS) stop() {
	f.requests.Close()
	f.responses.Close()
	_ = f.cmd.Wait()
}

// CutOn makes the file system cut the power by itself right after the
// request t names has been applied, counting from now: that request
// succeeds, every later one fails with EIO, as after Cut. A cut inside
// one step of the process, such as between a rename and the fsync of its
// folder. A later CutOn replaces t and counts again.
func (f *FS) CutOn(t Trigger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.call(request{Op: "cutOn", Trigger: &t})
	return err
}

// FailOn arms t as CutOn does, but the request it names (an fsync: Op
// must be OpFsync) fails with EIO instead of cutting the power: what it
// should have synced stays unsynced, and readable, as a kernel's page
// cache keeps the pages of a failed writeback (the "fsyncgate" case), and
// everything else goes on. A later Cut loses those writes, unless a later
// fsync of the file succeeded: here it syncs them, where Linux marks the
// pages of a failed writeback clean and never writes them (a test that
// passes here may still lose them there; none that fails here is wrong).
func (f *FS) FailOn(t Trigger) error {
	if t.Op != OpFsync {
		return fmt.Errorf("powerfs: fail on %v: only an fsync can be made to fail", t)
	}
	t.Fail = true
	return f.CutOn(t)
}

// PowerCut reports whether the power is cut already: by Cut, CutOn or
// Options.CutAfter.
func (f *FS) PowerCut() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rep, err := f.call(request{Op: "cut?"})
	return rep.Cut, err
}

// Dir is the mount point (absolute).
func (f *FS) Dir() string { return f.dir }

// Cut cuts the power: at once every later operation on the mount fails
// with EIO, and the surviving files are computed (see the package doc).
// The file system stays mounted until Unmount. Cut can be called once;
// if Options.CutAfter has cut the power already, it returns that cut's
// report.
func (f *FS) Cut() (Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.call(request{Op: "cut"})
}

// WriteSurvivors writes the files and folders that survived the power cut
// into dir, created if needed and empty: a server can restart on it, or a
// new FS be mounted From it. Holes stay holes; modes are kept, times are
// not. Only after Cut and before Unmount.
func (f *FS) WriteSurvivors(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("powerfs: write survivors: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err = f.call(request{Op: "survivors", Dir: abs})
	return err
}

// Unmount unmounts the file system and stops its server. It can be called
// again (and returns the first result). Files still open (by this process,
// or by a killed one not yet reaped) do not stop it: the FUSE connection is
// then aborted, and they fail with ENOTCONN.
func (f *FS) Unmount() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unmounted {
		return f.err
	}
	_, f.err = f.call(request{Op: "unmount"})
	f.unmounted = true
	if f.err != nil {
		// The server died: unmount from here.
		f.err = errors.Join(f.err, unmount(f.dir))
	}
	f.stop()
	return f.err
}

var (
	availableOnce sync.Once
	availableErr  error
)

// Available returns nil when a file system can be mounted here, otherwise
// an error that says why in one line (tests skip with it). The answer
// (found by mounting one) is computed once.
func Available() error {
	availableOnce.Do(func() { availableErr = probe() })
	return availableErr
}

func probe() error {
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powerfs: FUSE is not available: %v", err)
	}
	dev.Close()
	dir, err := os.MkdirTemp("", "powerfs-probe-")
	if err != nil {
		return fmt.Errorf("powerfs: %v", err)
	}
	defer os.RemoveAll(dir)
	f, err := Mount(dir, Options{})
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		return fmt.Errorf("powerfs: cannot mount FUSE (mount(2) needs root or CAP_SYS_ADMIN): %s", msg)
	}
	return f.Unmount()
}

// MountT mounts a file system on a folder of t.TempDir and unmounts it
// when the test ends (failing the test if that fails). It skips the test
// when FUSE is not available.
func MountT(t testing.TB, opts Options) *FS {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	f, err := Mount(filepath.Join(t.TempDir(), "mnt"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return f
}
