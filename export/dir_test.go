package export_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/internal/testkit"
)

func names(infos []export.FileInfo) []string {
	out := []string{}
	for _, fi := range infos {
		out = append(out, fi.Name)
	}
	return out
}

func TestDirCreateListOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dumps")
	d, err := export.OpenDir(path)
	require.NoError(t, err)
	assert.Equal(t, path, d.Path())

	write := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	fi, err := d.Create("a.json", true, write("first"))
	require.NoError(t, err)
	assert.Equal(t, "a.json", fi.Name)
	assert.Equal(t, filepath.Join(path, "a.json"), fi.Path)
	assert.Equal(t, int64(5), fi.Size)
	st, err := os.Stat(fi.Path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// replace overwrites; without it a free name is picked.
	_, err = d.Create("a.json", true, write("second"))
	require.NoError(t, err)
	fi2, err := d.Create("a.json", false, write("third"))
	require.NoError(t, err)
	assert.Equal(t, "a_2.json", fi2.Name)
	fi3, err := d.Create("a.json", false, write("fourth"))
	require.NoError(t, err)
	assert.Equal(t, "a_3.json", fi3.Name)

	f, info, err := d.Open("a.json")
	require.NoError(t, err)
	b, _ := io.ReadAll(f)
	f.Close()
	assert.Equal(t, "second", string(b))
	assert.Equal(t, int64(6), info.Size)

	_, _, err = d.Open("missing.json")
	require.ErrorIs(t, err, export.ErrNoDump)
	_, _, err = d.Open("../ctxd.db")
	require.ErrorIs(t, err, export.ErrBadName)
	require.NoError(t, os.Mkdir(filepath.Join(path, "folder.json"), 0o700))
	_, _, err = d.Open("folder.json")
	require.ErrorIs(t, err, export.ErrNoDump, "a folder is not a dump")

	// Temp files, hidden files and folders are never listed.
	require.NoError(t, os.WriteFile(filepath.Join(path, export.TempPrefix+"x.json-123"), []byte("partial"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(path, ".hidden"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(path, "bad name.json"), nil, 0o600))
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(path, "a.json"), old, old))
	list, err := d.List()
	require.NoError(t, err)
	assert.Equal(t, "a.json", list[len(list)-1].Name, "newest first: the oldest is last")
	assert.ElementsMatch(t, []string{"a.json", "a_2.json", "a_3.json"}, names(list))

	// Opening the folder again removes the temp files a crash left.
	_, err = export.OpenDir(path)
	require.NoError(t, err)
	assert.NotContains(t, testkit.DirNames(t, path), export.TempPrefix+"x.json-123")
	assert.Contains(t, testkit.DirNames(t, path), ".hidden", "only temp files are removed")

	_, err = d.Create("../escape.json", true, write("x"))
	require.ErrorIs(t, err, export.ErrBadName)
}

// A dump that fails midway leaves nothing: no file under its name, no temp
// file, and an earlier dump of the same name intact. While it is being
// written, the listing does not show it.
func TestDirCreateFailure(t *testing.T) {
	path := t.TempDir()
	d, err := export.OpenDir(path)
	require.NoError(t, err)
	_, err = d.Create("keep.csv", true, func(w io.Writer) error { _, err := io.WriteString(w, "old"); return err })
	require.NoError(t, err)

	boom := errors.New("boom")
	_, err = d.Create("keep.csv", true, func(w io.Writer) error {
		_, _ = io.WriteString(w, strings.Repeat("partial", 1000))
		list, err := d.List()
		require.NoError(t, err)
		assert.Equal(t, []string{"keep.csv"}, names(list), "a dump being written is not listed")
		assert.Len(t, testkit.DirNames(t, path), 2, "the temp file exists meanwhile")
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, []string{"keep.csv"}, testkit.DirNames(t, path))
	b, err := os.ReadFile(filepath.Join(path, "keep.csv"))
	require.NoError(t, err)
	assert.Equal(t, "old", string(b))

	_, err = d.Create("new.csv", false, func(io.Writer) error { return boom })
	require.ErrorIs(t, err, boom)
	assert.Equal(t, []string{"keep.csv"}, testkit.DirNames(t, path))
	fi, err := d.Create("new.csv", false, func(io.Writer) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, "new.csv", fi.Name, "a failed dump does not keep its name reserved")
}

func TestSpool(t *testing.T) {
	path := t.TempDir()
	d, err := export.OpenDir(path)
	require.NoError(t, err)
	f, err := d.Spool()
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteString("data")
	require.NoError(t, err)
	assert.Empty(t, testkit.DirNames(t, path), "a spool file is unlinked at once")
}

// Processes sharing a dump folder (dumps.dir: the instances of an etcd
// deployment; here two Dirs, whose locks are as separate as two
// processes'): dumps without a name to replace, taken at once under the
// same name, all get names of their own and keep their content (a look
// for a free name gave two the same, and the second replaced the first);
// and a process opening the folder while another writes a dump leaves its
// temp file, which becomes the dump. Each fails without its part
// (checked).
func TestSharedDumpFolder(t *testing.T) {
	path := t.TempDir()
	a, err := export.OpenDir(path)
	require.NoError(t, err)
	b, err := export.OpenDir(path)
	require.NoError(t, err)

	const each = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := map[string]string{}
	for i := range 2 * each {
		d := a
		if i%2 == 1 {
			d = b
		}
		wg.Go(func() {
			content := "dump " + strconv.Itoa(i)
			fi, err := d.Create("context_dump.json", false, func(w io.Writer) error {
				_, err := io.WriteString(w, content)
				return err
			})
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			assert.NotContains(t, written, fi.Name, "a name taken twice")
			written[fi.Name] = content
		})
	}
	wg.Wait()
	require.Len(t, written, 2*each)
	for name, content := range written {
		got, err := os.ReadFile(filepath.Join(path, name))
		require.NoError(t, err)
		assert.Equal(t, content, string(got), name)
	}

	entered, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Create("slow.csv", true, func(w io.Writer) error {
			_, _ = io.WriteString(w, "slow")
			close(entered)
			<-finish
			return nil
		})
		done <- err
	}()
	<-entered
	_, err = export.OpenDir(path)
	require.NoError(t, err)
	close(finish)
	require.NoError(t, <-done, "the writer's temp file stayed")
	got, err := os.ReadFile(filepath.Join(path, "slow.csv"))
	require.NoError(t, err)
	assert.Equal(t, "slow", string(got))
}

func TestDumpName(t *testing.T) {
	for _, tt := range []struct {
		in   string
		f    export.Format
		want string
	}{
		{"backup", export.JSON, "backup.json"},
		{"backup.json", export.JSON, "backup.json"},
		{"backup.json", export.CSV, "backup.json.csv"},
		{"nightly-2026_01_02", export.Pretty, "nightly-2026_01_02.pretty"},
		{"a", export.TXT, "a.txt"},
		{strings.Repeat("x", 124), export.TXT, strings.Repeat("x", 124) + ".txt"},
	} {
		got, err := export.DumpName(tt.in, tt.f)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got)
	}
	for _, in := range []string{
		"", ".", "..", "../x", "..%2Fx", "a/b", `a\b`, "/etc/passwd", "a\x00b", "a b", ".hidden",
		"%2e%2e", "a..b", "é", strings.Repeat("x", 125), "C:x", "a:b", "~root",
	} {
		_, err := export.DumpName(in, export.TXT)
		require.ErrorIs(t, err, export.ErrBadName, "%q", in)
	}
	assert.Equal(t, "context_dump_20260304_050607.csv", export.DefaultName(export.CSV, dumpTime))
}

// dumpsAged writes dumps of the given sizes into d, the first the oldest
// (an hour apart), and returns their names, oldest first.
func dumpsAged(t *testing.T, d *export.Dir, sizes ...int) []string {
	t.Helper()
	var out []string
	for i, size := range sizes {
		name := "d" + strconv.Itoa(i) + ".json"
		fi, err := d.Create(name, true, func(w io.Writer) error {
			_, err := io.WriteString(w, strings.Repeat("x", size))
			return err
		})
		require.NoError(t, err)
		at := time.Now().Add(time.Duration(i-len(sizes)) * time.Hour)
		require.NoError(t, os.Chtimes(fi.Path, at, at))
		out = append(out, name)
	}
	return out
}

// Remove deletes one dump; a missing one is ErrNoDump, a bad name
// ErrBadName, and nothing else in the folder is touched.
func TestDirRemove(t *testing.T) {
	path := t.TempDir()
	d, err := export.OpenDir(path)
	require.NoError(t, err)
	n := dumpsAged(t, d, 1, 1)
	require.NoError(t, d.Remove(n[0]))
	require.ErrorIs(t, d.Remove(n[0]), export.ErrNoDump)
	require.ErrorIs(t, d.Remove("../"+n[1]), export.ErrBadName)
	require.ErrorIs(t, d.Remove(".writers.lock"), export.ErrBadName)
	require.NoError(t, os.WriteFile(filepath.Join(path, "ctxd.db"), nil, 0o600))
	require.ErrorIs(t, d.Remove("ctxd.db"), export.ErrBadName, "only dump files are removed")
	assert.FileExists(t, filepath.Join(path, "ctxd.db"))
	list, err := d.List()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{n[1]}, names(list), "nor listed")
	_, _, err = d.Open("ctxd.db")
	require.ErrorIs(t, err, export.ErrNoDump, "nor served")
}

// Prune keeps the newest dumps within the count and the size, removes
// every older one, and never the dump just written, even when it alone
// is over the size; temp and hidden files are not dumps and stay.
func TestDirPrune(t *testing.T) {
	for _, c := range []struct {
		name      string
		sizes     []int
		r         export.Retention
		just      int // index of the dump just written
		remaining []int
	}{
		{"no bound keeps all", []int{5, 5, 5}, export.Retention{}, 2, []int{0, 1, 2}},
		{"count", []int{5, 5, 5, 5}, export.Retention{Keep: 2}, 3, []int{2, 3}},
		{"count of one", []int{5, 5, 5}, export.Retention{Keep: 1}, 2, []int{2}},
		{"bytes", []int{5, 5, 5, 5}, export.Retention{MaxBytes: 10}, 3, []int{2, 3}},
		{"bytes: an older small one goes too", []int{1, 9, 5}, export.Retention{MaxBytes: 10}, 2, []int{2}},
		{"both: the tighter wins", []int{5, 5, 5, 5}, export.Retention{Keep: 3, MaxBytes: 10}, 3, []int{2, 3}},
		{"the dump just written is kept alone when over the size", []int{5, 5, 50}, export.Retention{MaxBytes: 10}, 2, []int{2}},
		{"the dump just written is kept, and a newer one (another instance's)", []int{5, 5, 5}, export.Retention{Keep: 1}, 1, []int{1, 2}},
		{"another instance's newer dump is kept, alone over the size", []int{5, 5, 50}, export.Retention{MaxBytes: 10}, 1, []int{1, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := t.TempDir()
			d, err := export.OpenDir(path)
			require.NoError(t, err)
			n := dumpsAged(t, d, c.sizes...)
			// Not dumps: never removed, nor counted.
			require.NoError(t, os.WriteFile(filepath.Join(path, export.TempPrefix+"x.json-1"), []byte("partial"), 0o600))
			require.NoError(t, os.WriteFile(filepath.Join(path, ".hidden"), nil, 0o600))
			old := time.Now().Add(-48 * time.Hour)
			for _, other := range []string{"ctxd.db", "notes.md"} {
				require.NoError(t, os.WriteFile(filepath.Join(path, other), []byte("not a dump"), 0o600))
				require.NoError(t, os.Chtimes(filepath.Join(path, other), old, old))
			}
			removed, ran, err := d.Prune(c.r, n[c.just])
			require.NoError(t, err)
			require.True(t, ran)
			var want, gone []string
			for i := range n {
				if slices.Contains(c.remaining, i) {
					want = append(want, n[i])
				} else {
					gone = append(gone, n[i])
				}
			}
			list, err := d.List()
			require.NoError(t, err)
			assert.ElementsMatch(t, want, names(list))
			assert.ElementsMatch(t, gone, removed)
			assert.Subset(t, testkit.DirNames(t, path), []string{export.TempPrefix + "x.json-1", ".hidden", "ctxd.db", "notes.md"})
		})
	}
}

// Dumps dated ahead of the clock (written while it was ahead) count as
// the oldest: they would otherwise outlive every dump written after the
// clock was set right, each new one pruning the one before.
func TestDirPruneDumpsDatedAhead(t *testing.T) {
	path := t.TempDir()
	d, err := export.OpenDir(path)
	require.NoError(t, err)
	ahead := dumpsAged(t, d, 5, 5)
	for i, name := range ahead {
		at := time.Now().Add(24*time.Hour + time.Duration(i)*time.Minute)
		require.NoError(t, os.Chtimes(filepath.Join(path, name), at, at))
	}
	var removed []string
	for _, name := range []string{"now1.json", "now2.json"} {
		_, err := d.Create(name, true, func(w io.Writer) error { _, err := io.WriteString(w, "x"); return err })
		require.NoError(t, err)
		r, ran, err := d.Prune(export.Retention{Keep: 2}, name)
		require.NoError(t, err)
		require.True(t, ran)
		removed = append(removed, r...)
	}
	assert.ElementsMatch(t, ahead, removed, "the dumps dated ahead go first")
	list, err := d.List()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"now1.json", "now2.json"}, names(list))
}

// Pruning waits for no dump being written into the folder: while one is
// (it holds the folder's lock shared), Prune removes nothing and says it
// did not run; the next one does.
func TestDirPruneSkipsWhileADumpIsWritten(t *testing.T) {
	path := t.TempDir()
	d, err := export.OpenDir(path)
	require.NoError(t, err)
	n := dumpsAged(t, d, 5, 5, 5)
	writing := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := d.Create("slow.json", true, func(w io.Writer) error { close(writing); <-release; return nil })
		done <- err
	}()
	<-writing
	removed, ran, err := d.Prune(export.Retention{Keep: 1}, n[2])
	require.NoError(t, err)
	assert.False(t, ran)
	assert.Empty(t, removed)
	close(release)
	require.NoError(t, <-done)
	removed, ran, err = d.Prune(export.Retention{Keep: 1}, "slow.json")
	require.NoError(t, err)
	assert.True(t, ran)
	assert.ElementsMatch(t, n, removed)
}
