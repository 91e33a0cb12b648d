package powerfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/powerfs"
)

// With KeepUnsyncedNames a cut keeps a prefix of the folder changes no
// fsync of their folder covered, in the order they were made: the tree
// after the cut is the tree after the first KeptNames of them, never one
// that a later change reaches without an earlier one. A rename between two
// folders moves the file whole. Without the option none is kept.
func TestKeepUnsyncedNamesKeepsAPrefix(t *testing.T) {
	// The tree after each prefix of the changes below: sub/x, created
	// then covered by the fsync of sub, is always there.
	after := []map[string]string{
		{},
		{"1": "one"},
		{"1": "one", "2": "two"},
		{"2": "two", "3": "one"},
		{"3": "one"},
		{"sub/y": "one"},
		{"sub/y": "one", "4": "four"},
	}
	kept := map[int]bool{}
	for seed := range int64(13) {
		opts := powerfs.Options{KeepUnsyncedNames: seed > 0, Seed: seed}
		fs := powerfs.MountT(t, opts)
		p := func(name string) string { return filepath.Join(fs.Dir(), name) }
		mkdirs(t, fs.Dir(), "sub")
		create(t, p("1"), "one", true)
		create(t, p("sub/x"), "x", true)
		create(t, p("2"), "two", true)
		require.NoError(t, os.Rename(p("1"), p("3")))
		syncDir(t, p("sub"))
		require.NoError(t, os.Remove(p("2")))
		require.NoError(t, os.Rename(p("3"), p("sub/y")))
		create(t, p("4"), "four", true)

		rep, err := fs.Cut()
		require.NoError(t, err)
		require.Less(t, rep.KeptNames, len(after), "six changes to keep")
		want := map[string]string{"sub": "/", "sub/x": "x"}
		for name, data := range after[rep.KeptNames] {
			want[name] = data
		}
		assert.Equal(t, want, tree(t, survivors(t, fs)), "%+v: the first %d changes", opts, rep.KeptNames)
		if !opts.KeepUnsyncedNames {
			assert.Zero(t, rep.KeptNames, "without the option nothing unsynced is kept")
			continue
		}
		kept[rep.KeptNames] = true
	}
	assert.GreaterOrEqual(t, len(kept), 3, "the prefix is drawn: kept %v", kept)
}

// The classic bug: a writer that replaces a file by writing a new one and
// renaming it over the old, without an fsync of the new data, can leave an
// empty file on ext4 or xfs: the rename is committed with the journal, the
// data was never written. KeepUnsyncedNames must catch it (without the
// option, an unsynced rename never survives and the bug hides); a writer
// that fsyncs the data, renames, then fsyncs the folder must pass, wherever
// the power is cut.
func TestKeepUnsyncedNamesCatchesRenameBeforeDataSync(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("old"), 0o644))
	// replace is the writer; its requests are the file system's 1st
	// (create), 2nd (write), [fsync,] rename[, fsync of the folder].
	replace := func(dir string, sync bool) error {
		f, err := os.OpenFile(filepath.Join(dir, "f.tmp"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString("new")
		if sync && err == nil {
			err = f.Sync()
		}
		if err = errors.Join(err, f.Close()); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(dir, "f.tmp"), filepath.Join(dir, "f")); err != nil || !sync {
			return err
		}
		d, err := os.Open(dir)
		if err != nil {
			return err
		}
		return errors.Join(d.Sync(), d.Close())
	}
	// survivor is f after the power is cut just before the writer's
	// cutAfter-th request (0: after the writer).
	survivor := func(opts powerfs.Options, sync bool) string {
		opts.From, opts.KeepUnsyncedNames = src, true
		fs := powerfs.MountT(t, opts)
		err := replace(fs.Dir(), sync)
		if opts.CutAfter == 0 {
			require.NoError(t, err)
		}
		_, err = fs.Cut()
		require.NoError(t, err)
		return tree(t, survivors(t, fs))["f"]
	}

	t.Run("rename before the data is synced", func(t *testing.T) {
		caught := false
		for seed := int64(1); seed <= 8 && !caught; seed++ {
			got := survivor(powerfs.Options{Seed: seed}, false)
			t.Logf("seed %d: f is %q", seed, got)
			assert.Contains(t, []string{"old", "new", ""}, got)
			caught = got == ""
		}
		assert.True(t, caught, "no seed left f empty: the unsynced rename never survived")
	})
	t.Run("data synced, renamed, folder synced", func(t *testing.T) {
		for cutAfter := range 6 {
			for seed := int64(1); seed <= 3; seed++ {
				mode := []powerfs.Mode{powerfs.Strict, powerfs.Torn}[seed%2]
				got := survivor(powerfs.Options{Mode: mode, Seed: seed, CutAfter: cutAfter}, true)
				assert.Contains(t, []string{"old", "new"}, got, "cut before request %d, seed %d, %s mode", cutAfter, seed, mode)
				if cutAfter == 0 {
					assert.Equal(t, "new", got, "the writer finished")
				}
			}
		}
	})
}
