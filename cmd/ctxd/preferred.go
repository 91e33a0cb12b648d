package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/framework0/ctxd/internal/fsutil"
)

// The instance of a --server list that last took a request is remembered
// between commands, in the user's cache folder: each command is a new
// process, and would otherwise start at the first instance of the list
// every time, paying on every command what that instance costs when it is
// down: nothing when it refuses connections, the connection timeout (5 s)
// when its machine is gone, and when it is hung (a paused process, whose
// kernel still takes connections) a read's try timeout (10 s) and a
// write's whole --timeout, ending outcome unknown. Once a command moved
// on, the next ones start where it ended, for as long as they keep using
// that instance: the memory lapses after preferredTTL without a command,
// and commands start at the first URL again (the nearest, by the README's
// advice), which is where they go back to anyway once it answers.
// Remembering is best effort: a cache that cannot be read or written
// changes nothing else.

// preferredTTL is how long the remembered instance outlives the last
// command that used it.
const preferredTTL = 10 * time.Minute

// preferredFile is where the instance of the list servers is remembered:
// one file per list, named by its hash; "" when the user has no cache
// folder.
func preferredFile(servers string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(servers))
	return filepath.Join(dir, "ctxd", "instance-"+hex.EncodeToString(sum[:8]))
}

// loadPreferred returns the instance remembered for servers, or "" (none,
// or remembered more than preferredTTL ago).
func loadPreferred(servers string) string {
	path := preferredFile(servers)
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || time.Since(fi.ModTime()) > preferredTTL {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096)) // a URL
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// rememberPreferred records where a command on the list servers (first:
// its first URL) started and ended: an instance other than the first is
// remembered, or its memory renewed; the first one is the default and
// needs none.
func rememberPreferred(servers, first, start, end string) {
	path := preferredFile(servers)
	switch {
	case path == "":
	case end == first:
		if start != first {
			_ = os.Remove(path)
		}
	case end == start:
		now := time.Now()
		_ = os.Chtimes(path, now, now)
	default:
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			_ = fsutil.WriteFileBytes(path, 0o600, []byte(end+"\n"))
		}
	}
}
