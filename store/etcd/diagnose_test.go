package etcd_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
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
