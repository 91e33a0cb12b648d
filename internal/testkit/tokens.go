package testkit

import "github.com/framework0/ctxd/auth"

// TokenEntry is one token of a tokens file (under "tokens:"): its name,
// the hash of secret, then rest, the entry's other lines as YAML indented
// by four spaces ("    roles: [read]\n").
func TokenEntry(name, secret, rest string) string {
	return "  - name: " + name + "\n    hash: " + auth.HashSecret(secret) + "\n" + rest
}

// ReaderEntry is the TokenEntry of a token with the read role on
// namespaces and key prefixes (YAML flow lists' contents: "x, y").
func ReaderEntry(name, secret, namespaces, prefixes string) string {
	return TokenEntry(name, secret, "    roles: [read]\n    namespaces: ["+namespaces+"]\n    prefixes: ["+prefixes+"]\n")
}
