//go:build !unix

package bolt

import "os"

// lockDir does nothing where flock is not available.
func lockDir(string) (*os.File, error) { return nil, nil }

func unlockDir(*os.File) {}

// lockedByOther cannot tell where flock is not available.
func lockedByOther(string) bool { return false }
