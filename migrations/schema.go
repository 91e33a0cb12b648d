package migrations

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
)

// Current is the schema version this binary writes.
const Current = 5

// Bucket and key names of the layout. The store reads and writes them; only
// this package changes what they mean.
var (
	BucketMeta   = []byte("meta")
	BucketLog    = []byte("log")
	BucketNSKeys = []byte("nskeys") // since schema 2
	// BucketTTL indexes the keys that expire by deadline (since schema 5):
	// unix nanos (8 bytes, big-endian) | ns | 0x00 | key, no value. The
	// expiry of keys reads it from its start, never scanning every key.
	BucketTTL = []byte("ttl")

	KeySchema    = []byte("schema")
	KeyCompacted = []byte("compacted")
	// KeyFloor is the lowest value the current revision may have: a full
	// restore sets it to the revision the server had reached, so that
	// revisions never go back. Absent means 0.
	KeyFloor = []byte("floor")
	// KeyRestoredFrom is the revision of the snapshot a full restore
	// installed; revisions after it and below the floor are not in history.
	KeyRestoredFrom = []byte("restored_from")
	// KeyDiscardedFrom is the first revision the last full restore
	// discarded (absent, in files restored before it was written:
	// restored_from+1); the last is floor-1. It is 1 when the snapshot was
	// another store's: its revisions had named other states here.
	KeyDiscardedFrom = []byte("discarded_from")
	// KeySourceRevision is set in a snapshot built from a store that gives
	// the changes of one transaction one revision (etcd), where the file,
	// one change per revision, numbered them apart and so reached a
	// revision above the source's: it is the source's revision the
	// snapshot was taken at (the file holds exactly the source's changes
	// up to it). Absent: the file's revision is the source's. A store's
	// own file never has it (a full restore removes it).
	KeySourceRevision = []byte("source_revision")
	// KeyWALSeq is the sequence number of the last write-ahead log record
	// whose changes the file holds (since schema 4; absent means 0): at
	// open, the store replays the records after it.
	KeyWALSeq = []byte("wal_seq")
	// KeyStoreID is 8 random bytes that name the data folder's store
	// (since schema 4): each write-ahead log record carries them, and the
	// replay at open refuses a record of another store's log.
	KeyStoreID = []byte("store_id")
	// KeyPruned records the last compaction that finished: revision P and
	// keep K (8 bytes each, big-endian): below P, each key's history holds
	// at most its K newest changes at or below P. The next compaction with
	// a keep of K or more examines only the log from P on (absent: from
	// the log's start). Any binary may compact without updating it: a
	// compaction only removes history, which keeps the record true.
	KeyPruned = []byte("pruned")
	// KeyPruning records a compaction under way: its limit, its keep, the
	// revision it examines the log from and the next one it examines (8
	// bytes each, big-endian), written with the compaction mark and in
	// each chunk's transaction, so a compaction interrupted by a crash
	// resumes where it stopped when it is asked again.
	KeyPruning = []byte("pruning")
)

const (
	kvPrefix   = "kv:"
	histPrefix = "hist:"
)

// KVBucket names the bucket of a namespace's current records.
func KVBucket(ns string) []byte { return []byte(kvPrefix + ns) }

// HistBucket names the bucket of a namespace's history index.
func HistBucket(ns string) []byte { return []byte(histPrefix + ns) }

// NamespaceOf returns the namespace of a "kv:<ns>" bucket name.
func NamespaceOf(bucket []byte) (string, bool) {
	name := string(bucket)
	if !strings.HasPrefix(name, kvPrefix) {
		return "", false
	}
	return name[len(kvPrefix):], true
}

// LockTimeout bounds every wait for the lock of a database file that a
// running server (or another command) holds: `ctxd serve`, and the
// offline commands (compact, restore, migrate), wait as long, then fail
// ("in use by another process"), unless told otherwise (their
// --lock-timeout).
const LockTimeout = 5 * time.Second

// NoLockWait, as a lock timeout, tries the lock once and fails at once
// when another process holds it: bbolt's Options.Timeout waits forever on
// 0, and a lock timeout of 0 here is LockTimeout.
const NoLockWait = time.Nanosecond

// GivenLockWait is the wait for a lock timeout a user gave (the
// storage.lock_timeout setting, --lock-timeout), where 0 means one try:
// NoLockWait.
func GivenLockWait(d time.Duration) time.Duration {
	if d == 0 {
		return NoLockWait
	}
	return d
}

// LockWait is bbolt's Options.Timeout for the lock timeout d: d, or
// LockTimeout when d is 0.
func LockWait(d time.Duration) time.Duration {
	if d == 0 {
		return LockTimeout
	}
	return d
}

// ErrTooNew is returned when the database was written by a newer ctxd.
var ErrTooNew = errors.New("database schema is newer than this binary supports")

// TooNewError names both versions. It matches ErrTooNew with errors.Is.
type TooNewError struct{ Found, Supported int }

func (e *TooNewError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this binary supports (%d): upgrade ctxd", e.Found, e.Supported)
}

// Is makes errors.Is(err, ErrTooNew) true.
func (e *TooNewError) Is(target error) bool { return target == ErrTooNew }

// Step upgrades a database from schema version From to From+1.
type Step struct {
	From        int
	Description string
	Apply       func(tx *bolt.Tx) error
}

// steps holds one entry per version step, in order: steps[i].From == i+1.
var steps = []Step{
	{From: 1, Description: "count live keys per namespace into bucket nskeys", Apply: upgrade1to2},
	{From: 2, Description: "store each current value once: kv records point at the log (format 2)", Apply: upgrade2to3},
	{From: 3, Description: "acknowledge writes from a write-ahead log (the wal folder): meta/store_id names the store its records belong to, meta/wal_seq the last one the file holds", Apply: upgrade3to4},
	{From: 4, Description: "expiring keys: bucket ttl indexes deadlines; kv records and log values may carry one (log format 3)", Apply: upgrade4to5},
}

// SchemaVersion reads the schema version of a database; 0 means the file
// is new (no meta bucket).
func SchemaVersion(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(BucketMeta)
	if meta == nil {
		return 0, nil
	}
	v := meta.Get(KeySchema)
	if len(v) != 8 {
		return 0, fmt.Errorf("meta/schema: want 8 bytes, found %d", len(v))
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

func setSchemaVersion(tx *bolt.Tx, version int) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(version))
	return tx.Bucket(BucketMeta).Put(KeySchema, b[:])
}

// Plan returns the steps that upgrade schema version from to Current.
func Plan(from int) ([]Step, error) {
	if from > Current {
		return nil, &TooNewError{Found: from, Supported: Current}
	}
	if from < 1 {
		return nil, fmt.Errorf("unknown schema version %d", from)
	}
	return steps[from-1:], nil
}

// Migrate brings the database to Current inside tx: it initialises a new
// file, or applies every step from the file's version, bumping the stored
// version after each. It returns the version found (0 for a new file).
// Because it runs in the caller's transaction, a failed step rolls back all.
func Migrate(tx *bolt.Tx) (found int, err error) {
	found, err = SchemaVersion(tx)
	if err != nil {
		return 0, err
	}
	if found == 0 {
		return 0, initialize(tx)
	}
	plan, err := Plan(found)
	if err != nil {
		return found, err
	}
	for _, s := range plan {
		if err := s.Apply(tx); err != nil {
			return found, fmt.Errorf("migrate schema %d to %d (%s): %w", s.From, s.From+1, s.Description, err)
		}
		if err := setSchemaVersion(tx, s.From+1); err != nil {
			return found, fmt.Errorf("migrate schema %d to %d: %w", s.From, s.From+1, err)
		}
	}
	return found, nil
}

// initialize creates the layout of schema Current in an empty file.
func initialize(tx *bolt.Tx) error {
	for _, name := range [][]byte{BucketMeta, BucketLog, BucketNSKeys, BucketTTL, KVBucket(ctxd.DefaultNamespace), HistBucket(ctxd.DefaultNamespace)} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	if err := setStoreID(tx); err != nil {
		return err
	}
	return setSchemaVersion(tx, Current)
}

// setStoreID gives the database a new random store id.
func setStoreID(tx *bolt.Tx) error {
	id, err := NewStoreID()
	if err != nil {
		return err
	}
	return tx.Bucket(BucketMeta).Put(KeyStoreID, id)
}

// NewStoreID returns a new random store id (KeyStoreID): for a new
// database, or a database file restored into a new data folder, which is a
// new store with a log of its own.
func NewStoreID() ([]byte, error) {
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("store id: %w", err)
	}
	return id, nil
}

// upgrade1to2 creates nskeys and fills it with each namespace's key count.
func upgrade1to2(tx *bolt.Tx) error {
	counts, err := tx.CreateBucketIfNotExists(BucketNSKeys)
	if err != nil {
		return err
	}
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		ns, ok := NamespaceOf(name)
		if !ok {
			return nil
		}
		var n uint64
		if err := b.ForEach(func(_, _ []byte) error { n++; return nil }); err != nil {
			return err
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], n)
		return counts.Put([]byte(ns), v[:])
	})
}

// PlanFile opens the database at path read-only and reports its schema
// version, the version this binary would bring it to, and the steps. It
// waits up to lockTimeout (LockWait) for the file's lock.
func PlanFile(path string, lockTimeout time.Duration) (from, to int, plan []Step, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: LockWait(lockTimeout)})
	if err != nil {
		return 0, 0, nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		from, err = SchemaVersion(tx)
		if err != nil || from == 0 {
			return err
		}
		plan, err = Plan(from)
		return err
	})
	if err != nil {
		return from, Current, nil, err
	}
	return from, Current, plan, nil
}

// upgrade2to3 rewrites every kv record from format 1 (version, revisions,
// who, time and value) to format 2 (version and revisions only): the value,
// who and time are in the log entry at mod_rev already.
func upgrade2to3(tx *bolt.Tx) error {
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if _, ok := NamespaceOf(name); !ok {
			return nil
		}
		// bbolt forbids changing a bucket while iterating it: collect first.
		type rewrite struct{ key, value []byte }
		var rewrites []rewrite
		err := b.ForEach(func(k, v []byte) error {
			if len(v) > 0 && v[0] == 2 {
				return nil // already format 2
			}
			if len(v) == 0 || v[0] != 1 {
				return fmt.Errorf("%s/%s: unknown record format", name, k)
			}
			rest := v[1:]
			out := []byte{2}
			for i := 0; i < 3; i++ { // version, create_rev, mod_rev
				n, size := binary.Uvarint(rest)
				if size <= 0 {
					return fmt.Errorf("%s/%s: corrupt record", name, k)
				}
				out = binary.AppendUvarint(out, n)
				rest = rest[size:]
			}
			rewrites = append(rewrites, rewrite{append([]byte(nil), k...), out})
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range rewrites {
			if err := b.Put(r.key, r.value); err != nil {
				return err
			}
		}
		return nil
	})
}

// upgrade3to4 gives the file a store id (KeyStoreID); the layout is
// otherwise unchanged. A file of schema 4 may lack writes that are in the
// data folder's write-ahead log (wal/, replayed at open after
// meta/wal_seq, absent in a file never opened with one): the version step
// is what makes a ctxd that does not know the log refuse the file rather
// than serve it without those writes.
func upgrade3to4(tx *bolt.Tx) error { return setStoreID(tx) }

// upgrade4to5 creates the deadline index of expiring keys (BucketTTL),
// empty: no key of an older file expires. The version step is what makes
// a ctxd that does not know deadlines refuse the file (it could not read
// log format 3, and would serve expired keys forever).
func upgrade4to5(tx *bolt.Tx) error {
	_, err := tx.CreateBucketIfNotExists(BucketTTL)
	return err
}
