package powerfs_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/powerfs"
	"github.com/framework0/ctxd/internal/testkit"
)

// boltOptions are those store/bolt opens its file with.
func boltOptions() *bbolt.Options {
	return &bbolt.Options{
		Timeout:         time.Second,
		NoFreelistSync:  true,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: 1 << 30,
	}
}

var bucket = []byte("b")

func boltKey(i int) []byte { return fmt.Appendf(nil, "key-%05d", i) }

// boltValue is key i's value: 100 bytes to 30 KB, so that the file grows
// (truncate, remap) and values span overflow pages.
func boltValue(i int) []byte {
	return bytes.Repeat([]byte{byte('a' + i%26)}, 100+(i*7919)%30000)
}

func put(db *bbolt.DB, i int) error {
	return db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.Put(boltKey(i), boltValue(i))
	})
}

// readBolt opens the database at path as a restarting program would,
// fails the test unless bbolt's consistency check passes, and returns its
// keys and values.
func readBolt(t *testing.T, path string) map[string][]byte {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, boltOptions())
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	got := map[string][]byte{}
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			got[string(k)] = bytes.Clone(v)
			return nil
		})
	}))
	return got
}

// bbolt does not fsync the folder after creating its file, so a new
// database whose folder was not synced is gone after a power cut, with
// every transaction committed to it. store/bolt syncs the folder after
// creating the file (see Open there), as the second case does.
func TestBoltNewFileNeedsFolderSync(t *testing.T) {
	for _, syncFolder := range []bool{false, true} {
		t.Run(fmt.Sprintf("folder synced %v", syncFolder), func(t *testing.T) {
			fs := powerfs.MountT(t, powerfs.Options{})
			path := filepath.Join(fs.Dir(), "ctxd.db")
			db, err := bbolt.Open(path, 0o600, boltOptions())
			require.NoError(t, err)
			if syncFolder {
				require.NoError(t, fsutil.SyncDir(fs.Dir()))
			}
			require.NoError(t, put(db, 1))
			require.NoError(t, db.Close())

			_, err = fs.Cut()
			require.NoError(t, err)
			out := survivors(t, fs)
			if !syncFolder {
				assert.Equal(t, []string{}, testkit.DirNames(t, out), "the committed database is gone")
				return
			}
			assert.Equal(t, map[string][]byte{string(boltKey(1)): boltValue(1)}, readBolt(t, filepath.Join(out, "ctxd.db")))
		})
	}
}

// Transactions committed before the cut are all there, the database
// checks clean, in both modes. The server is this test binary: under
// -race, the one test that runs the server's code under the race
// detector (bbolt's writes and its mmap's page faults, concurrent FUSE
// requests); every other mount is served by powerfsd, built without it.
func TestBoltSurvivesCut(t *testing.T) {
	powerfs.ServeFromTestBinary(t)
	for _, o := range []powerfs.Options{{Mode: powerfs.Strict}, {Mode: powerfs.Torn, Seed: 1}, {Mode: powerfs.Torn, Seed: 2}} {
		t.Run(fmt.Sprintf("%v seed %d", o.Mode, o.Seed), func(t *testing.T) {
			fs := powerfs.MountT(t, o)
			path := filepath.Join(fs.Dir(), "ctxd.db")
			db, err := bbolt.Open(path, 0o600, boltOptions())
			require.NoError(t, err)
			require.NoError(t, fsutil.SyncDir(fs.Dir()))
			want := map[string][]byte{}
			for i := range 60 {
				require.NoError(t, put(db, i))
				want[string(boltKey(i))] = boltValue(i)
				if i%4 == 3 {
					require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
						return tx.Bucket(bucket).Delete(boltKey(i - 2))
					}))
					delete(want, string(boltKey(i-2)))
				}
			}
			st, err := os.Stat(path)
			require.NoError(t, err)
			require.Greater(t, st.Size(), int64(1<<20), "the file grew several times")

			_, err = fs.Cut()
			require.NoError(t, err)
			_ = db.Close() // its file's close fails with EIO now
			assert.Equal(t, want, readBolt(t, filepath.Join(survivors(t, fs), "ctxd.db")))
		})
	}
}

// boltChildEnv names the database a child process writes to (TestMain).
const boltChildEnv = "POWERFS_TEST_BOLT_CHILD"

// boltChild opens the database at path (syncing its folder, as
// store/bolt does), then puts keys 0, 1, ... one transaction each,
// printing "ack i" after each commit, until a commit fails.
func boltChild(path string) int {
	db, err := bbolt.Open(path, 0o600, boltOptions())
	if err == nil {
		err = fsutil.SyncDir(filepath.Dir(path))
	}
	for i := 0; err == nil; i++ {
		if err = put(db, i); err == nil {
			fmt.Printf("ack %d\n", i)
		}
	}
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// The power is cut while another process commits transactions: every
// acknowledged one is there, the database checks clean, and the only other
// key that may be there is the one being committed at the cut. The cut
// comes after a number of acknowledgements (at whatever point the next
// commit has reached), or at an exact change (Options.CutAfter: inside a
// commit, between its writes and their fdatasync, for some).
func TestBoltPowerCutDuringCommits(t *testing.T) {
	cases := []powerfs.Options{{Mode: powerfs.Strict, Seed: 1}}
	for seed := int64(1); seed <= 4; seed++ {
		cases = append(cases, powerfs.Options{Mode: powerfs.Torn, Seed: seed})
	}
	for i := range 12 {
		cases = append(cases, powerfs.Options{Mode: Mode(i % 2), Seed: int64(i), CutAfter: 40 + 11*i})
	}
	insideCommit := 0
	for _, o := range cases {
		t.Run(fmt.Sprintf("%v seed %d cut after %d", o.Mode, o.Seed, o.CutAfter), func(t *testing.T) {
			acked, got, rep := boltPowerCut(t, o)
			for i := 0; i <= acked; i++ {
				require.Equal(t, boltValue(i), got[string(boltKey(i))], "acknowledged key %d", i)
			}
			if len(got) > acked+1 {
				assert.Equal(t, boltValue(acked+1), got[string(boltKey(acked+1))], "the commit in flight")
				assert.Len(t, got, acked+2)
			}
			if rep.UnsyncedOps > 0 {
				insideCommit++
			}
			t.Logf("%d commits acknowledged, %d keys survived; %v", acked+1, len(got), rep)
		})
	}
	assert.Positive(t, insideCommit, "some cuts land between a commit's writes and their sync")
}

// Mode is powerfs.Mode, short.
type Mode = powerfs.Mode

// boltPowerCut runs boltChild on a mount, cuts the power (after 5+10*Seed
// acknowledgements, unless CutAfter does it), and returns the last
// acknowledged key, the surviving database's contents and the report.
func boltPowerCut(t *testing.T, o powerfs.Options) (int, map[string][]byte, powerfs.Report) {
	fs := powerfs.MountT(t, o)
	path := filepath.Join(fs.Dir(), "ctxd.db")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), boltChildEnv+"="+path)
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	acks := make(chan int)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range acks {
		}
		_ = cmd.Wait()
	})
	go func() {
		defer close(acks)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			i, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "ack "))
			if err == nil {
				acks <- i
			}
		}
	}()

	acked := -1
	next := func() bool {
		i, ok := <-acks
		if ok {
			require.Equal(t, acked+1, i)
			acked = i
		}
		return ok
	}
	if o.CutAfter > 0 {
		// The power goes off by itself: the child stops at its first
		// failed commit, or dies of a SIGBUS reading its map (a page
		// fault reaching the file system fails after the cut).
		for next() {
		}
		// Its stderr is complete once it is waited for (its stdout can
		// end first: the copy of stderr is exec's goroutine's).
		_ = cmd.Wait()
		require.Regexp(t, "input/output error|SIGBUS", stderr.String())
	} else {
		for acked < int(5+10*o.Seed) {
			require.True(t, next(), "the child stopped: %s", stderr.String())
		}
	}
	rep, err := fs.Cut()
	require.NoError(t, err)
	if err := cmd.Process.Kill(); !errors.Is(err, os.ErrProcessDone) { // waited for already after a CutAfter
		require.NoError(t, err)
	}
	for next() {
	}
	return acked, readBolt(t, filepath.Join(survivors(t, fs), "ctxd.db")), rep
}
