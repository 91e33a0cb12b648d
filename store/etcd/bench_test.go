package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// The choice behind History (DESIGN.md): walking etcd's MVCC history
// back, one read-only transaction per change, against the alternative of a
// history index kept in etcd (one key per change, written in the change's
// transaction), read with one range request. Both read a key's 100
// changes, newest first.
//
//	go test ./store/etcd -run '^$' -bench History -benchtime 200x
func BenchmarkHistory(b *testing.B) {
	const changes = 100
	s := open(b, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(b))})
	for i := range changes {
		_, err := s.Put(b.Context(), "default", "k", json.RawMessage(fmt.Sprint(i)), nil, "bench")
		require.NoError(b, err)
	}
	b.Run("walk-mvcc", func(b *testing.B) {
		for b.Loop() {
			page, err := s.History("default", "k", ctxd.HistoryOptions{Limit: changes})
			require.NoError(b, err)
			require.Len(b, page.Changes, changes)
		}
	})
	b.Run("index-range", func(b *testing.B) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(b).Endpoint}})
		require.NoError(b, err)
		defer cli.Close()
		idx := etcdkit.Prefix(etcdkit.Name(b)) + "h/default/k/"
		value := make([]byte, 40) // an envelope of a small value
		for i := range changes {
			_, err := cli.Put(context.Background(), fmt.Sprintf("%s%016x", idx, i), string(value))
			require.NoError(b, err)
		}
		for b.Loop() {
			resp, err := cli.Get(context.Background(), idx, clientv3.WithPrefix(), clientv3.WithLimit(changes),
				clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
			require.NoError(b, err)
			require.Len(b, resp.Kvs, changes)
		}
	})
}

// The choice behind expiring keys (DESIGN.md): one lease per key, granted
// at each put with a TTL (a second etcd round trip, a raft write), against
// leases shared by keys whose deadlines fall in one bucket, whose cost per
// put is only attaching the key to a lease granted once. Measured: ctxd's
// put without and with a TTL, and etcd's own client doing the same
// transaction without a lease, with a shared one, and with a lease
// granted for it. Each iteration runs every variant once, in turn, so
// that the load of a shared machine weighs on all alike: compare the
// ratios (reported as x-permanent and x-no-lease), not the times.
//
//	go test ./store/etcd -run '^$' -bench PutTTL -benchtime 300x
func BenchmarkPutTTL(b *testing.B) {
	s := open(b, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(b))})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(b).Endpoint}})
	require.NoError(b, err)
	defer cli.Close()
	shared, err := cli.Grant(b.Context(), 3600)
	require.NoError(b, err)
	raw := etcdkit.Prefix(etcdkit.Name(b)) + "raw/"
	value := json.RawMessage(`{"state":"running"}`)
	rawPut := func(k string, opts ...clientv3.OpOption) {
		_, err := cli.Txn(b.Context()).If(clientv3.Compare(clientv3.Version(k), "=", 0)).Then(clientv3.OpPut(k, string(value), opts...)).Commit()
		require.NoError(b, err)
	}
	variants := []struct {
		name string
		put  func(i int)
	}{
		{"ctxd-permanent", func(i int) {
			_, err := s.Put(b.Context(), "default", fmt.Sprint("p", i), value, nil, "bench")
			require.NoError(b, err)
		}},
		{"ctxd-ttl", func(i int) {
			_, err := s.Txn(b.Context(), []ctxd.Write{{Namespace: "default", Key: fmt.Sprint("t", i), Op: ctxd.OpPut, Value: value, Who: "bench", TTL: time.Hour}})
			require.NoError(b, err)
		}},
		{"etcd-no-lease", func(i int) { rawPut(fmt.Sprint(raw, "n", i)) }},
		{"etcd-shared-lease", func(i int) { rawPut(fmt.Sprint(raw, "s", i), clientv3.WithLease(shared.ID)) }},
		{"etcd-grant-per-key", func(i int) {
			lease, err := cli.Grant(b.Context(), 3600)
			require.NoError(b, err)
			rawPut(fmt.Sprint(raw, "g", i), clientv3.WithLease(lease.ID))
		}},
	}
	spent := make([]time.Duration, len(variants))
	i := 0
	for b.Loop() {
		i++
		for v, variant := range variants {
			start := time.Now()
			variant.put(i)
			spent[v] += time.Since(start)
		}
	}
	for v, variant := range variants {
		b.ReportMetric(float64(spent[v].Microseconds())/float64(i)/1000, "ms/"+variant.name)
	}
	b.ReportMetric(float64(spent[1])/float64(spent[0]), "ttl-x-permanent")
	b.ReportMetric(float64(spent[4])/float64(spent[2]), "grant-x-no-lease")
	b.ReportMetric(float64(spent[3])/float64(spent[2]), "shared-x-no-lease")
}

// How late after its deadline an expiry reaches the instance's feed: the
// recorded time of an etcd expiry is its deadline (etcd records none), so
// the real delay (etcd's lessor checks every 500 ms, then the revoke's
// raft round and the watch) is measured here, against the real clock.
// Each iteration waits for one key's expiry (about 1.5 s).
//
//	go test ./store/etcd -run '^$' -bench ExpiryLag -benchtime 10x
func BenchmarkExpiryLag(b *testing.B) {
	s := open(b, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(b))})
	var lags []time.Duration
	i := 0
	for b.Loop() {
		i++
		res, err := s.Txn(b.Context(), []ctxd.Write{{Namespace: "default", Key: fmt.Sprint("k", i), Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "bench", TTL: time.Second}})
		require.NoError(b, err)
		r := res.Records[0]
		for expired := false; !expired; {
			_, changed := s.Committed()
			log, err := s.ReadLog(r.ModRev, 100)
			require.NoError(b, err)
			for _, c := range log {
				expired = expired || (c.Key == r.Key && c.Expired)
			}
			if !expired {
				<-changed
			}
		}
		lags = append(lags, time.Since(r.ExpiresAt))
	}
	slices.Sort(lags)
	b.ReportMetric(float64(lags[len(lags)/2].Milliseconds()), "ms-late-p50")
	b.ReportMetric(float64(lags[len(lags)-1].Milliseconds()), "ms-late-max")
}

// Reads through the cache against reads of etcd, at 64 concurrent
// readers of 1,000 keys, in one run: etcd's own client (a linearizable
// range read per get, the client's default), the store reading etcd
// directly, the store reading its cache, and the cache of 3 instances
// on the same etcd sharing the readers (what grows with instances).
// ns/op is per get, over all readers.
//
//	go test ./store/etcd -run '^$' -bench ReadPaths -benchtime 20000x
func BenchmarkReadPaths(b *testing.B) {
	const keys, readers = 1000, 64
	prefix := etcdkit.Prefix(etcdkit.Name(b))
	writer := open(b, etcd.Options{Prefix: prefix, DirectReads: true})
	for i := range keys {
		_, err := writer.Put(b.Context(), "default", fmt.Sprintf("key-%06d", i), json.RawMessage(`{"v":"0123456789012345678901234567890123456789"}`), nil, "bench")
		require.NoError(b, err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(b).Endpoint}})
	require.NoError(b, err)
	defer cli.Close()
	cached := func(n int) []func(string) error {
		var out []func(string) error
		for range n {
			s := open(b, etcd.Options{Prefix: prefix})
			testkit.Eventually(b, func() bool { return s.ReadCache().Ready }, "the cache filled")
			out = append(out, func(k string) error { _, err := s.Get("default", k); return err })
		}
		return out
	}
	for _, c := range []struct {
		name string
		gets []func(string) error
	}{
		{"etcd-client", []func(string) error{func(k string) error {
			_, err := cli.Get(context.Background(), prefix+"k/default/"+k)
			return err
		}}},
		{"direct", []func(string) error{func(k string) error { _, err := writer.Get("default", k); return err }}},
		{"cache", cached(1)},
		{"cache-3-instances", cached(3)},
	} {
		b.Run(c.name, func(b *testing.B) {
			var next atomic.Int64
			b.SetParallelism((readers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1))
				get := c.gets[i%len(c.gets)]
				for pb.Next() {
					if err := get(fmt.Sprintf("key-%06d", i%keys)); err != nil {
						b.Error(err)
						return
					}
					i += 7
				}
			})
		})
	}
}

// Durable puts of new keys at 64 concurrent writers, in one run: etcd's
// own client (one put each) against the store, each write in a
// transaction of its own and grouped (group.go), each then waiting for
// the instance's own watch; then the same with a TTL (a lease per put),
// beside etcd's lease grants alone. ns/op is per put, over all writers;
// changes/commit, of the grouping store's, how many writes a transaction
// took.
//
//	go test ./store/etcd -run '^$' -bench WritePaths -benchtime 3000x
func BenchmarkWritePaths(b *testing.B) {
	const writers = 64
	prefix := etcdkit.Prefix(etcdkit.Name(b))
	grouped := open(b, etcd.Options{Prefix: prefix})
	alone := open(b, etcd.Options{Prefix: prefix, MaxGroupWrites: 1})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdkit.Shared(b).Endpoint}})
	require.NoError(b, err)
	defer cli.Close()
	value := `{"v":"0123456789012345678901234567890123456789"}`
	var seq atomic.Int64
	put := func(s *etcd.Store) func(k string) error {
		return func(k string) error {
			_, err := s.Put(context.Background(), "default", k, json.RawMessage(value), nil, "bench")
			return err
		}
	}
	putTTL := func(s *etcd.Store) func(k string) error {
		return func(k string) error {
			_, err := s.Txn(context.Background(), []ctxd.Write{{Namespace: "default", Key: k, Op: ctxd.OpPut, Value: json.RawMessage(value), Who: "bench", TTL: time.Hour}})
			return err
		}
	}
	for _, c := range []struct {
		name string
		put  func(k string) error
	}{
		{"etcd-client", func(k string) error { _, err := cli.Put(context.Background(), prefix+"raw/"+k, value); return err }},
		{"store-alone", put(alone)},
		{"store-grouped", put(grouped)},
		// A put with a TTL: a lease granted for it (etcd's grant alone
		// is the floor), then a grouped transaction.
		{"etcd-grant", func(string) error { _, err := cli.Grant(context.Background(), 3600); return err }},
		{"store-ttl-grouped", putTTL(grouped)},
		{"store-ttl-alone", putTTL(alone)},
	} {
		b.Run(c.name, func(b *testing.B) {
			before := grouped.Stats()
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.put(fmt.Sprint("key-", seq.Add(1))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if st := grouped.Stats(); st.Commits > before.Commits {
				b.ReportMetric(float64(st.Changes-before.Changes)/float64(st.Commits-before.Commits), "changes/commit")
			}
		})
	}
}

// Patches of existing keys (a merge patch each) at 64 concurrent writers,
// each on keys of its own, in one run: each patch a read and a
// transaction of its own, against the read and a grouped transaction
// (group.go); and grouped patches of expiring keys (a TTL of an hour),
// which keep their lease and deadline. ns/op is per patch, over all
// writers.
//
//	go test ./store/etcd -run '^$' -bench PatchPaths -benchtime 3000x
func BenchmarkPatchPaths(b *testing.B) {
	const writers, keysEach = 64, 8
	prefix := etcdkit.Prefix(etcdkit.Name(b))
	grouped := open(b, etcd.Options{Prefix: prefix})
	alone := open(b, etcd.Options{Prefix: prefix, MaxGroupWrites: 1})
	for i := range writers * keysEach {
		for _, k := range []struct {
			name string
			ttl  time.Duration
		}{{"key-", 0}, {"ttl-key-", time.Hour}} {
			_, err := grouped.Txn(b.Context(), []ctxd.Write{{Namespace: "default", Key: fmt.Sprint(k.name, i), Op: ctxd.OpPut,
				Value: json.RawMessage(`{"n":0,"name":"counter"}`), Who: "bench", TTL: k.ttl}})
			require.NoError(b, err)
		}
	}
	for _, c := range []struct {
		name, keys string
		s          *etcd.Store
	}{{"store-alone", "key-", alone}, {"store-grouped", "key-", grouped}, {"store-grouped-ttl", "ttl-key-", grouped}} {
		b.Run(c.name, func(b *testing.B) {
			eachWriter(b, writers, func(w, n int) error {
				p := ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
				_, err := c.s.Patch(context.Background(), "default", fmt.Sprint(c.keys, w*keysEach+n%keysEach), p, nil, "bench")
				return err
			})
		})
	}
	// Every writer patches one document: the instance's patches of it
	// take turns (patchLine), none lost to another of its own.
	b.Run("store-grouped-one-key", func(b *testing.B) {
		eachWriter(b, writers, func(w, n int) error {
			p := ctxd.Patch{Type: ctxd.MergePatch, Doc: json.RawMessage(fmt.Sprintf(`{"w%d":%d}`, w, n))}
			_, err := grouped.Patch(context.Background(), "default", "key-0", p, nil, "bench")
			return err
		})
	})
}

// Keepalives of expiring keys at 64 concurrent writers, each of a key of
// its own: the instance's read cache on (the key's lease and revision
// read from it) and off (read from etcd first). ns/op is per keepalive,
// over all writers.
//
//	go test ./store/etcd -run '^$' -bench KeepAlivePaths -benchtime 3000x
func BenchmarkKeepAlivePaths(b *testing.B) {
	const writers = 64
	prefix := etcdkit.Prefix(etcdkit.Name(b))
	cached := open(b, etcd.Options{Prefix: prefix})
	direct := open(b, etcd.Options{Prefix: prefix, DirectReads: true})
	for i := range writers {
		_, err := cached.Txn(b.Context(), []ctxd.Write{{Namespace: "default", Key: fmt.Sprint("hb-", i), Op: ctxd.OpPut, Value: json.RawMessage(`1`), Who: "bench", TTL: time.Hour}})
		require.NoError(b, err)
	}
	for _, c := range []struct {
		name string
		s    *etcd.Store
	}{{"read-etcd", direct}, {"read-cache", cached}} {
		b.Run(c.name, func(b *testing.B) {
			eachWriter(b, writers, func(w, _ int) error {
				_, err := c.s.KeepAlive(context.Background(), "default", fmt.Sprint("hb-", w), time.Hour, nil)
				return err
			})
		})
	}
}

// eachWriter runs op by writers concurrent writers until b's iterations
// are done: op gets the writer's number and how many ops it ran before.
func eachWriter(b *testing.B, writers int, op func(w, n int) error) {
	var next atomic.Int64
	b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		w := int(next.Add(1)-1) % writers
		for n := 0; pb.Next(); n++ {
			if err := op(w, n); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Dumps read a key's puts back one at a time (view.Change): the value
// before each change of a history dump, and each key's value at a past
// revision through its history (export.AtRevision, bolt's way), against
// etcd's reads at that revision (ViewAt). 20 keys put 10 times each.
//
//	go test ./store/etcd -run '^$' -bench Dump -benchtime 5x
func BenchmarkDump(b *testing.B) {
	s := open(b, etcd.Options{Prefix: etcdkit.Prefix(etcdkit.Name(b))})
	var mid uint64
	for i := range 200 {
		r, err := s.Put(b.Context(), "default", fmt.Sprintf("k%02d", i%20), json.RawMessage(fmt.Sprint(i)), nil, "bench")
		require.NoError(b, err)
		if i == 100 {
			mid = r.ModRev
		}
	}
	b.Run("history", func(b *testing.B) {
		for b.Loop() {
			require.NoError(b, s.View(func(v store.View) error {
				res, err := export.Write(io.Discard, export.JSON, v, export.Options{Namespace: "default", History: true})
				require.Equal(b, 200, res.Changes)
				return err
			}))
		}
	})
	b.Run("at-revision", func(b *testing.B) {
		for b.Loop() {
			require.NoError(b, s.View(func(v store.View) error {
				past, err := export.AtRevision(v, mid)
				require.NoError(b, err)
				res, err := export.Write(io.Discard, export.JSON, past, export.Options{Namespace: "default"})
				require.Equal(b, 20, res.Keys)
				return err
			}))
		}
	})
	b.Run("view-at", func(b *testing.B) { // what /v1/export?rev= does on etcd
		for b.Loop() {
			require.NoError(b, s.ViewAt(mid, func(v store.View) error {
				res, err := export.Write(io.Discard, export.JSON, v, export.Options{Namespace: "default"})
				require.Equal(b, 20, res.Keys)
				return err
			}))
		}
	})
}
