package store

import (
	"bytes"
	"sort"
	"time"

	"github.com/framework0/ctxd"
)

// RestoreDiff compares the selected part (opts) of snapshot sv with live lv, namespace by
// namespace, walking both in key order. With collect it also returns the
// writes that make live equal to the snapshot there: what every
// backend's restore does (a partial one commits the writes, a dry run
// reports the counts).
func RestoreDiff(sv, lv View, opts ctxd.RestoreOptions, collect bool) ([]ctxd.NamespaceDiff, []ctxd.Write, error) {
	names := map[string]bool{}
	if len(opts.Namespaces) > 0 {
		for _, ns := range opts.Namespaces {
			names[ns] = true
		}
	} else {
		for _, n := range sv.Namespaces() {
			names[n.Name] = true
		}
		for _, n := range lv.Namespaces() {
			names[n.Name] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for ns := range names {
		sorted = append(sorted, ns)
	}
	sort.Strings(sorted)
	who := opts.Who
	if who == "" {
		who = "restore"
	}
	var out []ctxd.NamespaceDiff
	var writes []ctxd.Write
	for _, ns := range sorted {
		d := ctxd.NamespaceDiff{Namespace: ns}
		snapKeys, err := collectRecords(sv, ns, opts.Prefix)
		if err != nil {
			return nil, nil, err
		}
		i := 0
		err = lv.ForEach(ns, opts.Prefix, func(live ctxd.Record) error {
			for i < len(snapKeys) && snapKeys[i].Key < live.Key {
				d.Added++
				if collect {
					writes = append(writes, restorePut(ns, &snapKeys[i], who))
				}
				i++
			}
			if i < len(snapKeys) && snapKeys[i].Key == live.Key {
				if bytes.Equal(snapKeys[i].Value, live.Value) && sameDeadline(snapKeys[i].ExpiresAt, live.ExpiresAt) {
					d.Unchanged++
				} else {
					d.Changed++
					if collect {
						writes = append(writes, restorePut(ns, &snapKeys[i], who))
					}
				}
				i++
				return nil
			}
			d.Removed++
			if collect {
				writes = append(writes, ctxd.Write{Namespace: ns, Key: live.Key, Op: ctxd.OpDelete, Who: who})
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		for ; i < len(snapKeys); i++ {
			d.Added++
			if collect {
				writes = append(writes, restorePut(ns, &snapKeys[i], who))
			}
		}
		out = append(out, d)
	}
	return out, writes, nil
}

// sameDeadline says whether two records expire alike: neither, or both
// within a second of each other. A restored deadline is the time left
// when the restore's write is made, so it lands a few milliseconds off
// the snapshot's (on etcd, a lease of whole seconds): a second apart is
// still the snapshot's, and a restore again changes nothing.
func sameDeadline(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	return a.Sub(b).Abs() < time.Second
}

// collectRecords reads the keys and values of one namespace of a
// snapshot's view, but for the keys whose deadline has passed: they would
// be gone now had the snapshot been live, so a restore neither puts them
// back (a dead lock holder back for a moment, then expired a second
// time) nor counts them, as an import skips them. (A restore holds the
// diff in memory anyway; the live side is streamed.)
func collectRecords(v View, ns, prefix string) ([]ctxd.Record, error) {
	var out []ctxd.Record
	now := time.Now()
	err := v.ForEach(ns, prefix, func(r ctxd.Record) error {
		if !r.ExpiresAt.IsZero() && !r.ExpiresAt.After(now) {
			return nil
		}
		out = append(out, ctxd.Record{Key: r.Key, Value: r.Value, ExpiresAt: r.ExpiresAt})
		return nil
	})
	return out, err
}

// restorePut is the put that gives a key back its snapshot value, and its
// snapshot deadline (still ahead: collectRecords left out the others; a
// nanosecond at least if it passed since).
func restorePut(ns string, r *ctxd.Record, who string) ctxd.Write {
	w := ctxd.Write{Namespace: ns, Key: r.Key, Op: ctxd.OpPut, Value: r.Value, Who: who}
	if !r.ExpiresAt.IsZero() {
		w.TTL = max(time.Until(r.ExpiresAt), time.Nanosecond)
	}
	return w
}
