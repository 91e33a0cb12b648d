package etcd_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	"github.com/framework0/ctxd/store/etcd"
)

// An endpoint where nothing listens (a wrong port, etcd not started)
// fails the start with the reason: the etcd client's own error was only
// "context deadline exceeded", the same as for an etcd that does not
// answer. Each endpoint that fails is named, over TLS too.
func TestOpenSaysNothingListens(t *testing.T) {
	addr := testkit.FreeAddr(t)
	_, err := etcd.Open(etcd.Options{Endpoints: []string{"http://" + addr, "https://" + addr}, Prefix: "/ctxd/",
		DialTimeout: time.Second, RequestTimeout: time.Second})
	require.Error(t, err)
	require.ErrorContains(t, err, "context deadline exceeded (dial tcp "+addr+": connect: connection refused; "+
		"TLS to "+addr+": dial tcp "+addr+": connect: connection refused)")
}

// An https:// endpoint of an etcd that serves plain text: the handshake
// ends in EOF, which alone says nothing of the cause.
func TestOpenSaysTheEndpointIsNotTLS(t *testing.T) {
	addr := strings.TrimPrefix(etcdkit.Shared(t).Endpoint, "http://")
	_, err := etcd.Open(etcd.Options{Endpoints: []string{"https://" + addr}, Prefix: etcdkit.Prefix(etcdkit.Name(t)),
		DialTimeout: time.Second, RequestTimeout: time.Second})
	require.Error(t, err)
	require.ErrorContains(t, err, "(TLS to "+addr+": ")
	require.ErrorContains(t, err, ": is etcd serving TLS there? one without TLS takes http://)")
}
