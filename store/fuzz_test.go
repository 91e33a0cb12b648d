package store_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/framework0/ctxd/store"
)

// FuzzOpenSnapshot feeds damaged database files to snapshot verification:
// whatever the bytes, it must refuse or accept them without crashing the
// process (bbolt faults on memory when a page points past its file).
func FuzzOpenSnapshot(f *testing.F) {
	s := openStore(f, store.Options{})
	for i := 0; i < 6; i++ {
		s.put("default", string(rune('a'+i%26))+string(bytes.Repeat([]byte("k"), i)), `{"v":"`+string(bytes.Repeat([]byte("x"), i*4))+`"}`)
	}
	var buf bytes.Buffer
	if _, err := s.WriteSnapshot(&buf); err != nil {
		f.Fatal(err)
	}
	good := buf.Bytes()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:4096])
	f.Add([]byte("not a database"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		snap, err := store.OpenSnapshot(path)
		if err != nil {
			return
		}
		defer snap.Close()
		_ = snap.Verify()
	})
}
