package main

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A Framework0 shell user's script (testdata/framework0.sh: set, get, list,
// history, dump, list dumps and download, with curl and jq only) runs
// unchanged against `ctxd serve`.
func TestFramework0ShellScript(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: the Framework0 shell test needs bash, curl and jq "+
				"(`make test` installs curl and jq when they are missing; or run apt-get install curl jq)", tool)
		}
	}
	srv := startServer(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "testdata/framework0.sh")
	cmd.Env = testEnv("CTX=" + srv.URL)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "framework0.sh:\n%s", out)
	require.Contains(t, string(out), "framework0 shell session: OK")
}
