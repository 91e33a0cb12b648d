package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
)

const defaultServer = "http://127.0.0.1:8080"

// revisionFlag is a flag naming a revision, 1 or more. Revision 0 is
// refused, as the server refuses ?rev=0 and ?before=0: the flag's zero
// value means "not given", so --rev 0 would otherwise read the current
// value without a word.
type revisionFlag struct{ rev *uint64 }

// revisionVar defines a revisionFlag on fs, stored in rev (0 when absent).
func revisionVar(fs *pflag.FlagSet, rev *uint64, name, usage string) {
	fs.Var(revisionFlag{rev}, name, usage)
}

func (f revisionFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return errors.New("a revision is a whole number, 1 or more")
	}
	*f.rev = n
	return nil
}

func (f revisionFlag) String() string {
	if f.rev == nil || *f.rev == 0 {
		return ""
	}
	return strconv.FormatUint(*f.rev, 10)
}

func (revisionFlag) Type() string { return "uint" }

// Output formats of -o.
const (
	outJSON  = "json"
	outTable = "table"
	outValue = "value"
)

// common holds the flags every client command has.
type common struct {
	a         *app
	server    string
	namespace string
	who       string
	output    string
	timeout   time.Duration
	ifVersion uint64 // for the commands that register --if-version
	deleted   bool   // the records printed are deleted keys
	token     string // --token (clientauth.go)
	caCert    string // --cacert
}

// cliWho is who the client commands record a change as when neither
// --who nor $USER names anyone.
const cliWho = "cli"

// author returns who a change is recorded as: --who, or cliWho for an
// empty one, as for an empty $USER (the server would record its own
// default, "api", for a request that names no one).
func (c *common) author() string {
	if c.who == "" {
		return cliWho
	}
	return c.who
}

// connFlags registers the connection flags of a client command: --server,
// -n, --who (whoUsage says what it is recorded for), --timeout (default
// timeout), --token and --cacert. The output is a table: clientFlags adds
// -o.
func (a *app) connFlags(cmd *cobra.Command, whoUsage string, timeout time.Duration) *common {
	c := &common{a: a, output: outTable}
	server := a.getenv(envServer)
	if server == "" {
		server = defaultServer
	}
	who := a.getenv("USER")
	if who == "" {
		who = cliWho
	}
	f := cmd.Flags()
	f.StringVar(&c.server, "server", server, "server `URL` (env CTXD_SERVER); several instances of one deployment separated by commas: the next one takes over when one cannot be reached")
	f.StringVarP(&c.namespace, "namespace", "n", ctxd.DefaultNamespace, "`namespace`")
	f.StringVar(&c.who, "who", who, whoUsage+" ($USER by default)")
	f.DurationVar(&c.timeout, "timeout", timeout, "give up on the server after this long (0: wait forever)")
	c.credentialFlags(cmd)
	return c
}

// clientFlags registers the client flags on cmd: connFlags, and -o.
// defOutput is the command's default -o; withValue says whether it
// supports -o value.
// defaultTimeout gives the command a --timeout default of its own, in its
// help too (defrag's help said 30s, while it waited for ever). 0: wait
// however long it takes.
func (c *common) defaultTimeout(cmd *cobra.Command, d time.Duration) {
	c.timeout = d
	f := cmd.Flags().Lookup("timeout")
	f.DefValue = d.String()
	if d == 0 {
		f.Usage = "give up on the server after this long (default 0: wait however long it takes)"
	}
}

func (a *app) clientFlags(cmd *cobra.Command, defOutput string, withValue bool) *common {
	c := a.connFlags(cmd, "who is making the change, recorded with it", 30*time.Second)
	formats := "json or table"
	if withValue {
		formats = "json, table or value"
	}
	cmd.Flags().StringVarP(&c.output, "output", "o", defOutput, "output `format`: "+formats)
	prev := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		switch c.output {
		case outJSON, outTable:
		case outValue:
			if !withValue {
				return usagef("-o value is not supported by %s (use json or table)", strings.TrimPrefix(cmd.CommandPath(), "ctxd "))
			}
		default:
			return usagef("unknown output format %q (use %s)", c.output, formats)
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
	return c
}

// ifVersionFlag registers --if-version.
func (c *common) ifVersionFlag(cmd *cobra.Command, what string) {
	zero := "" // only a write can be made on a key that does not exist
	if what == "write" {
		zero = " (0: only if it does not exist)"
	}
	cmd.Flags().Uint64Var(&c.ifVersion, "if-version", 0,
		what+" only if the key is at this `version`"+zero+"; exit code 5 otherwise")
}

// expect returns --if-version as a pointer, nil when it was not given.
func (c *common) expect(cmd *cobra.Command) *uint64 {
	if !cmd.Flags().Changed("if-version") {
		return nil
	}
	return client.Expect(c.ifVersion)
}

// serverURL is a server's address as a URL: host:port (as --server,
// CTXD_SERVER and --target take it) is http://host:port.
func serverURL(s string) string {
	if !strings.Contains(s, "://") {
		return "http://" + s
	}
	return s
}

// client returns a client for --server and a context bounded by
// --timeout. done ends the context and, for a list of instances,
// remembers the one the client ended on for the next command
// (preferred.go).
func (c *common) client(ctx context.Context) (cl *client.Client, _ context.Context, done func(), err error) {
	if c.timeout < 0 {
		return nil, nil, nil, usagef("--timeout %s: must not be negative (0: wait forever)", c.timeout)
	}
	servers := strings.Split(c.server, ",")
	for i, s := range servers {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, nil, nil, usagef("--server %q: an empty address in the list", c.server)
		}
		servers[i] = serverURL(s)
	}
	list := strings.Join(servers, ",")
	opts, err := c.clientOptions()
	if err != nil {
		return nil, nil, nil, err
	}
	if len(servers) > 1 {
		// A silent instance (its machine gone) costs this, not --timeout,
		// and a hung one costs a read this: each a share of a --timeout
		// shorter than the defaults, so that the others are tried within it.
		try := func(d time.Duration) time.Duration {
			if c.timeout > 0 {
				return min(d, c.timeout/time.Duration(len(servers)))
			}
			return d
		}
		opts = append(opts, client.WithConnectTimeout(try(client.DefaultConnectTimeout)),
			client.WithReadTryTimeout(try(client.DefaultReadTryTimeout)),
			client.WithPreferred(loadPreferred(list)))
	}
	if cl, err = client.New(list, opts...); err != nil {
		return nil, nil, nil, &usageError{fmt.Errorf("--server: %w", err)}
	}
	var cancel context.CancelFunc
	if c.timeout <= 0 {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	start := cl.Servers()[0]
	return cl, ctx, func() {
		cancel()
		if len(servers) > 1 {
			rememberPreferred(list, strings.TrimRight(servers[0], "/"), start, cl.Servers()[0])
		}
	}, nil
}

// errNoNamespace refuses an empty -n: -n "$UNSET" wrote to (or watched)
// the default namespace.
func errNoNamespace() error {
	return usagef("-n: no namespace (an unset variable?); leave -n out for %s", ctxd.DefaultNamespace)
}

// withClient runs fn with a client for the command's flags and a context
// bounded by --timeout.
func (c *common) withClient(cmd *cobra.Command, fn func(ctx context.Context, cl *client.Client) error) error {
	if f := cmd.Flags().Lookup("namespace"); f != nil && f.Changed && strings.TrimSpace(c.namespace) == "" {
		return errNoNamespace()
	}
	cl, ctx, done, err := c.client(cmd.Context())
	if err != nil {
		return err
	}
	defer done()
	return fn(ctx, cl)
}

// run makes fn the command's code (RunE, through action): it runs with a
// client for the command's flags and a context bounded by --timeout
// (withClient).
func (c *common) run(cmd *cobra.Command, fn func(ctx context.Context, cl *client.Client, args []string) error) {
	cmd.RunE = c.a.action(func(cmd *cobra.Command, args []string) error {
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error { return fn(ctx, cl, args) })
	})
}

// exactArgs is cobra.ExactArgs with the expected arguments named.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s needs %d argument(s), %s; got %d", cmd.Name(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

func (a *app) putCmd() *cobra.Command {
	var (
		asString bool
		ttl      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Set a key's value",
		Long: `Set a key's value.

VALUE is stored as JSON when it is valid JSON (42, true, {"a":1}, "quoted"),
and as a JSON string otherwise: 'ctxd put greeting hello' stores "hello".
--string always stores it as a string. A VALUE of - reads the value from
standard input. Put '--' before a VALUE that starts with '-' (ctxd put n -- -5).`,
		Example: `  ctxd put greeting hello
  ctxd put app.config '{"debug":true}'
  ctxd put -n prod deploy/version 42 --if-version 3
  echo '[1,2,3]' | ctxd put list -
  ctxd put worker/1/heartbeat alive --ttl 30s`,
		Args: exactArgs("KEY", "VALUE"),
	}
	c := a.clientFlags(cmd, outTable, true)
	c.ifVersionFlag(cmd, "write")
	cmd.Flags().BoolVar(&asString, "string", false, "store VALUE as a JSON string even if it is valid JSON")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "make the key expire this long after the put (30s, 5m); without it the key is permanent")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		value, err := parseValue(args[1], asString, a.stdin)
		if err != nil {
			return err
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			if cmd.Flags().Changed("ttl") && ttl <= 0 {
				return usagef("--ttl must be positive (30s, 5m)")
			}
			rec, err := cl.Put(ctx, c.namespace, args[0], value, client.PutOptions{IfVersion: c.expect(cmd), TTL: ttl})
			if err != nil {
				return err
			}
			return c.printRecord(rec)
		})
	})
	return cmd
}

func (a *app) patchCmd() *cobra.Command {
	var typ string
	cmd := &cobra.Command{
		Use:   "patch KEY PATCH",
		Short: "Change part of a key's value",
		Long: `Change part of a key's JSON value, atomically on the server: concurrent
patches of different parts of one value never lose each other's changes.

PATCH is a JSON Patch (RFC 6902) when it is a JSON array of operations
(add, remove, replace, move, copy, test), and a JSON Merge Patch (RFC 7396)
otherwise: an object whose members replace the value's (null removes one,
objects merge). --type forces one. A PATCH of - reads it from standard input.
A JSON Patch whose test fails exits with 5, one that cannot apply with 1;
the message names the operation and the JSON pointer. The key must exist.`,
		Example: `  ctxd patch app.config '{"debug":true,"old":null}'
  ctxd patch app.config '[{"op":"add","path":"/tags/-","value":"blue"}]'
  ctxd patch lock '[{"op":"test","path":"/owner","value":null},{"op":"replace","path":"/owner","value":"ann"}]'
  ctxd patch app.config '{"retries":3}' --if-version 4`,
		Args: exactArgs("KEY", "PATCH"),
	}
	c := a.clientFlags(cmd, outTable, true)
	c.ifVersionFlag(cmd, "patch")
	cmd.Flags().StringVar(&typ, "type", "", "`merge` (RFC 7396) or json (RFC 6902); default: json for an array, merge otherwise")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		doc := []byte(args[1])
		if args[1] == "-" {
			var err error
			if doc, err = io.ReadAll(a.stdin); err != nil {
				return fmt.Errorf("read patch from stdin: %w", err)
			}
		}
		doc = bytes.TrimSpace(doc)
		if !json.Valid(doc) {
			return usagef("PATCH must be JSON: a JSON Patch array or a merge patch object")
		}
		pt, err := ctxd.ParsePatchType(typ, doc)
		if err != nil {
			return usagef("--type is merge or json; got %q", typ)
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			rec, err := cl.Patch(ctx, c.namespace, args[0], pt, doc, client.PatchOptions{IfVersion: c.expect(cmd)})
			if err != nil {
				return err
			}
			return c.printRecord(rec)
		})
	})
	return cmd
}

// parseValue turns the VALUE argument into the JSON to store.
func parseValue(arg string, asString bool, stdin io.Reader) (json.RawMessage, error) {
	raw := []byte(arg)
	if arg == "-" {
		var err error
		if raw, err = io.ReadAll(stdin); err != nil {
			return nil, fmt.Errorf("read value from stdin: %w", err)
		}
		if len(raw) == 0 {
			// A closed or empty stdin stored "" without a word.
			return nil, usagef(`VALUE -: standard input is empty (for an empty string, give '""')`)
		}
	}
	if !utf8.Valid(raw) {
		// As a JSON string, each bad byte became U+FFFD: stored, not as
		// given (and as JSON, the server's 400).
		return nil, usagef("VALUE is not UTF-8 text, which JSON values are (encode binary data, in base64 say)")
	}
	if !asString && json.Valid(raw) {
		return bytes.TrimSpace(raw), nil
	}
	if arg == "-" {
		// A string from stdin loses the newline that ends its last line.
		raw = bytes.TrimSuffix(raw, []byte("\n"))
		raw = bytes.TrimSuffix(raw, []byte("\r"))
	}
	b, err := json.Marshal(string(raw))
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (a *app) getCmd() *cobra.Command {
	var rev uint64
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value",
		Long: `Print a key's value (exit code 4 if the key does not exist).

With -o value (the default) a string is printed as is, without quotes, and
any other value as JSON; -o json prints the whole record.`,
		Example: `  ctxd get greeting
  ctxd get app.config -o json
  ctxd get greeting --rev 12`,
		Args: exactArgs("KEY"),
	}
	c := a.clientFlags(cmd, outValue, true)
	revisionVar(cmd.Flags(), &rev, "rev", "read the key as it was at this `revision`")
	c.run(cmd, func(ctx context.Context, cl *client.Client, args []string) error {
		rec, err := cl.Get(ctx, c.namespace, args[0], client.GetOptions{Rev: rev})
		if err != nil {
			return err
		}
		return c.printRecord(rec)
	})
	return cmd
}

func (a *app) delCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key",
		Long:    `Delete a key (exit code 4 if it does not exist). Its history is kept.`,
		Example: `  ctxd del greeting
  ctxd del greeting --if-version 2`,
		Args: exactArgs("KEY"),
	}
	c := a.clientFlags(cmd, outTable, false)
	c.ifVersionFlag(cmd, "delete")
	c.run(cmd, func(ctx context.Context, cl *client.Client, args []string) error {
		rec, err := cl.Delete(ctx, c.namespace, args[0], client.DeleteOptions{IfVersion: c.expect(cmd)})
		if err != nil {
			return err
		}
		c.deleted = true
		return c.printRecord(rec)
	})
	return cmd
}

func (a *app) keepaliveCmd() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "keepalive KEY --ttl DURATION",
		Short: "Move an expiring key's deadline, without a new version",
		Long: `Move the deadline of a key put with --ttl to DURATION from now. No new
version, revision, history entry or watch event is made: heartbeats do not
flood history (exit code 4 if the key does not exist, or has expired).`,
		Example: `  ctxd keepalive worker/1/heartbeat --ttl 30s
  ctxd keepalive run/lock --ttl 1m --if-version 3`,
		Args: exactArgs("KEY"),
	}
	c := a.clientFlags(cmd, outTable, false)
	c.ifVersionFlag(cmd, "keepalive")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "the new deadline, from now (30s, 5m): required")
	c.run(cmd, func(ctx context.Context, cl *client.Client, args []string) error {
		if ttl <= 0 {
			return usagef("--ttl is required and must be positive (30s, 5m)")
		}
		rec, err := cl.KeepAlive(ctx, c.namespace, args[0], ttl, client.KeepAliveOptions{IfVersion: c.expect(cmd)})
		if err != nil {
			return err
		}
		return c.printRecord(rec)
	})
	return cmd
}

func (a *app) lsCmd() *cobra.Command {
	var (
		limit int
		after string
		all   bool
	)
	cmd := &cobra.Command{
		Use:     "ls [PREFIX]",
		Aliases: []string{"list"},
		Short:   "List keys",
		Long: `List the keys of a namespace in key order, optionally only those starting
with PREFIX. One page is listed (--limit keys); --after continues from a key,
--all lists every page. -o value prints the keys only, one per line.`,
		Example: `  ctxd ls
  ctxd ls app. --all
  ctxd ls -n prod deploy/ -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("ls takes at most one argument, PREFIX; got %d", len(args))
			}
			return nil
		},
	}
	c := a.clientFlags(cmd, outTable, true)
	cmd.Flags().IntVar(&limit, "limit", 100, fmt.Sprintf("keys per page (at most %d)", ctxd.MaxListLimit))
	cmd.Flags().StringVar(&after, "after", "", "list keys after this `key` (the cursor of the previous page)")
	cmd.Flags().BoolVar(&all, "all", false, "list every key, page after page")
	cmd.MarkFlagsMutuallyExclusive("all", "limit")
	cmd.MarkFlagsMutuallyExclusive("all", "after")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		if limit <= 0 {
			return usagef("--limit must be > 0")
		}
		prefix := ""
		if len(args) == 1 {
			prefix = args[0]
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			var page client.ListPage
			var err error
			if all {
				page.Records, err = cl.ListAll(ctx, c.namespace, prefix)
			} else {
				page, err = cl.List(ctx, c.namespace, client.ListOptions{Prefix: prefix, After: after, Limit: limit})
			}
			if err != nil {
				return err
			}
			return c.printList(page)
		})
	})
	return cmd
}

func (a *app) historyCmd() *cobra.Command {
	var (
		limit  int
		before uint64
	)
	cmd := &cobra.Command{
		Use:   "history KEY",
		Short: "Show a key's changes, newest first",
		Long: `Show a key's changes, newest first (exit code 4 if it never existed).
-o value prints the value after each change, one per line.`,
		Example: `  ctxd history greeting
  ctxd history greeting --limit 5 -o json`,
		Args: exactArgs("KEY"),
	}
	c := a.clientFlags(cmd, outTable, true)
	cmd.Flags().IntVar(&limit, "limit", 100, fmt.Sprintf("changes to show (at most %d)", ctxd.MaxListLimit))
	revisionVar(cmd.Flags(), &before, "before", "show only changes before this `revision` (the next of the previous page)")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		if limit <= 0 {
			return usagef("--limit must be > 0")
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			page, err := cl.History(ctx, c.namespace, args[0], client.HistoryOptions{Limit: limit, Before: before})
			if err != nil {
				return err
			}
			return c.printHistory(page)
		})
	})
	return cmd
}

func (a *app) nsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ns",
		Short: "List namespaces and their number of keys",
		Args:  cobra.NoArgs,
	}
	c := a.clientFlags(cmd, outTable, true)
	c.run(cmd, func(ctx context.Context, cl *client.Client, _ []string) error {
		nss, err := cl.Namespaces(ctx)
		if err != nil {
			return err
		}
		return c.printNamespaces(nss)
	})
	return cmd
}

func (a *app) whoamiCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show what the access token may do: its name, roles and limits",
		Long: `Show what the access token (--token, CTXD_TOKEN) may do, as the server
says (GET /v1/auth/self): its name, the roles the tokens file gives it, what
they allow, and the namespaces and key prefixes it is limited to ("all": not
limited; "none" for a token that may not read keys, a metrics one). On a
server without access control, everything is allowed.
An unknown or revoked token exits 1, as every command.`,
		Args: cobra.NoArgs,
	}
	c := a.clientFlags(cmd, outTable, false)
	c.run(cmd, func(ctx context.Context, cl *client.Client, _ []string) error {
		info, err := cl.AuthSelf(ctx)
		if err != nil {
			return err
		}
		return c.printTokenInfo(info)
	})
	return cmd
}

func (a *app) statusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the server's status",
		Args:  cobra.NoArgs,
	}
	c := a.clientFlags(cmd, outTable, false)
	c.run(cmd, func(ctx context.Context, cl *client.Client, _ []string) error {
		st, server, err := cl.StatusFrom(ctx)
		if err != nil {
			return err
		}
		var instances []client.InstanceState
		if len(cl.Servers()) > 1 {
			// Which instances serve: the status is the one's that
			// answered (server), and says nothing of the others.
			instances = cl.Instances(ctx)
		} else {
			server = "" // the only one: as it was
		}
		return c.printStatus(st, server, instances)
	})
	return cmd
}
