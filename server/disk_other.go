//go:build !unix

package server

import "errors"

// fileSystemSize is not known here: the quota "auto" then stands for
// configs.DefaultQuota(0).
func fileSystemSize(string) (int64, error) {
	return 0, errors.New("the file system's size is not known on this system")
}

// fileSystemFree is not known here: no warning about the spool's room.
func fileSystemFree(string) (int64, error) {
	return 0, errors.New("the file system's free space is not known on this system")
}
