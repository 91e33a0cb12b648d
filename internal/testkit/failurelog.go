package testkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inlineLogLines is the longest log LogOnFailure writes into the test's
// own output.
const inlineLogLines = 20

// keptLogAge is how long a kept log stays: each log kept removes those
// older, so that the folder of a machine that runs the tests often does
// not grow without end.
const keptLogAge = 7 * 24 * time.Hour

// keptLogPrefix starts the name of every log kept: $CTXD_TEST_LOGS may be
// a folder shared with other files.
const keptLogPrefix = "ctxd-"

// LogOnFailure, called from a cleanup, reports a child process's or a
// server's log when the test failed. A short log goes into the test's
// output; a longer one (an etcd member's, a busy server's) is kept in a
// file under $CTXD_TEST_LOGS (default: the temp folder's ctxd-test-logs)
// and only its path is logged: the failure's own message must stay at
// the end of the output, which is all a CI summary shows. A log that
// cannot be kept is written inline. Kept logs older than a week are
// removed when another is kept.
func LogOnFailure(t testing.TB, what, log string) {
	t.Helper()
	if !t.Failed() {
		return
	}
	lines := strings.Count(log, "\n")
	if lines <= inlineLogLines {
		t.Logf("%s:\n%s", what, log)
		return
	}
	path, err := keepLog(t.Name(), what, log)
	if err != nil {
		t.Logf("%s (could not keep it in a file: %v):\n%s", what, err, log)
		return
	}
	t.Logf("%s: %d lines, kept in %s", what, lines, path)
}

func keepLog(test, what, log string) (string, error) {
	dir := os.Getenv("CTXD_TEST_LOGS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "ctxd-test-logs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	removeOldLogs(dir)
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == ':' || r == '\\' {
			return '_'
		}
		return r
	}, test+"-"+what)
	f, err := os.CreateTemp(dir, keptLogPrefix+name+"-*.log")
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(log)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// removeOldLogs removes the logs in dir kept more than keptLogAge ago (by
// keepLog: their names start with keptLogPrefix), and nothing else.
func removeOldLogs(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, keptLogPrefix+"*.log"))
	for _, path := range old {
		if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > keptLogAge {
			_ = os.Remove(path)
		}
	}
}
