package testkit

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// SmallDisk mounts a tmpfs of size bytes on a new folder and returns it: a
// real file system that runs out of space (ENOSPC), unmounted at cleanup.
// Mounting needs root (CAP_SYS_ADMIN), which make test has in CI; without
// it the test is skipped, as the power-loss tests are without FUSE.
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	require.NoError(t, unix.Mkdir(dir, 0o700))
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size))
	if errors.Is(err, unix.EPERM) {
		t.Skipf("a full disk needs a tmpfs mount, which needs root (CAP_SYS_ADMIN): %v", err)
	}
	require.NoError(t, err, "mount a tmpfs of %d bytes on %s", size, dir)
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// GrowSmallDisk gives a SmallDisk size bytes: the disk has room again.
func GrowSmallDisk(t testing.TB, dir string, size int64) {
	t.Helper()
	err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size))
	require.NoError(t, err, "grow the tmpfs on %s to %d bytes", dir, size)
}
