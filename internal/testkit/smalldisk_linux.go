package testkit

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// SmallDisk mounts a tmpfs of size bytes on a new folder and returns it: a
// real file system that runs out of space (ENOSPC), unmounted at cleanup.
// Mounting needs root (CAP_SYS_ADMIN), which make test has here, as the
// power-loss tests' FUSE mounts do.
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	require.NoError(t, unix.Mkdir(dir, 0o700))
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size))
	require.NoError(t, err, "mount a tmpfs of %d bytes (as root) on %s", size, dir)
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}
