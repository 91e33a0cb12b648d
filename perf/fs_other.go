//go:build !linux

package perf

import "errors"

// filesystemType is only known on Linux.
func filesystemType(string) string { return "" }

// DropPageCache is only possible on Linux.
func DropPageCache() error { return errors.New("dropping the page cache needs Linux") }
