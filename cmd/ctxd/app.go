package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
)

// version is the build version, set with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes: the one table, used by exitCode.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2 // bad arguments or flags, bad configuration
	exitUnreachable = 3 // no answer from the server
	exitNotFound    = 4
	exitConflict    = 5
	// exitOutcomeUnknown: a write (put, del, import) may or may not have
	// been applied: the server answered outcome_unknown, or the request was
	// sent and its answer never came (--timeout, a broken connection).
	exitOutcomeUnknown = 6
)

// app is one run of the program, with its standard streams and environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string

	// started is set when a command's own code starts running: an error
	// before that came from cobra's parsing of arguments and flags.
	started bool
	// cmd is the command that ran (or failed to parse), for usage hints.
	cmd *cobra.Command
}

// usageError is a mistake in how the program was called (exit code 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// The environment variables ctxd's client commands read. With
// failpoint.EnvVar they are the CTXD_* variables that are not settings
// (configs), which serve does not warn about.
const (
	envServer = "CTXD_SERVER"
	envToken  = "CTXD_TOKEN"
	envCACert = "CTXD_CACERT"
)

// getenv returns the variable's value from the app's environment.
func (a *app) getenv(name string) string {
	for _, kv := range a.environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// run builds the command tree and runs the command args name.
func (a *app) run(ctx context.Context, args []string) error {
	root := a.rootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	a.cmd = cmd
	if err != nil && !a.started {
		var ue *usageError
		if !errors.As(err, &ue) {
			err = &usageError{err}
		}
	}
	return err
}

// exitCode reports err on stderr and returns the process exit code for it.
// It is the only place that maps errors to exit codes.
func (a *app) exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(a.stderr, "ctxd: %v\n", err)
	var ue *usageError
	var ce *configs.Error
	switch {
	case errors.As(err, &ue):
		if a.cmd != nil {
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", a.cmd.CommandPath())
		}
		return exitUsage
	case errors.As(err, &ce):
		return exitUsage
	case client.IsOutcomeUnknown(err): // before IsConnectionError: no answer to a write sent is this
		if a.cmd != nil && keyWrites[a.cmd.Name()] {
			fmt.Fprintln(a.stderr, "The write may or may not have been applied. Read the key ('ctxd get KEY') to check before retrying.")
		} else {
			// A restore sent twice discards what was written between them.
			fmt.Fprintln(a.stderr, "The request may or may not have taken effect on the server. Check ('ctxd snapshot ls', 'ctxd dumps', 'ctxd status') before sending it again.")
		}
		return exitOutcomeUnknown
	case client.IsConnectionError(err):
		var untrusted *tls.CertificateVerificationError
		var netErr *net.OpError
		switch {
		case errors.As(err, &untrusted):
			fmt.Fprintln(a.stderr, "The server's certificate is not trusted: give the CA that signed it (or the self-signed certificate) with --cacert or CTXD_CACERT.")
		case errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &netErr) && netErr.Op == "dial"):
			// A server that took the connection and did not answer: "is it
			// running?" misled. (A connection that timed out is that.)
			fmt.Fprintln(a.stderr, "No answer within --timeout: the server is busy, hung, or slow to reach (a longer --timeout, or 0, waits longer).")
		default:
			fmt.Fprintln(a.stderr, "Is the server running? Point --server or CTXD_SERVER at it.")
		}
		return exitUnreachable
	case client.IsNotFound(err), errors.Is(err, ctxd.ErrCompacted):
		// A revision compaction discarded is one not found any more
		// (get --rev, dump --rev, watch --from-rev): the table's "not
		// found (key, revision, or history)".
		return exitNotFound
	case client.IsConflict(err), errors.Is(err, ctxd.ErrPatchTestFailed):
		return exitConflict
	}
	return exitError
}

// action wraps a command's code so that its errors are not taken for
// argument-parsing errors.
func (a *app) action(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.started = true
		return fn(cmd, args)
	}
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ctxd",
		Short: "ctxd is a durable JSON key-value context server",
		Long: `ctxd is a durable JSON key-value context server and its client.

Start a server with 'ctxd serve'; the other commands talk to a running server
(--server, env CTXD_SERVER, default http://127.0.0.1:8080), with --token or
CTXD_TOKEN when the server has access control ('ctxd token' makes tokens).

Exit codes: 0 ok, 1 error, 2 bad usage or configuration, 3 cannot connect,
4 not found (or a revision compaction discarded), 5 version conflict (or a patch whose test failed), 6 outcome unknown (a write may or may not
have been applied: read the key to check).`,
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(
		a.serveCmd(),
		a.putCmd(), a.patchCmd(), a.txnCmd(), a.keepaliveCmd(), a.getCmd(), a.delCmd(), a.lsCmd(), a.historyCmd(), a.nsCmd(), a.statusCmd(), a.whoamiCmd(),
		a.watchCmd(),
		a.dumpCmd(), a.dumpsCmd(), a.importCmd(),
		a.migrateCmd(),
		a.snapshotCmd(), a.restoreCmd(), a.compactCmd(), a.compactionCmd(), a.defragCmd(),
		a.perfCmd(),
		a.tokenCmd(),
		a.versionCmd(),
	)
	return root
}

// keyWrites are the commands that change keys: an outcome unknown is
// checked by reading the key.
var keyWrites = map[string]bool{"put": true, "patch": true, "txn": true, "keepalive": true, "del": true, "import": true}

// group makes cmd, a group of subcommands, refuse an unknown one (exit 2),
// as the root does: cobra printed the group's help and exited 0 for
// "ctxd snapshot bogus".
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	return cmd
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "ctxd %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		}),
	}
}
