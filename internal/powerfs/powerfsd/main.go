// Command powerfsd is powerfs's file system server, the child process
// powerfs.Mount starts: this package's import of powerfs serves the mount
// (powerfs's init, with POWERFS_SERVE=1 and the control pipes on fds 3
// and 4) and exits. It is a program of its own so that tests built with
// the race detector run it without: see internal/powerfs/server.go.
package main

import (
	"fmt"
	"os"

	_ "github.com/framework0/ctxd/internal/powerfs" // serves, when run by Mount
)

func main() {
	fmt.Fprintln(os.Stderr, "powerfsd: the file system server of internal/powerfs, started by powerfs.Mount only")
	os.Exit(2)
}
