//go:build failpoints

package failpoint

import (
	"encoding/json"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// point is an armed failpoint and its hit count.
type point struct {
	Action
	hits atomic.Int64
}

// armed is set once by init and only read afterwards.
var armed map[Name]*point

func init() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	actions, err := Parse(spec)
	if err != nil {
		logLine(map[string]any{"level": "fatal", "error": err.Error(), "message": "bad " + EnvVar})
		os.Exit(2)
	}
	armed = make(map[Name]*point, len(actions))
	for n, a := range actions {
		armed[n] = &point{Action: a}
	}
	logLine(map[string]any{"level": "warn", "failpoints": spec, "message": "failpoints armed"})
}

// Hit marks the failpoint name: when CTXD_FAILPOINTS armed it, it logs one
// line and acts (see the package doc).
func Hit(name Name) {
	p := armed[name]
	if p == nil {
		return
	}
	hit := p.hits.Add(1)
	if !p.Acts(hit) {
		return
	}
	logLine(map[string]any{"level": "warn", "failpoint": name, "action": p.Action.String(), "hit": hit, "message": "failpoint fired"})
	switch p.Kind {
	case Crash:
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		for {
			time.Sleep(time.Hour) // SIGKILL is on its way; do nothing more
		}
	case Sleep:
		time.Sleep(p.Sleep)
	}
}

// logLine writes one JSON line to stderr with a single write, so it is
// never interleaved with the server's own log lines.
func logLine(fields map[string]any) {
	fields["time"] = time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(fields)
	_, _ = os.Stderr.Write(append(b, '\n'))
}
