package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
)

// onEtcd runs a server on the package's shared embedded etcd, under the
// prefix of name: servers started with the same name share their data.
func onEtcd(t *testing.T, name string) testkit.ServerOption {
	return testkit.WithConfig(func(c *configs.Config) {
		c.Store.Backend = configs.BackendEtcd
		c.Etcd.Endpoints = []string{etcdkit.Shared(t).Endpoint}
		c.Etcd.Prefix = etcdkit.Prefix(name)
	})
}

// feedClient writes to one server over real HTTP and notes every change
// its answers report, in revision order: what a watcher must receive.
type feedClient struct {
	t    *testing.T
	hc   *http.Client
	want []change
}

// change is what a watcher is checked against: (revision, key, op).
type change struct {
	Rev uint64
	Key string
	Op  string
}

func (c *feedClient) put(srv *testkit.Server, key, value string) uint64 {
	c.t.Helper()
	var rec ctxd.Record
	c.do(srv, http.MethodPut, "/v1/ns/default/keys/"+key, value, &rec)
	c.want = append(c.want, change{rec.ModRev, key, "put"})
	return rec.ModRev
}

func (c *feedClient) del(srv *testkit.Server, key string) {
	c.t.Helper()
	var rec ctxd.Record
	c.do(srv, http.MethodDelete, "/v1/ns/default/keys/"+key, "", &rec)
	c.want = append(c.want, change{rec.ModRev, key, "delete"})
}

// txn posts ops ("put:key" or "delete:key") as one transaction.
func (c *feedClient) txn(srv *testkit.Server, ops ...string) ctxd.TxnResult {
	c.t.Helper()
	var req ctxd.TxnRequest
	for i, o := range ops {
		op, key, _ := strings.Cut(o, ":")
		req.Ops = append(req.Ops, ctxd.TxnOp{Op: op, Key: key, Value: json.RawMessage(strconv.Itoa(i))})
		if op == "delete" {
			req.Ops[i].Value = nil
		}
	}
	body, err := json.Marshal(req)
	require.NoError(c.t, err)
	var res ctxd.TxnResult
	c.do(srv, http.MethodPost, "/v1/txn", string(body), &res)
	require.Len(c.t, res.Records, len(ops))
	for i, o := range ops {
		op, key, _ := strings.Cut(o, ":")
		c.want = append(c.want, change{res.Records[i].ModRev, key, op})
	}
	return res
}

func (c *feedClient) do(srv *testkit.Server, method, path, body string, out any) {
	c.t.Helper()
	resp, b := testkit.Send(c.t, c.hc, testkit.NewRequest(c.t, method, srv.URL+path, body))
	require.Equal(c.t, http.StatusOK, resp.StatusCode, "%s %s: %s", method, path, b)
	require.NoError(c.t, json.Unmarshal(b, out))
}

// dialWatch connects to srv's /v1/watch with q and reads "subscribed".
func dialWatch(t *testing.T, srv *testkit.Server, q url.Values) (*testkit.WS, uint64) {
	t.Helper()
	ws := testkit.DialWatch(t, "ws://"+srv.Addr+"/v1/watch?"+q.Encode(), nil)
	return ws, ws.Expect(ctxd.TypeSubscribed).Rev
}

// readChanges reads n context_updated messages.
func readChanges(t *testing.T, ws *testkit.WS, n int) []change {
	t.Helper()
	out := make([]change, 0, n)
	for len(out) < n {
		m := ws.Expect(ctxd.TypeContextUpdated)
		out = append(out, change{m.Rev, m.Key, m.Op})
	}
	return out
}

// A transaction of several writes reaches a /v1/watch subscriber complete
// and in order, on bolt (a revision per change) and on etcd (one revision
// for the transaction), and a subscriber resuming from the revision
// before it gets every change of it once: nothing missing, nothing twice.
func TestWatchTxnWholeOnBothBackends(t *testing.T) {
	for _, backend := range []string{configs.BackendBolt, configs.BackendEtcd} {
		for _, batch := range []string{"false", "true"} {
			t.Run(backend+"/batch="+batch, func(t *testing.T) {
				var opts []testkit.ServerOption
				if backend == configs.BackendEtcd {
					opts = append(opts, onEtcd(t, etcdkit.Name(t)))
				}
				srv := testkit.StartServer(t, opts...)
				c := &feedClient{t: t, hc: &http.Client{}}
				c.put(srv, "gone", `0`)
				c.want = nil
				live, _ := dialWatch(t, srv, url.Values{"batch": {batch}})
				res := c.txn(srv, "put:a", "put:b", "delete:gone", "put:c", "put:d")
				assert.Equal(t, c.want, readChanges(t, live, len(c.want)), "the live subscriber gets the txn whole, in order")
				if backend == configs.BackendEtcd {
					for _, r := range res.Records {
						assert.Equal(t, res.Revision, r.ModRev, "on etcd a txn has one revision")
					}
				}

				from := c.want[0].Rev - 1
				resumed, _ := dialWatch(t, srv, url.Values{"batch": {batch}, "from_rev": {strconv.FormatUint(from, 10)}})
				assert.Equal(t, c.want, readChanges(t, resumed, len(c.want)), "resumed from revision %d", from)
				marker := c.put(srv, "marker", `1`)
				assert.Equal(t, marker, readChanges(t, resumed, 1)[0].Rev, "no duplicate after the replay")
				assert.Equal(t, marker, readChanges(t, live, 1)[0].Rev, "no duplicate on the live subscriber")
			})
		}
	}
}

// Two ctxd instances on one etcd prefix: every write made on A (puts,
// deletes, transactions of several writes) reaches a watcher on B, in
// order, none missing; a watcher that leaves A part-way and resumes on B
// with from_rev (the revision of the last change it got, batch frames
// holding whole revisions) gets the rest with no gap and no duplicate.
func TestTwoInstancesOneFeed(t *testing.T) {
	a := testkit.StartServer(t, onEtcd(t, etcdkit.Name(t)))
	b := testkit.StartServer(t, onEtcd(t, etcdkit.Name(t)))
	c := &feedClient{t: t, hc: &http.Client{}}
	onB, _ := dialWatch(t, b, url.Values{})
	onA, _ := dialWatch(t, a, url.Values{"batch": {"true"}})

	for i := range 10 {
		k := "k" + strconv.Itoa(i)
		c.put(a, k, strconv.Itoa(i))
		c.txn(a, "put:t"+strconv.Itoa(i), "put:"+k, "put:u"+strconv.Itoa(i))
		if i%2 == 1 {
			c.del(a, k)
			c.txn(a, "delete:t"+strconv.Itoa(i), "delete:u"+strconv.Itoa(i), "put:last")
		}
	}
	all := c.want
	assert.Equal(t, all, readChanges(t, onB, len(all)), "the watcher on B gets every change made on A, in order")

	// The watcher on A reads about half, ending with a whole frame.
	var got []change
	for len(got) < len(all)/2 {
		got = append(got, readChanges(t, onA, 1)...)
	}
	for onA.Pending() > 0 {
		got = append(got, readChanges(t, onA, 1)...)
	}
	require.NoError(t, onA.Conn.Close())
	last := got[len(got)-1].Rev
	assert.Equal(t, all[:len(got)], got)
	resumed, _ := dialWatch(t, b, url.Values{"from_rev": {strconv.FormatUint(last, 10)}})
	rest := readChanges(t, resumed, len(all)-len(got))
	assert.Equal(t, all[len(got):], rest, "resumed on B after revision %d: the rest, once", last)
	marker := c.put(a, "marker", `1`)
	assert.Equal(t, marker, readChanges(t, resumed, 1)[0].Rev, "nothing more before the next write")
}
