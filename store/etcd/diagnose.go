package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
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
	if why := tlsTrouble(opts.Endpoints, opts.TLS, opts.DialTimeout); why != "" {
		return " (" + why + ")"
	}
	return ""
}

// tlsTrouble says why TLS to the https endpoints fails, or "" when it
// works or none is https. The etcd client retries a connection whose
// handshake fails until its dial timeout and answers only "context
// deadline exceeded"; an operator needs the reason (an untrusted
// certificate, a client certificate missing or refused), so Open asks
// once more, directly, when it could not connect.
func tlsTrouble(endpoints []string, cfg *tls.Config, timeout time.Duration) string {
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		if err := tlsHello(u.Host, cfg, timeout); err != nil {
			return "TLS to " + u.Host + ": " + err.Error()
		}
	}
	return ""
}

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
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return nil // not a TLS matter: the client's error says it
		}
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
