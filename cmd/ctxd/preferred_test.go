package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/internal/testkit"
)

// Each command of the CLI is a process of its own; with a --server list
// it starts where the last one ended: a hung first instance (it takes the
// connection and the request and never answers) costs one write its
// --timeout and an outcome unknown, not every write. The control: a user
// whose cache has nothing remembered meets the hung instance again.
func TestCLIRemembersTheInstanceThatAnswered(t *testing.T) {
	t.Parallel()
	live := startServer(t, t.TempDir())
	hung, _ := testkit.SilentAfterRequest(t, true)
	servers := hung + "," + live.URL
	cacheDir := t.TempDir()
	cache := "XDG_CACHE_HOME=" + cacheDir

	r := cli(t, []string{cache}, "", "put", "k", "1", "--server", servers, "--timeout", "1s")
	require.Equal(t, 6, r.code, "the write sent to the hung instance is outcome unknown: %s", r.stderr)
	r = cli(t, []string{cache}, "", "put", "k", "2", "--server", servers, "--timeout", "10s")
	require.Equal(t, 0, r.code, "the next command starts at the live instance: %s", r.stderr)
	assert.Equal(t, "2", strings.TrimSpace(cliOK(t, nil, "", "get", "k", "--server", live.URL)))
	assert.Equal(t, "2", strings.TrimSpace(cliOK(t, []string{cache}, "", "get", "k", "--server", servers, "--timeout", "5s")))

	r = cli(t, []string{"XDG_CACHE_HOME=" + t.TempDir()}, "", "put", "k", "3", "--server", servers, "--timeout", "1s")
	assert.Equal(t, 6, r.code, "without the cache the hung instance takes the write again: %s", r.stderr)

	// The memory lapses 10 minutes after the last command that used it
	// (each renews it): commands start at the first URL again.
	files, err := filepath.Glob(filepath.Join(cacheDir, "ctxd", "instance-*"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	old := time.Now().Add(-5 * time.Minute)
	require.NoError(t, os.Chtimes(files[0], old, old))
	cliOK(t, []string{cache}, "", "get", "k", "--server", servers, "--timeout", "5s")
	fi, err := os.Stat(files[0])
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), fi.ModTime(), time.Minute, "a command that used the memory renews it")
	old = time.Now().Add(-11 * time.Minute)
	require.NoError(t, os.Chtimes(files[0], old, old))
	r = cli(t, []string{cache}, "", "put", "k", "4", "--server", servers, "--timeout", "1s")
	assert.Equal(t, 6, r.code, "a lapsed memory: the first instance again: %s", r.stderr)
}

// A read given several instances moves on from a hung one within a
// --timeout shorter than the client's 10 s per instance: each instance
// gets a share of it.
func TestCLIReadMovesOnWithinAShortTimeout(t *testing.T) {
	t.Parallel()
	live := startServer(t, t.TempDir())
	cliOK(t, nil, "", "put", "k", "1", "--server", live.URL)
	hung, _ := testkit.SilentAfterRequest(t, true)
	r := cli(t, []string{"XDG_CACHE_HOME=" + t.TempDir()}, "", "get", "k", "--server", hung+","+live.URL, "--timeout", "4s")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "1", strings.TrimSpace(r.stdout))
}
