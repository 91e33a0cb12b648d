package bolt_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// Snapshots and restores as the contract promises them are tested by the
// conformance suite; here, damage only a bbolt file can have.

// writeSnapshot writes a snapshot of s to a new file, synced, and returns
// its path.
func writeSnapshot(t testing.TB, s *testStore) (string, ctxd.SnapshotInfo) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(path)
	require.NoError(t, err)
	info, err := s.WriteSnapshot(f)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	return path, info
}

// A snapshot with damaged data pages, a value damaged into text that is
// not JSON (which every record's cross-checks let through: a restore then
// served it in every answer), or written by a newer ctxd, is refused by
// every kind of restore, and the live database file is not touched, byte
// for byte.
func TestDamagedSnapshotsAreRefusedAndTheLiveFileUntouched(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := 0; i < 200; i++ {
		s.put("default", fmt.Sprintf("k%03d", i), `"`+string(bytes.Repeat([]byte("v"), 100))+`"`)
	}
	s.put("default", "damaged", `{"n":12345}`)
	good, _ := writeSnapshot(t, s)
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)
	dir := t.TempDir()

	flipped := append([]byte(nil), goodBytes...)
	// Flip bits in the middle of the data pages, past the two meta pages.
	for i := 3 * 4096; i < len(flipped); i += 97 {
		flipped[i] ^= 0x5a
	}
	bitflip := filepath.Join(dir, "bitflip.db")
	require.NoError(t, os.WriteFile(bitflip, flipped, 0o600))

	value := filepath.Join(dir, "value.db")
	require.Equal(t, 1, bytes.Count(goodBytes, []byte(`{"n":12345}`)))
	require.NoError(t, os.WriteFile(value, bytes.Replace(goodBytes, []byte(`{"n":12345}`), []byte(`{"n"712345}`), 1), 0o600))

	newer := filepath.Join(dir, "newer.db")
	require.NoError(t, os.WriteFile(newer, goodBytes, 0o600))
	setSchema(t, newer, 99)

	liveBefore, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	revBefore := s.Revision()
	for name, path := range map[string]string{"bit-flipped": bitflip, "value not JSON": value, "newer schema": newer} {
		t.Run(name, func(t *testing.T) {
			for _, opts := range []ctxd.RestoreOptions{{}, {DryRun: true}, {Namespaces: []string{"default"}}} {
				_, err := s.Restore(ctx, path, opts)
				assert.ErrorIs(t, err, ctxd.ErrBadSnapshot, "%+v", opts)
			}
		})
	}
	assert.Equal(t, revBefore, s.Revision())
	liveAfter, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(liveBefore, liveAfter), "the live file is byte-for-byte unchanged")
}

// A snapshot holding a key no write takes (not UTF-8, a control
// character) is refused by Verify, naming the change's revision and the
// key, and so by every kind of restore, the live file untouched. It was
// restored: the key was then served and exported as is, and a client
// could not name it to delete it. The key is changed everywhere it is
// (its record, its history, its change), so the records still agree.
func TestSnapshotWithAKeyNoWriteTakesIsRefused(t *testing.T) {
	s := openStore(t, bolt.Options{})
	for i := range 50 {
		s.put("default", fmt.Sprintf("k%03d", i), `1`)
	}
	rec := s.put("default", "zz-key-A", `2`) // last in key order, as its changed self
	good, _ := writeSnapshot(t, s)
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)
	require.Equal(t, 3, bytes.Count(goodBytes, []byte("zz-key-A")), "the record, the history and the change")
	liveBefore, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	for _, tt := range []struct{ name, key, reason string }{
		{"not UTF-8", "zz-key-\xff", "not valid UTF-8"},
		{"control character", "zz-key-\x1b", "control character U+001B"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap.db")
			require.NoError(t, os.WriteFile(path, bytes.ReplaceAll(goodBytes, []byte("zz-key-A"), []byte(tt.key)), 0o600))
			snap, err := bolt.OpenSnapshot(path)
			require.NoError(t, err)
			err = snap.Verify()
			require.NoError(t, snap.Close())
			require.ErrorIs(t, err, ctxd.ErrBadSnapshot)
			assert.NotErrorIs(t, err, ctxd.ErrInvalid, "a bad snapshot (422), not a bad request")
			assert.Contains(t, err.Error(), fmt.Sprintf("revision %d", rec.ModRev))
			assert.Contains(t, err.Error(), fmt.Sprintf("default/%q", tt.key))
			assert.Contains(t, err.Error(), tt.reason)
			for _, opts := range []ctxd.RestoreOptions{{}, {DryRun: true}, {Namespaces: []string{"default"}}} {
				_, err := s.Restore(ctx, path, opts)
				assert.ErrorIs(t, err, ctxd.ErrBadSnapshot, "%+v", opts)
			}
		})
	}
	liveAfter, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(liveBefore, liveAfter), "the live file is byte-for-byte unchanged")
	_, err = s.Restore(ctx, good, ctxd.RestoreOptions{DryRun: true})
	assert.NoError(t, err, "the snapshot as written")
}

// A snapshot that cannot be written for want of space says so in a way
// callers recognize (the API answers 507, not 500): bbolt's WriteTo keeps
// only the text of its writer's error. The file is on a real 8 KiB tmpfs.
func TestSnapshotOnAFullDiskIsENOSPC(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `"v"`)
	full, err := os.Create(filepath.Join(testkit.SmallDisk(t, 8<<10), "snapshot.db"))
	require.NoError(t, err)
	defer full.Close()
	_, err = s.WriteSnapshot(full)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ENOSPC, "%v", err)
}

// A snapshot holding a namespace no write takes (a control character) is
// refused by Verify as a key no write takes is, naming the change's
// revision, and so by a restore, the live file untouched. The namespace
// is changed everywhere it is (its bucket, its records, its change).
func TestSnapshotWithANamespaceNoWriteTakesIsRefused(t *testing.T) {
	s := openStore(t, bolt.Options{})
	s.put("default", "k", `1`)
	rec := s.put("zz-ns-A", "k", `2`) // the last namespace, as its changed self
	good, _ := writeSnapshot(t, s)
	goodBytes, err := os.ReadFile(good)
	require.NoError(t, err)
	require.Positive(t, bytes.Count(goodBytes, []byte("zz-ns-A")))
	liveBefore, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "snap.db")
	require.NoError(t, os.WriteFile(path, bytes.ReplaceAll(goodBytes, []byte("zz-ns-A"), []byte("zz-ns-\x1b")), 0o600))
	snap, err := bolt.OpenSnapshot(path)
	require.NoError(t, err)
	err = snap.Verify()
	require.NoError(t, snap.Close())
	require.ErrorIs(t, err, ctxd.ErrBadSnapshot)
	assert.Contains(t, err.Error(), fmt.Sprintf("the change of revision %d names a namespace no write takes", rec.ModRev))
	_, err = s.Restore(ctx, path, ctxd.RestoreOptions{})
	assert.ErrorIs(t, err, ctxd.ErrBadSnapshot)
	liveAfter, err := os.ReadFile(s.Path())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(liveBefore, liveAfter), "the live file is byte-for-byte unchanged")
}
