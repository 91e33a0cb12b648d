package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// connectHint is what Open adds to an error of connecting: what the
// etcd user needs, when etcd refused it a request, and why TLS fails,
// when the client gave up waiting for a connection.
func connectHint(opts Options, err error) string {
	if refusedAccess(err) {
		return accessHint(err)
	}
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Unavailable {
		return ""
	}
	if why := connectTrouble(opts.Endpoints, opts.TLS, opts.DialTimeout); why != "" {
		return " (" + why + ")"
	}
	return ""
}

// connectTrouble says why connecting to the endpoints fails, each one
// that does ("" when each connects). The etcd client retries a
// connection that fails until its dial timeout and answers only
// "context deadline exceeded"; an operator needs the reason (nothing
// listens at an endpoint, an untrusted certificate, a client certificate
// missing or refused), so Open asks once more, directly, when it could
// not connect. The endpoints are tried at once: a start that failed
// waits for the slowest, not for each in turn.
func connectTrouble(endpoints []string, cfg *tls.Config, timeout time.Duration) string {
	troubles := make([]string, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			continue
		}
		wg.Go(func() {
			if err := hello(u, cfg, timeout); err != nil {
				troubles[i] = err.Error()
			}
		})
	}
	wg.Wait()
	return strings.Join(slices.DeleteFunc(troubles, func(s string) bool { return s == "" }), "; ")
}

// hello connects to the endpoint u as the etcd client does: over TLS to
// an https one (tlsHello), else plain TCP.
func hello(u *url.URL, cfg *tls.Config, timeout time.Duration) error {
	if u.Scheme == "https" {
		err := tlsHello(u.Host, cfg, timeout)
		var notTLS tls.RecordHeaderError
		if errors.Is(err, io.EOF) || errors.As(err, &notTLS) {
			// A plain-text server closes the connection on a ClientHello,
			// or answers it in plain text.
			return fmt.Errorf("TLS to %s: %w: is etcd serving TLS there? one without TLS takes http://", u.Host, err)
		}
		if err != nil {
			return fmt.Errorf("TLS to %s: %w", u.Host, err)
		}
		return nil
	}
	conn, err := net.DialTimeout("tcp", u.Host, timeout)
	if err != nil {
		return err // "dial tcp HOST:PORT: connect: connection refused"
	}
	defer conn.Close()
	// gRPC's plain-text start: an etcd serving TLS closes the connection
	// on it; a plain one answers with its settings, a silent one not at
	// all (the client's error says enough then).
	if err := conn.SetDeadline(time.Now().Add(min(timeout, time.Second))); err != nil {
		return nil
	}
	if _, err := conn.Write([]byte(http2Preface)); err != nil {
		return nil
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); errors.Is(err, io.EOF) {
		return fmt.Errorf("%s closed the connection on gRPC's plain-text start: is etcd serving TLS there? then write https:// (with etcd.ca_file)", u.Host)
	}
	return nil
}

// http2Preface is the client connection preface of HTTP/2 (RFC 9113,
// 3.4), then an empty SETTINGS frame: what gRPC sends first.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"

// tlsHello connects to addr over TLS as the etcd client does and reads
// the server's first bytes (gRPC's HTTP/2 settings): a server that
// refuses the client's certificate says so only once the handshake is
// over from the client's side (TLS 1.3), at that read.
func tlsHello(addr string, cfg *tls.Config, timeout time.Duration) error {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg != nil {
		c = cfg.Clone()
	}
	c.NextProtos = []string{"h2"}
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A refusal comes right after the handshake; a server that accepted
	// may say nothing until the client speaks, so the wait is short.
	if err := conn.SetReadDeadline(time.Now().Add(min(timeout, time.Second))); err != nil {
		return err
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	}
	return nil
}
