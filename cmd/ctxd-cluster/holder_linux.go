package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// portHolder names the process that listens on TCP port, from /proc:
// "etcd, pid 4242"; "" when it cannot tell (another user's process,
// whose descriptors are not readable).
func portHolder(port int) string {
	sockets := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			// sl local_address rem_address st ... inode: "0100007F:0953 ... 0A ..."
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && int(p) == port {
				sockets["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(sockets) == 0 {
		return ""
	}
	procs, _ := os.ReadDir("/proc")
	for _, proc := range procs {
		if _, err := strconv.Atoi(proc.Name()); err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", proc.Name(), "fd"))
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join("/proc", proc.Name(), "fd", fd.Name())); err == nil && sockets[link] {
				comm, _ := os.ReadFile(filepath.Join("/proc", proc.Name(), "comm"))
				return fmt.Sprintf("%s, pid %s", strings.TrimSpace(string(comm)), proc.Name())
			}
		}
	}
	return ""
}
