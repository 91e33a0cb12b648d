package export

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/framework0/ctxd"
)

// Source is a consistent, read-only view of the store at one revision: what
// a dump is written from. A storage backend's view (store.View) is a Source; a snapshot file can be
// one too.
type Source interface {
	// Revision is the revision everything read through the source is
	// consistent at.
	Revision() uint64
	// ForEach calls fn for every live key of ns that starts with prefix, in
	// key order, streaming.
	ForEach(ns, prefix string, fn func(ctxd.Record) error) error
	// ForEachChange calls fn for every retained change of ns, oldest first.
	ForEachChange(ns string, fn func(ctxd.Change) error) error
	// Change returns the change of ns/key logged at rev, or an error
	// matching ctxd.ErrNotFound if history no longer holds it (on etcd
	// several keys' changes share a revision: the key says which).
	Change(ns, key string, rev uint64) (ctxd.Change, error)
}

// errStop ends an iteration early; it never leaves this package.
var errStop = errors.New("stop")

// AtRevision returns a view of src as it was at revision rev: its keys hold
// what they held at rev, and its history ends at rev. rev must not be above
// src's revision (ctxd.ErrFutureRevision) nor 0.
//
// The answer is exact when history at rev is retained, that is rev is not
// below the compacted revision; checking that is the caller's job (the
// store's GetAt does it). A change missing from the log while walking back
// is reported as ctxd.ErrCompacted. Records read at an earlier revision
// have CreateRev 0: the log does not record it; their ExpiresAt is the
// deadline the put in effect at rev set (a later keepalive is not logged).
//
// Memory: the keys of ns deleted after rev are held in memory, sorted, while
// ForEach runs; everything else streams.
func AtRevision(src Source, rev uint64) (Source, error) {
	if rev == 0 {
		return nil, fmt.Errorf("revision must be at least 1: %w", ctxd.ErrInvalid)
	}
	if cur := src.Revision(); rev > cur {
		return nil, ctxd.FutureRevision(rev, cur)
	}
	if rev == src.Revision() {
		return src, nil
	}
	return &atRevision{src: src, rev: rev}, nil
}

type atRevision struct {
	src Source
	rev uint64
}

func (a *atRevision) Revision() uint64 { return a.rev }

func (a *atRevision) Change(ns, key string, rev uint64) (ctxd.Change, error) {
	if rev > a.rev {
		return ctxd.Change{}, fmt.Errorf("%s/%s at revision %d: %w", ns, key, rev, ctxd.ErrNotFound)
	}
	return a.src.Change(ns, key, rev)
}

func (a *atRevision) ForEachChange(ns string, fn func(ctxd.Change) error) error {
	err := a.src.ForEachChange(ns, func(c ctxd.Change) error {
		if c.Revision > a.rev {
			return errStop
		}
		return fn(c)
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// ForEach merges two key-ordered streams: the live keys, each read back to
// the change in effect at rev, and the keys whose life was ended by a
// delete after rev, read back the same way.
func (a *atRevision) ForEach(ns, prefix string, fn func(ctxd.Record) error) error {
	var ended []ctxd.Record
	err := a.src.ForEachChange(ns, func(c ctxd.Change) error {
		if c.Revision <= a.rev || c.Op != ctxd.OpDelete || !strings.HasPrefix(c.Key, prefix) {
			return nil
		}
		r, ok, err := a.inEffect(ns, c.Key, c.PrevRev)
		if err != nil || !ok {
			return err
		}
		ended = append(ended, r)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(ended, func(i, j int) bool { return ended[i].Key < ended[j].Key })
	err = a.src.ForEach(ns, prefix, func(r ctxd.Record) error {
		for len(ended) > 0 && ended[0].Key < r.Key {
			if err := fn(ended[0]); err != nil {
				return err
			}
			ended = ended[1:]
		}
		if r.ModRev <= a.rev {
			if !r.ExpiresAt.IsZero() {
				// The deadline at rev is the put's: a keepalive since
				// moved the record's, and is not in history.
				c, err := a.src.Change(ns, r.Key, r.ModRev)
				if errors.Is(err, ctxd.ErrNotFound) {
					return a.historyGone()
				}
				if err != nil {
					return err
				}
				r.ExpiresAt = c.ExpiresAt
			}
			return fn(r)
		}
		old, ok, err := a.inEffect(ns, r.Key, r.ModRev)
		if err != nil || !ok {
			return err
		}
		return fn(old)
	})
	if err != nil {
		return err
	}
	for _, r := range ended {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// historyGone is the error of a read at a.rev whose history was compacted
// away meanwhile.
func (a *atRevision) historyGone() error {
	return fmt.Errorf("read at revision %d: the history it needs is gone: %w", a.rev, ctxd.ErrCompacted)
}

// inEffect walks the life of ns/key back from its put at revision from to the
// first put at or below a.rev. ok is false when the life started after rev.
func (a *atRevision) inEffect(ns, key string, from uint64) (ctxd.Record, bool, error) {
	for rev := from; rev != 0; {
		c, err := a.src.Change(ns, key, rev)
		if err != nil {
			if errors.Is(err, ctxd.ErrNotFound) {
				return ctxd.Record{}, false, a.historyGone()
			}
			return ctxd.Record{}, false, err
		}
		if c.Revision <= a.rev {
			if c.Op != ctxd.OpPut {
				return ctxd.Record{}, false, nil
			}
			return ctxd.Record{
				Namespace: c.Namespace, Key: c.Key, Value: c.Value, Version: c.Version,
				ModRev: c.Revision, Who: c.Who, UpdatedAt: c.Time, ExpiresAt: c.ExpiresAt,
			}, true, nil
		}
		rev = c.PrevRev
	}
	return ctxd.Record{}, false, nil
}
