package client

import (
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/framework0/ctxd"
)

// sendState is how far a request got before its answer or error.
type sendState int32

const (
	// notConnected: no connection was made; the request never left.
	notConnected sendState = iota
	// notWritten: a connection was made, the request not written in full.
	notWritten
	// written: the whole request was written to the connection.
	written
)

// send runs req through the HTTP client and says how far it got. For a
// write (write set), an error after the whole request was written to the
// connection is "outcome unknown": the server may have received it and
// applied the write, and the answer was lost (the connection broke, ctx
// ended, a timeout). The error then matches ctxd.ErrOutcomeUnknown and
// still wraps the *url.Error. A request that was not written in full (no
// connection, a ctx that ended first, a failed write) cannot have been
// applied: its error is returned as it is. Through a transport that does
// not report its progress (not net/http's), every failed write is outcome
// unknown, and counts as written.
func (c *Client) send(req *http.Request, write bool) (*http.Response, sendState, error) {
	var state atomic.Int32
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			state.CompareAndSwap(int32(notConnected), int32(notWritten))
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				state.Store(int32(written))
			}
		},
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := c.hc.Do(req)
	sent := sendState(state.Load())
	if c.transport() == nil {
		// Not net/http's Transport: it may call no httptrace hook at
		// all (an in-process RoundTripper, an HTTP/3 one, a wrapper
		// that rebuilds the request), and a write it failed would look
		// never sent, and go to the next instance after it applied.
		sent = written
	}
	if err != nil && write && sent == written {
		return nil, sent, sentWithoutAnswer(err)
	}
	return resp, sent, err
}

// sentWithoutAnswer is the error of a write that was sent and got no answer.
func sentWithoutAnswer(err error) error {
	return fmt.Errorf("%w: the request was sent but no answer came (%w); "+
		"the write may or may not have been applied: read the key (or list the snapshots or dumps, or the status) to learn whether it was",
		ctxd.ErrOutcomeUnknown, err)
}

// successLost is the error of a write the server answered with a success
// status whose body could not be read or decoded (the connection broke
// mid-body). The write most likely applied (unless the answer was not
// ctxd's: a proxy's or a captive portal's page), but what it returned
// (its record, its revision) is lost. It matches ctxd.ErrOutcomeUnknown:
// an error that does not is a write that was not applied, which a caller
// sends again.
func successLost(status int, err error) error {
	return fmt.Errorf("%w: the server answered %d (success) but its answer was lost (%w); "+
		"the write most likely applied: read the key (or list the snapshots or dumps, or the status) to learn whether it did and what it returned",
		ctxd.ErrOutcomeUnknown, status, err)
}
