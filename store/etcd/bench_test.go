package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
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
	s := open(b, etcd.Options{Prefix: etcdkit.Prefix(b.Name())})
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
		idx := etcdkit.Prefix(b.Name()) + "h/default/k/"
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
