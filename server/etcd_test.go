package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// store.backend etcd: the server serves from a real etcd, /readyz says
// 503 once etcd is gone, and writes then fail fast with "unavailable"
// (nothing was sent) rather than wait for the request timeout. The log
// says when etcd is lost and found again.
func TestEtcdBackendReadinessAndFailFast(t *testing.T) {
	e, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(e.Close)
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{e.Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t))
		c.Etcd.RequestTimeout = 2 * time.Second
	}))
	hc := &http.Client{}
	resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/app", `{"on":true}`))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/v1/ns/default/keys/app", ""))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `"value":{"on":true}`)
	resp, _ = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/readyz", ""))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 1.0, testkit.Scrape(t, srv.URL)["ctxd_store_up"])
	// The start's log names etcd's version, and warns only below 3.5.
	assert.Regexp(t, `"etcd_version":"3\.[0-9]+\.[0-9]+".*"message":"store opened on etcd"`, srv.Logs.String())
	assert.NotContains(t, srv.Logs.String(), "etcd is older than ctxd supports")

	e.Stop()
	testkit.Eventually(t, func() bool {
		resp, _ := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/readyz", ""))
		return resp.StatusCode == http.StatusServiceUnavailable
	}, "/readyz answers 503 once etcd is gone")
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/app", `2`))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, string(body), `"code":"unavailable"`, "a write etcd never received is unavailable, not outcome_unknown")
	testkit.Eventually(t, func() bool {
		return strings.Contains(srv.Logs.String(), `"status":503,`) &&
			regexp.MustCompile(`"method":"PUT".*"status":503.*"error":"unavailable","error_message":"unavailable: `).MatchString(srv.Logs.String())
	}, "the 503's access log line says why")
	// /readyz as well says so at once while the client has no connection,
	// rather than after the request timeout.
	testkit.Eventually(t, func() bool {
		resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/readyz", ""))
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "is unreachable (connection")
	}, "/readyz answers 503 from the connection's state")
	// And reads: a get, a listing and the status answered 503 only after
	// etcd.request_timeout (the cache's confirmation, then etcd), saying
	// "context deadline exceeded" instead of why.
	// So did an export or dump of now (a view), a snapshot, a compaction
	// and a keepalive (a write).
	for _, req := range [][2]string{{http.MethodGet, "/v1/ns/default/keys/app"}, {http.MethodGet, "/v1/ns/default/keys"},
		{http.MethodGet, "/v1/status"}, {http.MethodGet, "/v1/ns/default/export"}, {http.MethodGet, "/ctx/all"},
		{http.MethodPost, "/v1/snapshots"}, {http.MethodPost, "/v1/compact?keep_versions=1"}, {http.MethodPost, "/v1/ns/default/keys/app/keepalive?ttl=5s"}} {
		resp, body := testkit.Send(t, hc, testkit.NewRequest(t, req[0], srv.URL+req[1], ""))
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, req)
		assert.Contains(t, string(body), "is unreachable (connection", req)
	}
	// The store's gauges are absent from the scrape: ctxd_store_up says
	// why, rather than leave alerts to notice an absence.
	m := testkit.Scrape(t, srv.URL)
	assert.Equal(t, 0.0, m["ctxd_store_up"])
	assert.Contains(t, m, "ctxd_store_up")
	assert.NotContains(t, m, "ctxd_store_revision")
	lost := regexp.MustCompile(`"level":"error".*"message":"etcd is unreachable: `)
	assert.Equal(t, 1, len(lost.FindAllString(srv.Logs.String(), -1)), "one line when etcd is lost:\n%s", srv.Logs.String())

	require.NoError(t, e.Start())
	testkit.Eventually(t, func() bool {
		resp, _ := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/readyz", ""))
		return resp.StatusCode == http.StatusOK
	}, "/readyz answers 200 once etcd is back")
	testkit.Eventually(t, func() bool {
		return regexp.MustCompile(`"level":"info".*"unreachable_for":"[0-9.hms]+".*"message":"etcd is reachable again"`).MatchString(srv.Logs.String())
	}, "a line when etcd is found again, with how long it was away")
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/app", `3`))
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, 1, len(lost.FindAllString(srv.Logs.String(), -1)), "lost once, however many reconnect attempts failed")
}

// Expiring keys on store.backend etcd, over HTTP: a put with ?ttl= shows
// expires_at and expires as a change by ctxd:ttl in the key's history; a
// keepalive with the put's ttl answers the record with its moved
// deadline, and one with another ttl is a 400 JSON error that changes
// nothing (etcd renews a lease for the ttl it was granted).
func TestEtcdBackendExpiringKeys(t *testing.T) {
	srv := testkit.StartServer(t, onEtcd(t, etcdkit.Name(t)))
	hc := &http.Client{}
	key := srv.URL + "/v1/ns/default/keys/lock"
	resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, key+"?ttl=1s", `"held"`))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var put struct {
		Revision  uint64    `json:"revision"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal(body, &put))
	require.False(t, put.ExpiresAt.IsZero(), "%s", body)

	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPost, key+"/keepalive?ttl=1h", ""))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	assert.Contains(t, string(body), "the ttl it was put with")
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPost, key+"/keepalive?ttl=1s", ""))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var kept struct {
		Revision  uint64    `json:"revision"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal(body, &kept))
	assert.Equal(t, put.Revision, kept.Revision, "a keepalive makes no revision")
	assert.False(t, kept.ExpiresAt.Before(put.ExpiresAt))

	testkit.Eventually(t, func() bool {
		resp, _ := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, key, ""))
		return resp.StatusCode == http.StatusNotFound
	}, "the key expires")
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, key+"/history", ""))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var hist struct {
		Changes []struct {
			Op      string    `json:"op"`
			Who     string    `json:"who"`
			Expired bool      `json:"expired"`
			Time    time.Time `json:"time"`
		} `json:"changes"`
	}
	require.NoError(t, json.Unmarshal(body, &hist))
	require.Len(t, hist.Changes, 2, "%s", body)
	assert.Equal(t, "delete", hist.Changes[0].Op)
	assert.Equal(t, "ctxd:ttl", hist.Changes[0].Who)
	assert.True(t, hist.Changes[0].Expired)
	assert.True(t, kept.ExpiresAt.Equal(hist.Changes[0].Time), "the expiry met the keepalive's deadline")
}

// The etcd instance's read cache is in /v1/status (read_cache) and
// /metrics (ctxd_read_cache_*): ready once filled, the keys it holds, its
// fills, and the reads it served; "off" with etcd.read_cache false.
func TestEtcdReadCacheInStatusAndMetrics(t *testing.T) {
	for _, cached := range []bool{true, false} {
		srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
			c.Store.Backend = configs.BackendEtcd
			c.Etcd.Endpoints = []string{etcdkit.Shared(t).Endpoint}
			c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t) + strconv.FormatBool(cached))
			c.Etcd.ReadCache = cached
		}))
		hc := &http.Client{}
		for _, k := range []string{"a", "b", "c"} {
			resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/"+k, `1`))
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		}
		status := func() ctxd.ReadCacheStatus { return readCacheStatus(t, hc, srv.URL) }
		if !cached {
			require.Equal(t, ctxd.ReadCacheOff, status().State)
			m := testkit.Scrape(t, srv.URL)
			require.Equal(t, 1.0, m[`ctxd_read_cache_state{state="off"}`])
			continue
		}
		testkit.Eventually(t, func() bool {
			resp, _ := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/v1/ns/default/keys/a", ""))
			st := status()
			return resp.StatusCode == http.StatusOK && st.State == ctxd.ReadCacheReady && st.Keys == 3 && st.Hits > 0
		}, "the cache ready, holding 3 keys, serving reads")
		st := status()
		require.Positive(t, st.Fills)
		require.Positive(t, st.Bytes)
		require.Equal(t, int64(configs.Defaults().Etcd.ReadCacheMaxBytes), st.MaxBytes)
		m := testkit.Scrape(t, srv.URL)
		require.Equal(t, 1.0, m[`ctxd_read_cache_state{state="ready"}`])
		require.Equal(t, 0.0, m[`ctxd_read_cache_state{state="filling"}`])
		require.Equal(t, 3.0, m["ctxd_read_cache_keys"])
		require.Positive(t, m["ctxd_read_cache_hits_total"])
		require.Positive(t, m["ctxd_read_cache_confirmations_total"])
		require.LessOrEqual(t, m["ctxd_read_cache_confirmations_total"], m["ctxd_read_cache_hits_total"], "a hit waits for one confirmation, shared")
		require.Positive(t, m["ctxd_read_cache_fills_total"])
	}
}

// A prefix that outgrows etcd.read_cache_max_bytes turns the instance's
// read cache off until a restart: the log says so once, at warn, with
// the reason and the setting to raise. Only /v1/status and /metrics
// said it before, and reads went to etcd without a word.
func TestEtcdReadCacheGivingUpIsLogged(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{etcdkit.Shared(t).Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t))
		c.Etcd.ReadCacheMaxBytes = 1000
	}))
	hc := &http.Client{}
	for i := range 10 {
		resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/k"+strconv.Itoa(i), `"`+strings.Repeat("x", 200)+`"`))
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	}
	testkit.Eventually(t, func() bool { return readCacheStatus(t, hc, srv.URL).State == ctxd.ReadCacheDisabled }, "the cache gives up")
	gaveUp := regexp.MustCompile(`"level":"warn","reason":"the prefix needs more than 1000 bytes \([0-9]+ counted\): etcd.read_cache_max_bytes",.*` +
		`"message":"the read cache gave up: reads go to etcd until the instance restarts \(raise etcd.read_cache_max_bytes\)"`)
	testkit.Eventually(t, func() bool { return gaveUp.MatchString(srv.Logs.String()) }, "the log says so:\n%s", srv.Logs.String())
	assert.Len(t, gaveUp.FindAllString(srv.Logs.String(), -1), 1, "once")
}

// etcd's space quota (--quota-backend-bytes), the classic full etcd:
// once a write passes it, etcd raises its NOSPACE alarm and refuses every
// write. ctxd answers 507 insufficient_storage saying what to do (never
// outcome_unknown: etcd checks before it applies), deletes too; reads
// work; /v1/status shows the quota, the use and the alarm. The operator's
// way back, as the message says (compact, defrag, disarm), writes again.
func TestEtcdSpaceQuota(t *testing.T) {
	const quota = 2 << 20
	e, err := etcdkit.Start(func(c *embed.Config) { c.QuotaBackendBytes = quota })
	require.NoError(t, err)
	t.Cleanup(e.Close)
	srv := testkit.StartServer(t, testkit.WithEtcd(e.Endpoint, etcdkit.Prefix(etcdkit.Name(t))))
	c := instanceClient(t, srv.URL)
	ctx := t.Context()
	// One key written again and again: its history fills etcd, and a
	// compaction empties it.
	value := json.RawMessage(`"` + strings.Repeat("x", 200<<10) + `"`)
	var full *client.APIError
	for i := 0; ; i++ {
		require.Less(t, i, 100, "etcd never refused a write")
		_, err := c.Put(ctx, "default", "big", value, client.PutOptions{})
		if err != nil {
			require.ErrorAs(t, err, &full)
			break
		}
	}
	assert.Equal(t, http.StatusInsufficientStorage, full.Status)
	assert.Equal(t, ctxd.CodeInsufficientStorage, full.Code, "%v", err)
	assert.Contains(t, full.Message, "etcdctl alarm disarm")
	for _, write := range []func() error{
		func() error {
			_, err := c.Put(ctx, "default", "small", json.RawMessage(`1`), client.PutOptions{})
			return err
		},
		func() error { _, err := c.Delete(ctx, "default", "big", client.DeleteOptions{}); return err },
	} {
		err := write()
		require.ErrorAs(t, err, &full, "the alarm refuses every write")
		assert.Equal(t, ctxd.CodeInsufficientStorage, full.Code, "%v", err)
	}
	assert.Equal(t, 3.0, testkit.Scrape(t, srv.URL)["ctxd_storage_quota_refused_writes_total"], "each refused write counted")
	rec, err := c.Get(ctx, "default", "big", client.GetOptions{})
	require.NoError(t, err, "reads work")
	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, ctxd.AlarmInsufficientStorage, st.Alarm)
	assert.Contains(t, st.AlarmMessage, "--quota-backend-bytes")
	assert.EqualValues(t, quota, st.QuotaBytes)
	assert.Greater(t, st.UsedBytes, int64(quota)/2)

	_, err = c.Compact(ctx, rec.ModRev, 1)
	require.NoError(t, err)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}})
	require.NoError(t, err)
	defer cli.Close()
	_, err = cli.Defragment(ctx, e.Endpoint)
	require.NoError(t, err)
	alarms, err := cli.AlarmList(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, alarms.Alarms)
	for _, a := range alarms.Alarms {
		_, err := cli.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a))
		require.NoError(t, err)
	}
	_, err = c.Put(ctx, "default", "small", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err, "writes again")
	st, err = c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, ctxd.AlarmNone, st.Alarm, "%s", st.AlarmMessage)
}

// etcd compacted by its operator (etcdctl compact, or etcd's
// --auto-compaction-*: what a deployment whose etcd user lacks the root
// role runs), not by ctxd: every read of what went answers "compacted"
// with etcd's mark, what is left still reads, and an instance started
// after it (its backfill of etcd's history) serves from the mark on.
func TestEtcdCompactedByEtcd(t *testing.T) {
	e, err := etcdkit.Start()
	require.NoError(t, err)
	t.Cleanup(e.Close)
	prefix := etcdkit.Prefix(etcdkit.Name(t))
	srv := testkit.StartServer(t, testkit.WithEtcd(e.Endpoint, prefix))
	c := instanceClient(t, srv.URL)
	ctx := t.Context()
	var revs []uint64
	for i := range 5 {
		rec, err := c.Put(ctx, "default", "a", json.RawMessage(strconv.Itoa(i)), client.PutOptions{})
		require.NoError(t, err)
		revs = append(revs, rec.ModRev)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}})
	require.NoError(t, err)
	defer cli.Close()
	mark := revs[3]
	_, err = cli.Compact(ctx, int64(mark), clientv3.WithCompactPhysical())
	require.NoError(t, err)

	compacted := func(what string, err error) {
		t.Helper()
		var ae *client.APIError
		require.ErrorAs(t, err, &ae, what)
		assert.Equal(t, ctxd.CodeCompacted, ae.Code, "%s: %v", what, err)
		assert.Equal(t, mark, ae.CompactedRevision, "%s: %v", what, err)
	}
	_, err = c.Get(ctx, "default", "a", client.GetOptions{Rev: revs[1]})
	compacted("a get below the mark", err)
	_, err = c.Export(ctx, "default", client.ExportOptions{Rev: revs[1]}, io.Discard)
	compacted("an export below the mark", err)
	rec, err := c.Get(ctx, "default", "a", client.GetOptions{Rev: revs[3]})
	require.NoError(t, err, "the state at the mark")
	assert.JSONEq(t, `3`, string(rec.Value))
	hist, err := c.History(ctx, "default", "a", client.HistoryOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, hist.Changes)
	assert.Equal(t, revs[4], hist.Changes[0].Revision)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, mark, st.CompactedRevision)

	// The instance learnt etcd's mark from the reads above (before them,
	// it serves a watcher the changes its memory still holds).
	f := testkit.DialWatch(t, srv.WatchURL(url.Values{"from_rev": {strconv.FormatUint(revs[1], 10)}}), nil).Next()
	assert.Equal(t, ctxd.TypeCompacted, f.Type, "%+v", f)
	ws := testkit.DialWatch(t, srv.WatchURL(url.Values{"from_rev": {strconv.FormatUint(mark, 10)}}), nil)
	ws.Expect(ctxd.TypeSubscribed)
	assert.Equal(t, revs[4], ws.Expect(ctxd.TypeContextUpdated).Rev, "what is left of the feed")

	// A new instance reads the prefix's recent history from etcd.
	late := testkit.StartServer(t, testkit.WithEtcd(e.Endpoint, prefix))
	lc := instanceClient(t, late.URL)
	rec, err = lc.Get(ctx, "default", "a", client.GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `4`, string(rec.Value))
	lws := testkit.DialWatch(t, late.WatchURL(url.Values{"from_rev": {strconv.FormatUint(revs[1], 10)}}), nil)
	f = lws.Next()
	assert.Equal(t, ctxd.TypeCompacted, f.Type, "%+v", f)
	lws = testkit.DialWatch(t, late.WatchURL(url.Values{"from_rev": {strconv.FormatUint(mark, 10)}}), nil)
	lws.Expect(ctxd.TypeSubscribed)
	assert.Equal(t, revs[4], lws.Expect(ctxd.TypeContextUpdated).Rev)
	after, err := lc.Put(ctx, "default", "a", json.RawMessage(`5`), client.PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, after.ModRev, lws.Expect(ctxd.TypeContextUpdated).Rev)
}

// POST /v1/compact on etcd takes keep_versions=1 only (etcd keeps the
// change in effect at the mark): 0 is a 400 and 2 a 501, and each says
// what is allowed. Neither compacts, so the shared etcd is safe to use.
func TestEtcdCompactKeepVersionsAllowed(t *testing.T) {
	srv := testkit.StartServer(t, onEtcd(t, etcdkit.Name(t)))
	hc := &http.Client{}
	resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/a", `1`))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	for _, tt := range []struct {
		keep   string
		status int
		says   string
	}{
		{"0", http.StatusBadRequest, "on store.backend etcd only 1"},
		{"2", http.StatusNotImplemented, "etcd keeps the change in effect at the mark"},
	} {
		resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPost, srv.URL+"/v1/compact?keep_versions="+tt.keep, ""))
		assert.Equal(t, tt.status, resp.StatusCode, "keep_versions=%s: %s", tt.keep, body)
		assert.Contains(t, string(body), tt.says, "keep_versions=%s", tt.keep)
	}
}

// A dump at a past revision on etcd is etcd's reads at that revision
// (store.PastViewer): each key once with its value then, and the history
// with each key's own value before, after a transaction whose writes
// share one revision.
func TestEtcdDumpAtAPastRevision(t *testing.T) {
	srv := testkit.StartServer(t, onEtcd(t, etcdkit.Name(t)))
	hc := &http.Client{}
	resp, body := testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPost, srv.URL+"/v1/txn",
		`{"ops":[{"op":"put","key":"a","value":"a1"},{"op":"put","key":"b","value":"b1"}]}`))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var txn struct{ Revision uint64 }
	require.NoError(t, json.Unmarshal(body, &txn))
	for _, kv := range [][2]string{{"a", `"a2"`}, {"b", `"b2"`}, {"c", `1`}} {
		resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/"+kv[0], kv[1]))
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	}

	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet,
		srv.URL+"/v1/ns/default/export?history=true&rev="+strconv.FormatUint(txn.Revision, 10), ""))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, strconv.FormatUint(txn.Revision, 10), resp.Header.Get("X-Ctxd-Revision"))
	var dump struct {
		Revision uint64                     `json:"revision"`
		Context  map[string]json.RawMessage `json:"context"`
		History  []struct {
			Key    string          `json:"key"`
			Before json.RawMessage `json:"before"`
			After  json.RawMessage `json:"after"`
		} `json:"history"`
	}
	require.NoError(t, json.Unmarshal(body, &dump))
	assert.Equal(t, txn.Revision, dump.Revision)
	assert.Equal(t, map[string]json.RawMessage{"a": json.RawMessage(`"a1"`), "b": json.RawMessage(`"b1"`)}, dump.Context)
	require.Len(t, dump.History, 2, "the history up to the revision")
	assert.Equal(t, "a", dump.History[0].Key)
	assert.Equal(t, "b", dump.History[1].Key)

	// Now, with history: each key's own value before.
	resp, body = testkit.Send(t, hc, testkit.NewRequest(t, http.MethodGet, srv.URL+"/v1/ns/default/export?history=true", ""))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.NoError(t, json.Unmarshal(body, &dump))
	var before []string
	for _, h := range dump.History {
		before = append(before, h.Key+":"+string(h.Before)+"->"+string(h.After))
	}
	assert.Equal(t, []string{`a:null->"a1"`, `b:null->"b1"`, `a:"a1"->"a2"`, `b:"b1"->"b2"`, `c:null->1`}, before)
}

// On etcd the writer's metrics count what they say: ctxd_store_writes_total
// every request (a group of concurrent writes is one etcd transaction of
// several), and each committed transaction in ctxd_store_commits_total,
// ctxd_store_writes_per_commit and ctxd_store_commit_duration_seconds
// (both stayed empty on etcd; writes counted transactions).
func TestEtcdWriterMetrics(t *testing.T) {
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{etcdkit.Shared(t).Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(etcdkit.Name(t))
	}))
	before := testkit.Scrape(t, srv.URL)
	const puts = 40
	var wg sync.WaitGroup
	for i := range puts {
		wg.Go(func() {
			resp, body := testkit.Send(t, http.DefaultClient, testkit.NewRequest(t, http.MethodPut, srv.URL+"/v1/ns/default/keys/k"+strconv.Itoa(i), `1`))
			assert.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		})
	}
	wg.Wait()
	m := testkit.Scrape(t, srv.URL)
	delta := func(name string) float64 { return m[name] - before[name] }
	assert.Equal(t, float64(puts), delta("ctxd_store_writes_total"), "every request")
	assert.Equal(t, float64(puts), delta("ctxd_store_changes_total"))
	assert.Equal(t, float64(puts), delta("ctxd_store_writes_per_commit_sum"), "the requests of each commit add up")
	commits := delta("ctxd_store_commits_total")
	assert.Positive(t, commits)
	assert.LessOrEqual(t, commits, float64(puts))
	assert.Equal(t, commits, delta("ctxd_store_writes_per_commit_count"))
	assert.Equal(t, commits, delta("ctxd_store_commit_duration_seconds_count"))
	assert.Positive(t, delta("ctxd_store_commit_duration_seconds_sum"))
	assert.Contains(t, m, "ctxd_store_patch_retries_total")
}
