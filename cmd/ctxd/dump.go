package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/export"
)

// transferTimeout is the default --timeout of dump and import, which move
// whole namespaces.
const transferTimeout = 10 * time.Minute

func (a *app) dumpCmd() *cobra.Command {
	var (
		format, outFile, filename string
		snapshot                  string
		serverSide, history, safe bool
		rev                       uint64
	)
	cmd := &cobra.Command{
		Use:   "dump",
		Short: "Dump a namespace as JSON, pretty, CSV or TXT",
		Long: `Dump a namespace, consistent at one revision, as json, pretty, csv or txt.

By default the dump is streamed from the server to standard output, or with
-o to FILE (written to a temp file and renamed, so FILE is never partial).
With --server-side the server writes it into its dump folder (<data>/dumps)
instead, named --filename (the format's extension is added when missing; a
dump of that name is replaced) or context_dump_<time>.<format>; list them
with 'ctxd dumps'. --rev dumps the namespace as it was at that revision;
--history adds its changes. --snapshot ID dumps the namespace from one of
the server's stored snapshots instead of the live data. --spreadsheet-safe
(csv only) prefixes with a single quote the text cells a spreadsheet would
take for a formula (those starting with = + - @, a tab or a carriage
return): for a dump meant for a spreadsheet, not for a backup.`,
		Example: `  ctxd dump > ctx.json
  ctxd dump --format csv -o ctx.csv
  ctxd dump --format csv --spreadsheet-safe -o for-excel.csv
  ctxd dump -n prod --format pretty --history --rev 1200
  ctxd dump --server-side --filename nightly --format json
  ctxd dump --snapshot 20261127T101500Z-r42 --format csv -o backup.csv`,
		Args: cobra.NoArgs,
	}
	c := a.connFlags(cmd, "who asks, recorded in the dump", transferTimeout) // without -o, which is dump's output file
	f := cmd.Flags()
	f.StringVarP(&format, "format", "f", "json", "dump `format`: json, pretty, csv or txt")
	f.StringVarP(&outFile, "output", "o", "", "write the dump to `FILE` instead of standard output (not a format: that is --format)")
	f.BoolVar(&serverSide, "server-side", false, "have the server write the dump into its dump folder")
	f.StringVar(&filename, "filename", "", "with --server-side: the dump's `name` in the dump folder")
	f.BoolVar(&history, "history", false, "add the namespace's changes")
	f.BoolVar(&safe, "spreadsheet-safe", false, "csv only: quote the text cells a spreadsheet would take for a formula")
	revisionVar(f, &rev, "rev", "dump the namespace as it was at this `revision`")
	f.StringVar(&snapshot, "snapshot", "", "dump from the server's stored snapshot `ID` instead of the live data")
	cmd.MarkFlagsMutuallyExclusive("server-side", "output")
	cmd.MarkFlagsMutuallyExclusive("server-side", "snapshot")
	cmd.MarkFlagsMutuallyExclusive("rev", "snapshot")
	cmd.RunE = a.action(func(cmd *cobra.Command, _ []string) error {
		fm, err := export.ParseFormat(format)
		if format == "" { // the server's default when none is given; here an unset variable
			err = export.ErrUnknownFormat
		}
		if err != nil {
			return usagef("--format: %v", err)
		}
		if err := (export.Options{SpreadsheetSafe: safe}).Check(fm); err != nil {
			return usagef("--spreadsheet-safe: %v", err)
		}
		if err := checkOutFile(outFile, "the dump", "its format is --format"); err != nil {
			return err
		}
		if filename != "" && !serverSide {
			return usagef("--filename names a server-side dump: add --server-side, or use -o FILE")
		}
		if filename != "" {
			if _, err := export.DumpName(filename, fm); err != nil {
				return usagef("--filename: %v", err)
			}
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			opts := client.ExportOptions{Format: string(fm), Rev: rev, History: history, SpreadsheetSafe: safe}
			if serverSide {
				info, err := cl.Dump(ctx, c.namespace, filename, opts)
				if err != nil {
					return err
				}
				return c.table("FILENAME\tFORMAT\tNS\tREVISION\tKEYS\tSIZE\tPATH", []string{strings.Join([]string{
					info.Filename, string(info.Format), info.Namespace, strconv.FormatUint(info.Revision, 10),
					strconv.Itoa(info.KeyCount), ctxd.FormatBytes(info.FileSize), info.Path,
				}, "\t")})
			}
			send := func(ctx context.Context, w io.Writer) (uint64, error) {
				if snapshot != "" {
					return cl.ExportSnapshot(ctx, snapshot, c.namespace, opts, w)
				}
				return cl.Export(ctx, c.namespace, opts, w)
			}
			if outFile == "" || outFile == "-" {
				_, err := send(ctx, a.stdout)
				return err
			}
			var got uint64
			size, regular, _, err := writeOutFile(ctx, outFile, 0o600, func(ctx context.Context, w io.Writer) error {
				var err error
				got, err = send(ctx, w)
				return err
			})
			if err != nil {
				return err
			}
			if !regular {
				_, err = fmt.Fprintf(a.stdout, "%s: %s of %s at revision %d\n", outFile, fm, c.namespace, got)
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%s: %s of %s at revision %d, %s\n", outFile, fm, c.namespace, got, ctxd.FormatBytes(size))
			return err
		})
	})
	return cmd
}

func (a *app) dumpsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dumps",
		Short: "List the dump files on the server, newest first",
		Long: `List the dump files in the server's dump folder, newest first.
-o value prints the filenames only. Download one with
curl $CTXD_SERVER/v1/dumps/NAME (or /ctx/dump/NAME); remove one with
'ctxd dumps rm NAME'.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.dumpsRmCmd())
	c := a.clientFlags(cmd, outTable, true)
	c.run(cmd, func(ctx context.Context, cl *client.Client, _ []string) error {
		list, err := cl.Dumps(ctx)
		if err != nil {
			return err
		}
		return c.printDumps(list)
	})
	return cmd
}

func (a *app) dumpsRmCmd() *cobra.Command {
	return a.rmCmd("NAME", "Remove a dump file from the server", (*client.Client).DeleteDump)
}

func (a *app) importCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import a JSON dump into a namespace",
		Long: `Import a JSON dump (from 'ctxd dump', or a Framework0 JSON dump) into a
namespace: every key of its "context" is set, in one transaction, or none is
(a malformed file changes nothing). Keys not in the dump are left alone.
A key the dump says expires ("expires_at") is set with the time left until
its deadline; one whose deadline has passed is skipped, and counted under
SKIPPED_EXPIRED. FILE - reads standard input. The dump must fit the
server's http.max_body_bytes.`,
		Example: `  ctxd import ctx.json
  ctxd dump -n prod | ctxd import -n staging -`,
		Args: exactArgs("FILE"),
	}
	c := a.clientFlags(cmd, outTable, false)
	c.defaultTimeout(cmd, transferTimeout)
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		in := &readErrs{r: a.stdin}
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer f.Close()
			in.r = f
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			res, err := cl.Import(ctx, c.namespace, in)
			if in.err != nil {
				// Not the server's: the request failed because the
				// dump could not be read (a folder, say).
				return fmt.Errorf("import: %w", in.err)
			}
			if err != nil {
				return err
			}
			if c.output == outJSON {
				return c.printJSON(res)
			}
			return c.table("NS\tIMPORTED\tSKIPPED_EXPIRED\tREVISION", []string{
				res.Namespace + "\t" + strconv.Itoa(res.Imported) + "\t" + strconv.Itoa(res.SkippedExpired) + "\t" + strconv.FormatUint(res.Revision, 10),
			})
		})
	})
	return cmd
}

// readErrs remembers the error of a read of r other than io.EOF: a failed
// read of a request's body fails the request like a lost connection.
type readErrs struct {
	r   io.Reader
	err error
}

func (r *readErrs) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}
