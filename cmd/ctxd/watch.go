package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd/client"
)

// watchRow is the table layout of ctxd watch: fixed widths, since rows are
// printed one at a time as changes come.
const watchRow = "%-8s  %-10s  %-24s  %-6s  %-7s  %-10s  %-20s  %s\n"

func (a *app) watchCmd() *cobra.Command {
	var (
		fromRev   uint64
		fromIndex int
	)
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print changes as they happen",
		Long: `Print every change of a namespace (optionally only keys starting with
PREFIX) as it happens, until interrupted (Ctrl-C: exit code 0).

Without --from-rev it starts with the changes from now; --from-rev R first
prints every change after revision R that history still holds; with
--from-index I as well, only the changes of R from index I on (on etcd,
the changes of one transaction share a revision; -o json shows each one's
"index" and "count": resume after one with --from-rev REV --from-index
INDEX+1).

When the connection drops (a server restart, a network failure) it
reconnects with backoff and resumes after the last change it printed, so
its output has every change once: no gap, no duplicate. A note goes to
stderr.

-n takes one namespace, several separated by commas, or '*' for every
namespace. -o json prints one JSON object per line; -o table (the default)
prints a header, then one row per change. If the server restored a backup
(or --from-rev is past every revision it has: another deployment's, or it
was restored from an older backup), a reset line says from which revision
changes continue, and stderr why (in -o json, an object with
"type":"reset"). If the changes to resume from were compacted
away, watch stops with an error: re-read the state (ctxd ls) and watch again
with --from-rev set to the revision read.`,
		Example: `  ctxd watch
  ctxd watch app/ -n prod
  ctxd watch -n '*' --from-rev 1200 -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("watch takes at most one argument, PREFIX; got %d", len(args))
			}
			return nil
		},
	}
	c := a.clientFlags(cmd, outTable, false)
	// A watch runs until stopped: --timeout bounds each connection attempt.
	cmd.Flags().Lookup("timeout").Usage = "give up on one connection attempt after this long (the watch reconnects until stopped; 0: wait forever, or over several instances 5s, then the next)"
	cmd.Flags().Uint64Var(&fromRev, "from-rev", 0, "first print every change after this `revision` (0: all history)")
	cmd.Flags().IntVar(&fromIndex, "from-index", 0, "with --from-rev: the changes of that revision with an index below this `number` were printed already")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		opts := client.WatchOptions{DialTimeout: watchDialTimeout(c.timeout, strings.Contains(c.server, ","))}
		if len(args) == 1 {
			opts.Prefix = args[0]
		}
		for _, ns := range strings.Split(c.namespace, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				opts.Namespaces = append(opts.Namespaces, ns)
			}
		}
		if len(opts.Namespaces) == 0 { // -n "$UNSET" watched default
			return errNoNamespace()
		}
		if cmd.Flags().Changed("from-rev") {
			opts.FromRev, opts.FromIndex = &fromRev, fromIndex
			if cmd.Flags().Changed("from-index") && fromIndex == 0 && fromRev > 0 {
				// None of R was printed: the changes after R-1, as the
				// server reads from_index=0. The client's FromIndex 0
				// means R was handled whole, and R was skipped.
				before := fromRev - 1
				opts.FromRev = &before
			}
		}
		if cmd.Flags().Changed("from-index") && (!cmd.Flags().Changed("from-rev") || fromIndex < 0) {
			return usagef("--from-index needs --from-rev and is a count (0 or more); got %d", fromIndex)
		}
		opts.OnReconnect = func(err error, wait time.Duration) {
			fmt.Fprintf(a.stderr, "ctxd watch: %v; reconnecting in %v\n", err, wait.Round(time.Millisecond))
		}
		// --timeout bounds each connection attempt (DialTimeout), not the
		// watch: the client's context is not used.
		cl, _, done, err := c.client(cmd.Context())
		if err != nil {
			return err
		}
		defer done()
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()

		printEvent, connected := c.watchPrinter()
		opts.OnConnect = connected
		return cl.Watch(ctx, opts, printEvent)
	})
	return cmd
}

// forever is a connection attempt's bound when there is none: 0 is
// WatchOptions' default (10s).
const forever = time.Duration(math.MaxInt64)

// watchDialTimeout is the bound of each connection attempt of ctxd watch
// --timeout: timeout, 0 none; over several instances (several) at most
// the connection timeout: a silent one costs this, then the next.
func watchDialTimeout(timeout time.Duration, several bool) time.Duration {
	switch {
	case several && (timeout <= 0 || timeout > client.DefaultConnectTimeout):
		return client.DefaultConnectTimeout
	case timeout <= 0:
		return forever
	}
	return timeout
}

// watchPrinter returns the function that prints each event of a watch, and
// the one called on each connection (the table header goes out on the
// first, so that a quiet watch shows it is connected).
func (c *common) watchPrinter() (func(client.WatchEvent) error, func(uint64)) {
	if c.output == outJSON {
		enc := json.NewEncoder(c.out())
		enc.SetEscapeHTML(false)
		return func(ev client.WatchEvent) error {
			if ev.Type == client.EventChange && len(ev.Value) == 0 {
				ev.Value = json.RawMessage("null")
			}
			return enc.Encode(ev)
		}, func(uint64) {}
	}
	header := false
	connected := func(uint64) {
		if !header {
			header = true
			fmt.Fprintf(c.out(), watchRow, "REVISION", "NS", "KEY", "OP", "VERSION", "WHO", "TIME", "VALUE")
		}
	}
	return func(ev client.WatchEvent) error {
		if ev.Type == client.EventReset {
			// Why goes to stderr: a restore, or a --from-rev past every
			// revision of this database (another one's, or an older backup).
			fmt.Fprintf(c.a.stderr, "ctxd watch: %s\n", ev.Message)
			_, err := fmt.Fprintf(c.out(), "-- reset: what was read before is stale; changes continue after revision %d\n", ev.Rev)
			return err
		}
		_, err := fmt.Fprintf(c.out(), watchRow, strconv.FormatUint(ev.Rev, 10), ev.Namespace, ev.Key, ev.Op,
			strconv.FormatUint(ev.Version, 10), ev.Who, timeText(ev.Timestamp), changeCell(ev.Value, ev.Op == "delete", ev.Expired))
		return err
	}, connected
}
