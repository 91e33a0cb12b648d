package powerfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// The server runs as powerfsd (./powerfsd), a program of its own that
// holds this package and go-fuse alone, built without the race detector
// once per test process. It used to be the test binary itself run again:
// under -race, every FUSE request ran instrumented, and each mount started
// a race-enabled copy of the whole test binary. A store/wal power-cut test
// of 84 cuts took 30 s and 21 s of CPU that way, 7.5 s and 5 s with
// powerfsd; the CPU saved is most of what make test's power cuts cost.
// The server's own code is still run under the race detector by one
// test (TestBoltSurvivesCut, through ServeFromTestBinary).
//
// The build goes to the user's cache folder under a name that is the
// hash of its content: the processes of one make test share one file,
// and a new one appears only when powerfs, go-fuse or Go change; files
// not used for a week are removed.
var server struct {
	once sync.Once
	path string
	err  error

	mu       sync.Mutex
	override string // a test's server program instead (ServeFromTestBinary)
}

// serverProgram returns the path of the program Mount starts as the
// server, building powerfsd at the first call.
func serverProgram() (string, error) {
	server.mu.Lock()
	override := server.override
	server.mu.Unlock()
	if override != "" {
		return override, nil
	}
	server.once.Do(func() { server.path, server.err = findServer() })
	return server.path, server.err
}

// findServer builds powerfsd. Where it cannot (no go command on the PATH,
// as for a test binary run by itself; a cache folder it may not write),
// the test binary serves, as it did before powerfsd: slower under -race,
// the same file system, rather than every power-cut test failing.
func findServer() (string, error) {
	path, err := buildServer()
	if err == nil {
		return path, nil
	}
	exe, exeErr := os.Executable()
	if exeErr != nil {
		return "", errors.Join(err, exeErr)
	}
	fmt.Fprintf(os.Stderr, "%v: the test binary serves the mounts instead\n", err)
	return exe, nil
}

// buildServer builds powerfsd and returns where it is.
func buildServer() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("powerfs: build powerfsd: its source folder is unknown")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "ctxd-powerfsd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("powerfs: build powerfsd: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("powerfs: build powerfsd: %w", err)
	}
	defer os.RemoveAll(tmp)
	built := filepath.Join(tmp, "powerfsd")
	// -trimpath and no VCS stamp: the same sources make the same bytes,
	// wherever the repository is and whatever else changed in it.
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", built, ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "powerfsd")
	if out, err := cmd.CombinedOutput(); err != nil {
		if out := strings.TrimSpace(string(out)); out != "" {
			err = fmt.Errorf("%w: %s", err, out)
		}
		return "", fmt.Errorf("powerfs: build powerfsd: %w", err)
	}
	sum, err := fileHash(built)
	if err != nil {
		return "", fmt.Errorf("powerfs: build powerfsd: %w", err)
	}
	path := filepath.Join(dir, "powerfsd-"+sum)
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil { // not there yet (or unusable): this build takes its place
		if err := os.Rename(built, path); err != nil {
			return "", fmt.Errorf("powerfs: build powerfsd: %w", err)
		}
	}
	removeUnused(dir, path, now.Add(-7*24*time.Hour))
	return path, nil
}

// fileHash is the first 16 hex digits of the SHA-256 of the file at path.
func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// removeUnused removes the builds in dir other than keep that were last
// used before cutoff, and the build folders left as old by a process
// killed while it built (best effort: another process may be removing
// them).
func removeUnused(dir, keep string, cutoff time.Time) {
	builds, _ := filepath.Glob(filepath.Join(dir, "powerfsd-*"))
	unfinished, _ := filepath.Glob(filepath.Join(dir, "build-*"))
	for _, p := range append(builds, unfinished...) {
		if st, err := os.Stat(p); err == nil && p != keep && st.ModTime().Before(cutoff) {
			_ = os.RemoveAll(p)
		}
	}
}
