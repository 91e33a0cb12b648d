package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
)

// seen is what a fake server received.
type seen struct {
	Method, EscapedPath, Query, IfMatch, ContentType string
	Body                                             string
}

// fake starts a server that records each request and answers with status and body.
func fake(t *testing.T, status int, body string) (*Client, *seen) {
	t.Helper()
	var s seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s = seen{
			Method: r.Method, EscapedPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			IfMatch: r.Header.Get("If-Match"), ContentType: r.Header.Get("Content-Type"), Body: string(b),
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/", WithWho("tester"))
	require.NoError(t, err)
	return c, &s
}

func TestNew(t *testing.T) {
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://h", "http://", "http://h/?x=1", "::",
		"http://a:1,", "http://a:1,127.0.0.1:2", "http://a:1,http://a:1/", "http://h:99999", "http://h:0"} {
		_, err := New(bad)
		assert.Error(t, err, bad)
	}
	// A password in the URL went into Watch's error (and the list
	// Servers returns), and the server takes a token instead.
	for _, withUser := range []string{"http://user:hunter2@h:1", "http://a:1,https://user:hunter2@b:2", "ftp://user:hunter2@h"} {
		_, err := New(withUser)
		require.Error(t, err, withUser)
		assert.Contains(t, err.Error(), "must not hold a user or password")
		assert.NotContains(t, err.Error(), "hunter2")
	}
	// One that does not parse is not shown at all.
	_, err := New("http://user:hunter2@h:bad")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `invalid port ":bad"`)
	assert.NotContains(t, err.Error(), "hunter2")
	c, err := New("https://example.com/prefix/")
	require.NoError(t, err)
	assert.Equal(t, []string{"https://example.com/prefix"}, c.Servers())
	c, err = New("http://a:1, http://b:2/x/")
	require.NoError(t, err)
	assert.Equal(t, []string{"http://a:1", "http://b:2/x"}, c.Servers())
}

func TestRequests(t *testing.T) {
	ctx := context.Background()
	rec := `{"ns":"default","key":"a/b","value":{"x":1},"version":2,"create_revision":1,"revision":5,"who":"tester","updated_at":"2026-01-02T03:04:05Z"}`
	tests := []struct {
		name string
		body string
		call func(c *Client) (any, error)
		want seen
		out  any
	}{
		{
			name: "put escapes the key and sends who and If-Match",
			body: rec,
			call: func(c *Client) (any, error) {
				return c.Put(ctx, "", "a/b", json.RawMessage(`{"x":1}`), PutOptions{IfVersion: Expect(1)})
			},
			want: seen{Method: "PUT", EscapedPath: "/v1/ns/default/keys/a%2Fb", Query: "who=tester", IfMatch: `"1"`, ContentType: "application/json", Body: `{"x":1}`},
		},
		{
			name: "put with its own who and If-Match 0",
			body: rec,
			call: func(c *Client) (any, error) {
				return c.Put(ctx, "team", "k y", json.RawMessage(`1`), PutOptions{IfVersion: Expect(0), Who: "ann & bob"})
			},
			want: seen{Method: "PUT", EscapedPath: "/v1/ns/team/keys/k%20y", Query: "who=ann+%26+bob", IfMatch: `"0"`, ContentType: "application/json", Body: `1`},
		},
		{
			name: "get at a revision",
			body: rec,
			call: func(c *Client) (any, error) { return c.Get(ctx, "default", "a.b.c", GetOptions{Rev: 7}) },
			want: seen{Method: "GET", EscapedPath: "/v1/ns/default/keys/a.b.c", Query: "rev=7"},
		},
		{
			name: "get of a key made of dots",
			body: rec,
			call: func(c *Client) (any, error) { return c.Get(ctx, "default", "..", GetOptions{}) },
			want: seen{Method: "GET", EscapedPath: "/v1/ns/default/keys/%2E%2E"},
		},
		{
			name: "delete",
			body: `{"ns":"default","key":"k","value":null,"version":3,"revision":9}`,
			call: func(c *Client) (any, error) { return c.Delete(ctx, "", "k", DeleteOptions{IfVersion: Expect(3)}) },
			want: seen{Method: "DELETE", EscapedPath: "/v1/ns/default/keys/k", Query: "who=tester", IfMatch: `"3"`},
		},
		{
			name: "list",
			body: `{"keys":[` + rec + `],"next":"a/b"}`,
			call: func(c *Client) (any, error) {
				return c.List(ctx, "ns1", ListOptions{Prefix: "app/", After: "app/a", Limit: 10})
			},
			want: seen{Method: "GET", EscapedPath: "/v1/ns/ns1/keys", Query: "after=app%2Fa&limit=10&prefix=app%2F"},
		},
		{
			name: "history of a key ending in /history",
			body: `{"changes":[{"revision":5,"ns":"default","key":"x/history","op":"put","value":1,"version":2,"prev_revision":3,"who":"w","time":"2026-01-02T03:04:05Z"}],"next":5}`,
			call: func(c *Client) (any, error) {
				return c.History(ctx, "", "x/history", HistoryOptions{Before: 9, Limit: 1})
			},
			want: seen{Method: "GET", EscapedPath: "/v1/ns/default/keys/x%2Fhistory/history", Query: "before=9&limit=1"},
		},
		{
			name: "namespaces",
			body: `{"namespaces":[{"name":"default","keys":3}]}`,
			call: func(c *Client) (any, error) { return c.Namespaces(ctx) },
			want: seen{Method: "GET", EscapedPath: "/v1/ns"},
			out:  []Namespace{{Name: "default", Keys: 3}},
		},
		{
			name: "txn",
			body: `{"revision":4,"results":[]}`,
			call: func(c *Client) (any, error) {
				return c.Txn(ctx, []TxnOp{
					{Op: "put", Key: "a", Value: json.RawMessage(`1`), IfVersion: Expect(0)},
					{Op: "delete", Namespace: "n", Key: "b"},
				}, TxnOptions{})
			},
			want: seen{
				Method: "POST", EscapedPath: "/v1/txn", ContentType: "application/json",
				Body: `{"who":"tester","ops":[{"op":"put","key":"a","value":1,"if_version":0},{"op":"delete","ns":"n","key":"b"}]}`,
			},
			out: TxnResult{Revision: 4, Records: []Record{}},
		},
		{
			name: "status",
			body: `{"version":"v1","revision":3,"keys":2,"namespaces":1,"db_size_bytes":32768,"schema_version":1,"clients":0,"uptime_seconds":2}`,
			call: func(c *Client) (any, error) { return c.Status(ctx) },
			want: seen{Method: "GET", EscapedPath: "/v1/status"},
			out:  Status{Version: "v1", Revision: 3, Keys: 2, Namespaces: 1, DBSizeBytes: 32768, SchemaVersion: 1, UptimeSeconds: 2},
		},
		{
			name: "dump on the server: the options, the filename and who",
			body: `{"filename":"nightly.csv"}`,
			call: func(c *Client) (any, error) {
				return c.Dump(ctx, "team", "nightly", ExportOptions{Format: "csv", Rev: 12, History: true})
			},
			want: seen{Method: "POST", EscapedPath: "/v1/ns/team/dumps", Query: "filename=nightly&format=csv&history=true&rev=12&who=tester"},
			out:  DumpInfo{Filename: "nightly.csv"},
		},
		{
			name: "export of a snapshot names the namespace and who",
			body: `{}`,
			call: func(c *Client) (any, error) {
				return c.ExportSnapshot(ctx, "s1", "", ExportOptions{Format: "txt"}, io.Discard)
			},
			want: seen{Method: "GET", EscapedPath: "/v1/snapshots/s1/export", Query: "format=txt&ns=default&who=tester"},
		},
		{
			name: "restore: who, dry run, namespaces in order, prefix",
			body: `{"revision":4}`,
			call: func(c *Client) (any, error) {
				return c.RestoreSnapshot(ctx, "s1", RestoreOptions{DryRun: true, Namespaces: []string{"b", "a"}, Prefix: "app/"})
			},
			want: seen{Method: "POST", EscapedPath: "/v1/snapshots/s1/restore", Query: "dry_run=true&ns=b&ns=a&prefix=app%2F&who=tester"},
			out:  RestoreResult{Revision: 4},
		},
		{
			name: "compact leaves out what is 0",
			body: `{}`,
			call: func(c *Client) (any, error) { return c.Compact(ctx, 0, 3) },
			want: seen{Method: "POST", EscapedPath: "/v1/compact", Query: "keep_versions=3"},
			out:  CompactResult{},
		},
		{
			name: "health",
			body: `{"status":"ok"}`,
			call: func(c *Client) (any, error) { return nil, c.Health(ctx) },
			want: seen{Method: "GET", EscapedPath: "/healthz"},
		},
		{
			name: "ready",
			body: `{"status":"ready"}`,
			call: func(c *Client) (any, error) { return nil, c.Ready(ctx) },
			want: seen{Method: "GET", EscapedPath: "/readyz"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := fake(t, http.StatusOK, tt.body)
			out, err := tt.call(c)
			require.NoError(t, err)
			assert.Equal(t, tt.want, *s)
			if tt.out != nil {
				assert.Equal(t, tt.out, out)
			}
		})
	}
}

func TestDecodesRecordAndHistory(t *testing.T) {
	c, _ := fake(t, http.StatusOK, `{"ns":"default","key":"k","value":{"a":[1,2]},"version":2,"create_revision":1,"revision":5,"who":"w","updated_at":"2026-01-02T03:04:05Z"}`)
	rec, err := c.Get(context.Background(), "", "k", GetOptions{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":[1,2]}`, string(rec.Value))
	assert.Equal(t, uint64(2), rec.Version)
	assert.Equal(t, uint64(5), rec.ModRev)
	assert.Equal(t, uint64(1), rec.CreateRev)

	c, _ = fake(t, http.StatusOK, `{"changes":[{"revision":6,"ns":"default","key":"k","op":"delete","value":null,"version":2,"prev_revision":5,"who":"w","time":"2026-01-02T03:04:05Z"}],"next":6}`)
	h, err := c.History(context.Background(), "", "k", HistoryOptions{})
	require.NoError(t, err)
	require.Len(t, h.Changes, 1)
	assert.Equal(t, ctxd.OpDelete, h.Changes[0].Op)
	assert.Equal(t, uint64(5), h.Changes[0].PrevRev)
	assert.Equal(t, uint64(6), h.Next)
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		status   int
		body     string
		want     APIError
		notFound bool
		conflict bool
		is       error
	}{
		{
			name: "not found", status: 404, body: `{"error":{"code":"not_found","message":"key default/k not found"}}`,
			want: APIError{Status: 404, Code: "not_found", Message: "key default/k not found"}, notFound: true, is: ctxd.ErrNotFound,
		},
		{
			name: "conflict, current version inside error", status: 409,
			body: `{"error":{"code":"conflict","message":"version conflict","current_version":4,"key":"k","ns":"default"}}`,
			want: APIError{Status: 409, Code: "conflict", Message: "version conflict", Namespace: "default", Key: "k", CurrentVersion: 4}, conflict: true, is: ctxd.ErrConflict,
		},
		{
			name: "conflict, current version beside error", status: 409,
			body: `{"error":{"code":"conflict","message":"m"},"current_version":7}`,
			want: APIError{Status: 409, Code: "conflict", Message: "m", CurrentVersion: 7}, conflict: true, is: ctxd.ErrConflict,
		},
		{
			name: "compacted", status: 410, body: `{"error":{"code":"compacted","message":"m","compacted_revision":12}}`,
			want: APIError{Status: 410, Code: "compacted", Message: "m", CompactedRevision: 12}, is: ctxd.ErrCompacted,
		},
		{
			name: "too large", status: 413, body: `{"error":{"code":"too_large","message":"m"}}`,
			want: APIError{Status: 413, Code: "too_large", Message: "m"}, is: ctxd.ErrTooLarge,
		},
		{
			name: "bad request", status: 400, body: `{"error":{"code":"bad_request","message":"m"}}`,
			want: APIError{Status: 400, Code: "bad_request", Message: "m"}, is: ctxd.ErrInvalid,
		},
		// Every code of the server's error table matches its errors: the
		// client had a copy of the table, without these two.
		{
			name: "bad snapshot", status: 422, body: `{"error":{"code":"bad_snapshot","message":"m"}}`,
			want: APIError{Status: 422, Code: "bad_snapshot", Message: "m"}, is: ctxd.ErrBadSnapshot,
		},
		{
			name: "not supported", status: 501, body: `{"error":{"code":"not_supported","message":"m"}}`,
			want: APIError{Status: 501, Code: "not_supported", Message: "m"}, is: ctxd.ErrNotSupported,
		},
		{
			name: "not a ctxd answer", status: 502, body: "<html>Bad Gateway</html>",
			want: APIError{Status: 502, Message: "<html>Bad Gateway</html>"},
		},
		// A 404 that is not ctxd's (another server on that port, a wrong
		// path prefix behind a proxy) is not "no such key": a script that
		// creates the key when get says not found must not be fooled.
		{
			name: "plain 404", status: 404, body: "404 page not found",
			want: APIError{Status: 404, Message: "404 page not found"},
		},
		{
			name: "plain 409", status: 409, body: "<html>Conflict</html>",
			want: APIError{Status: 409, Message: "<html>Conflict</html>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fake(t, tt.status, tt.body)
			_, err := c.Get(ctx, "", "k", GetOptions{})
			require.Error(t, err)
			var ae *APIError
			require.True(t, errors.As(err, &ae))
			assert.Equal(t, tt.want, *ae)
			assert.Equal(t, tt.notFound, IsNotFound(err))
			assert.Equal(t, tt.conflict, IsConflict(err))
			assert.False(t, IsConnectionError(err))
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
			assert.NotErrorIs(t, err, context.Canceled, "a server's answer is not the client's own cancellation")
			assert.Contains(t, err.Error(), tt.want.Message)
			assert.Contains(t, err.Error(), strconv.Itoa(tt.status))
			assert.Equal(t, tt.want.Code == "", strings.Contains(err.Error(), "not a ctxd answer"), "says whose answer it is: %v", err)
		})
	}
}

// A proxy's 502, 503 or 504 to a write leaves its outcome unknown (the
// write may have reached ctxd, and the answer been lost behind the proxy:
// Envoy, Istio's proxy, answers 503 "upstream connect error or
// disconnect/reset before headers" when the instance's connection broke
// after the request went out), as a lost answer does: ctxd put exits 6
// on it, not 1. To a read, or as ctxd's own error, it is an error like
// any other.
func TestProxyGatewayErrorsLeaveWritesUncertain(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		c, _ := fake(t, status, "<html>gateway</html>")
		_, err := c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
		assert.True(t, IsOutcomeUnknown(err), "put, %d: %v", status, err)
		_, err = c.Txn(ctx, []TxnOp{{Op: "delete", Key: "k"}}, TxnOptions{})
		assert.True(t, IsOutcomeUnknown(err), "txn, %d: %v", status, err)
		_, err = c.Import(ctx, "", strings.NewReader(`{"context":{}}`))
		assert.True(t, IsOutcomeUnknown(err), "import, %d: %v", status, err)
		_, err = c.Get(ctx, "", "k", GetOptions{})
		assert.False(t, IsOutcomeUnknown(err), "get, %d: %v", status, err)
	}
	c, _ := fake(t, http.StatusBadGateway, `{"error":{"code":"bad_request","message":"m"}}`)
	_, err := c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	assert.False(t, IsOutcomeUnknown(err), "ctxd's own error says what happened: %v", err)
	c, _ = fake(t, http.StatusServiceUnavailable, `{"error":{"code":"unavailable","message":"store closed"}}`)
	_, err = c.Put(ctx, "", "k", json.RawMessage(`1`), PutOptions{})
	assert.False(t, IsOutcomeUnknown(err), "ctxd's unavailable: nothing applied: %v", err)
}

// noServer returns a client of a loopback port nobody listens on.
func noServer(t *testing.T) *Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c, err := New("http://" + addr)
	require.NoError(t, err)
	return c
}

// canceled returns a context that is canceled already.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestConnectionError(t *testing.T) {
	c := noServer(t)
	_, err := c.Get(context.Background(), "", "k", GetOptions{})
	require.Error(t, err)
	assert.True(t, IsConnectionError(err), "%v", err)
	assert.False(t, IsNotFound(err))
	var ue *url.Error
	assert.True(t, errors.As(err, &ue))
	var oe *net.OpError
	assert.True(t, errors.As(err, &oe))

	_, err = c.Status(canceled())
	require.Error(t, err)
	assert.False(t, IsConnectionError(err), "a canceled context is not a connection error")
	assert.ErrorIs(t, err, context.Canceled)
}

func TestListAllFollowsCursor(t *testing.T) {
	var afters []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after := r.URL.Query().Get("after")
		afters = append(afters, after)
		switch after {
		case "":
			_, _ = io.WriteString(w, `{"keys":[{"key":"a"},{"key":"b"}],"next":"b"}`)
		case "b":
			_, _ = io.WriteString(w, `{"keys":[{"key":"c"}]}`)
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	require.NoError(t, err)
	recs, err := c.ListAll(context.Background(), "", "")
	require.NoError(t, err)
	var keys []string
	for _, r := range recs {
		keys = append(keys, r.Key)
	}
	assert.Equal(t, []string{"a", "b", "c"}, keys)
	assert.Equal(t, []string{"", "b"}, afters)
}

// WithHTTPClient(nil) is the default client: it panicked at the first call.
func TestWithNilHTTPClientIsTheDefault(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ns":"default","key":"k","value":1,"version":1}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, WithHTTPClient(nil))
	require.NoError(t, err)
	rec, err := c.Get(context.Background(), "", "k", GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Version)
}

// closeCounter is a reader that counts its Close calls.
type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

// Import never closes the caller's reader: net/http closed it on a client
// of one server (a request's body that is an io.Closer), and a file the
// caller went on reading failed.
func TestImportLeavesTheReaderOpen(t *testing.T) {
	c, s := fake(t, http.StatusOK, `{"ns":"default","imported":0,"skipped_expired":0,"revision":1}`)
	r := &closeCounter{Reader: strings.NewReader(`{"context":{}}`)}
	_, err := c.Import(context.Background(), "", r)
	require.NoError(t, err)
	assert.Equal(t, `{"context":{}}`, s.Body)
	assert.Zero(t, r.closed, "Import closed the caller's reader")

	f, err := os.CreateTemp(t.TempDir(), "dump")
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteString(`{"context":{}}`)
	require.NoError(t, err)
	_, err = f.Seek(0, io.SeekStart)
	require.NoError(t, err)
	_, err = c.Import(context.Background(), "", f)
	require.NoError(t, err)
	_, err = f.Seek(0, io.SeekStart)
	require.NoError(t, err, "the file is still open")
	got, err := io.ReadAll(f)
	require.NoError(t, err)
	assert.Equal(t, `{"context":{}}`, string(got))
}
