package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/framework0/ctxd"
)

// A client may know several instances of one deployment (ctxd on etcd,
// New). It sends every request to its preferred instance, and moves to the
// next one only when the request provably did not take effect there:
//
//   - no connection was made (refused, unreachable, the dial timed out):
//     the request never left the client;
//   - the request was not written in full, or it is a read (GET): sending
//     it again changes nothing that the first attempt did; a read that
//     waited the read try timeout for an answer moves too (sendTry);
//   - the instance answered 503 unavailable: ctxd refuses a write with it
//     before the store applies anything (an instance closing, or one that
//     cannot reach etcd);
//   - a read was answered 502, 503 or 504 (ctxd's, or a proxy's in front
//     of the instance), whatever the answer's body, or however much of it
//     came;
//   - a read's 2xx answer was cut off (its instance died mid-answer),
//     but an export's or a download's, which is streamed to its writer.
//
// A write that was sent and got no answer, or that the server answered
// outcome_unknown, or a proxy 502, 503 or 504 (answerError), is never sent
// again: it may have been applied, and only the caller can tell whether
// to retry (IsOutcomeUnknown); the next request goes to the next
// instance, so that a hung one costs one write its deadline, not every
// write. The instance that took a request stays
// preferred, so a dead one costs one failed connection, not one per
// request.

// parseServers splits a comma-separated list of server URLs and checks
// each one.
func parseServers(list string) ([]string, error) {
	var servers []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil && strings.Contains(s, "@") {
			// A URL that does not parse cannot be redacted: its user
			// part may hold a password, which url.Error quotes too.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("client: bad server URL (not shown: it has an @, which may follow a password): %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("client: bad server URL %q: %w", s, err)
		}
		if u.User != nil {
			// Watch's WebSocket refused it, and printed the password in its
			// error; the server takes a token, not a password.
			return nil, fmt.Errorf("client: bad server URL %q: it must not hold a user or password: send a token instead (WithToken; ctxd --token)", u.Redacted())
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: bad server URL %q: want http://host:port or https://host:port", s)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("client: bad server URL %q: it must not have a query or fragment", s)
		}
		if p := u.Port(); p != "" {
			// Else a port of 99999 failed each request as if no server ran.
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("client: bad server URL %q: port %s is not 1 to 65535", s, p)
			}
		}
		base := strings.TrimRight(u.String(), "/")
		for _, seen := range servers {
			if seen == base {
				return nil, fmt.Errorf("client: server URL %q is listed twice", s)
			}
		}
		servers = append(servers, base)
	}
	return servers, nil
}

// IdleConnTimeout is how long a client of several instances keeps an
// idle connection, when it uses its own copy of the transport (it has a
// connection timeout, by default, or WithTLSConfig). An instance that
// stops gracefully serves on for its shutdown_drain, closing each
// connection after an answer; a connection the client closes itself
// within that time is never closed by the server under a request the
// client is sending on it, which would leave a write's outcome unknown.
const IdleConnTimeout = time.Second

// makeOwnTransport makes the client send through a copy of its HTTP
// client and transport, set up with its options: each connection attempt
// given at most connectTimeout (WithConnectTimeout, when set), the TLS
// configuration of WithTLSConfig, and for a client of several instances
// (several) idle connections kept at most IdleConnTimeout.
func (c *Client) makeOwnTransport(several bool) error {
	rt := c.hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	tr, ok := rt.(*http.Transport)
	if !ok {
		return fmt.Errorf("client: WithConnectTimeout needs an *http.Transport, not %T", rt)
	}
	tr = tr.Clone()
	if several && (tr.IdleConnTimeout <= 0 || tr.IdleConnTimeout > IdleConnTimeout) {
		tr.IdleConnTimeout = IdleConnTimeout
	}
	if c.tlsConfig != nil {
		// A copy: net/http adds "h2" to its transport's config, which
		// Watch's must not have (watchTLSConfig, auth.go).
		tr.TLSClientConfig = c.tlsConfig.Clone()
	}
	if d := c.connectTimeout; d > 0 {
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			// The dial's own deadline: a connection once made outlives it.
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return dial(ctx, network, addr)
		}
	}
	hc := *c.hc
	hc.Transport = tr
	c.hc, c.ownTransport = &hc, tr
	return nil
}

// Servers returns the base URLs of the instances the client knows, the
// preferred one (where the next request goes) first.
func (c *Client) Servers() []string {
	first := int(c.preferred.Load())
	out := make([]string, 0, len(c.servers))
	for i := range c.servers {
		out = append(out, c.servers[(first+i)%len(c.servers)])
	}
	return out
}

// leave makes the instance after failed the preferred one, unless another
// request moved the preference already.
func (c *Client) leave(failed int) { c.prefer(failed, failed+1) }

// prefer makes instance to (modulo their number) the preferred one if
// from still is: a request that began at from moves the preference only
// if no other request moved it meanwhile.
func (c *Client) prefer(from, to int) {
	if to %= len(c.servers); to != from {
		c.preferred.CompareAndSwap(int32(from), int32(to))
	}
}

// exchange sends the request build makes for an instance's base URL: to
// the preferred instance, then to the next ones while the request did not
// take effect (see the top of this file). replayable says build can make
// the request again with its whole body (a stream read once cannot be
// sent again once a connection took it); long, that it is a read whose
// answer may take long to start, an export's (sendTry). The answer may have any status:
// the caller decodes it; an error is the last instance's, with what the
// instances tried before it answered (movedOn), an answer of the last
// that could not take the request too (its *APIError, answerError).
func (c *Client) exchange(build func(base string) (*http.Request, error), write, replayable, long bool) (*http.Response, error) {
	first := int(c.preferred.Load())
	var tried []string // why each instance before this one did not take it
	for i := 0; ; i++ {
		idx := (first + i) % len(c.servers)
		req, err := build(c.servers[idx])
		if err != nil {
			return nil, err
		}
		last := i == len(c.servers)-1
		moves := !last && replayable && isRead(req.Method)
		resp, sent, err := c.sendTry(req, c.servers[idx], write, moves, long)
		if err == nil && replayable && isRead(req.Method) && !long && (moves || len(tried) > 0) &&
			resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			// Read here in full: an answer cut off (its instance died
			// mid-answer) moves to the next instance, as one that never
			// came does, and the last one's error names the others'.
			// (An export's, long, is streamed to its writer; an error
			// answer cut off is an *APIError that says so, decodeError.)
			resp, err = readWhole(resp)
		}
		last = last || req.Context().Err() != nil
		switch {
		case err != nil:
			if write && sent == written {
				// Not sent on (its outcome is unknown), but the next
				// request goes to the next instance: a hung one would
				// otherwise cost every write the caller's whole deadline.
				c.prefer(first, idx+1)
			}
			if last || !(sent == notConnected || replayable && (sent == notWritten || isRead(req.Method))) {
				return nil, movedOn(err, c.servers[idx], tried)
			}
			tried = append(tried, named(c.servers[idx], err))
		case !last && replayable && isRead(req.Method) && couldNotAnswer(resp.StatusCode):
			// A read the instance, or a proxy in front of it, could not
			// answer (whatever its body says, or however much of it
			// came): sent again, it changes nothing.
			tried = append(tried, named(c.servers[idx], decodeError(resp)))
			resp.Body.Close()
		case resp.StatusCode == http.StatusServiceUnavailable && !last && replayable:
			if resp, err = refusedBeforeApplying(resp, write); resp != nil || err != nil {
				// Not sent on (outcome_unknown: it may have applied),
				// but the next request goes to the next instance, as
				// after a write sent without answer: one whose every
				// write waits out its store's timeout would otherwise
				// cost every write that.
				c.prefer(first, idx+1)
				return resp, movedOn(err, c.servers[idx], tried)
			}
			tried = append(tried, c.servers[idx]+": 503 unavailable")
		default:
			next := idx
			if resp.Header.Get(ctxd.HeaderDraining) != "" || couldNotAnswer(resp.StatusCode) {
				// A good answer from an instance that is stopping: the
				// next requests go to the next instance before it
				// closes its connections (and resets new ones). A 503
				// (outcome_unknown to an import, whose body is read
				// once and not sent on), or a proxy's 502 or 504 to a
				// write (its outcome unknown, answerError): the next
				// request goes to the next instance, as above; a proxy
				// whose instance is gone would otherwise answer every
				// write so.
				next = idx + 1
			}
			c.prefer(first, next)
			if len(tried) > 0 && couldNotAnswer(resp.StatusCode) {
				// No instance took it: the last one's answer, naming
				// why each one before did not (it named none).
				defer resp.Body.Close()
				return nil, movedOn(c.answerError(resp, write), c.servers[idx], tried)
			}
			return resp, nil
		}
	}
}

// readWhole reads resp's body into memory: resp with that body, or the
// error of a body cut off.
func readWhole(resp *http.Response) (*http.Response, error) {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("its answer (%d) was cut off: %w", resp.StatusCode, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// sendTry is send; for a read that another instance could take
// (bounded), the instance must answer within the client's read try
// timeout (WithReadTryTimeout): a hung or paused one (its kernel still
// takes connections) then costs that long, not the caller's whole
// deadline. A body being read is not bounded: the deadline ends with the
// answer's headers.
//
// A long read (an export or a download, long set) is not abandoned while
// its instance is at work on it: ctxd writes a whole export to its spool
// before it sends the headers, which a large namespace makes take longer
// than the timeout, and the next instance would do it all again. When its
// answer has not started within half the timeout, sendTry asks the
// instance's /healthz (alive), within the other half, and again each half
// timeout while it waits: an instance that answers is alive, and the read
// waits on; one that does not (paused, hung) is passed, as a plain read's
// is, within the timeout.
func (c *Client) sendTry(req *http.Request, base string, write, bounded, long bool) (*http.Response, sendState, error) {
	if !bounded || c.readTryTimeout <= 0 {
		return c.send(req, write)
	}
	ctx, cancel := context.WithCancel(req.Context())
	type answer struct {
		resp *http.Response
		sent sendState
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, sent, err := c.send(req.WithContext(ctx), write)
		answered <- answer{resp, sent, err}
	}()
	step := c.readTryTimeout
	if long {
		step /= 2
	}
	start := time.Now()
	timer := time.NewTimer(step)
	defer timer.Stop()
	var probe <-chan bool // the answer of a probe under way
	for {
		select {
		case a := <-answered:
			if a.err != nil {
				cancel()
				return nil, a.sent, a.err
			}
			a.resp.Body = &cancelOnClose{ReadCloser: a.resp.Body, cancel: cancel}
			return a.resp, a.sent, nil
		case <-timer.C:
			if long && probe == nil {
				probe = c.alive(ctx, base, step)
				timer.Reset(step)
				continue
			}
		case ok := <-probe:
			probe = nil
			if ok {
				continue // at work: the timer asks again
			}
		}
		// Too late, even if the answer comes as the timer fires (its body
		// can no longer be read): the next instance.
		cancel()
		if a := <-answered; a.resp != nil {
			a.resp.Body.Close()
		}
		why := fmt.Errorf("no answer within %v (client.WithReadTryTimeout)", c.readTryTimeout)
		if long {
			why = fmt.Errorf("no answer after %v, and none from its /healthz within %v (client.WithReadTryTimeout)",
				time.Since(start).Round(time.Millisecond), step)
		}
		return nil, notConnected, &url.Error{Op: req.Method, URL: req.URL.String(), Err: why}
	}
}

// alive asks the instance at base for /healthz (its process serves: it
// does not touch the store), within d. The channel gets true when it
// answered 2xx, false when it did not within d, or answered otherwise (a
// proxy's 502 for an instance that is gone).
func (c *Client) alive(ctx context.Context, base string, d time.Duration) <-chan bool {
	out := make(chan bool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			out <- false
			return
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			out <- false
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		out <- resp.StatusCode >= 200 && resp.StatusCode <= 299
	}()
	return out
}

// cancelOnClose ends a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// couldNotAnswer reports whether an answer of this status says the
// instance could not take the request: ctxd's 503, or a proxy's 502 Bad
// Gateway or 504 Gateway Timeout in front of it (ctxd sends neither).
func couldNotAnswer(status int) bool {
	return status == http.StatusServiceUnavailable || status == http.StatusBadGateway || status == http.StatusGatewayTimeout
}

// isRead reports whether a request of this method changes nothing on the
// server, so that sending it twice is harmless.
func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// refusedBeforeApplying reads a 503 answer: nil, nil when it is ctxd's
// unavailable (nothing was applied: the next instance may take the
// request); otherwise the answer itself, its body still readable.
func refusedBeforeApplying(resp *http.Response, write bool) (*http.Response, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		err = fmt.Errorf("read the %d answer: %w", resp.StatusCode, err)
		if write { // unavailable, or outcome_unknown: no telling which
			err = sentWithoutAnswer(err)
		}
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var ae *APIError
	if errors.As(decodeError(resp), &ae) && ae.Code == CodeUnavailable {
		return nil, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// movedOn is err, the error of the last instance a request was sent to
// (at base), with why the ones before did not take it (tried), so that a
// message names every instance's failure: the first may be the one to
// fix (a certificate it refused, say), not the last one's refused
// connection. errors.Is and errors.As see err alone.
func movedOn(err error, base string, tried []string) error {
	if err == nil || len(tried) == 0 {
		return err
	}
	return &triedError{err: err, base: base, tried: tried}
}

// triedError is the error of the instance at base, named, with why the
// ones tried before it failed (tried, none: that instance's alone).
type triedError struct {
	err   error
	base  string
	tried []string
}

func (e *triedError) Error() string {
	if len(e.tried) == 0 {
		return named(e.base, e.err)
	}
	return named(e.base, e.err) + " (before it: " + strings.Join(e.tried, "; ") + ")"
}

func (e *triedError) Unwrap() error { return e.err }

// named is err's message naming the instance at base, which a network
// error (a *url.Error) does already, and an answer's (an *APIError, a
// body cut off) does not: with several instances, which one said what.
func named(base string, err error) string {
	if _, ok := errors.AsType[*url.Error](err); ok {
		return err.Error()
	}
	if ae, ok := errors.AsType[*APIError](err); ok && ae.Instance != "" {
		return err.Error()
	}
	return base + ": " + err.Error()
}

// watchFailover reports whether a watch connection that failed with err
// before the server accepted it may be tried again, on the next instance
// of several: the server could not be reached, or refused it for now
// (503, 429), or a proxy in front of it could not reach it (502, 504).
func watchFailover(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return couldNotAnswer(ae.Status) || ae.Status == http.StatusTooManyRequests
	}
	return IsConnectionError(err)
}
