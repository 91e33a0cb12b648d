package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/framework0/ctxd"
)

// Watch event types.
const (
	// EventChange is one committed change (the server's context_updated).
	EventChange = "context_updated"
	// EventReset says that state read before it is stale: the database
	// was replaced by a restore, or it never had the revision Watch
	// resumed from (FromRev, or the last change before a reconnection:
	// the server was restored from an older backup, or lost its data, or
	// is another deployment). Re-read the state; changes continue after
	// Rev.
	EventReset = "reset"
)

// WatchEvent is what Watch hands to its callback: a change, or a reset.
type WatchEvent struct {
	// Type is EventChange or EventReset.
	Type string `json:"type"`
	// Rev is the change's revision; for a reset, the revision changes
	// continue after.
	Rev uint64 `json:"rev"`
	// Index and Count are set when the change shares its revision with
	// others (on etcd, the changes of one transaction): its place among
	// them (from 0) and how many there are. To resume a later Watch
	// right after this change, pass FromRev = Rev and FromIndex =
	// Index+1 (when Index+1 < Count; else FromRev = Rev alone).
	Index     int    `json:"index,omitempty"`
	Count     int    `json:"count,omitempty"`
	Namespace string `json:"ns,omitempty"`
	Key       string `json:"key,omitempty"`
	// Op is "put" or "delete".
	Op string `json:"op,omitempty"`
	// Value is the value after the change; null for a delete.
	Value   json.RawMessage `json:"value,omitempty"`
	Version uint64          `json:"version,omitempty"`
	Who     string          `json:"who,omitempty"`
	// Timestamp is when the change was committed.
	Timestamp time.Time `json:"timestamp,omitzero"` // a reset has none
	// ExpiresAt is the deadline a put set (zero: none); Expired marks the
	// delete that expired a key (its Who is "ctxd:ttl").
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Expired   bool      `json:"expired,omitempty"`
	// Message explains a reset.
	Message string `json:"message,omitempty"`
}

// MarshalJSON writes the event as the server's frames have it: index
// whenever count is there, 0 included (omitempty alone dropped the first
// change of every transaction's index). It leaves <, > and & as they are
// (the encoder that calls it escapes them if it is set to: json.Marshal
// does, an Encoder with SetEscapeHTML(false) does not); escaped here, no
// encoder could print the value as stored.
func (e WatchEvent) MarshalJSON() ([]byte, error) {
	type plain WatchEvent // without this method
	var index *int
	if e.Count > 0 {
		index = &e.Index
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(struct {
		plain
		Index *int `json:"index,omitempty"` // the shallower field wins
	}{plain(e), index}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// WatchOptions select what Watch follows and how it reconnects.
type WatchOptions struct {
	// Namespaces to watch; none means "default", "*" means every namespace.
	Namespaces []string
	// Prefix keeps only keys that start with it.
	Prefix string
	// FromRev, when set, starts with every change after that revision (0:
	// the whole retained history, from the oldest change compaction kept);
	// nil starts with the changes from now.
	FromRev *uint64
	// FromIndex, with FromRev, resumes inside that revision: the changes
	// of it with an Index below FromIndex were handled already (pass the
	// last one's Index+1). 0: the whole revision was. Without FromRev,
	// Watch refuses it at once (an error matching ctxd.ErrInvalid).
	FromIndex int
	// MinBackoff and MaxBackoff bound the wait before a reconnection to
	// an instance; it doubles from MinBackoff after each failed attempt
	// on it. Defaults 100ms, 5s. An instance that refused the connection
	// and named a wait (429 or 503 with Retry-After, in seconds or as an
	// HTTP date: a rate limit, websocket.max_clients) is not tried again
	// before that wait has passed, up to maxRetryAfter (a minute) or
	// MaxBackoff when longer: a header asking for hours costs a minute.
	// With several instances, each has its own wait: the next one is
	// tried at once when its own wait is over (or it has none), and when
	// every one is waited for, the one due first is tried then (an
	// unreachable instance after its backoff, while another's Retry-After
	// runs; with every one refusing, after the shortest Retry-After).
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout is how long a connection may stay silent (no frame and
	// no ping from the server) before it is taken for dead: Watch then
	// reconnects, to the next instance of a client of several. Default
	// 2m; keep it above the server's websocket.ping_interval (30s).
	IdleTimeout time.Duration
	// DialTimeout bounds each connection attempt, the WebSocket handshake
	// included (the server may read the changes to resume from first).
	// Default 10s. The client's connection timeout (WithConnectTimeout)
	// bounds the TCP connection within it, as for the REST calls.
	DialTimeout time.Duration
	// OnReconnect, when set, is called before each wait to reconnect,
	// with why the connection ended (for a client of several instances,
	// its message names the instance) and how long the wait is.
	OnReconnect func(err error, wait time.Duration)
	// OnConnect, when set, is called each time the server accepted a
	// connection, with the revision the changes that follow come after.
	OnConnect func(rev uint64)
}

// Watch streams the changes selected by opts to fn, in revision order,
// until ctx is done (it then returns nil), fn returns an error (returned
// as is, even when fn ended ctx too), or the server answers something
// that a retry cannot fix: a refusal (an *APIError, e.g. 400 or 403), or
// changes that were compacted away (an *APIError with CodeCompacted,
// which errors.Is matches with ctxd.ErrCompacted: re-read the state and
// watch again from there).
//
// When the connection drops (a server restart, a network failure, the
// server closing a client that fell behind), Watch reconnects with backoff
// and resumes after the last revision it handed to fn, so fn sees every
// change once: no gap, no duplicate. A client of several instances (New)
// reconnects to the next one when its instance cannot be reached or
// refuses the connection, and resumes there the same way. The first
// connection is not retried: if it fails (on every instance), Watch
// returns the error, the last instance's, its message naming why each one
// before it failed too (IsConnectionError tells a server that is not
// there).
func (c *Client) Watch(ctx context.Context, opts WatchOptions, fn func(WatchEvent) error) error {
	if opts.FromIndex != 0 && opts.FromRev == nil {
		// The server refuses it (400): say so before connecting.
		return fmt.Errorf("watch: %w", ctxd.Invalidf("FromIndex needs FromRev: it is a place inside that revision"))
	}
	opts = opts.withDefaults()
	w := &watcher{c: c, opts: opts, fn: fn, retry: make([]instanceRetry, len(c.servers))}
	if opts.FromRev != nil {
		w.pos, w.part, w.havePos = *opts.FromRev, max(opts.FromIndex, 0), true
	}
	// refused counts the instances in a row that could not be reached or
	// refused the first connection; tried says why each of them failed,
	// for the error of a first connection that fails on every instance
	// (movedOn).
	refused := 0
	var tried []string
	idx := int(c.preferred.Load())
	for everConnected := false; ; {
		connected, err := w.session(ctx, idx)
		// Before done: fn may have ended ctx itself, and its error is
		// returned as is all the same.
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if done(ctx) {
			return nil
		}
		if connected {
			everConnected, refused, tried = true, 0, nil
		} else if !everConnected {
			if refused++; refused == len(c.servers) || !watchFailover(err) {
				return movedOn(err, c.servers[idx], tried)
			}
			tried = append(tried, named(c.servers[idx], err))
		}
		now := time.Now()
		w.failed(idx, now, connected, err)
		var wait time.Duration
		ended := idx
		if (connected || w.resumeNow) && !wentSilent(err) {
			// It served: the same instance again, once its wait is over
			// (none for a resume the server asked for).
			wait = max(w.retry[idx].due.Sub(now), 0)
		} else {
			idx, wait = w.next(now)
		}
		w.resumeNow = false
		if opts.OnReconnect != nil {
			if len(c.servers) > 1 && err != nil {
				// Which instance ended it, or refused.
				err = &triedError{err: err, base: c.servers[ended]}
			}
			opts.OnReconnect(err, wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// instanceRetry is when a Watch may connect to an instance again.
type instanceRetry struct {
	// due is the time of the next attempt: zero while it has not failed.
	due time.Time
	// backoff is its wait after its next failure, doubling from
	// MinBackoff with each failure in a row (0: MinBackoff).
	backoff time.Duration
}

// failed sets when instance idx, whose session ended at now with err
// (connected: after the server accepted it), may be tried again: after
// MinBackoff once it served (none for a resume the server asked for);
// else after its backoff, which doubles, and not before the wait its
// refusal named (Retry-After), up to maxRetryAfter or MaxBackoff when
// longer.
func (w *watcher) failed(idx int, now time.Time, connected bool, err error) {
	r := &w.retry[idx]
	if connected || r.backoff == 0 {
		r.backoff = w.opts.MinBackoff
	}
	var wait time.Duration
	switch {
	case w.resumeNow:
	case connected:
		wait = jitter(r.backoff)
	default:
		wait = max(jitter(r.backoff), min(asked(err), max(w.opts.MaxBackoff, maxRetryAfter)))
		r.backoff = min(2*r.backoff, w.opts.MaxBackoff)
	}
	r.due = now.Add(wait)
}

// next is the instance to try after one failed to connect, and the wait
// before: the one due first, from the preferred instance on (the one
// after the instance that failed), so that each is tried in turn and at
// once while it is due, and a wait for one that named it (Retry-After)
// does not hold back the others. With every instance waited for, the
// wait is the shortest: an unreachable instance's backoff, or the
// shortest Retry-After.
func (w *watcher) next(now time.Time) (int, time.Duration) {
	at := func(idx int) time.Time { // a time passed is now: due
		if d := w.retry[idx].due; d.After(now) {
			return d
		}
		return now
	}
	first := int(w.c.preferred.Load())
	best := first
	for i := range w.retry {
		if idx := (first + i) % len(w.retry); at(idx).Before(at(best)) {
			best = idx
		}
	}
	return best, at(best).Sub(now)
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	return o
}

// maxRetryAfter bounds the wait a refusal's Retry-After asks of a Watch
// (WatchOptions.MinBackoff): ctxd asks for seconds (5 at
// websocket.max_clients; http.rate_limit's wait for a token, which a very
// low limit makes long), and a proxy's header, or a hostile one, asking
// for hours would stall the watch that long. Trying again after a minute
// costs one refused handshake a minute.
const maxRetryAfter = time.Minute

// asked is the wait err's refusal named (APIError.RetryAfter), 0 for none.
func asked(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// jitter spreads reconnections of many clients: d ± 20%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d + time.Duration((rand.Float64()-0.5)*0.4*float64(d))
}

// wentSilent reports whether a session ended because nothing came for
// IdleTimeout, not even the server's pings: the read's deadline passed.
func wentSilent(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// done reports whether ctx is done or past its deadline: a connection
// bounded by the deadline can time out a moment before ctx's own timer
// marks it done, and Watch ending at its deadline returns nil, not that.
func done(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// fatalError ends Watch: retrying cannot help.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// watcher is one Watch call's state across connections.
type watcher struct {
	c    *Client
	opts WatchOptions
	fn   func(WatchEvent) error
	// pos is the revision to resume after: the last change handed to fn,
	// or the revision the server started from. part, when not 0, says
	// only the changes of pos with an index below it were handed to fn
	// (pos is then a revision of several changes, cut between frames or
	// by fn's error): the resume point is (pos, part), from_index.
	pos     uint64
	part    int
	havePos bool
	// floor is pos when the current frame arrived.
	floor     uint64
	haveFloor bool
	// resumeNow skips the backoff: the server closed the connection on
	// purpose (lagged) and named where to resume.
	resumeNow bool
	// retry is, for each instance of the client (by index), when it may
	// be tried again.
	retry []instanceRetry
}

// watchFrame is any frame from the server, decoded loosely.
type watchFrame struct {
	WatchEvent
	Code              string            `json:"code"`
	FromRev           *uint64           `json:"from_rev"`
	FromIndex         int               `json:"from_index"`
	CompactedRevision uint64            `json:"compacted_revision"`
	Messages          []json.RawMessage `json:"messages"`
}

// session runs one connection, to the instance of index idx. connected
// reports whether the server accepted it.
func (w *watcher) session(ctx context.Context, idx int) (connected bool, err error) {
	base := w.c.servers[idx]
	defer func() {
		// An instance that could not be reached or refused, or that went
		// silent past IdleTimeout (paused, or a network that holds its
		// packets): the next instance, for this watch and the client's
		// requests. Trying the silent one first again cost DialTimeout.
		// A watch its caller ended says nothing of the instance.
		if done(ctx) {
			return
		}
		if (!connected && watchFailover(err)) || wentSilent(err) {
			w.c.leave(idx)
		}
	}()
	u, err := w.url(base)
	if err != nil {
		return false, &fatalError{err}
	}
	dctx, cancel := context.WithTimeout(ctx, w.opts.DialTimeout)
	defer cancel()
	// What Watch takes of the client's HTTP transport (WithHTTPClient):
	// its TLS configuration, dial (bounded by WithConnectTimeout) and
	// proxy, when it is net/http's; the token is authHeader's.
	d := websocket.Dialer{HandshakeTimeout: w.opts.DialTimeout, Proxy: http.ProxyFromEnvironment,
		TLSClientConfig: w.c.watchTLSConfig()}
	dial := (&net.Dialer{}).DialContext
	if tr := w.c.transport(); tr != nil {
		d.Proxy = tr.Proxy // nil included: no proxy, as for the REST calls
		if tr.DialContext != nil {
			dial = tr.DialContext
		}
	}
	// The websocket library honours only dctx's deadline once the TCP
	// connection is up: a cancel during the TLS or HTTP handshake (a
	// server that accepts and does not answer) waited out DialTimeout.
	// Closing the connection when dctx ends stops the handshake at once.
	var keep func() bool
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err == nil {
			keep = context.AfterFunc(dctx, func() { nc.Close() })
		}
		return nc, err
	}
	conn, resp, err := d.DialContext(dctx, u, w.c.authHeader())
	if keep != nil && !keep() {
		// dctx ended (the caller, or DialTimeout) and closed the
		// connection: say that, not the closed connection's error.
		if conn != nil {
			conn.Close()
		}
		if resp != nil {
			resp.Body.Close()
		}
		resp, err = nil, dctx.Err()
	}
	cancel()
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				ae := decodeError(resp)
				// Too many clients or shutting down, or a proxy in
				// front of the instance that could not reach it (a
				// load balancer's 502 while the instance restarts):
				// try again later, or the next instance.
				if watchFailover(ae) {
					return false, ae
				}
				return false, &fatalError{ae}
			}
		}
		// Make it a *url.Error, as the REST calls' network errors are, so
		// that IsConnectionError recognizes it.
		return false, &url.Error{Op: "GET", URL: u, Err: err}
	}
	defer conn.Close()
	// Unblock the read when ctx is done.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	extend := func() { _ = conn.SetReadDeadline(time.Now().Add(w.opts.IdleTimeout)) }
	extend()
	conn.SetPingHandler(func(data string) error {
		extend()
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})

	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return connected, fmt.Errorf("watch: %w", err)
		}
		extend()
		var f watchFrame
		if err := json.Unmarshal(data, &f); err != nil {
			return connected, fmt.Errorf("watch: bad frame from the server: %w", err)
		}
		if f.Type == "subscribed" {
			connected = true
			if !w.havePos {
				w.pos, w.part, w.havePos = f.Rev, f.Index, true // subscribed's index: where the changes start
			}
			if w.opts.OnConnect != nil {
				w.opts.OnConnect(w.pos)
			}
			continue
		}
		// A change at or below the position before this frame was handed
		// to fn already; several changes of one frame may share a revision
		// (on etcd, a transaction's), so the frame's own are never dropped.
		w.floor, w.haveFloor = w.pos, w.havePos
		if err := w.handle(&f); err != nil {
			return connected, err
		}
		for _, raw := range f.Messages {
			var m watchFrame
			if err := json.Unmarshal(raw, &m); err != nil {
				return connected, fmt.Errorf("watch: bad frame from the server: %w", err)
			}
			if err := w.handle(&m); err != nil {
				return connected, err
			}
		}
	}
}

// handle acts on one message. A change that was handed to fn already is
// dropped, so that fn never sees one twice: one of a revision of several
// changes by its place (index), one alone in its revision when it is at
// or below floor (the position before its frame; a server that sends no
// index also sends a revision's changes in one frame, so floor keeps
// them all). The position then names the change handed to fn last, with
// its index inside a revision of several, so that the resume misses
// nothing (from_index).
func (w *watcher) handle(f *watchFrame) error {
	switch f.Type {
	case EventChange:
		if f.Count > 0 {
			if w.havePos && (f.Rev < w.pos || f.Rev == w.pos && (w.part == 0 || f.Index < w.part)) {
				return nil
			}
		} else if w.haveFloor && f.Rev <= w.floor {
			return nil
		}
		if err := w.fn(f.WatchEvent); err != nil {
			return &fatalError{err}
		}
		w.pos, w.part, w.havePos = f.Rev, 0, true
		if f.Count > 0 && f.Index+1 < f.Count {
			w.part = f.Index + 1
		}
	case EventReset:
		if err := w.fn(f.WatchEvent); err != nil {
			return &fatalError{err}
		}
		w.pos, w.part, w.havePos = f.Rev, 0, true
	case "compacted":
		return &fatalError{&APIError{
			Status: http.StatusGone, Code: CodeCompacted, Message: f.Message,
			CompactedRevision: f.CompactedRevision,
		}}
	case "error":
		if f.Code == "lagged" && f.FromRev != nil {
			// Where the server stopped, if ahead of the last change
			// handed to fn (a part of 0 is the whole revision).
			from, part := *f.FromRev, f.FromIndex
			if !w.havePos || from > w.pos || from == w.pos && w.part != 0 && (part == 0 || part > w.part) {
				w.pos, w.part, w.havePos = from, part, true
			}
			w.resumeNow = true
			return fmt.Errorf("watch: the server closed the connection: %s", f.Message)
		}
		if f.Code == ctxd.CodeTokenRevoked {
			// A reload of the tokens file removed the token, or changed
			// its rights: reconnect at once with it. A removed token's
			// handshake is then refused (401, which ends Watch), a
			// changed one goes on with its new rights, as the README
			// says, where Watch ended for both.
			w.resumeNow = true
			return fmt.Errorf("watch: %w", &APIError{Status: frameStatus(f.Code), Code: f.Code, Message: f.Message})
		}
		return &fatalError{&APIError{Status: frameStatus(f.Code), Code: f.Code, Message: f.Message}}
	}
	// Other messages (context_dumped, answers) do not concern Watch.
	return nil
}

// frameStatus is the HTTP status an error frame's code stands for, so that
// IsUnauthorized and the like judge the frame as the answer it is: a
// revoked token is a 401, as the same token's next request gets.
func frameStatus(code string) int {
	if code == ctxd.CodeTokenRevoked {
		return http.StatusUnauthorized
	}
	return ctxd.StatusOf(code)
}

// url is the WebSocket URL of the instance at base for the current
// position.
func (w *watcher) url(base string) (string, error) {
	u, err := url.Parse(base + "/v1/watch")
	if err != nil {
		return "", fmt.Errorf("watch: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	q := params("batch", "true", "prefix", w.opts.Prefix)
	for _, ns := range w.opts.Namespaces {
		q.Add("ns", ns)
	}
	if w.havePos {
		q.Set("from_rev", strconv.FormatUint(w.pos, 10))
		if w.part > 0 {
			q.Set("from_index", strconv.Itoa(w.part))
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// String renders a change as "rev ns/key op value", for logs.
func (ev WatchEvent) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", ev.Rev, ev.Type)
	if ev.Type == EventChange {
		fmt.Fprintf(&b, " %s/%s %s %s", ev.Namespace, ev.Key, ev.Op, bytes.TrimSpace(ev.Value))
	}
	return b.String()
}
