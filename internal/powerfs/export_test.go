package powerfs

import (
	"os"
	"testing"
)

// ServeFromTestBinary makes the mounts of t (until it ends) served by the
// test binary itself instead of powerfsd: under -race, the server's own
// code runs under the race detector (server.go).
func ServeFromTestBinary(t testing.TB) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	server.mu.Lock()
	server.override = exe
	server.mu.Unlock()
	t.Cleanup(func() {
		server.mu.Lock()
		server.override = ""
		server.mu.Unlock()
	})
}

// FindServer finds the server program as the first Mount does.
func FindServer() (string, error) { return findServer() }
