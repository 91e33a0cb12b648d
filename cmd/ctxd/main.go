// Command ctxd is the ctxd server and its command-line client.
//
// `ctxd serve` runs the durable context server; `ctxd put`, `get`, `del`,
// `ls`, `history`, `ns` and `status` talk to a running server over its v1 REST
// API; `ctxd migrate` upgrades a stopped data folder. Run `ctxd --help` for
// the list, and see README.md.
//
// Exit codes: 0 ok, 1 error, 2 bad usage or bad configuration, 3 cannot
// connect to the server, 4 not found, 5 version conflict, 6 outcome unknown
// (a write may or may not have been applied: read the key to check).
package main

import (
	"context"
	"os"
)

func main() {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ()}
	os.Exit(a.exitCode(a.run(context.Background(), os.Args[1:])))
}
