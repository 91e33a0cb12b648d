package etcdkit

import (
	"testing"
)

// A server stopped, or stopped twice, closes without a panic: embed.Etcd
// panics on a second close, and a test that failed while its etcd was
// stopped panicked in its cleanup, hiding its own failure.
func TestCloseAfterStop(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Stop()
	s.Close()
}
