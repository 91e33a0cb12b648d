package bolt_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/storetest"
)

// TestConformance runs the backend-neutral suite against bbolt. Everything
// the store.Backend contract promises is tested there; this package's own
// tests cover what only bbolt has.
func TestConformance(t *testing.T) {
	t.Parallel() // with the committer variants: the suite waits on fsyncs, not the CPU
	storetest.Run(t, storetest.Harness{
		Open:      openConformance(bolt.Options{}),
		Defrag:    true,
		Clock:     true,
		Snapshots: true, Expiry: true, TTLUnit: ttlUnit,
	})
}

// ttlUnit is bbolt's Harness.TTLUnit: its expirer wakes at a deadline on
// a timer, so an expiry is a commit late, not a second; half a second
// leaves a loaded machine room for a restart and that commit.
const ttlUnit = 500 * time.Millisecond

// The suite again with the committer at both ends of its range: applying
// each change to bbolt at once, so that reads go to bbolt while changes
// move out of the overlay under them; and never by itself (only when a
// checkpoint asks or the overlay is full), so that nearly every read
// combines bbolt with an overlay of everything written since the last
// checkpoint.
func TestConformanceCommitter(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]bolt.Options{
		"eager": {CommitInterval: time.Microsecond, CommitChanges: 1},
		"lazy":  {CommitInterval: time.Hour, CommitChanges: 1 << 20},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, storetest.Harness{Open: openConformance(opts), Defrag: true, Clock: true, Snapshots: true, Expiry: true, TTLUnit: ttlUnit})
		})
	}
}

func openConformance(opts bolt.Options) func(t testing.TB, dir string, cfg storetest.Config) store.Backend {
	return func(t testing.TB, dir string, cfg storetest.Config) store.Backend {
		return openConformanceWith(t, dir, cfg, opts)
	}
}

func openConformanceWith(t testing.TB, dir string, cfg storetest.Config, opts bolt.Options) store.Backend {
	t.Helper()
	path := filepath.Join(dir, "ctxd.db")
	opts.Limits, opts.Now = cfg.Limits, cfg.Now
	s, err := bolt.Open(path, opts)
	require.NoError(t, err)
	c := &checkedStore{Store: s, path: path}
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

// checkedStore runs bbolt's consistency check on the file every time the
// store is closed, whether the suite closes it (a restart, the close
// checks) or the test's cleanup does.
//
// The check runs on the closed file, opened again, rather than on the
// live store just before Close: the suite closes stores while writers are
// still writing, and bbolt's check inside a read transaction compares
// against the live freelist, so it reports pages freed by a later commit
// as "reachable freed" when writes run beside it.
type checkedStore struct {
	*bolt.Store
	path string
	once sync.Once
	err  error
}

func (c *checkedStore) Close() error {
	c.once.Do(func() {
		if err := c.Store.Close(); err != nil {
			c.err = err
			return
		}
		c.err = checkFile(c.path)
	})
	return c.err
}

// checkFile opens a closed store's file and runs (*bolt.Store).Check on it.
func checkFile(path string) error {
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		return fmt.Errorf("reopen for the consistency check: %w", err)
	}
	return errors.Join(s.Check(), s.Close())
}
