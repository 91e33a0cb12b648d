package bolt_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store/bolt"
)

// FuzzOpenSnapshot feeds damaged database files to snapshot verification:
// whatever the bytes, it must refuse or accept them without crashing the
// process (bbolt faults on memory when a page points past its file).
func FuzzOpenSnapshot(f *testing.F) {
	s := openStore(f, bolt.Options{})
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
		f, err := os.CreateTemp(dir, "fuzz-*.db")
		if err != nil {
			t.Fatal(err)
		}
		path := f.Name()
		defer os.Remove(path)
		_, err = f.Write(data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		snap, err := bolt.OpenSnapshot(path)
		if err != nil {
			return
		}
		defer snap.Close()
		_ = snap.Verify()
	})
}

// FuzzValidateKey checks that key validation never panics, and that a key
// it accepts round-trips through a real put and get unchanged.
func FuzzValidateKey(f *testing.F) {
	for _, seed := range []string{"app.config.debug", "deploy/prod/version", "", "a\x00b", "a\nb", "\xff", "ü/ñ", "x/history", strings.Repeat("k", 1025)} {
		f.Add(seed)
	}
	s := openStore(f, bolt.Options{})
	f.Fuzz(func(t *testing.T, key string) {
		err := ctxd.DefaultLimits.ValidateKey(key)
		if err != nil {
			if !errors.Is(err, ctxd.ErrInvalid) && !errors.Is(err, ctxd.ErrTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if _, err := s.Put(ctx, "default", key, json.RawMessage(`1`), nil, "fuzz"); err != nil {
			t.Fatalf("valid key %q refused by put: %v", key, err)
		}
		r, err := s.Get("default", key)
		if err != nil || r.Key != key {
			t.Fatalf("key %q did not round-trip: %+v %v", key, r, err)
		}
	})
}

// FuzzValidateValue checks that a value is accepted exactly when it is one
// JSON value of valid UTF-8, and that accepted values come back as
// json.Compact writes them: the whitespace outside strings gone, every
// other byte as sent.
func FuzzValidateValue(f *testing.F) {
	for _, seed := range []string{`1`, `"s"`, `{"a":[1,2,{"b":null}]}`, `{`, `1 2`, ``, `nul`, "\"\xff\"", ` true `} {
		f.Add([]byte(seed))
	}
	s := openStore(f, bolt.Options{})
	f.Fuzz(func(t *testing.T, value []byte) {
		err := ctxd.DefaultLimits.ValidateValue(value)
		if (err == nil) != (len(value) > 0 && json.Valid(value) && utf8.Valid(value)) {
			t.Fatalf("validation of %q: %v, json.Valid %v", value, err, json.Valid(value))
		}
		if err != nil {
			return
		}
		if _, err := s.Put(ctx, "default", "k", value, nil, "fuzz"); err != nil {
			t.Fatalf("valid value %q refused: %v", value, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, value); err != nil {
			t.Fatalf("json.Compact of %q: %v", value, err)
		}
		r, err := s.Get("default", "k")
		if err != nil || !bytes.Equal(r.Value, compact.Bytes()) {
			t.Fatalf("value %q came back as %q, not %q (%v)", value, r.Value, compact.Bytes(), err)
		}
	})
}
