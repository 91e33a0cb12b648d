//go:build !unix

package fsutil

import (
	"errors"
	"os"
)

var errNoStatFS = errors.New("the free space of a file system is not known here")

// StatFS and fstatFS are unknown where statfs is not available: nothing
// is checked against a Reserve.
func StatFS(string) (size, free int64, err error)    { return 0, 0, errNoStatFS }
func fstatFS(*os.File) (size, free int64, err error) { return 0, 0, errNoStatFS }
