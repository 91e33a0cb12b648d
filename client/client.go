package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/framework0/ctxd"
)

// Types shared with the server: their JSON is the wire format.
type (
	// Record is a key's state, as PUT, GET and DELETE return it.
	Record = ctxd.Record
	// ListPage is one page of keys; Next is the cursor for the following page.
	ListPage = ctxd.ListPage
	// Namespace is a namespace and its number of keys.
	Namespace = ctxd.Namespace
	// TxnResult is the outcome of a transaction: its revision and one record per op.
	TxnResult = ctxd.TxnResult
	// Change is one committed change of a key, as history returns it.
	Change = ctxd.Change
	// HistoryPage is one page of a key's history, newest first.
	HistoryPage = ctxd.HistoryPage
	// Status is the server's summary, from GET /v1/status.
	Status = ctxd.ServerStatus
	// TxnOp is one write of a transaction; a put's TTL is TxnTTL's.
	TxnOp = ctxd.TxnOp
	// TokenInfo is what the client's token may do, from GET /v1/auth/self.
	TokenInfo = ctxd.TokenInfo
)

// Client talks to a ctxd server, or to several instances of one deployment
// (New). It is safe for concurrent use.
type Client struct {
	// servers are the base URLs of the instances (scheme://host[:port]
	// [/prefix], without a trailing slash); requests go to
	// servers[preferred] first (failover.go).
	servers   []string
	preferred atomic.Int32
	hc        *http.Client
	// connectTimeout bounds each connection attempt (WithConnectTimeout);
	// 0: the transport's own.
	connectTimeout time.Duration
	// readTryTimeout bounds a read's wait for an answer from an instance
	// when another could take it (WithReadTryTimeout); 0: none.
	readTryTimeout time.Duration
	readTrySet     bool
	// preferredURL is WithPreferred's instance.
	preferredURL string
	who          string
	// token is sent as a bearer token (WithToken, auth.go).
	token string
	// tlsConfig is WithTLSConfig's: the REST calls' (in ownTransport)
	// and Watch's.
	tlsConfig *tls.Config
	// ownTransport is the copy of the HTTP client's transport that the
	// client made for itself (WithConnectTimeout, WithTLSConfig); nil
	// when it sends through the one it was given or net/http's default.
	// CloseIdleConnections closes its idle connections.
	ownTransport *http.Transport
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc (for
// timeouts, TLS, or a test transport). The default, and what a nil hc
// means, is http.DefaultClient.
//
// Watch cannot send through hc: a WebSocket needs the connection itself.
// When hc's transport is an *http.Transport, Watch uses its
// TLSClientConfig, DialContext and Proxy (nil: no proxy), and nothing
// else of hc (its Timeout, CheckRedirect, Jar, DialTLSContext...). When it
// is another RoundTripper (a wrapper such as otelhttp's or a logger), Watch
// sees none of its settings: it dials directly, with the proxy of the
// environment (http.ProxyFromEnvironment) and the TLS configuration of
// WithTLSConfig, or the system's. Give a private CA or a client
// certificate with WithTLSConfig then, for Watch as for your transport.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc == nil {
			hc = http.DefaultClient
		}
		c.hc = hc
	}
}

// WithTLSConfig sets the TLS configuration (a private CA's RootCAs, a
// client certificate) of the client's connections, REST and Watch alike.
// The REST calls use a copy of the HTTP client's transport with it, when
// that is an *http.Transport (http.DefaultClient's included); through
// another RoundTripper (see WithHTTPClient), which the client cannot
// change, they use that RoundTripper's own settings, and cfg is Watch's
// only. The client keeps a copy of cfg.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) { c.tlsConfig = cfg.Clone() }
}

// WithWho sets the "who" recorded on changes made through the client when a
// call does not give its own. Without it the server records its default.
func WithWho(who string) Option {
	return func(c *Client) { c.who = who }
}

// WithConnectTimeout bounds each attempt to connect to a server, REST and
// Watch alike. A client of several instances (New) tries the next one
// after it: an instance whose machine is gone (its address silent, where
// a stopped process answers at once) then costs d, not the whole
// request's time. Its default there is DefaultConnectTimeout, unless
// WithHTTPClient gave a client of your own (whose transport's dial timeout
// then applies: http.DefaultTransport's is 30s). The client's transport
// must be an *http.Transport; the client uses a copy of it.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *Client) { c.connectTimeout = d }
}

// WithPreferred makes url, one of the instances New was given, the one
// requests go to first, instead of the first of the list: the instance
// that last took a request in an earlier process (the CLI remembers it
// between commands). A url not in the list is ignored.
func WithPreferred(url string) Option {
	return func(c *Client) { c.preferredURL = url }
}

// WithReadTryTimeout bounds how long a read (GET) waits for an instance's
// answer before it goes to the next instance of a client of several (New):
// a paused or hung instance, whose kernel still takes connections, then
// costs d, not the whole request's time. Default DefaultReadTryTimeout; 0
// or less turns it off. It bounds the wait for the answer's start, not
// the reading of a long one, and never a write, which is never sent
// twice. An export or a download (Export, ExportSnapshot,
// DownloadSnapshot, DownloadDump), whose answer starts only once the
// server has written the whole export (a large namespace takes longer
// than d), is not abandoned while its instance answers /healthz, asked
// after d/2 and again every d/2: only an instance that answers neither
// within d is passed, so the next one does not export it all again. Set
// d above the servers' slowest answer to another read: on etcd,
// etcd.request_timeout (5s by default).
func WithReadTryTimeout(d time.Duration) Option {
	return func(c *Client) { c.readTryTimeout = max(d, 0); c.readTrySet = true }
}

// DefaultReadTryTimeout is a read's wait for one instance of several
// (WithReadTryTimeout): twice etcd.request_timeout's default.
const DefaultReadTryTimeout = 10 * time.Second

// DefaultConnectTimeout is the connection timeout of a client of several
// instances that brings no HTTP client of its own (WithConnectTimeout).
const DefaultConnectTimeout = 5 * time.Second

// New returns a client for the server at serverURL, such as
// "http://127.0.0.1:8080".
//
// serverURL may list several instances of one deployment (ctxd instances
// on one etcd prefix), separated by commas:
// "http://10.0.0.1:8080,http://10.0.0.2:8080". Requests then go to one of
// them, and move to the next when one cannot take them: it cannot be
// reached, or it answers unavailable. A write moves only when it provably
// was not applied; one sent without an answer stays outcome unknown (see
// Put). Watch resumes on the next instance with no gap and no duplicate.
func New(serverURL string, opts ...Option) (*Client, error) {
	servers, err := parseServers(serverURL)
	if err != nil {
		return nil, err
	}
	c := &Client{servers: servers, hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	if !c.readTrySet {
		c.readTryTimeout = DefaultReadTryTimeout
	}
	if i := slices.Index(servers, strings.TrimRight(c.preferredURL, "/")); i >= 0 {
		c.preferred.Store(int32(i))
	}
	if c.connectTimeout == 0 && len(servers) > 1 && c.hc == http.DefaultClient {
		c.connectTimeout = DefaultConnectTimeout
	}
	if c.connectTimeout > 0 || c.tlsConfig != nil && c.transport() != nil {
		if err := c.makeOwnTransport(len(servers) > 1); err != nil {
			return nil, err
		}
	}
	if c.token != "" {
		c.hc = withBearer(c.hc, c.token, servers)
	}
	return c, nil
}

// CloseIdleConnections closes the idle connections of the transport the
// client made for itself: a copy of its HTTP client's transport, made for
// WithConnectTimeout (which a client of several instances has by default)
// or WithTLSConfig. Such a connection, and the goroutines that serve it,
// otherwise stays until its idle timeout (90s in a copy of
// http.DefaultTransport; IdleConnTimeout with several instances). Call it
// when done with the client, as a program that makes clients one after
// another must; calling it twice, or using the client after it (which
// connects again), is fine. It never closes the connections of the
// transport it was given (WithHTTPClient's, which you close) or of
// http.DefaultTransport, which others share; nor a Watch's connection,
// which is not idle and not the transport's.
func (c *Client) CloseIdleConnections() {
	if c.ownTransport != nil {
		c.ownTransport.CloseIdleConnections()
	}
}

// Expect returns a pointer to v, for the IfVersion fields: Expect(0) means
// "the key must not exist".
func Expect(v uint64) *uint64 { return &v }

// PutOptions are the optional parts of a put.
type PutOptions struct {
	// IfVersion, when set, makes the put apply only if the key's current
	// version is *IfVersion (0: the key must not exist); otherwise the put
	// fails with a conflict (see IsConflict).
	IfVersion *uint64
	// Who overrides the client's default who.
	Who string
	// TTL, when set, makes the key expire that long after the put (the
	// server rounds nothing: it must be within its limits.min_ttl and
	// limits.max_ttl); a put without TTL (0) makes the key permanent. A
	// negative TTL is refused like any out of range (ctxd.ErrInvalid),
	// never taken for none.
	TTL time.Duration
}

// Put sets ns/key to value, which must be valid JSON. An empty ns means
// "default".
//
// A write (Put, Delete, Txn, Import) can end with its outcome unknown: the
// server answered outcome_unknown (it took the write, then the request's
// time ran out), or the request was sent in full and no answer came (the
// connection broke, ctx ended). The error then matches
// ctxd.ErrOutcomeUnknown (IsOutcomeUnknown): the write may or may not have
// applied; read the key to learn which before retrying. So does a write
// the server answered with success whose answer was then lost (cut off
// mid-body): it applied, but what it returned is not known. A write that
// was refused or never sent is not outcome unknown, and was not applied.
func (c *Client) Put(ctx context.Context, ns, key string, value json.RawMessage, opts PutOptions) (Record, error) {
	ns = orDefault(ns)
	return call[Record](ctx, c, fmt.Sprintf("put %s/%s", ns, key), request{
		method: http.MethodPut, path: keyPath(ns, key), query: params("who", c.whoOr(opts.Who), "ttl", ttlParam(opts.TTL)),
		ifVersion: opts.IfVersion, body: value, write: true,
	})
}

// PatchType is the kind of a patch document (ctxd.MergePatch, a JSON
// Merge Patch, RFC 7396; ctxd.JSONPatch, a JSON Patch, RFC 6902).
type PatchType = ctxd.PatchType

// The patch types, named by their media types.
const (
	MergePatch = ctxd.MergePatch
	JSONPatch  = ctxd.JSONPatch
)

// PatchOptions are the optional parts of a patch.
type PatchOptions struct {
	// IfVersion, when set, makes the patch apply only at that version.
	IfVersion *uint64
	// Who overrides the client's default who.
	Who string
}

// Patch changes part of ns/key's value: the server applies the patch
// document to the value as it is when the write commits, so concurrent
// patches of different parts never lose each other's changes. A JSON
// Patch whose "test" fails is an *APIError with CodePatchTestFailed, one
// that cannot apply CodePatchFailed; both name the operation and its
// pointer (APIError.OpIndex, Pointer) and change nothing. An empty typ
// is MergePatch.
func (c *Client) Patch(ctx context.Context, ns, key string, typ PatchType, doc json.RawMessage, opts PatchOptions) (Record, error) {
	ns = orDefault(ns)
	if typ == "" {
		typ = MergePatch
	}
	return call[Record](ctx, c, fmt.Sprintf("patch %s/%s", ns, key), request{
		method: http.MethodPatch, path: keyPath(ns, key), query: params("who", c.whoOr(opts.Who)),
		ifVersion: opts.IfVersion, body: doc, contentType: string(typ), write: true,
	})
}

// KeepAliveOptions are the optional parts of a keepalive.
type KeepAliveOptions struct {
	// IfVersion, when set, makes the keepalive apply only at that version.
	IfVersion *uint64
}

// KeepAlive moves the deadline of ns/key, which must have been put with a
// TTL, to ttl from now, without a new version, revision or feed event.
func (c *Client) KeepAlive(ctx context.Context, ns, key string, ttl time.Duration, opts KeepAliveOptions) (Record, error) {
	ns = orDefault(ns)
	return call[Record](ctx, c, fmt.Sprintf("keepalive %s/%s", ns, key), request{
		method: http.MethodPost, path: keyPath(ns, key) + "/keepalive", query: params("ttl", ttlParam(ttl)),
		ifVersion: opts.IfVersion, write: true,
	})
}

// ttlParam is a TTL as a query value, "" (left out) when 0. A negative
// one is sent as it is, for the server to refuse (400): left out, it
// would make the key permanent (a deadline computed as
// deadline.Sub(now) that has passed).
func ttlParam(ttl time.Duration) string {
	if ttl == 0 {
		return ""
	}
	return ttl.String()
}

// GetOptions are the optional parts of a get.
type GetOptions struct {
	// Rev, when non-zero, reads the key as it was at that revision.
	Rev uint64
}

// Get returns ns/key's current record, or its record at opts.Rev.
func (c *Client) Get(ctx context.Context, ns, key string, opts GetOptions) (Record, error) {
	ns = orDefault(ns)
	q := params("rev", numParam(opts.Rev))
	return call[Record](ctx, c, fmt.Sprintf("get %s/%s", ns, key), request{method: http.MethodGet, path: keyPath(ns, key), query: q})
}

// DeleteOptions are the optional parts of a delete.
type DeleteOptions struct {
	// IfVersion, when set, makes the delete apply only at that version.
	IfVersion *uint64
	// Who overrides the client's default who.
	Who string
}

// Delete removes ns/key. The record returned holds the deleted version and
// the delete's revision, with a null value.
func (c *Client) Delete(ctx context.Context, ns, key string, opts DeleteOptions) (Record, error) {
	ns = orDefault(ns)
	return call[Record](ctx, c, fmt.Sprintf("delete %s/%s", ns, key), request{
		method: http.MethodDelete, path: keyPath(ns, key), query: params("who", c.whoOr(opts.Who)),
		ifVersion: opts.IfVersion, write: true,
	})
}

// ListOptions select a page of keys.
type ListOptions struct {
	// Prefix keeps only keys that start with it.
	Prefix string
	// After is the cursor: the Next of the previous page.
	After string
	// Limit is the page size (0: the server's default).
	Limit int
	// NoValues lists the records without their values (Record.Value is
	// nil): a listing of keys with large values stays small.
	NoValues bool
}

// List returns one page of ns's keys in key order.
func (c *Client) List(ctx context.Context, ns string, opts ListOptions) (ListPage, error) {
	ns = orDefault(ns)
	q := params("prefix", opts.Prefix, "after", opts.After, "limit", numParam(opts.Limit))
	if opts.NoValues {
		q.Set("values", "false")
	}
	return call[ListPage](ctx, c, "list "+ns, request{method: http.MethodGet, path: nsPath(ns) + "/keys", query: q})
}

// Count returns the number of ns's keys that start with prefix; the
// server reads no value to count them.
func (c *Client) Count(ctx context.Context, ns, prefix string) (uint64, error) {
	ns = orDefault(ns)
	q := params("prefix", prefix, "count", "true")
	out, err := call[struct {
		Count uint64 `json:"count"`
	}](ctx, c, "count "+ns, request{method: http.MethodGet, path: nsPath(ns) + "/keys", query: q})
	return out.Count, err
}

// ListAll returns every key of ns that starts with prefix, following the
// cursor page by page. The pages are read at different moments: a key
// written meanwhile may or may not appear.
func (c *Client) ListAll(ctx context.Context, ns, prefix string) ([]Record, error) {
	var all []Record
	opts := ListOptions{Prefix: prefix, Limit: ctxd.MaxListLimit}
	for {
		page, err := c.List(ctx, ns, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Records...)
		if page.Next == "" || page.Next == opts.After {
			return all, nil
		}
		opts.After = page.Next
	}
}

// HistoryOptions select a page of a key's history.
type HistoryOptions struct {
	// Before, when non-zero, returns only changes with a lower revision: the
	// Next of the previous page.
	Before uint64
	// Limit is the page size (0: the server's default).
	Limit int
}

// History returns a page of ns/key's changes, newest first.
func (c *Client) History(ctx context.Context, ns, key string, opts HistoryOptions) (HistoryPage, error) {
	ns = orDefault(ns)
	q := params("before", numParam(opts.Before), "limit", numParam(opts.Limit))
	return call[HistoryPage](ctx, c, fmt.Sprintf("history %s/%s", ns, key), request{method: http.MethodGet, path: keyPath(ns, key) + "/history", query: q})
}

// Namespaces returns every namespace with its number of keys.
func (c *Client) Namespaces(ctx context.Context) ([]Namespace, error) {
	out, err := call[struct {
		Namespaces []Namespace `json:"namespaces"`
	}](ctx, c, "namespaces", request{method: http.MethodGet, path: "/v1/ns"})
	return out.Namespaces, err
}

// TxnOptions are the optional parts of a transaction.
type TxnOptions struct {
	// Who overrides the client's default who.
	Who string
}

// TxnTTL is d as a put op's TTL (TxnOp.TTL, the wire's JSON: "1m30s"):
// the key expires that long after the transaction. 0 gives nil, no TTL:
// the put makes the key permanent. A negative d is sent as it is, for
// the server to refuse (ctxd.ErrInvalid), never taken for none.
func TxnTTL(d time.Duration) json.RawMessage {
	if d == 0 {
		return nil
	}
	return json.RawMessage(strconv.Quote(d.String()))
}

// Txn applies ops all or nothing: if one fails (a conflict, a bad key),
// nothing is written and the error says which. A put's TTL is TxnTTL's.
func (c *Client) Txn(ctx context.Context, ops []TxnOp, opts TxnOptions) (TxnResult, error) {
	body, err := json.Marshal(ctxd.TxnRequest{Who: c.whoOr(opts.Who), Ops: ops})
	if err != nil {
		return TxnResult{}, wrap("txn", err)
	}
	return call[TxnResult](ctx, c, "txn", request{method: http.MethodPost, path: "/v1/txn", body: body, write: true})
}

// Status returns the server's summary.
func (c *Client) Status(ctx context.Context) (Status, error) {
	st, _, err := c.StatusFrom(ctx)
	return st, err
}

// StatusFrom is Status, with the base URL of the instance that answered
// it (one of Servers): with several instances (New), the status is that
// one's alone (its uptime, its clients, its read cache).
func (c *Client) StatusFrom(ctx context.Context) (Status, string, error) {
	var server string
	st, err := call[Status](ctx, c, "status", request{method: http.MethodGet, path: "/v1/status", answeredBy: &server})
	return st, server, err
}

// Health returns nil when the server answers /healthz with 200: its
// process serves. With several instances (New), nil when one of them
// does: they are asked as any read is, from the preferred one on, until
// one answers 200; the error, when none does, names each instance's
// answer. Instances tells each instance's state.
func (c *Client) Health(ctx context.Context) error {
	if err := c.do(ctx, request{method: http.MethodGet, path: "/healthz"}); err != nil {
		return wrap("health", err)
	}
	return nil
}

// Ready returns nil when the server answers /readyz with 200 (it is ready to
// serve requests), and an *APIError with status 503 when it is not. With
// several instances (New), nil when one of them is ready: the client can
// serve requests, through that one. They are asked as any read is, from
// the preferred one on, until one answers 200; when none does, the error
// is the last one's, its message naming each instance's answer. A
// deployment with some instances down is ready: Instances says which.
func (c *Client) Ready(ctx context.Context) error {
	if err := c.do(ctx, request{method: http.MethodGet, path: "/readyz"}); err != nil {
		return wrap("ready", err)
	}
	return nil
}

// InstanceState is one instance's readiness, as Instances found it.
type InstanceState struct {
	// URL is the instance's base URL, as the client holds it (New).
	URL string
	// Err is nil when the instance answered /readyz with 200: it serves
	// requests. Otherwise it says why not: an *APIError of status 503
	// (its message says why: a failed store, a restore, an unreachable
	// etcd, a graceful stop under way), or no answer (IsConnectionError:
	// not running, unreachable, or no answer within the read try
	// timeout, WithReadTryTimeout).
	Err error
}

// Instances asks every instance of the client for /readyz, all at once,
// and returns their states in the order New was given them: what
// Health and Ready, which need one instance alone, do not tell. Each
// answer is bounded by ctx and, when set, the read try timeout
// (WithReadTryTimeout). It moves no preference.
func (c *Client) Instances(ctx context.Context) []InstanceState {
	out := make([]InstanceState, len(c.servers))
	var wg sync.WaitGroup
	for i, base := range c.servers {
		out[i].URL = base
		wg.Go(func() { out[i].Err = c.readyAt(ctx, base) })
	}
	wg.Wait()
	return out
}

// readyAt asks the instance at base for /readyz: nil for a 200.
func (c *Client) readyAt(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("build request: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, _, err := c.sendTry(req, base, false, true, false)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return nil
}

type request struct {
	method    string
	path      string // escaped
	query     url.Values
	ifVersion *uint64
	body      []byte
	// contentType is the body's type (default application/json).
	contentType string
	out         any // decoded from a 2xx body when non-nil
	// write marks a request that changes the server (keys, snapshots,
	// dumps, a restore): an error after it was sent in full is "outcome
	// unknown" (send, outcome.go), and no other instance is tried.
	write bool
	// answeredBy, when non-nil, is set to the base URL of the instance
	// whose 2xx answer was decoded.
	answeredBy *string
}

func (c *Client) do(ctx context.Context, r request) error {
	var server string // the instance of the last request built: the one that answered
	resp, err := c.exchange(func(base string) (*http.Request, error) {
		server = base
		u := base + r.path
		if len(r.query) > 0 {
			u += "?" + r.query.Encode()
		}
		var body io.Reader
		if r.body != nil {
			body = bytes.NewReader(r.body)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, body)
		if err != nil {
			// Not %w: a *url.Error from parsing must not read as "no answer".
			return nil, fmt.Errorf("build request: %v", err)
		}
		req.Header.Set("Accept", "application/json")
		if r.body != nil {
			ct := r.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
		}
		if r.ifVersion != nil {
			req.Header.Set("If-Match", strconv.Quote(strconv.FormatUint(*r.ifVersion, 10)))
		}
		return req, nil
	}, r.write, true, false)
	if err != nil {
		return err // a *url.Error: no answer (for a write sent in full, outcome unknown); or, after other instances, the last one's refusal
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.answerError(resp, r.write)
	}
	if r.out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := decodeAnswer(resp, r.out, r.write); err != nil {
		return err
	}
	if r.answeredBy != nil {
		*r.answeredBy = server
	}
	return nil
}

// decodeAnswer decodes a 2xx answer's JSON body into out. For a write, an
// answer cut off or garbled is successLost's: the write applied.
func decodeAnswer(resp *http.Response, out any, write bool) error {
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		err = fmt.Errorf("decode %d answer: %w", resp.StatusCode, err)
		if write {
			err = successLost(resp.StatusCode, err)
		}
		return err
	}
	return nil
}

// call sends r and decodes a 2xx answer into a T (r.out is set to it). An
// error that is not the server's answer is named by op (wrap), and comes
// with T's zero value.
func call[T any](ctx context.Context, c *Client, op string, r request) (T, error) {
	var out T
	r.out = &out
	if err := c.do(ctx, r); err != nil {
		var zero T
		return zero, wrap(op, err)
	}
	return out, nil
}

// whoOr is the who of a call: who, or the client's default (WithWho) when
// who is "".
func (c *Client) whoOr(who string) string {
	if who == "" {
		return c.who
	}
	return who
}

// params is the query of the name, value pairs kv, leaving out the pairs
// whose value is "": a parameter left out takes the server's default.
func params(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

// numParam is n as a query value, "" (left out) when n is not above 0.
func numParam[N int | uint64](n N) string {
	if n <= 0 {
		return ""
	}
	return strconv.FormatUint(uint64(n), 10)
}

// boolParam is "true" when b is set, "" (left out) otherwise.
func boolParam(b bool) string {
	if !b {
		return ""
	}
	return "true"
}

// wrap names the operation on an error that is not the server's answer: an
// *APIError already says what went wrong.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

func orDefault(ns string) string {
	if ns == "" {
		return ctxd.DefaultNamespace
	}
	return ns
}

func nsPath(ns string) string { return "/v1/ns/" + escapeSegment(ns) }

func keyPath(ns, key string) string { return nsPath(ns) + "/keys/" + escapeSegment(key) }

// escapeSegment escapes s as one path segment. Dots are escaped too when
// they make up the whole segment, so that "." and ".." stay keys instead of
// being read as relative paths.
func escapeSegment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}

// IsConnectionError reports whether err means the request got no answer from
// the server: the connection was refused or broke, the name did not resolve,
// or it timed out. A canceled context is not a connection error.
func IsConnectionError(err error) bool {
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Op == "parse" {
		return false
	}
	return !errors.Is(err, context.Canceled)
}
