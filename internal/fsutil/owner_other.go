//go:build !unix

package fsutil

import "io/fs"

// noFollow is not available here.
const noFollow = 0

// ownerOf and exactOwner are the zero Owner where files have no Unix
// owner.
func ownerOf(fs.FileInfo) Owner    { return Owner{} }
func exactOwner(fs.FileInfo) Owner { return Owner{} }

func linkCount(fs.FileInfo) uint64 { return 1 }

func chown(string, int, int) error { return nil }

func bestEffort(err error) error { return err }
