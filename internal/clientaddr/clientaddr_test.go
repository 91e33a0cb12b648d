package clientaddr_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/framework0/ctxd/internal/clientaddr"
)

func TestOf(t *testing.T) {
	for remote, want := range map[string]string{
		"127.0.0.1:5000":             "127.0.0.1",
		"10.1.2.3:1":                 "10.1.2.3",
		"[2001:db8:1:2:aaaa::1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:bbbb::9]:80":  "2001:db8:1:2::/64", // the same machine
		"[2001:db8:1:3::1]:80":       "2001:db8:1:3::/64",
		"[::ffff:192.0.2.7]:80":      "::ffff:192.0.2.7",
		"[fe80::1%eth0]:80":          "fe80::/64",
		"@":                          "@", // a Unix socket
		"not an address":             "not an address",
	} {
		assert.Equal(t, want, clientaddr.Of(remote), remote)
	}
}
