//go:build ignore

// gen_schema1 writes schema1.db: a small database in the layout of schema
// version 1, as ctxd's first release wrote it (no nskeys bucket). It is kept
// in the repository so upgrades are tested against a real old file; it is
// regenerated only if the fixture itself must change:
//
//	go run ./migrations/testdata/gen_schema1.go migrations/testdata/schema1.db
package main

import (
	"encoding/binary"
	"log"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

type change struct {
	ns, key, who, value string
	op                  byte // 1 put, 2 delete
}

// The history the fixture records, revision 1 upward.
var changes = []change{
	{"default", "app.config.debug", "alice", `true`, 1},
	{"default", "deploy/prod/version", "ci", `"1.4.2"`, 1},
	{"default", "app.config.debug", "bob", `false`, 1},
	{"team", "members", "alice", `["alice","bob"]`, 1},
	{"default", "scratch", "alice", `{"tmp":1}`, 1},
	{"default", "scratch", "alice", ``, 2},
	{"team", "members", "carol", `["alice","bob","carol"]`, 1},
}

func main() {
	path := os.Args[1]
	_ = os.Remove(path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket([]byte("meta"))
		logb, _ := tx.CreateBucket([]byte("log"))
		var schema [8]byte
		binary.BigEndian.PutUint64(schema[:], 1)
		if err := meta.Put([]byte("schema"), schema[:]); err != nil {
			return err
		}
		type state struct{ version, createRev, modRev uint64 }
		live := map[string]*state{}
		for i, c := range changes {
			rev := uint64(i + 1)
			at := base.Add(time.Duration(i) * time.Minute).UnixNano()
			kv, _ := tx.CreateBucketIfNotExists([]byte("kv:" + c.ns))
			hist, _ := tx.CreateBucketIfNotExists([]byte("hist:" + c.ns))
			id := c.ns + "/" + c.key
			cur := live[id]
			var version, createRev, prevRev uint64 = 1, rev, 0
			if cur != nil {
				version, createRev, prevRev = cur.version+1, cur.createRev, cur.modRev
			}
			if c.op == 2 {
				version = cur.version
				delete(live, id)
				if err := kv.Delete([]byte(c.key)); err != nil {
					return err
				}
			} else {
				live[id] = &state{version, createRev, rev}
				rec := appendTail([]byte{1}, version, createRev, rev, at, c.who, c.value)
				if err := kv.Put([]byte(c.key), rec); err != nil {
					return err
				}
			}
			e := []byte{1, c.op}
			e = binary.AppendUvarint(e, uint64(len(c.ns)))
			e = append(e, c.ns...)
			e = binary.AppendUvarint(e, uint64(len(c.key)))
			e = append(e, c.key...)
			e = appendTail(e, version, createRev, prevRev, at, c.who, c.value)
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], rev)
			if err := logb.Put(k[:], e); err != nil {
				return err
			}
			hk := append([]byte(c.key), 0)
			hk = binary.BigEndian.AppendUint64(hk, rev)
			if err := hist.Put(hk, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// appendTail appends what a kv record (format 1) and a log entry both end
// with: uvarint version | uvarint create_rev | uvarint rev (the kv
// record's mod_rev, the entry's prev_rev) | varint unix_nanos |
// uvarint len(who) | who | value.
func appendTail(b []byte, version, createRev, rev uint64, at int64, who, value string) []byte {
	b = binary.AppendUvarint(b, version)
	b = binary.AppendUvarint(b, createRev)
	b = binary.AppendUvarint(b, rev)
	b = binary.AppendVarint(b, at)
	b = binary.AppendUvarint(b, uint64(len(who)))
	b = append(b, who...)
	return append(b, value...)
}
