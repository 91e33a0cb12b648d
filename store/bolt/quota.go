package bolt

import (
	"path/filepath"

	bbolt "go.etcd.io/bbolt"

	"github.com/framework0/ctxd"
)

// The storage quota (Options.QuotaBytes). What counts against it is the
// database file's bytes in use (bbolt's high-water mark less its free
// pages) plus the acknowledged changes not yet applied to the file (the
// overlay, which the committer will write there). Free pages do not count:
// bbolt reuses them before it grows the file, so once compaction has freed
// space, writes may fill it again without a defrag. The write-ahead log's
// segments do not count either: they are preallocated, few, and released
// as the committer applies them (store/wal).

// inUseBytes is the part of tx's database file that holds data: the
// high-water mark less the free pages, counting as free the pages freed
// by commits that open read transactions may still see.
func inUseBytes(tx *bbolt.Tx) int64 {
	st := tx.DB().Stats()
	return tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(tx.DB().Info().PageSize)
}

// measure records the database file's bytes in use after a change of the
// file (a committer batch, a direct commit, a compaction chunk, a reload).
// The caller holds dbMu.
func (s *Store) measure() {
	_ = s.db.View(func(tx *bbolt.Tx) error {
		s.inUse.Store(inUseBytes(tx))
		return nil
	})
}

// usedBytes is what counts against the quota now.
func (s *Store) usedBytes() int64 { return s.inUse.Load() + s.ov.sizeBytes.Load() }

// checkQuota refuses a request that adds data (a put in it) when the
// bytes used plus about what it adds would pass the quota. A request of
// deletes only always passes: deleting is how space is freed. The check
// is made before the request is queued, so concurrent writes may pass the
// quota by what one group of them adds.
func (s *Store) checkQuota(r *request) error {
	if s.quota == 0 || !addsData(r.writes) {
		return nil
	}
	used := s.usedBytes()
	if used+int64(r.size) <= s.quota {
		if s.refused.Load() != 0 { // a load, not a store, on every write
			s.refused.Store(0)
		}
		return nil
	}
	s.refused.Store(int64(r.size))
	s.stats.quotaRefused.Add(1)
	return &ctxd.QuotaError{Used: used, Quota: s.quota, Need: int64(r.size)}
}

// quotaAlarm is Status's QuotaAlarm: the refusal a write that adds data
// gets now (the quota is reached, or the last write refused would be
// refused again), "" when writes are accepted. Once compaction has freed
// space, it clears without waiting for a write.
func (s *Store) quotaAlarm(used int64) string {
	if s.quota == 0 {
		return ""
	}
	need := s.refused.Load()
	if used < s.quota && used+need <= s.quota {
		return ""
	}
	return (&ctxd.QuotaError{Used: used, Quota: s.quota, Need: need}).Error()
}

// addsData reports whether writes hold a put.
func addsData(writes []ctxd.Write) bool {
	for i := range writes {
		if writes[i].Op != ctxd.OpDelete {
			return true
		}
	}
	return false
}

// copyFits refuses a copy of the database of about need bytes (a
// defrag's, an online restore's) that would leave less than the reserve
// free on the data folder's file system: the copy would take the room
// the store's own writes need, and a full disk fails the store.
func (s *Store) copyFits(what string, need int64) error {
	return s.reserve.Fits(filepath.Dir(s.path), what, need)
}
