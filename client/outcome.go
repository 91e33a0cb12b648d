package client

import (
	"fmt"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/framework0/ctxd"
)

// send runs req through the HTTP client. For a write (write set), an error
// after the whole request was written to the connection is "outcome
// unknown": the server may have received it and applied the write, and
// the answer was lost (the connection broke, ctx ended, a timeout). The
// error then matches ctxd.ErrOutcomeUnknown and still wraps the
// *url.Error. A request that was not written in full (no connection, a
// ctx that ended first, a failed write) cannot have been applied: its
// error is returned as it is.
func (c *Client) send(req *http.Request, write bool) (*http.Response, error) {
	if !write {
		return c.hc.Do(req)
	}
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := c.hc.Do(req)
	if err != nil && wrote.Load() {
		return nil, sentWithoutAnswer(err)
	}
	return resp, err
}

// sentWithoutAnswer is the error of a write that was sent and got no answer.
func sentWithoutAnswer(err error) error {
	return fmt.Errorf("%w: the request was sent but no answer came (%w); "+
		"the write may or may not have been applied: read the key to learn whether it was",
		ctxd.ErrOutcomeUnknown, err)
}
