package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

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
// on, the next ones start where it ended. Remembering is best effort: a
// cache that cannot be read or written changes nothing else.

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

// loadPreferred returns the instance remembered for servers, or "".
func loadPreferred(servers string) string {
	path := preferredFile(servers)
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// savePreferred remembers url as the instance of servers to start with.
func savePreferred(servers, url string) {
	path := preferredFile(servers)
	if path == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	_ = fsutil.WriteFileBytes(path, 0o600, []byte(url+"\n"))
}
