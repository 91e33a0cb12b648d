//go:build !linux

package perf

import (
	"errors"
	"io/fs"
)

// filesystemType is only known on Linux.
func filesystemType(string) string { return "" }

// DropPageCache is only possible on Linux.
func DropPageCache() error { return errors.New("dropping the page cache needs Linux") }

// allocatedBytes is a file's size off Linux (its blocks are not known).
func allocatedBytes(fi fs.FileInfo) int64 { return fi.Size() }
