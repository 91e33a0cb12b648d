package bolt

import "os"

// FreelistPersisted reports whether the database file at path has bbolt's
// freelist written (the meta page bbolt would choose points to a freelist
// page), so that an open reads it instead of walking the file. For the
// external tests (powercut_test.go).
func FreelistPersisted(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	m, err := (&fileChecker{r: f, size: fi.Size(), seen: map[uint64]bool{}}).meta()
	if err != nil {
		return false, err
	}
	return m.freelist != ^uint64(0), nil
}

// WithPipelineHooks returns opts with the pipeline's test hooks: written
// is called by the writer after it wrote a group to the log, beforeSync
// by the syncer before each fdatasync (pipeline_test.go).
func WithPipelineHooks(opts Options, written, beforeSync func()) Options {
	opts.hooks = pipelineHooks{written: written, beforeSync: beforeSync}
	return opts
}

// WithoutCacheInvalidation returns opts with the Get cache ignoring its
// invalidations and holds: the mutation the cache's tests must catch.
func WithoutCacheInvalidation(opts Options) Options {
	opts.hooks.skipCacheInvalidation = true
	return opts
}
