// Package clientaddr names the client behind a connection for limits that
// count per client (the rate limiter, Socket.IO's sessions waiting to
// connect): the host of its remote address, with an IPv6 address taken as
// its /64, since one machine commonly holds a whole /64 and could
// otherwise take a fresh address for every request.
package clientaddr

import (
	"net"
	"net/netip"
)

// Of is the client of a connection whose remote address (host:port, as
// http.Request.RemoteAddr) is remote: the host for IPv4 (and IPv4 mapped
// into IPv6), the /64 prefix for IPv6 ("2001:db8::/64"), remote itself
// when it has no port.
func Of(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return host
}
