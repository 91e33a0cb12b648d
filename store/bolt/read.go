package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/migrations"
)

const defaultPageSize = 100

func pageSize(limit int) int {
	switch {
	case limit <= 0:
		return defaultPageSize
	case limit > ctxd.MaxListLimit:
		return ctxd.MaxListLimit
	}
	return limit
}

// view runs fn in a read transaction, which never blocks the writer.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ctxd.ErrClosed
	}
	return err
}

// checkKey checks the key a read or a keepalive names (any a ctxd could
// have written: not only under this instance's limits).
func (s *Store) checkKey(ns, key string) error {
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return err
	}
	return ctxd.ValidateKeyName(key)
}

// Get returns a key's current state.
func (s *Store) Get(ns, key string) (ctxd.Record, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.Record{}, err
	}
	// The overlay first: a key's last change there is its current state.
	// Then a bbolt transaction begun after the look holds every change the
	// overlay did not (overlay.go).
	// A keepalive not yet applied moves the deadline of what either holds.
	// The Get cache comes between them (getcache.go): its shard's
	// generation is read before the overlay is.
	sh, gen := s.cache.slot(ns, key)
	var x *extend
	if s.ov.size.Load() > 0 {
		var c *change
		if c, x = s.ov.latest(ns, key); c != nil {
			if c.Op == ctxd.OpDelete {
				return ctxd.Record{}, ctxd.KeyNotFound(ns, key, 0)
			}
			rec := c.record()
			x.moveDeadline(&rec, 0)
			return rec, nil
		}
	}
	if x == nil {
		if rec, ok := sh.get(ns, key); ok {
			return rec, nil
		}
	}
	var rec ctxd.Record
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(migrations.KVBucket(ns))
		if b == nil {
			return ctxd.KeyNotFound(ns, key, 0)
		}
		v := b.Get([]byte(key))
		if v == nil {
			return ctxd.KeyNotFound(ns, key, 0)
		}
		var err error
		rec, err = currentRecord(tx.Bucket(migrations.BucketLog).Cursor(), ns, key, v, true)
		// Only with a keepalive pending: the meta bucket's lookup was 7%
		// of a Get's CPU (DESIGN.md, "Reads on a large database").
		if x != nil {
			x.moveDeadline(&rec, metaUint(tx, migrations.KeyWALSeq))
		}
		return err
	})
	if err == nil && x == nil {
		s.cache.put(sh, gen, rec)
	}
	return rec, err
}

// moveDeadline gives rec the deadline of keepalive x (nil: none) if x
// extended rec's revision and is newer than what the record was read
// from: applied is the last write-ahead log record bbolt held when rec
// was read from it (0 for a record read from the overlay, which bbolt's
// keepalives cannot be newer than).
func (x *extend) moveDeadline(rec *ctxd.Record, applied uint64) {
	if x != nil && x.modRev == rec.ModRev && x.seq > applied {
		rec.ExpiresAt = x.expiresAt
	}
}

// currentRecord builds a key's record from its kv entry and the logged
// change that entry points at, which holds the value.
//
// log is a cursor over the log bucket: reusing one cursor across the keys
// of a listing saves an allocation per key. Without withValue the value
// is neither copied nor looked at: of a large value only the log entry's
// first page is read.
func currentRecord(log *bbolt.Cursor, ns, key string, kv []byte, withValue bool) (ctxd.Record, error) {
	r, err := decodeKV(kv)
	if err != nil {
		return ctxd.Record{}, fmt.Errorf("read %s/%s: %w", ns, key, err)
	}
	var revKey [8]byte
	binary.BigEndian.PutUint64(revKey[:], r.modRev)
	k, v := log.Seek(revKey[:])
	if !bytes.Equal(k, revKey[:]) {
		v = nil
	}
	rec := ctxd.Record{Namespace: ns, Key: key, CreateRev: r.createRev, ModRev: r.modRev}
	if v == nil || decodeCurrent(v, ns, key, &rec, withValue) != nil {
		return ctxd.Record{}, fmt.Errorf("read %s/%s: revision %d is not its value: %w", ns, key, r.modRev, errCorrupt)
	}
	// The kv record has the deadline now: a keepalive may have moved the
	// one the put set.
	rec.ExpiresAt = r.expiresAt
	return rec, nil
}

// checkRevision refuses revisions that are compacted or not yet committed
// (above last, the committed mark the caller read).
func (s *Store) checkRevision(tx *bbolt.Tx, rev, last uint64) error {
	if rev == 0 {
		return ctxd.Invalidf("revision must be at least 1")
	}
	if c := s.compacted.Load(); rev < c {
		return &ctxd.CompactedError{Requested: rev, Compacted: c}
	}
	if rev > last {
		return ctxd.FutureRevision(rev, last)
	}
	if err := discardedByRestore(tx, rev); err != nil {
		err.Requested = rev
		return err
	}
	return nil
}

// discardedByRestore says whether the last full restore discarded
// revision rev (see setFloor): the error to answer, without Requested.
func discardedByRestore(tx *bbolt.Tx, rev uint64) *ctxd.CompactedError {
	m := lastRestore(tx)
	if m == nil || rev < m.DiscardedFrom || rev >= m.Revision {
		return nil
	}
	// History answers again from the restored state's revision on.
	return &ctxd.CompactedError{Compacted: m.Revision, RestoredFrom: max(m.SnapshotRevision, 1)}
}

// lastRestore is the last full restore's mark (setFloor), nil if none.
func lastRestore(tx *bbolt.Tx) *ctxd.RestoreMark {
	meta := tx.Bucket(migrations.BucketMeta)
	if meta.Get(migrations.KeyRestoredFrom) == nil {
		return nil // never restored whole
	}
	m := &ctxd.RestoreMark{Revision: metaUint(tx, migrations.KeyFloor), SnapshotRevision: metaUint(tx, migrations.KeyRestoredFrom)}
	m.DiscardedFrom = m.SnapshotRevision + 1
	if meta.Get(migrations.KeyDiscardedFrom) != nil {
		m.DiscardedFrom = metaUint(tx, migrations.KeyDiscardedFrom)
	}
	return m
}

// lastRevision is the current revision as of tx: the last change logged,
// or the floor a full restore set, whichever is higher.
func lastRevision(tx *bbolt.Tx) uint64 {
	var rev uint64
	if k, _ := tx.Bucket(migrations.BucketLog).Cursor().Last(); k != nil {
		rev = binary.BigEndian.Uint64(k)
	}
	return max(rev, metaUint(tx, migrations.KeyFloor))
}

func metaUint(tx *bbolt.Tx, key []byte) uint64 {
	if v := tx.Bucket(migrations.BucketMeta).Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// CheckRevision is nil when history at rev can be read exactly.
func (s *Store) CheckRevision(rev uint64) error {
	last := s.Revision()
	return s.view(func(tx *bbolt.Tx) error { return s.checkRevision(tx, rev, last) })
}

// GetAt returns what a key held at revision rev.
func (s *Store) GetAt(ns, key string, rev uint64) (ctxd.Record, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.Record{}, err
	}
	// The key's changes in the overlay are its newest; a transaction
	// begun after the look holds all the older ones.
	cs, _, top := s.ov.keyChanges(ns, key)
	var rec ctxd.Record
	err := s.view(func(tx *bbolt.Tx) error {
		if err := s.checkRevision(tx, rev, top); err != nil {
			return err
		}
		notFound := ctxd.KeyNotFound(ns, key, rev)
		for i := len(cs) - 1; i >= 0; i-- {
			if c := cs[i]; c.Revision <= rev {
				if c.Op == ctxd.OpDelete {
					return notFound
				}
				rec = c.record()
				return nil
			}
		}
		hist := tx.Bucket(migrations.HistBucket(ns))
		if hist == nil {
			return notFound
		}
		// The change in effect at rev is the last index entry at or below it.
		c := hist.Cursor()
		prefix := histPrefix(key)
		k := seekBelow(c, histKey(key, rev+1))
		if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
			return notFound
		}
		e, err := readLog(tx.Bucket(migrations.BucketLog), binary.BigEndian.Uint64(k[len(prefix):]))
		if err != nil {
			return err
		}
		if e.Op == ctxd.OpDelete {
			return notFound
		}
		rec = e.record()
		return nil
	})
	return rec, err
}

// seekBelow moves c to the last key below bound and returns it (nil when
// there is none).
func seekBelow(c *bbolt.Cursor, bound []byte) []byte {
	k, _ := c.Seek(bound)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	return k
}

func readLog(log *bbolt.Bucket, rev uint64) (logEntry, error) {
	v := log.Get(encodeRevision(rev))
	if v == nil {
		return logEntry{}, fmt.Errorf("log revision %d: %w", rev, errCorrupt)
	}
	e, err := decodeChange(rev, v)
	if err != nil {
		return logEntry{}, fmt.Errorf("log revision %d: %w", rev, err)
	}
	return e, nil
}

// List returns a page of a namespace's keys in byte order: bbolt's
// cursor merged with the keys the overlay has.
func (s *Store) List(ns string, opts ctxd.ListOptions) (ctxd.ListPage, error) {
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return ctxd.ListPage{}, err
	}
	limit := pageSize(opts.Limit)
	page := ctxd.ListPage{Records: []ctxd.Record{}}
	var ov []*change
	var top uint64
	var xs map[string]*extend
	if s.ov.size.Load() > 0 {
		after := opts.After
		if after < opts.Prefix {
			after = ""
		}
		xs = s.ov.extendsOf(ns)
		ov, top = s.ov.keysFrom(ns, opts.Prefix, after, limit)
	}
	err := s.view(func(tx *bbolt.Tx) error {
		applied := metaUint(tx, migrations.KeyWALSeq)
		if len(ov) > 0 && lastRevision(tx) >= top {
			// bbolt got every change the overlay had since the look: it
			// alone is a consistent state (overlay.go).
			ov = nil
		}
		var c *bbolt.Cursor
		if b := tx.Bucket(migrations.KVBucket(ns)); b != nil {
			c = b.Cursor()
		}
		if c == nil && len(ov) == 0 {
			return nil
		}
		logc := tx.Bucket(migrations.BucketLog).Cursor()
		prefix := []byte(opts.Prefix)
		start := prefix
		if opts.After != "" && opts.After >= opts.Prefix {
			start = []byte(opts.After)
		}
		// k, v: the next live key of bbolt's cursor in the page's range.
		var k, v []byte
		advance := func(first bool) {
			for c != nil {
				if first {
					k, v = c.Seek(start)
					first = false
				} else {
					k, v = c.Next()
				}
				if k == nil || !bytes.HasPrefix(k, prefix) {
					break
				}
				if opts.After == "" || string(k) > opts.After {
					return
				}
			}
			k, v = nil, nil
		}
		next := func() { advance(false) }
		advance(true)
		add := func(r ctxd.Record) bool {
			if len(page.Records) == limit {
				page.Next = page.Records[limit-1].Key
				return false
			}
			page.Records = append(page.Records, r)
			return true
		}
		for k != nil || len(ov) > 0 {
			// The overlay's state wins over bbolt's for the same key.
			if len(ov) > 0 && (k == nil || ov[0].Key <= string(k)) {
				o := ov[0]
				ov = ov[1:]
				if k != nil && o.Key == string(k) {
					next()
				}
				if o.Op == ctxd.OpDelete {
					continue
				}
				r := o.record()
				xs[r.Key].moveDeadline(&r, 0)
				if opts.NoValues {
					r.Value = nil
				} else {
					r.Value = bytes.Clone(r.Value)
				}
				if !add(r) {
					return nil
				}
				continue
			}
			if len(page.Records) == limit {
				page.Next = page.Records[limit-1].Key
				return nil
			}
			r, err := currentRecord(logc, ns, string(k), v, !opts.NoValues)
			if err != nil {
				return fmt.Errorf("list %s: %w", ns, err)
			}
			xs[r.Key].moveDeadline(&r, applied)
			page.Records = append(page.Records, r)
			next()
		}
		return nil
	})
	return page, err
}

// Count returns the number of ns's live keys that start with prefix: for
// the whole namespace its key count; otherwise bbolt's keys in the range
// (kv records only: no value is read), corrected by the overlay's changes
// to keys in it.
func (s *Store) Count(ns, prefix string) (uint64, error) {
	if err := ctxd.ValidateNamespace(ns); err != nil {
		return 0, err
	}
	if prefix == "" {
		nss, err := s.Namespaces()
		if err != nil {
			return 0, err
		}
		for _, n := range nss {
			if n.Name == ns {
				return n.Keys, nil
			}
		}
		return 0, nil
	}
	var ov []*change
	var top uint64
	if s.ov.size.Load() > 0 {
		ov, top = s.ov.keysFrom(ns, prefix, "", 0)
	}
	var n uint64
	err := s.view(func(tx *bbolt.Tx) error {
		if len(ov) > 0 && lastRevision(tx) >= top {
			ov = nil // bbolt has all of it (as in List)
		}
		b := tx.Bucket(migrations.KVBucket(ns))
		if b != nil {
			c := b.Cursor()
			p := []byte(prefix)
			for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				n++
			}
		}
		for _, o := range ov {
			inBolt := b != nil && b.Get([]byte(o.Key)) != nil
			live := o.Op != ctxd.OpDelete
			switch {
			case live && !inBolt:
				n++
			case !live && inBolt:
				n--
			}
		}
		return nil
	})
	return n, err
}

// History returns a page of one key's changes, newest first, across its
// lives (a delete and a later re-create are both listed): the overlay's,
// then bbolt's up to the overlay's base.
func (s *Store) History(ns, key string, opts ctxd.HistoryOptions) (ctxd.HistoryPage, error) {
	if err := s.checkKey(ns, key); err != nil {
		return ctxd.HistoryPage{}, err
	}
	limit := pageSize(opts.Limit)
	page := ctxd.HistoryPage{Changes: []ctxd.Change{}}
	cs, base, _ := s.ov.keyChanges(ns, key)
	full := false
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		if opts.Before > 0 && c.Revision >= opts.Before {
			continue
		}
		if len(page.Changes) == limit {
			page.Next = page.Changes[limit-1].Revision
			full = true
			break
		}
		page.Changes = append(page.Changes, c.change())
	}
	if full {
		return page, nil
	}
	err := s.view(func(tx *bbolt.Tx) error {
		hist := tx.Bucket(migrations.HistBucket(ns))
		if hist == nil {
			if len(cs) == 0 {
				return fmt.Errorf("history of %s/%s: %w", ns, key, ctxd.ErrNotFound)
			}
			page.Truncated = cs[0].PrevRev != 0 // the overlay holds it all
			return nil
		}
		prefix := histPrefix(key)
		c := hist.Cursor()
		logb := tx.Bucket(migrations.BucketLog)
		// What bbolt has above the overlay's base is in cs (or newer).
		before := base + 1
		if opts.Before > 0 {
			before = min(before, opts.Before)
		}
		bound := histKey(key, before)
		k := seekBelow(c, bound)
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Prev() {
			rev := binary.BigEndian.Uint64(k[len(prefix):])
			if len(page.Changes) == limit {
				page.Next = page.Changes[limit-1].Revision
				return nil
			}
			e, err := readLog(logb, rev)
			if err != nil {
				return err
			}
			page.Changes = append(page.Changes, e.Change)
		}
		if len(page.Changes) > 0 {
			page.Truncated = page.Changes[len(page.Changes)-1].PrevRev != 0
			return nil
		}
		// An empty page past the oldest change is a valid end, truncated
		// as the oldest change kept says; a key that never had any change
		// is not found, whatever the cursor.
		if k, _ := c.Seek(prefix); isHistOf(k, prefix) {
			e, err := readLog(logb, binary.BigEndian.Uint64(k[len(prefix):]))
			if err != nil {
				return err
			}
			page.Truncated = e.PrevRev != 0
			return nil
		}
		if len(cs) == 0 {
			return fmt.Errorf("history of %s/%s: %w", ns, key, ctxd.ErrNotFound)
		}
		page.Truncated = cs[0].PrevRev != 0
		return nil
	})
	return page, err
}

// Namespaces lists every namespace with its live key count, by name;
// "default" always exists.
func (s *Store) Namespaces() ([]ctxd.Namespace, error) {
	var out []ctxd.Namespace
	counts, top := s.ov.namespaces()
	err := s.view(func(tx *bbolt.Tx) error {
		out = namespaces(tx, counts, top)
		return nil
	})
	return out, err
}

// namespaces is bbolt's namespaces and counts in tx, with those of the
// overlay (taken before tx began, at revision top) over them.
func namespaces(tx *bbolt.Tx, counts map[string]nsCount, top uint64) []ctxd.Namespace {
	out := newView(tx).Namespaces()
	if len(counts) == 0 || lastRevision(tx) >= top {
		return out
	}
	for i := range out {
		if c, ok := counts[out[i].Name]; ok {
			out[i].Keys = c.keys
			delete(counts, out[i].Name)
		}
	}
	if len(counts) == 0 {
		return out
	}
	for ns, c := range counts {
		out = append(out, ctxd.Namespace{Name: ns, Keys: c.keys})
	}
	slices.SortFunc(out, func(a, b ctxd.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Status summarises the store as of one read transaction and the overlay.
func (s *Store) Status() (ctxd.Status, error) {
	st := ctxd.Status{Path: s.path, SchemaVersion: migrations.Current, CompactedRevision: s.compacted.Load()}
	counts, top := s.ov.namespaces()
	err := s.view(func(tx *bbolt.Tx) error {
		st.Revision = max(top, lastRevision(tx))
		st.DBSizeBytes = tx.Size()
		stats := tx.DB().Stats()
		st.FreePages = stats.FreePageN + stats.PendingPageN
		st.InUseBytes = inUseBytes(tx)
		st.FileSizeBytes = fileSize(s.path)
		st.QuotaBytes = s.quota
		st.UsedBytes = st.InUseBytes + s.ov.sizeBytes.Load()
		st.QuotaAlarm = s.quotaAlarm(st.UsedBytes)
		st.ReadCache = s.cache.status()
		st.LastRestore = lastRestore(tx)
		for _, ns := range namespaces(tx, counts, top) {
			st.Namespaces++
			st.Keys += ns.Keys
		}
		return nil
	})
	return st, err
}

// ReadLog returns up to limit changes with a revision greater than after,
// in revision order, none above the committed mark (Revision): bbolt's up
// to the overlay's base, then the overlay's. If changes the caller has not
// seen were compacted away it returns a *CompactedError: the caller must
// re-read current state.
//
// Every change in the overlay or in bbolt is durable (it was in the
// write-ahead log before it was published), so a follower is never handed
// a change that a power cut could take back, and whose revision a
// different change would then get (a watcher resuming from it would miss
// that one).
func (s *Store) ReadLog(after uint64, limit int) ([]ctxd.Change, error) {
	if limit <= 0 {
		limit = defaultPageSize
	}
	ov, base, top := s.ov.after(after, limit)
	var out []ctxd.Change
	err := s.view(func(tx *bbolt.Tx) error {
		if c := s.compacted.Load(); c > 0 && after+1 < c {
			return &ctxd.CompactedError{Requested: after + 1, Compacted: c}
		}
		// A follower that saw revisions a full restore discarded cannot
		// continue from them: the changes after them are not in this log.
		// One at the snapshot's revision itself holds the restored state
		// (a read at it answers it, as at the floor: the log holds nothing
		// between them), so it continues with the changes after the floor,
		// as the keys' histories do.
		if err := discardedByRestore(tx, after); err != nil {
			err.Requested = after + 1
			return err
		}
		cur := tx.Bucket(migrations.BucketLog).Cursor()
		for k, v := cur.Seek(encodeRevision(after + 1)); k != nil && len(out) < limit; k, v = cur.Next() {
			rev := binary.BigEndian.Uint64(k)
			if rev > base || rev > top {
				break
			}
			e, err := decodeChange(rev, v)
			if err != nil {
				return fmt.Errorf("log revision %d: %w", rev, err)
			}
			out = append(out, e.Change)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range ov {
		if len(out) == limit {
			break
		}
		out = append(out, c.change())
	}
	return out, nil
}

// Check runs bbolt's consistency check over the whole file, and checks
// the deadline index against the keys, and returns every problem found,
// joined. It lets the committer apply what is pending
// first, then holds it off while it runs: bbolt's check compares against
// the live freelist, and a commit beside it would make it report pages
// that commit freed.
func (s *Store) Check() error {
	if err := s.checkpoint(); err != nil {
		return err
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.view(func(tx *bbolt.Tx) error {
		var problems []string
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		if err := checkDeadlines(tx); err != nil {
			problems = append(problems, err.Error())
		}
		if len(problems) > 0 {
			return fmt.Errorf("consistency check of %s: %s", s.path, strings.Join(problems, "; "))
		}
		return nil
	})
}
