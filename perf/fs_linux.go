package perf

import (
	"io/fs"
	"os"
	"syscall"
)

// filesystemType names the file system holding path ("" if unknown): a
// database on tmpfs makes fsync free and the numbers meaningless.
func filesystemType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return ""
	}
	switch uint64(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC1:
		return "zfs"
	case 0x6969:
		return "nfs"
	case 0xF2F52010:
		return "f2fs"
	}
	return "other"
}

// DropPageCache writes the file system's dirty pages to disk and empties
// the page cache, so that the next reads of a file come from the disk (a
// cold start). It needs root.
func DropPageCache() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// allocatedBytes is what a file takes on disk: its allocated blocks, not
// its size (a preallocated write-ahead log segment takes its whole size
// before a record is in it; a sparse file less than its size).
func allocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
