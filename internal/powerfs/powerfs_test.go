package powerfs_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
)

// open opens an existing file for writing, without truncating it.
func open(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestUnsyncedWritesAreLost(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Strict})
	d := fs.Dir()
	p := func(name string) string { return filepath.Join(d, name) }
	// The names are made durable first: only the data is in question.
	for _, name := range []string{"nosync", "fsync", "fdatasync", "overwritten", "truncated", "grown"} {
		create(t, p(name), "", false)
	}
	syncDir(t, d)

	_, err := open(t, p("nosync")).WriteString("lost")
	require.NoError(t, err)

	f := open(t, p("fsync"))
	_, err = f.WriteString("kept")
	require.NoError(t, err)
	require.NoError(t, f.Sync())

	f = open(t, p("fdatasync"))
	_, err = f.WriteString("kept too")
	require.NoError(t, err)
	require.NoError(t, unix.Fdatasync(int(f.Fd())))

	f = open(t, p("overwritten"))
	_, err = f.WriteString("v1")
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	_, err = f.WriteAt([]byte("v2"), 0)
	require.NoError(t, err)

	f = open(t, p("truncated"))
	_, err = f.WriteString("abcdef")
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Truncate(2))

	f = open(t, p("grown"))
	_, err = f.WriteString("abc")
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Truncate(10000))
	// What the writers see before the cut.
	b, err := os.ReadFile(p("overwritten"))
	require.NoError(t, err)
	assert.Equal(t, "v2", string(b))
	st, err := os.Stat(p("grown"))
	require.NoError(t, err)
	assert.Equal(t, int64(10000), st.Size())

	rep, err := fs.Cut()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"nosync":      "",
		"fsync":       "kept",
		"fdatasync":   "kept too",
		"overwritten": "v1",
		"truncated":   "abcdef",
		"grown":       "abc",
	}, tree(t, survivors(t, fs)))
	assert.Equal(t, powerfs.Report{Files: 6, UnsyncedOps: 4, DroppedOps: 4,
		Pending: []string{"grown", "nosync", "overwritten", "truncated"}}, rep, rep.String())

	_, err = fs.Cut()
	assert.Error(t, err, "the power is cut once")
}

func TestFolderEntriesNeedFolderSync(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	d := fs.Dir()
	p := func(name string) string { return filepath.Join(d, name) }
	mkdirs(t, d, "new", "renamed", "renamedSynced", "unlinked", "unlinkedSynced",
		"from", "to", "fromOnly", "fromOnly.dst", "toOnly.src", "toOnly")

	// A new file, synced itself, in a folder not synced since: gone.
	create(t, p("new/file"), "n", true)
	require.NoError(t, os.Mkdir(p("new/sub"), 0o755))

	// Renames and unlinks of durable files.
	for _, dir := range []string{"renamed", "renamedSynced", "unlinked", "unlinkedSynced", "from", "fromOnly", "toOnly.src"} {
		create(t, p(dir+"/f"), dir, true)
		syncDir(t, p(dir))
	}
	require.NoError(t, os.Rename(p("renamed/f"), p("renamed/g")))
	require.NoError(t, os.Rename(p("renamedSynced/f"), p("renamedSynced/g")))
	syncDir(t, p("renamedSynced"))
	require.NoError(t, os.Remove(p("unlinked/f")))
	require.NoError(t, os.Remove(p("unlinkedSynced/f")))
	syncDir(t, p("unlinkedSynced"))

	// Between folders a rename needs both synced: only the source loses
	// the file, only the target leaves it under both names.
	require.NoError(t, os.Rename(p("from/f"), p("to/f")))
	syncDir(t, p("from"))
	syncDir(t, p("to"))
	require.NoError(t, os.Rename(p("fromOnly/f"), p("fromOnly.dst/f")))
	syncDir(t, p("fromOnly"))
	require.NoError(t, os.Rename(p("toOnly.src/f"), p("toOnly/g")))
	syncDir(t, p("toOnly"))

	rep, err := fs.Cut()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{
		"new":             "/",
		"renamed":         "/",
		"renamed/f":       "renamed",
		"renamedSynced":   "/",
		"renamedSynced/g": "renamedSynced",
		"unlinked":        "/",
		"unlinked/f":      "unlinked",
		"unlinkedSynced":  "/",
		"from":            "/",
		"to":              "/",
		"to/f":            "from",
		"fromOnly":        "/",
		"fromOnly.dst":    "/",
		"toOnly.src":      "/",
		"toOnly.src/f":    "toOnly.src",
		"toOnly":          "/",
		"toOnly/g":        "toOnly.src",
	}, tree(t, survivors(t, fs)))
	// new: file and sub; renamed: f and g; unlinked: f; fromOnly.dst: f;
	// toOnly.src: f.
	assert.Equal(t, 7, rep.LostEntries, rep.String())
	assert.Equal(t, []string{"+fromOnly.dst/f", "+new/file", "+new/sub", "+renamed/g", "-renamed/f", "-toOnly.src/f", "-unlinked/f"},
		rep.Pending, "what was not durable, by path")
	assert.Equal(t, 6, rep.Files, rep.String())
}

// CutAfter cuts the power by itself just before the n-th change.
func TestCutAfter(t *testing.T) {
	// Changes: 1 create, 2 write "a", 3 fsync, 4 fsync of the folder,
	// 5 write "b", 6 fsync (the cut).
	fs := powerfs.MountT(t, powerfs.Options{CutAfter: 6})
	p := filepath.Join(fs.Dir(), "f")
	create(t, p, "a", true)
	syncDir(t, fs.Dir())
	f := open(t, p)
	_, err := f.WriteAt([]byte("b"), 1)
	require.NoError(t, err)
	assert.ErrorIs(t, f.Sync(), syscall.EIO, "the power is cut at the 6th change")
	_, err = f.WriteAt([]byte("c"), 2)
	assert.ErrorIs(t, err, syscall.EIO)

	rep, err := fs.Cut()
	require.NoError(t, err)
	assert.Equal(t, powerfs.Report{Files: 1, UnsyncedOps: 1, DroppedOps: 1, Pending: []string{"f"}}, rep)
	assert.Equal(t, map[string]string{"f": "a"}, tree(t, survivors(t, fs)))
	_, err = fs.Cut()
	assert.Error(t, err)
}

// CutOn cuts the power right after the n-th request of a kind on a name:
// here the second rename to *.wal, which succeeds, before its folder is
// synced.
func TestCutOn(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	p := func(name string) string { return filepath.Join(fs.Dir(), name) }
	for _, name := range []string{"a.tmp", "b.tmp", "c.tmp"} {
		create(t, p(name), name, true)
	}
	syncDir(t, fs.Dir())
	require.NoError(t, os.Rename(p("c.tmp"), p("c.wal")), "before CutOn: not counted")
	syncDir(t, fs.Dir())
	require.NoError(t, fs.CutOn(powerfs.Trigger{Op: powerfs.OpRename, Name: "*.wal", Count: 2}))
	require.NoError(t, os.Rename(p("a.tmp"), p("a.wal")))
	syncDir(t, fs.Dir())
	cut, err := fs.PowerCut()
	require.NoError(t, err)
	assert.False(t, cut, "one rename to *.wal")
	require.NoError(t, os.Rename(p("b.tmp"), p("b.wal")), "the request that cuts the power succeeds")
	cut, err = fs.PowerCut()
	require.NoError(t, err)
	assert.True(t, cut, "the second rename cut the power")
	_, err = os.Create(p("c"))
	assert.ErrorIs(t, err, syscall.EIO, "every later request fails")

	rep, err := fs.Cut()
	require.NoError(t, err)
	assert.Equal(t, []string{"+b.wal", "-b.tmp"}, rep.Pending)
	assert.Equal(t, map[string]string{"a.wal": "a.tmp", "b.tmp": "b.tmp", "c.wal": "c.tmp"}, tree(t, survivors(t, fs)))
}

// FailOn fails the n-th fsync of a file with EIO: the data written stays
// readable, the file system goes on, and a power cut loses the data.
func TestFailOn(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	p := filepath.Join(fs.Dir(), "f")
	create(t, p, "old", true)
	syncDir(t, fs.Dir())
	require.Error(t, fs.FailOn(powerfs.Trigger{Op: powerfs.OpRename, Name: "f", Count: 1}), "only an fsync fails")
	require.NoError(t, fs.FailOn(powerfs.Trigger{Op: powerfs.OpFsync, Name: "f", Count: 1}))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("new"), 0)
	require.NoError(t, err)
	assert.ErrorIs(t, f.Sync(), syscall.EIO, "the armed fsync fails")
	b := make([]byte, 3)
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b), "what it did not sync is still read")
	cut, err := fs.PowerCut()
	require.NoError(t, err)
	assert.False(t, cut, "a failed fsync does not cut the power")
	create(t, filepath.Join(fs.Dir(), "g"), "g", true) // everything else goes on
	syncDir(t, fs.Dir())

	_, err = fs.Cut()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"f": "old", "g": "g"}, tree(t, survivors(t, fs)), "the power cut loses what the failed fsync did not sync")
}

func TestUnlinkedOpenFileKeepsWorking(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	p := filepath.Join(fs.Dir(), "f")
	create(t, p, "old", true)
	syncDir(t, fs.Dir())
	f := open(t, p)
	require.NoError(t, os.Remove(p))
	syncDir(t, fs.Dir())
	_, err := f.WriteAt([]byte("new data"), 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	b := make([]byte, 8)
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	assert.Equal(t, "new data", string(b))
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(int(f.Fd()), &st))
	assert.Equal(t, uint64(0), uint64(st.Nlink))
	assert.Equal(t, int64(8), st.Size)
	_, err = os.Stat(p)
	assert.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, f.Close())

	_, err = fs.Cut()
	require.NoError(t, err)
	assert.Empty(t, tree(t, survivors(t, fs)))
}

// The durable folder entry of an unlinked file brings back the file with
// the contents it last synced, even when it was synced after the unlink.
func TestUnlinkNotSyncedBringsFileBack(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	p := filepath.Join(fs.Dir(), "f")
	create(t, p, "v1", true)
	syncDir(t, fs.Dir())
	f := open(t, p)
	require.NoError(t, os.Remove(p))
	_, err := f.WriteAt([]byte("v2"), 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	_, err = f.WriteAt([]byte("v3"), 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	_, err = fs.Cut()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"f": "v2"}, tree(t, survivors(t, fs)))
}

// tornWrites are three unsynced writes of distinct bytes that do not
// overlap, on a durable file of 8192 'd's: 'A' inside the file, 'B' across
// a page boundary, 'C' past the end.
var tornWrites = []struct {
	off  int64
	n    int
	fill byte
}{{100, 1500, 'A'}, {3000, 2000, 'B'}, {7000, 3000, 'C'}}

// tornCase makes the file, writes tornWrites, cuts the power and returns
// the survivor.
func tornCase(t *testing.T, seed int64) ([]byte, powerfs.Report) {
	t.Helper()
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Torn, Seed: seed})
	p := filepath.Join(fs.Dir(), "f")
	create(t, p, string(bytes.Repeat([]byte{'d'}, 8192)), true)
	syncDir(t, fs.Dir())
	f := open(t, p)
	for _, w := range tornWrites {
		_, err := f.WriteAt(bytes.Repeat([]byte{w.fill}, w.n), w.off)
		require.NoError(t, err)
	}
	rep, err := fs.Cut()
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(survivors(t, fs), "f"))
	require.NoError(t, err)
	return b, rep
}

func TestTornWritesLandBySector(t *testing.T) {
	var landed, dropped, torn, tornReported int
	for seed := int64(1); seed <= 20; seed++ {
		got, rep := tornCase(t, seed)
		// The kernel may split a write at page boundaries: one write
		// call can be two operations.
		assert.GreaterOrEqual(t, rep.UnsyncedOps, 3)
		assert.LessOrEqual(t, rep.UnsyncedOps, 5)
		assert.LessOrEqual(t, rep.TornOps+rep.DroppedOps, rep.UnsyncedOps)
		tornReported += rep.TornOps

		// Rebuild what survived from the durable file and the pieces of
		// the writes (split at absolute 512-byte boundaries) found in it:
		// a piece is there whole or not at all, and nothing else changed.
		want := bytes.Repeat([]byte{'d'}, 8192)
		for _, w := range tornWrites {
			var in, out int
			for off := w.off; off < w.off+int64(w.n); {
				end := min((off/512+1)*512, w.off+int64(w.n))
				if end <= int64(len(got)) && bytes.Count(got[off:end], []byte{w.fill}) == int(end-off) {
					in++
					for int64(len(want)) < end {
						want = append(want, 0)
					}
					copy(want[off:end], bytes.Repeat([]byte{w.fill}, int(end-off)))
				} else {
					out++
				}
				off = end
			}
			landed += in
			dropped += out
			if in > 0 && out > 0 {
				torn++
			}
		}
		require.Equal(t, want, got, "seed %d: the survivor is the durable file plus whole sectors of the writes", seed)
	}
	assert.Positive(t, landed, "some sectors of unsynced writes persist")
	assert.Positive(t, dropped, "some are lost")
	assert.Positive(t, torn, "some writes are torn")
	assert.Positive(t, tornReported, "the reports count torn writes")

	a, _ := tornCase(t, 7)
	b, _ := tornCase(t, 7)
	assert.Equal(t, a, b, "a seed repeats its outcome")
}

func TestCutStopsAProcessWriting(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{Mode: powerfs.Strict})
	sh, gor := filepath.Join(fs.Dir(), "sh"), filepath.Join(fs.Dir(), "go")
	create(t, sh, "base", true)
	create(t, gor, "", true)
	syncDir(t, fs.Dir())

	// A shell appends to a file, never syncing, until a write fails.
	cmd := exec.Command("sh", "-c", `exec 3>>"$1"; while printf x >&3; do :; done; echo stopped`, "sh", sh)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	require.NoError(t, cmd.Start())
	// A goroutine writes and syncs a byte at a time, counting its syncs.
	f := open(t, gor)
	type result struct {
		synced int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		for i := 0; ; i++ {
			if _, err := f.WriteAt([]byte("y"), int64(i)); err != nil {
				done <- result{i, err}
				return
			}
			if err := f.Sync(); err != nil {
				done <- result{i, err}
				return
			}
		}
	}()
	testkit.Eventually(t, func() bool {
		a, err := os.Stat(sh)
		require.NoError(t, err)
		b, err := os.Stat(gor)
		require.NoError(t, err)
		return a.Size() > 100 && b.Size() > 10
	}, "both writers are writing")

	rep, err := fs.Cut()
	require.NoError(t, err)
	require.NoError(t, cmd.Wait(), stderr.String())
	assert.Equal(t, "stopped\n", out.String(), "the shell's write failed")
	assert.Contains(t, stderr.String(), "I/O error")
	res := <-done
	assert.ErrorIs(t, res.err, syscall.EIO)

	// Everything fails after the cut.
	_, err = os.Stat(sh)
	assert.ErrorIs(t, err, syscall.EIO)
	_, err = os.Create(filepath.Join(fs.Dir(), "new"))
	assert.ErrorIs(t, err, syscall.EIO)
	_, err = f.WriteAt([]byte("z"), 0)
	assert.ErrorIs(t, err, syscall.EIO)
	assert.ErrorIs(t, f.Sync(), syscall.EIO)

	// What survives is exactly what was synced before the cut.
	assert.Equal(t, map[string]string{"sh": "base", "go": strings.Repeat("y", res.synced)}, tree(t, survivors(t, fs)))
	// The shell had written at least 97 bytes ("base" + 97 > 100), one
	// write each.
	assert.GreaterOrEqual(t, rep.UnsyncedOps, 97, rep.String())
	assert.Equal(t, rep.UnsyncedOps, rep.DroppedOps, rep.String())
}

func TestUnmountWithOpenFiles(t *testing.T) {
	t.Run("this process", func(t *testing.T) {
		fs := powerfs.MountT(t, powerfs.Options{})
		p := filepath.Join(fs.Dir(), "f")
		create(t, p, "x", true)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		require.NoError(t, err)
		_, err = fs.Cut()
		require.NoError(t, err)
		require.NoError(t, fs.Unmount())
		require.NoError(t, fs.Unmount(), "Unmount is idempotent")
		_, err = f.WriteAt([]byte("y"), 0)
		assert.Error(t, err, "the connection is aborted")
		f.Close()
	})
	t.Run("a killed process", func(t *testing.T) {
		fs := powerfs.MountT(t, powerfs.Options{})
		p := filepath.Join(fs.Dir(), "f")
		cmd := exec.Command("sh", "-c", `exec 3>>"$1"; echo ready; exec sleep 60`, "sh", p)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		_, err = stdout.Read(make([]byte, 6))
		require.NoError(t, err)
		_, err = fs.Cut()
		require.NoError(t, err)
		require.NoError(t, cmd.Process.Kill())
		require.NoError(t, fs.Unmount(), "the killed process may not have closed its file yet")
		assert.Error(t, cmd.Wait())
	})
}

func TestMountFromAndWriteSurvivors(t *testing.T) {
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "a/b"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(src, "top"), []byte("top"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a/b/deep"), bytes.Repeat([]byte("0123456789"), 1000), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "a/empty"), nil, 0o644))
	want := tree(t, src)

	fs := powerfs.MountT(t, powerfs.Options{From: src})
	assert.Equal(t, want, tree(t, fs.Dir()), "the mount starts with the folder's contents")
	// Unsynced changes everywhere.
	require.NoError(t, os.WriteFile(filepath.Join(fs.Dir(), "top"), []byte("changed"), 0o600))
	require.NoError(t, os.Remove(filepath.Join(fs.Dir(), "a/empty")))
	require.NoError(t, os.Mkdir(filepath.Join(fs.Dir(), "a/new"), 0o755))
	require.NoError(t, os.Rename(filepath.Join(fs.Dir(), "a/b/deep"), filepath.Join(fs.Dir(), "deep")))

	_, err := fs.Cut()
	require.NoError(t, err)
	out := survivors(t, fs)
	assert.Equal(t, want, tree(t, out), "all of it durable")
	st, err := os.Stat(filepath.Join(out, "top"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	st, err = os.Stat(filepath.Join(out, "a"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o750), st.Mode().Perm())

	assert.Error(t, fs.WriteSurvivors(out), "the folder must be empty")
	assert.Error(t, powerfs.MountT(t, powerfs.Options{}).WriteSurvivors(t.TempDir()), "only after Cut")

	// A new mount from the survivors has them, durable.
	fs2 := powerfs.MountT(t, powerfs.Options{From: out})
	assert.Equal(t, want, tree(t, fs2.Dir()))
}

func TestFallocateAndBlocks(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	d := fs.Dir()
	for _, n := range []string{"synced", "unsynced", "keep", "sparse"} {
		create(t, filepath.Join(d, n), "", false)
	}
	syncDir(t, d)
	stat := func(name string) unix.Stat_t {
		var st unix.Stat_t
		require.NoError(t, unix.Stat(filepath.Join(d, name), &st))
		return st
	}

	f := open(t, filepath.Join(d, "synced"))
	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 0, 1<<20))
	st := stat("synced")
	assert.Equal(t, int64(1<<20), st.Size)
	assert.Equal(t, int64(2048), st.Blocks, "allocated blocks are counted")
	_, err := f.WriteAt([]byte("data"), 4096)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	// Punching a hole frees blocks and reads as zeros.
	require.NoError(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 8192))
	st = stat("synced")
	assert.Equal(t, int64(2048-16), st.Blocks)
	b := make([]byte, 4)
	_, err = f.ReadAt(b, 4096)
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0, 0, 0}, b)

	f = open(t, filepath.Join(d, "unsynced"))
	require.NoError(t, unix.Fallocate(int(f.Fd()), 0, 0, 1<<16))

	f = open(t, filepath.Join(d, "keep"))
	require.NoError(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 1<<16))
	st = stat("keep")
	assert.Equal(t, int64(0), st.Size)
	assert.Equal(t, int64(128), st.Blocks)
	require.NoError(t, f.Sync())

	f = open(t, filepath.Join(d, "sparse"))
	_, err = f.WriteAt([]byte("end"), 1<<20)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	st = stat("sparse")
	assert.Equal(t, int64(1<<20+3), st.Size)
	assert.Equal(t, int64(8), st.Blocks, "a hole takes no blocks")

	assert.ErrorIs(t, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, 4096), unix.EOPNOTSUPP)

	_, err = fs.Cut()
	require.NoError(t, err)
	out := survivors(t, fs)
	info, err := os.Stat(filepath.Join(out, "synced"))
	require.NoError(t, err)
	assert.Equal(t, int64(1<<20), info.Size(), "a synced fallocate survives")
	info, err = os.Stat(filepath.Join(out, "unsynced"))
	require.NoError(t, err)
	assert.Equal(t, int64(0), info.Size(), "an unsynced one does not")
	got, err := os.ReadFile(filepath.Join(out, "sparse"))
	require.NoError(t, err)
	assert.Equal(t, append(make([]byte, 1<<20), "end"...), got)
}

// bbolt reads its file through a read-only shared mmap larger than the
// file and writes it with pwrite: the map must see the writes and growth.
func TestMmapSeesWrites(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	p := filepath.Join(fs.Dir(), "f")
	create(t, p, "", false)
	f := open(t, p)
	require.NoError(t, f.Truncate(8192))
	m, err := unix.Mmap(int(f.Fd()), 0, 1<<20, unix.PROT_READ, unix.MAP_SHARED)
	require.NoError(t, err)
	defer func() { require.NoError(t, unix.Munmap(m)) }()
	assert.Equal(t, make([]byte, 16), m[4096:4112])
	_, err = f.WriteAt([]byte("hello"), 4096)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(m[4096:4101]))
	require.NoError(t, f.Truncate(16384))
	_, err = f.WriteAt([]byte("grown"), 12288)
	require.NoError(t, err)
	assert.Equal(t, "grown", string(m[12288:12293]))
	_, err = f.WriteAt([]byte("again"), 4096)
	require.NoError(t, err)
	assert.Equal(t, "again", string(m[4096:4101]))
	st, err := f.Stat()
	require.NoError(t, err)
	assert.Equal(t, int64(16384), st.Size())
}

func TestNamespaceOperations(t *testing.T) {
	fs := powerfs.MountT(t, powerfs.Options{})
	d := fs.Dir()
	p := func(name string) string { return filepath.Join(d, name) }
	create(t, p("a"), "A", false)
	create(t, p("b"), "B", false)
	mkdirs(t, d, "dir", "full")
	create(t, p("full/x"), "x", false)

	err := unix.Renameat2(unix.AT_FDCWD, p("a"), unix.AT_FDCWD, p("b"), unix.RENAME_NOREPLACE)
	assert.ErrorIs(t, err, unix.EEXIST)
	require.NoError(t, unix.Renameat2(unix.AT_FDCWD, p("a"), unix.AT_FDCWD, p("b"), unix.RENAME_EXCHANGE))
	assert.Equal(t, map[string]string{"a": "B", "b": "A", "dir": "/", "full": "/", "full/x": "x"}, tree(t, d))
	assert.ErrorIs(t, os.Rename(p("dir"), p("dir/in")), unix.EINVAL)
	// (os.Rename refuses any existing folder as the target by itself.)
	assert.ErrorIs(t, unix.Rename(p("dir"), p("full")), unix.ENOTEMPTY)
	require.NoError(t, os.Mkdir(p("empty"), 0o755))
	require.NoError(t, unix.Rename(p("dir"), p("empty")), "a folder replaces an empty one")
	require.NoError(t, os.Rename(p("empty"), p("dir")))
	assert.ErrorIs(t, os.Remove(p("full")), unix.ENOTEMPTY)
	require.NoError(t, os.Rename(p("a"), p("b")), "a rename replaces a file")
	require.NoError(t, os.Rename(p("dir"), p("full/dir")))
	assert.Equal(t, map[string]string{"b": "B", "full": "/", "full/dir": "/", "full/x": "x"}, tree(t, d))
	require.NoError(t, os.Remove(p("full/dir")))

	names, err := os.ReadDir(d)
	require.NoError(t, err)
	require.Len(t, names, 2)
	assert.Equal(t, "b", names[0].Name())
	assert.True(t, names[1].IsDir())

	// O_APPEND writes at the end; O_TRUNC empties.
	f, err := os.OpenFile(p("b"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("++")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	got, err := os.ReadFile(p("b"))
	require.NoError(t, err)
	assert.Equal(t, "B++", string(got))
	require.NoError(t, os.WriteFile(p("b"), []byte("t"), 0o644))
	got, err = os.ReadFile(p("b"))
	require.NoError(t, err)
	assert.Equal(t, "t", string(got))

	require.NoError(t, os.Chmod(p("b"), 0o600))
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	require.NoError(t, os.Chtimes(p("b"), mtime, mtime))
	st, err := os.Stat(p("b"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	assert.True(t, mtime.Equal(st.ModTime()), "%v", st.ModTime())

	var sfs unix.Statfs_t
	require.NoError(t, unix.Statfs(d, &sfs))
	assert.Equal(t, int64(4096), sfs.Bsize)
	assert.Positive(t, sfs.Bavail)
	_, err = os.Stat(p("missing"))
	assert.True(t, errors.Is(err, os.ErrNotExist))
}

// Where powerfsd cannot be built, the test binary serves the mounts: no
// go command on the PATH, or a cache folder that is not one.
func TestServerWithoutPowerfsdIsTheTestBinary(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	notAFolder := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notAFolder, nil, 0o600))
	for name, env := range map[string][2]string{
		"no go command":   {"PATH", t.TempDir()},
		"no cache folder": {"XDG_CACHE_HOME", notAFolder},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(env[0], env[1])
			path, err := powerfs.FindServer()
			require.NoError(t, err)
			assert.Equal(t, exe, path)
		})
	}
}

// powerfsd is built into the user's cache folder under the hash of its
// content: a second build finds the same file. Builds and build folders
// (of a process killed while it built) unused for a week are removed.
func TestPowerfsdIsBuiltIntoTheCacheFolder(t *testing.T) {
	gocache, err := exec.Command("go", "env", "GOCACHE").Output()
	require.NoError(t, err)
	t.Setenv("GOCACHE", strings.TrimSpace(string(gocache))) // Go's, not in the cache folder below: a cold one compiles go-fuse again
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	dir := filepath.Join(cache, "ctxd-powerfsd")
	old := time.Now().Add(-8 * 24 * time.Hour)
	unused, unfinished, recent := filepath.Join(dir, "powerfsd-0123456789abcdef"), filepath.Join(dir, "build-1"), filepath.Join(dir, "build-2")
	for _, p := range []string{unfinished, recent} {
		require.NoError(t, os.MkdirAll(p, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(p, "powerfsd"), nil, 0o755))
	}
	require.NoError(t, os.WriteFile(unused, nil, 0o755))
	for _, p := range []string{unused, unfinished} {
		require.NoError(t, os.Chtimes(p, old, old))
	}

	path, err := powerfs.FindServer()
	require.NoError(t, err)
	assert.Equal(t, dir, filepath.Dir(path))
	assert.Regexp(t, `^powerfsd-[0-9a-f]{16}$`, filepath.Base(path))
	again, err := powerfs.FindServer()
	require.NoError(t, err)
	assert.Equal(t, path, again, "the same sources, the same file")
	assert.NoFileExists(t, unused)
	assert.NoDirExists(t, unfinished)
	assert.DirExists(t, recent, "another process's build, under way")
}
