package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
)

// realServer is a client of the whole server (testkit.StartServer).
func realServer(t *testing.T) *Client {
	t.Helper()
	srv := testkit.StartServer(t)
	c, err := New(srv.URL, WithWho("client-test"), checked(t))
	require.NoError(t, err)
	return c
}

// checked sends the client's requests through the OpenAPI validator
// (testkit.OpenAPI): a route, parameter, field or status the client uses
// that httpapi/openapi.yaml does not document fails the test.
func checked(t *testing.T) Option {
	return WithHTTPClient(testkit.NewOpenAPI(t).HTTPClient(t))
}

func TestAgainstRealServer(t *testing.T) {
	ctx := context.Background()
	c := realServer(t)

	require.NoError(t, c.Health(ctx))
	require.NoError(t, c.Ready(ctx))

	// Put, get, CAS, point-in-time.
	r1, err := c.Put(ctx, "", "app.config", json.RawMessage(`{"debug":true}`), PutOptions{})
	require.NoError(t, err)
	assert.Equal(t, "default", r1.Namespace)
	assert.Equal(t, uint64(1), r1.Version)
	assert.Equal(t, uint64(1), r1.ModRev)
	assert.Equal(t, "client-test", r1.Who)

	r2, err := c.Put(ctx, "", "app.config", json.RawMessage(`{"debug":false}`), PutOptions{IfVersion: Expect(1), Who: "other"})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), r2.Version)
	assert.Equal(t, "other", r2.Who)

	_, err = c.Put(ctx, "", "app.config", json.RawMessage(`1`), PutOptions{IfVersion: Expect(1)})
	require.True(t, IsConflict(err), "%v", err)
	assert.ErrorIs(t, err, ctxd.ErrConflict)
	var ae *APIError
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, uint64(2), ae.CurrentVersion)
	_, err = c.Put(ctx, "", "app.config", json.RawMessage(`1`), PutOptions{IfVersion: Expect(0)})
	assert.True(t, IsConflict(err), "%v", err)

	got, err := c.Get(ctx, "", "app.config", GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"debug":false}`, string(got.Value))
	old, err := c.Get(ctx, "", "app.config", GetOptions{Rev: r1.ModRev})
	require.NoError(t, err)
	assert.JSONEq(t, `{"debug":true}`, string(old.Value))
	_, err = c.Get(ctx, "", "app.config", GetOptions{Rev: 99})
	assert.ErrorIs(t, err, ctxd.ErrFutureRevision)

	_, err = c.Get(ctx, "", "missing", GetOptions{})
	assert.True(t, IsNotFound(err), "%v", err)
	assert.ErrorIs(t, err, ctxd.ErrNotFound)

	// Keys that need escaping arrive intact.
	for _, key := range []string{"a/b", "x/history", "..", ".", "sp ace", "ünï/cødé", "100%", "q?x=1", "frag#1", "a//b/", "+plus"} {
		rec, err := c.Put(ctx, "esc", key, json.RawMessage(`"v"`), PutOptions{})
		require.NoError(t, err, key)
		assert.Equal(t, key, rec.Key)
		rec, err = c.Get(ctx, "esc", key, GetOptions{})
		require.NoError(t, err, key)
		assert.Equal(t, key, rec.Key)
		h, err := c.History(ctx, "esc", key, HistoryOptions{})
		require.NoError(t, err, key)
		require.Len(t, h.Changes, 1, key)
		assert.Equal(t, key, h.Changes[0].Key)
	}
	all, err := c.ListAll(ctx, "esc", "")
	require.NoError(t, err)
	assert.Len(t, all, 11)

	// Delete, with CAS.
	_, err = c.Delete(ctx, "", "app.config", DeleteOptions{IfVersion: Expect(1)})
	assert.True(t, IsConflict(err))
	del, err := c.Delete(ctx, "", "app.config", DeleteOptions{IfVersion: Expect(2)})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), del.Version)
	_, err = c.Get(ctx, "", "app.config", GetOptions{})
	assert.True(t, IsNotFound(err))
	_, err = c.Delete(ctx, "", "app.config", DeleteOptions{})
	assert.True(t, IsNotFound(err))

	// History, newest first, paged.
	h, err := c.History(ctx, "", "app.config", HistoryOptions{Limit: 2})
	require.NoError(t, err)
	require.Len(t, h.Changes, 2)
	assert.Equal(t, ctxd.OpDelete, h.Changes[0].Op)
	assert.Equal(t, ctxd.OpPut, h.Changes[1].Op)
	assert.Equal(t, r2.ModRev, h.Changes[1].Revision)
	require.NotZero(t, h.Next)
	h2, err := c.History(ctx, "", "app.config", HistoryOptions{Before: h.Next})
	require.NoError(t, err)
	require.Len(t, h2.Changes, 1)
	assert.Equal(t, r1.ModRev, h2.Changes[0].Revision)
	_, err = c.History(ctx, "", "never", HistoryOptions{})
	assert.True(t, IsNotFound(err))

	// List with a cursor.
	for i := range 5 {
		_, err := c.Put(ctx, "list", fmt.Sprintf("k%d", i), json.RawMessage(fmt.Sprint(i)), PutOptions{})
		require.NoError(t, err)
	}
	_, err = c.Put(ctx, "list", "other", json.RawMessage(`0`), PutOptions{})
	require.NoError(t, err)
	p1, err := c.List(ctx, "list", ListOptions{Prefix: "k", Limit: 3})
	require.NoError(t, err)
	require.Len(t, p1.Records, 3)
	require.NotEmpty(t, p1.Next)
	p2, err := c.List(ctx, "list", ListOptions{Prefix: "k", After: p1.Next, Limit: 3})
	require.NoError(t, err)
	require.Len(t, p2.Records, 2)
	assert.Equal(t, "k4", p2.Records[1].Key)
	assert.Empty(t, p2.Next)

	// Transactions: all or nothing.
	res, err := c.Txn(ctx, []TxnOp{
		{Op: "put", Key: "t1", Value: json.RawMessage(`1`), IfVersion: Expect(0)},
		{Op: "put", Namespace: "list", Key: "k0", Value: json.RawMessage(`"new"`), IfVersion: Expect(1)},
		{Op: "delete", Namespace: "list", Key: "other"},
	}, TxnOptions{Who: "txn"})
	require.NoError(t, err)
	require.Len(t, res.Records, 3)
	assert.Equal(t, res.Records[2].ModRev, res.Revision)
	assert.Equal(t, "txn", res.Records[0].Who)
	before, err := c.Status(ctx)
	require.NoError(t, err)
	_, err = c.Txn(ctx, []TxnOp{
		{Op: "put", Key: "t2", Value: json.RawMessage(`2`)},
		{Op: "put", Key: "t1", Value: json.RawMessage(`3`), IfVersion: Expect(5)},
	}, TxnOptions{})
	assert.True(t, IsConflict(err), "%v", err)
	var conflict *APIError
	require.ErrorAs(t, err, &conflict)
	assert.Equal(t, "default", conflict.Namespace, "the key that conflicted, among the transaction's")
	assert.Equal(t, "t1", conflict.Key)
	assert.Equal(t, uint64(1), conflict.CurrentVersion)
	_, err = c.Get(ctx, "", "t2", GetOptions{})
	assert.True(t, IsNotFound(err), "a failed transaction writes nothing")

	// Namespaces and status.
	nss, err := c.Namespaces(ctx)
	require.NoError(t, err)
	counts := map[string]uint64{}
	for _, n := range nss {
		counts[n.Name] = n.Keys
	}
	assert.Equal(t, map[string]uint64{"default": 1, "esc": 11, "list": 5}, counts)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, before.Revision, st.Revision)
	assert.Equal(t, "test", st.Version)
	assert.Equal(t, uint64(17), st.Keys)
	assert.Equal(t, 3, st.Namespaces)
	assert.Positive(t, st.DBSizeBytes)
	assert.False(t, st.StartedAt.IsZero())

	// Bad input is a 400 with a JSON error.
	_, err = c.Put(ctx, "", "", json.RawMessage(`1`), PutOptions{})
	require.Error(t, err)
	_, err = c.Put(ctx, "bad ns", "k", json.RawMessage(`1`), PutOptions{})
	assert.ErrorIs(t, err, ctxd.ErrInvalid)
	_, err = c.Put(ctx, "", "k", json.RawMessage(`{not json`), PutOptions{})
	assert.ErrorIs(t, err, ctxd.ErrInvalid)
}

// A write past the server's storage quota is an *APIError of
// CodeInsufficientStorage that matches ctxd.ErrInsufficientStorage; a
// delete still works.
func TestInsufficientStorage(t *testing.T) {
	ctx := context.Background()
	srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) { c.Storage.QuotaBytes = 256 << 10 }))
	c, err := New(srv.URL, checked(t))
	require.NoError(t, err)
	value := json.RawMessage(`"` + strings.Repeat("v", 32<<10) + `"`)
	for i := 0; ; i++ {
		require.Less(t, i, 100, "the quota never refused a write")
		_, err = c.Put(ctx, "", fmt.Sprint("k", i), value, PutOptions{})
		if err != nil {
			break
		}
	}
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 507, ae.Status)
	assert.Equal(t, CodeInsufficientStorage, ae.Code)
	assert.ErrorIs(t, err, ctxd.ErrInsufficientStorage)
	assert.Contains(t, ae.Message, "storage.quota_bytes")
	_, err = c.Delete(ctx, "", "k0", DeleteOptions{})
	require.NoError(t, err, "a delete past the quota")
}

// Patch over the wire: both patch types, If-Match, a failing test with
// its pointer; 64 patchers of one value at once, each setting its own
// member, all land; Count and a listing without values.
func TestPatchCountAndListWithoutValues(t *testing.T) {
	ctx := context.Background()
	c := realServer(t)
	_, err := c.Put(ctx, "", "doc", json.RawMessage(`{"state":"idle"}`), PutOptions{})
	require.NoError(t, err)

	r, err := c.Patch(ctx, "", "doc", MergePatch, json.RawMessage(`{"owner":"ann"}`), PatchOptions{IfVersion: Expect(1)})
	require.NoError(t, err)
	assert.Equal(t, `{"state":"idle","owner":"ann"}`, string(r.Value))
	assert.Equal(t, "client-test", r.Who)

	_, err = c.Patch(ctx, "", "doc", JSONPatch, json.RawMessage(`[{"op":"test","path":"/state","value":"busy"},{"op":"remove","path":"/owner"}]`), PatchOptions{})
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, CodePatchTestFailed, ae.Code)
	assert.Equal(t, "/state", ae.Pointer)
	assert.Equal(t, 0, ae.OpIndex)
	assert.Equal(t, "test", ae.Op)
	assert.ErrorIs(t, err, ctxd.ErrPatchTestFailed)
	_, err = c.Patch(ctx, "", "doc", MergePatch, json.RawMessage(`{}`), PatchOptions{IfVersion: Expect(1)})
	assert.True(t, IsConflict(err), "%v", err)

	const patchers = 64
	errs := make(chan error, patchers)
	for i := range patchers {
		go func() {
			_, err := c.Patch(ctx, "", "doc", JSONPatch, json.RawMessage(fmt.Sprintf(`[{"op":"add","path":"/f%02d","value":%d}]`, i, i)), PatchOptions{})
			errs <- err
		}()
	}
	for range patchers {
		require.NoError(t, <-errs)
	}
	got, err := c.Get(ctx, "", "doc", GetOptions{})
	require.NoError(t, err)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(got.Value, &fields))
	for i := range patchers {
		assert.Equal(t, float64(i), fields[fmt.Sprintf("f%02d", i)], "patcher %d", i)
	}
	assert.Equal(t, uint64(2+patchers), got.Version)

	n, err := c.Count(ctx, "", "")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), n)
	n, err = c.Count(ctx, "", "nope")
	require.NoError(t, err)
	assert.Zero(t, n)
	page, err := c.List(ctx, "", ListOptions{NoValues: true})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	assert.Nil(t, page.Records[0].Value)
	assert.Equal(t, got.Version, page.Records[0].Version)
}

// A 429 of the server's rate limit (http.rate_limit) carries its
// Retry-After in APIError.RetryAfter, for the REST calls and Watch alike.
// So does a Retry-After given as an HTTP date (RFC 9110's other form: a
// proxy's), the wait until that date counted from the answer's Date (the
// proxy's clock, here an hour ahead of the client's): it was read as none.
func TestRateLimitedRetryAfter(t *testing.T) {
	asDate := func(resp *http.Response) error {
		secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil {
			return nil
		}
		date := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		resp.Header.Set("Date", date.Format(http.TimeFormat))
		resp.Header.Set("Retry-After", date.Add(time.Duration(secs)*time.Second).Format(http.TimeFormat))
		return nil
	}
	for _, form := range []string{"seconds", "date"} {
		t.Run(form, func(t *testing.T) {
			srv := testkit.StartServer(t, testkit.WithConfig(func(c *configs.Config) {
				c.HTTP.RateLimit, c.HTTP.RateBurst = 0.01, 1 // one request, then a wait of 100 s
			}))
			base, opts := srv.URL, []Option{checked(t)}
			if form == "date" {
				target, err := url.Parse(srv.URL)
				require.NoError(t, err)
				proxy := httputil.NewSingleHostReverseProxy(target)
				proxy.ModifyResponse = asDate
				front := httptest.NewServer(proxy)
				t.Cleanup(front.Close)
				base, opts = front.URL, nil
			}
			c, err := New(base, opts...)
			require.NoError(t, err)
			ctx := context.Background()
			_, err = c.Status(ctx)
			require.NoError(t, err)
			_, err = c.Status(ctx)
			var ae *APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, http.StatusTooManyRequests, ae.Status)
			assert.Equal(t, 100*time.Second, ae.RetryAfter)

			err = c.Watch(ctx, WatchOptions{}, func(WatchEvent) error { return nil })
			require.ErrorAs(t, err, &ae, "the first connection, refused")
			assert.Equal(t, 100*time.Second, ae.RetryAfter)
		})
	}
}

// Patch with no PatchType sends a merge patch: it sent application/json,
// which the server refuses (415).
func TestPatchWithoutTypeIsAMergePatch(t *testing.T) {
	ctx := context.Background()
	c := realServer(t)
	_, err := c.Put(ctx, "", "doc", json.RawMessage(`{"state":"idle"}`), PutOptions{})
	require.NoError(t, err)
	r, err := c.Patch(ctx, "", "doc", "", json.RawMessage(`{"owner":"ann"}`), PatchOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"state":"idle","owner":"ann"}`, string(r.Value))
}
