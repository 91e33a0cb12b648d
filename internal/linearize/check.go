package linearize

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// KeepDirEnv names the environment variable that makes Check write the
// visualization of every history it checks, passing or not, into that
// folder (by default only failures are written, to a new folder under
// the system's temp folder, which is kept).
const KeepDirEnv = "CTXD_LINEARIZE_DIR"

// Result is a check's outcome.
type Result struct {
	// Verdict is porcupine's: Ok, Illegal (not linearizable) or Unknown
	// (the timeout ran out first).
	Verdict porcupine.CheckResult
	// Ops is the number of operations checked, Unknown how many of them
	// had an unknown outcome, Partitions the groups of keys checked apart.
	Ops, Unknown, Partitions int
	// Elapsed is porcupine's time.
	Elapsed time.Duration

	history History
	timeout time.Duration
}

// String is a one-line summary, for logs.
func (r Result) String() string {
	return fmt.Sprintf("%s: %d operations (%d with unknown outcome) in %d partitions, checked in %v",
		r.Verdict, r.Ops, r.Unknown, r.Partitions, r.Elapsed.Round(time.Millisecond))
}

// DefaultTimeout is how long the tests give porcupine: a history it
// cannot decide within it fails the test (Check), it does not pass.
const DefaultTimeout = 20 * time.Second

// Verify checks h against Model with porcupine, giving up after timeout
// (0: none).
func Verify(h History, timeout time.Duration) Result {
	h = timed(h)
	r := Result{Ops: len(h), Partitions: len(partition(h)), history: h, timeout: timeout}
	for _, op := range h {
		if op.Output.(Output).Status == Unknown {
			r.Unknown++
		}
	}
	start := time.Now()
	r.Verdict = porcupine.CheckOperationsTimeout(Model(), h, timeout)
	r.Elapsed = time.Since(start)
	return r
}

// timed is h with each operation's call and return times in its input and
// output, where the model sees them: writes in flight together may share
// a revision (apply).
func timed(h History) History {
	out := make(History, len(h))
	for i, op := range h {
		in, res := op.Input.(Input), op.Output.(Output)
		in.called, res.returned = op.Call, op.Return
		op.Input, op.Output = in, res
		out[i] = op
	}
	return out
}

// Visualize checks the history again, recording how far each operation
// could be linearized, and writes porcupine's HTML visualization to path:
// open it in a browser to see where the history goes wrong.
func (r Result) Visualize(path string) error {
	m := Model()
	_, info := porcupine.CheckOperationsVerbose(m, r.history, r.timeout)
	return porcupine.VisualizePath(m, info, path)
}

// Check verifies h (Verify) and logs the result. When h is not
// linearizable, or porcupine could not decide within timeout (a failure
// too: shorten the history), it fails the test and writes the
// visualization to a kept file whose path it logs.
func Check(t testing.TB, h History, timeout time.Duration) Result {
	t.Helper()
	r := Verify(h, timeout)
	t.Logf("linearizability: %v", r)
	dir := os.Getenv(KeepDirEnv)
	if r.Verdict == porcupine.Ok && dir == "" {
		return r
	}
	path, err := r.keep(dir, t.Name())
	switch {
	case err != nil:
		t.Errorf("write the visualization: %v", err)
	case r.Verdict == porcupine.Ok:
		t.Logf("visualization: %s", path)
	}
	switch r.Verdict {
	case porcupine.Illegal:
		t.Errorf("the history is not linearizable (%d operations); porcupine's visualization: %s", r.Ops, path)
	case porcupine.Unknown:
		t.Errorf("porcupine could not decide within %v whether the %d operations are linearizable: "+
			"that is not a pass; make the history shorter or less concurrent. Partial visualization: %s", timeout, r.Ops, path)
	}
	return r
}

// keep writes the visualization into dir (a new temp folder when "").
func (r Result) keep(dir, name string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ctxd-linearize-"); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name = strings.NewReplacer("/", "_", " ", "_").Replace(name)
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.html", name, strings.ToLower(string(r.Verdict))))
	return path, r.Visualize(path)
}
