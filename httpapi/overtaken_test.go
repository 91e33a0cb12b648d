package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/etcd"
)

// overtakenStore is a real etcd store whose next view, once armed, is
// overtaken by a compaction: after the view has chosen its revision, a
// write outside the store's prefix moves etcd on and etcd's own client
// compacts to it, as another deployment's writes and etcd's retention
// would. The prefix itself stays idle.
type overtakenStore struct {
	store.Backend
	cli   *clientv3.Client
	armed atomic.Bool
	t     *testing.T
}

func (s *overtakenStore) View(fn func(store.View) error) error {
	return s.Backend.View(func(v store.View) error {
		if s.armed.CompareAndSwap(true, false) {
			put, err := s.cli.Put(s.t.Context(), "/elsewhere/x", "1")
			require.NoError(s.t, err)
			_, err = s.cli.Compact(s.t.Context(), put.Header.Revision)
			require.NoError(s.t, err)
		}
		return fn(v)
	})
}

// An export, a dump with history and a server-side dump of now that a
// compaction overtakes are built again at a new revision (nothing was
// sent or kept yet): they answered 410 compacted, on etcd whenever
// another instance compacted during them. The prefix is idle: its state
// is read at the compaction mark, where it is the same (a view at the
// prefix's last change, compacted away, failed every time). An export at
// a revision asked for still answers 410.
func TestAnswersOvertakenByACompactionAreBuiltAgain(t *testing.T) {
	etcdSrv := etcdkit.Own(t) // a compaction is the cluster's
	st, err := etcd.Open(etcd.Options{Endpoints: []string{etcdSrv.Endpoint}, Prefix: etcdkit.Prefix(etcdkit.Name(t))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdSrv.Endpoint}, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	ov := &overtakenStore{Backend: st, cli: cli, t: t}
	dumps, err := export.OpenDir(filepath.Join(t.TempDir(), "dumps"))
	require.NoError(t, err)
	srv := httpapi.New(ov, httpapi.Config{Version: "test", Dumps: dumps}, zerolog.Nop())
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	for i := range 5 {
		_, err := st.Put(t.Context(), "default", "k", json.RawMessage(`"v`+string(rune('0'+i))+`"`), nil, "t")
		require.NoError(t, err)
	}
	at := st.Revision()

	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/v1/ns/default/export"},
		{http.MethodGet, "/v1/ns/default/export?history=true"},
		{http.MethodGet, "/ctx/history"},
		{http.MethodPost, "/v1/ns/default/dumps?history=true"},
	} {
		ov.armed.Store(true)
		res, body := testkit.Send(t, ts.Client(), testkit.NewRequest(t, req.method, ts.URL+req.path, ""))
		assert.False(t, ov.armed.Load(), "%s %s: the compaction came", req.method, req.path)
		assert.Contains(t, []int{http.StatusOK, http.StatusCreated}, res.StatusCode, "%s %s: %s", req.method, req.path, body)
		if req.method == http.MethodPost {
			var info struct{ Path string }
			require.NoError(t, json.Unmarshal(body, &info))
			body, err = os.ReadFile(info.Path)
			require.NoError(t, err)
		}
		assert.Contains(t, string(body), `"v4"`, "%s %s", req.method, req.path)
	}

	// The compactions above passed at.
	res, body := testkit.Send(t, ts.Client(), testkit.NewRequest(t, http.MethodGet, ts.URL+"/v1/ns/default/export?rev="+strconv.FormatUint(at, 10), ""))
	assert.Equal(t, http.StatusGone, res.StatusCode, "a revision compacted away: %s", body)
}
