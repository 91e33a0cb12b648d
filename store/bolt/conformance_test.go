package bolt_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/storetest"
)

// TestConformance runs the backend-neutral suite against bbolt. Everything
// the store.Backend contract promises is tested there; this package's own
// tests cover what only bbolt has.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open:   openConformance,
		Defrag: true,
		Clock:  true,
	})
}

func openConformance(t testing.TB, dir string, cfg storetest.Config) store.Backend {
	t.Helper()
	path := filepath.Join(dir, "ctxd.db")
	s, err := bolt.Open(path, bolt.Options{Limits: cfg.Limits, Now: cfg.Now})
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
