package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/migrations"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/snapshots"
)

// snapshotCmd groups the snapshot commands, which talk to a running server.
func (a *app) snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Create, list, download, upload, restore and remove snapshots on the server",
		Example: `  ctxd snapshot create
  ctxd snapshot ls
  ctxd snapshot get 20261127T101500Z-r42 -o backup.db
  ctxd snapshot restore 20261127T101500Z-r42 --dry-run
  ctxd snapshot restore 20261127T101500Z-r42 --ns team --prefix app/
  ctxd snapshot upload backup.db
  ctxd snapshot rm 20261127T101500Z-r42`,
	}
	cmd.AddCommand(a.snapshotCreateCmd(), a.snapshotLsCmd(), a.snapshotGetCmd(), a.snapshotRmCmd(),
		a.snapshotRestoreCmd(), a.snapshotUploadCmd())
	return group(cmd)
}

func (a *app) snapshotCreateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Take a snapshot of the whole database", Args: cobra.NoArgs}
	c := a.clientFlags(cmd, outTable, false)
	c.defaultTimeout(cmd, 0) // the whole database: as long as its size makes it
	c.run(cmd, func(ctx context.Context, cl *client.Client, _ []string) error {
		stop := a.spinner("taking snapshot")
		meta, err := cl.CreateSnapshot(ctx)
		stop()
		if err != nil {
			return err
		}
		return c.printSnapshot(meta)
	})
	return cmd
}

func (a *app) snapshotLsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List snapshots, newest first", Args: cobra.NoArgs}
	c := a.clientFlags(cmd, outTable, false)
	c.run(cmd, func(ctx context.Context, cl *client.Client, _ []string) error {
		list, err := cl.Snapshots(ctx)
		if err != nil {
			return err
		}
		return c.printSnapshots(list)
	})
	return cmd
}

func (a *app) snapshotGetCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "get ID -o FILE",
		Short: "Download a snapshot file (its sha256 is checked) and its metadata beside it",
		Long: `Download a snapshot file and check its sha256. Its metadata (id, revision,
sha256, ...) is written beside it, FILE without .db + .json, so that
'ctxd restore --from FILE' checks the file again wherever it is copied.`,
		Args: exactArgs("ID"),
	}
	c := a.clientFlags(cmd, outTable, false)
	c.defaultTimeout(cmd, 0)
	cmd.Flags().Lookup("output").Usage = "`file` to write the snapshot to (- for standard output); not an output format"
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if !cmd.Flags().Changed("output") || c.output == "" {
			return usagef("snapshot get needs -o FILE")
		}
		out = c.output
		return checkOutFile(out, "the snapshot", "")
	}
	c.run(cmd, func(ctx context.Context, cl *client.Client, args []string) error {
		if out == "-" {
			_, err := cl.DownloadSnapshot(ctx, args[0], a.stdout)
			return err
		}
		var meta client.SnapshotMeta
		written, regular, target, err := writeOutFile(ctx, out, 0o600, func(ctx context.Context, w io.Writer) error {
			pw := a.progress("downloading", w)
			defer pw.done()
			var err error
			meta, err = cl.DownloadSnapshot(ctx, args[0], pw)
			return err
		})
		if err != nil {
			return err
		}
		if !regular { // no metadata beside /dev/null or a pipe
			_, err = fmt.Fprintf(a.stdout, "wrote %s (revision %d, sha256 %s)\n", out, meta.Revision, meta.SHA256)
			return err
		}
		// The metadata beside the file, written after it as the server
		// does: ctxd restore checks the file's sha256 against it on the
		// machine it is copied to.
		metaPath := snapshots.MetaPath(target) // beside the file, not a link to it
		if list, err := cl.Snapshots(ctx); err == nil {
			for _, m := range list {
				if m.ID == meta.ID && m.SHA256 == meta.SHA256 {
					meta = m
				}
			}
		}
		b, err := json.MarshalIndent(meta, "", "  ")
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileBytes(metaPath, 0o600, append(b, '\n')); err != nil {
			return fmt.Errorf("write %s: %w", metaPath, err)
		}
		_, err = fmt.Fprintf(a.stdout, "wrote %s (%s, revision %d) and %s (sha256 %s)\n", out, ctxd.FormatBytes(written), meta.Revision, metaPath, meta.SHA256)
		return err
	})
	return cmd
}

func (a *app) snapshotRmCmd() *cobra.Command {
	return a.rmCmd("ID", "Remove a snapshot", (*client.Client).DeleteSnapshot)
}

// rmCmd is "rm ARG" (alias "delete"): remove, on the server, the one
// thing ARG names, and say so.
func (a *app) rmCmd(arg, short string, remove func(*client.Client, context.Context, string) error) *cobra.Command {
	cmd := &cobra.Command{Use: "rm " + arg, Aliases: []string{"delete"}, Short: short, Args: exactArgs(arg)}
	c := a.clientFlags(cmd, outTable, false)
	c.run(cmd, func(ctx context.Context, cl *client.Client, args []string) error {
		if err := remove(cl, ctx, args[0]); err != nil {
			return err
		}
		if c.output == outJSON { // -o json printed the table's words
			return c.printJSON(map[string]string{"removed": args[0]})
		}
		_, err := fmt.Fprintf(a.stdout, "removed %s\n", args[0])
		return err
	})
	return cmd
}

func (a *app) snapshotUploadCmd() *cobra.Command {
	var sum string
	cmd := &cobra.Command{
		Use:   "upload FILE",
		Short: "Send a snapshot file to the server, which verifies and keeps it",
		Long: `Send a snapshot file to the server, which verifies every page and record
before it keeps it. The file's sha256 is checked first, here, against
--sha256 and against the metadata file beside it (FILE without .db + .json,
as 'ctxd snapshot get' writes it) when there is one: a file damaged since
(even inside a value's text, which no structural check can see) is refused
before it is sent.`,
		Example: "  ctxd snapshot upload backup.db\n  ctxd snapshot upload backup.db --sha256 9f2c...",
		Args:    exactArgs("FILE"),
	}
	cmd.Flags().StringVar(&sum, "sha256", "", "the file's expected sha256 (`hex`, as 'ctxd snapshot ls -o json' shows it)")
	c := a.clientFlags(cmd, outTable, false)
	c.defaultTimeout(cmd, 0)
	c.run(cmd, func(ctx context.Context, cl *client.Client, args []string) error {
		if sum != "" && !snapshots.IsSHA256(sum) {
			return usagef("--sha256: want 64 hexadecimal digits, got %q", sum)
		}
		checked, err := snapshots.CheckFile(args[0], sum)
		if err != nil {
			return err
		}
		if checked == 0 {
			fmt.Fprintf(a.stderr, "sha256 not checked: no --sha256 and no %s beside the file (the server checks pages and records)\n", snapshots.MetaPath(args[0]))
		}
		stop := a.spinner("uploading " + args[0])
		meta, err := cl.UploadSnapshot(ctx, args[0])
		stop()
		if err != nil {
			return err
		}
		return c.printSnapshot(meta)
	})
	return cmd
}

func (a *app) snapshotRestoreCmd() *cobra.Command {
	var opts client.RestoreOptions
	cmd := &cobra.Command{
		Use:   "restore ID",
		Short: "Restore the server's data from a snapshot (whole, or --ns/--prefix only)",
		Long: `Restore the server's data from one of its snapshots. Without --ns and --prefix
the whole database is replaced atomically and WebSocket clients get 'reset';
with them, only those namespaces or keys are restored, as one ordinary
transaction recorded in history. --dry-run reports what would change.`,
		Args: exactArgs("ID"),
	}
	c := a.clientFlags(cmd, outTable, false)
	c.defaultTimeout(cmd, 0)
	restoreFlags(cmd, &opts)
	c.run(cmd, func(ctx context.Context, cl *client.Client, args []string) error {
		opts.Who = c.author()
		stop := a.spinner("restoring")
		res, err := cl.RestoreSnapshot(ctx, args[0], opts)
		stop()
		if err != nil {
			return err
		}
		return c.printRestore(res)
	})
	return cmd
}

// restoreFlags registers what a restore replaces: --dry-run, --ns, --prefix.
func restoreFlags(cmd *cobra.Command, opts *ctxd.RestoreOptions) {
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would change, change nothing")
	cmd.Flags().StringArrayVar(&opts.Namespaces, "ns", nil, "restore only this `namespace` (repeatable)")
	cmd.Flags().StringVar(&opts.Prefix, "prefix", "", "restore only keys starting with this `prefix`")
}

// checkRestoreSelection checks --ns and --prefix as the server checks
// ns= and prefix= of a restore, before any database or etcd is opened: a
// bad one is a mistake in the command (exit 2), and a control character
// in --prefix is refused rather than matching no key.
func checkRestoreSelection(opts ctxd.RestoreOptions) error {
	for _, ns := range opts.Namespaces {
		if err := ctxd.ValidateNamespace(ns); err != nil {
			return usagef("--ns: %w", err)
		}
	}
	if err := ctxd.ValidatePrefix(opts.Prefix); err != nil {
		return usagef("--prefix: %w", err)
	}
	return nil
}

// restoreCmd restores a stopped server's data folder, or a new one, from a
// snapshot file; or, with store.backend etcd (--etcd-endpoints or the
// configuration), an etcd prefix (restore_etcd.go).
// defaultBumpRevision is how far after a snapshot's revision a new folder's
// revisions start: past any number of changes a lost server may have made
// after its snapshot, and still far below 2^53 (a JavaScript client's
// exact integers) after millions of restores.
const defaultBumpRevision uint64 = 1_000_000_000

func (a *app) restoreCmd() *cobra.Command {
	var (
		configPath, dataDir, from, sum string
		opts                           ctxd.RestoreOptions
		bump                           uint64
		etcdFlags                      etcdRestoreFlags
		lockTimeout                    lockTimeoutFlag
	)
	cmd := &cobra.Command{
		Use:   "restore --data DIR --from FILE",
		Short: "Restore a stopped server's data folder, or a new one, from a snapshot file",
		Long: `Restore the database of a data folder from a snapshot file (one downloaded
with 'ctxd snapshot get', a <id>.db of a snapshots folder, or any file
'ctxd snapshot upload' would accept). The file is verified first: its sha256
against --sha256 and against the metadata file beside it (FILE without .db +
.json) when there is one, then every page and record. A bad file writes
nothing.

A missing or empty folder (no ctxd.db) is created and gets the snapshot as
its database: keys, values, versions and history, each change at its
revision; revisions go on 1,000,000,000 after the snapshot's
(--bump-revision), and older ones answer 'compacted'. Over the database
of a stopped server, the snapshot replaces it (whole, or --ns/--prefix
only), and a whole restore keeps the replaced file as
ctxd.db.before-restore-<time>: restore from that file to undo it.

Clients of the old server may have seen revisions after the snapshot's. For
a new folder, --bump-revision N starts the new server's revisions N after the
snapshot's and marks those compacted, so that such a client resuming here is
told 'compacted' (and re-reads) instead of getting the new server's different
changes under revisions it has seen: N must be larger than the changes the
old server made after the snapshot, which a lost server no longer tells, so
the default is 1,000,000,000 (as etcdutl snapshot restore --bump-revision
1000000000 in Kubernetes' guide). --bump-revision 0 goes on right after the
snapshot's revision: only when the snapshot is the old server's last state.

With --etcd-endpoints (or store.backend etcd in --config or CTXD_*), the
target is an etcd prefix (--etcd-prefix, default /ctxd/): the snapshot of
either backend replaces its data in one switch that every ctxd instance on
the prefix sees at once (their watchers get 'reset'). A prefix that holds
data is refused unless --force.`,
		Example: `  ctxd restore --data /var/lib/ctxd --from backup.db --dry-run
  ctxd restore --data /var/lib/ctxd --from backup.db
  ctxd restore --data ./data --from backup.db --sha256 9f2c...
  ctxd restore --etcd-endpoints http://10.0.0.1:2379 --etcd-prefix /ctxd/ --from backup.db`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration `file` (for data_dir)")
	cmd.Flags().StringVar(&dataDir, "data", "", "data `folder` (default from config: ./data)")
	cmd.Flags().StringVar(&from, "from", "", "snapshot `file` to restore from")
	cmd.Flags().StringVar(&sum, "sha256", "", "the snapshot file's expected sha256 (`hex`, as 'ctxd snapshot ls -o json' shows it)")
	cmd.Flags().Uint64Var(&bump, "bump-revision", defaultBumpRevision, "new folder only: start revisions this `many` after the snapshot's, all below compacted (0: right after it)")
	restoreFlags(cmd, &opts)
	etcdFlags.register(cmd)
	lockTimeout.register(cmd)
	cmd.RunE = a.action(func(cmd *cobra.Command, _ []string) error {
		if from == "" {
			return usagef("restore needs --from FILE")
		}
		if err := checkRestoreSelection(opts); err != nil {
			return err
		}
		openTimeout, err := lockTimeout.timeout()
		if err != nil {
			return err
		}
		if sum != "" && !snapshots.IsSHA256(sum) {
			return usagef("--sha256: want 64 hexadecimal digits, got %q", sum)
		}
		cfg, err := etcdFlags.load(cmd, a, configPath, dataDir)
		if err != nil {
			return err
		}
		explicitBump := cmd.Flags().Changed("bump-revision")
		if cfg.Store.Backend == configs.BackendEtcd {
			if explicitBump && bump > 0 {
				return usagef("--bump-revision applies to a new data folder: on etcd, revisions are etcd's")
			}
			if cmd.Flags().Changed("lock-timeout") {
				return usagef("--lock-timeout applies to a data folder's database file: an etcd prefix has no file lock to wait for")
			}
			return a.restoreEtcd(cmd.Context(), cfg, from, sum, opts, etcdFlags.force)
		}
		if etcdFlags.force {
			return usagef("--force applies to an etcd prefix: a data folder's replaced database is kept instead")
		}
		path := filepath.Join(cfg.DataDir, dbFile)
		_, statErr := os.Stat(path)
		if errors.Is(statErr, fs.ErrNotExist) && opts.IsPartial() {
			return usagef("--ns and --prefix restore part of a snapshot into an existing database; there is none at %s "+
				"(a new data folder gets the whole snapshot)", path)
		}
		if statErr == nil {
			if explicitBump && bump > 0 {
				return usagef("--bump-revision applies to a new data folder: there is a database at %s, whose revisions go on from its own", path)
			}
			bump = 0
		}
		checked, err := snapshots.CheckFile(from, sum)
		if err != nil {
			return err
		}
		stop := a.spinner("verifying and restoring " + from)
		opts.Who = "ctxd restore"
		res, err := bolt.RestoreFolder(cmd.Context(), path, from,
			bolt.FolderRestoreOptions{RestoreOptions: opts, BumpRevision: bump, OpenTimeout: openTimeout})
		stop()
		if errors.Is(err, ctxd.ErrInvalid) { // the arguments: --from the folder's own database, say
			return usagef("%s", strings.TrimPrefix(err.Error(), ctxd.ErrInvalid.Error()+": "))
		}
		if err != nil {
			return err
		}
		return a.printFolderRestore(res, from, checked)
	})
	return cmd
}

// printFolderRestore reports an offline restore, and how to undo it.
func (a *app) printFolderRestore(res bolt.FolderRestore, from string, checked int) error {
	if checked == 0 {
		fmt.Fprintf(a.stdout, "sha256 not checked: no --sha256 and no %s beside the file (pages and records were)\n", snapshots.MetaPath(from))
	}
	c := &common{a: a, output: outTable}
	if !res.New {
		if err := c.printRestore(res.RestoreResult); err != nil {
			return err
		}
		if res.Kept != "" {
			// A command to paste: its paths quoted for a shell (a folder
			// with a space split into two arguments there).
			_, err := fmt.Fprintf(a.stdout, "the replaced database is kept as %s; to undo: ctxd restore --data %s --from %s\n",
				res.Kept, shellQuote(filepath.Dir(res.Database)), shellQuote(res.Kept))
			return err
		}
		return nil
	}
	what, folder := "created", ""
	if res.DryRun {
		what = "dry run: would create"
	}
	if res.CreatedFolder {
		folder = " in a new folder"
	}
	if _, err := fmt.Fprintf(a.stdout, "%s %s%s from snapshot revision %d; revisions go on from %d\n",
		what, res.Database, folder, res.SnapshotRevision, res.Revision+1); err != nil {
		return err
	}
	rows := make([]string, 0, len(res.Namespaces))
	for _, d := range res.Namespaces {
		rows = append(rows, fmt.Sprintf("%s\t%d", d.Namespace, d.Added))
	}
	return c.table("NS\tKEYS", rows)
}

// compactCmd rewrites a stopped server's database file compactly.
func (a *app) compactCmd() *cobra.Command {
	var (
		configPath, dataDir string
		lockTimeout         lockTimeoutFlag
	)
	cmd := &cobra.Command{
		Use:   "compact --data DIR",
		Short: "Rewrite a stopped server's database file to give disk space back",
		Long: `bbolt files never shrink by themselves. compact copies the database of a
stopped server's data folder into a new, compact file and replaces the old
one. On a running server use 'ctxd defrag' instead. To discard old history
first, use POST /v1/compact or the history.* settings.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration `file` (for data_dir)")
	cmd.Flags().StringVar(&dataDir, "data", "", "data `folder` (default from config: ./data)")
	lockTimeout.register(cmd)
	cmd.RunE = a.action(func(cmd *cobra.Command, _ []string) error {
		openTimeout, err := lockTimeout.timeout()
		if err != nil {
			return err
		}
		path, err := a.dataFile(cmd, configPath, dataDir)
		if err != nil {
			return err
		}
		stop := a.spinner("compacting " + path)
		before, after, err := bolt.CompactFile(path, openTimeout)
		stop()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "compacted %s: %s -> %s\n", path, ctxd.FormatBytes(before), ctxd.FormatBytes(after))
		return err
	})
	return cmd
}

// defragCmd asks a running server to defragment its database online.
func (a *app) defragCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "defrag", Short: "Rewrite a running server's database file compactly, online", Args: cobra.NoArgs}
	c := a.clientFlags(cmd, outTable, false)
	c.defaultTimeout(cmd, 0)
	c.run(cmd, func(ctx context.Context, cl *client.Client, _ []string) error {
		stop := a.spinner("defragmenting")
		res, err := cl.Defrag(ctx)
		stop()
		if err != nil {
			return err
		}
		if c.output == outJSON {
			return c.printJSON(res)
		}
		_, err = fmt.Fprintf(a.stdout, "defragmented: %s -> %s, writes paused %.1f ms\n",
			ctxd.FormatBytes(res.SizeBefore), ctxd.FormatBytes(res.SizeAfter), res.PauseMS)
		return err
	})
	return cmd
}

func (a *app) compactionCmd() *cobra.Command {
	var keep int
	cmd := &cobra.Command{
		Use:   "compaction [REV]",
		Short: "Discard a running server's history below a revision",
		Long: `Discard the history below revision REV (default: the current one) on a
running server (POST /v1/compact), keeping --keep-versions versions of each
key (default: the server's history.keep_versions), and always the version
each key had at REV. Reads at older revisions (get --rev, history) and
watch resumes from before REV then answer compacted (410).

The space freed is reused by later writes; 'ctxd defrag' gives it back to
the disk. (ctxd compact is another thing: it rewrites a stopped server's
file.) The server's history.* settings do the same on a schedule.`,
		Example: `  ctxd compaction --keep-versions 1
  ctxd compaction 1200`,
		Args: cobra.MaximumNArgs(1),
	}
	c := a.clientFlags(cmd, outTable, false)
	c.defaultTimeout(cmd, 0)
	cmd.Flags().IntVar(&keep, "keep-versions", 0, "versions of each key to keep (at least 1; default: the server's history.keep_versions)")
	cmd.RunE = a.action(func(cmd *cobra.Command, args []string) error {
		var rev uint64
		if len(args) == 1 {
			var err error
			if rev, err = strconv.ParseUint(args[0], 10, 64); err != nil || rev == 0 {
				return usagef("REV must be a revision (a number from 1); got %q", args[0])
			}
		}
		if cmd.Flags().Changed("keep-versions") && keep < 1 {
			return usagef("--keep-versions must be at least 1; got %d", keep)
		}
		return c.withClient(cmd, func(ctx context.Context, cl *client.Client) error {
			res, err := cl.Compact(ctx, rev, keep)
			if err != nil {
				return err
			}
			if c.output == outJSON {
				return c.printJSON(res)
			}
			if rev != 0 && res.Revision > rev && res.Removed == 0 {
				_, err = fmt.Fprintf(a.stdout, "history was already compacted below revision %d (above %d): nothing removed\n", res.Revision, rev)
				return err
			}
			changes := "changes"
			if res.Removed == 1 {
				changes = "change"
			}
			_, err = fmt.Fprintf(a.stdout, "history compacted below revision %d: %d %s removed\n", res.Revision, res.Removed, changes)
			return err
		})
	})
	return cmd
}

// dataFile resolves the database file of --data / --config, which must
// exist.
func (a *app) dataFile(cmd *cobra.Command, configPath, dataDir string) (string, error) {
	path, err := a.dataPath(cmd, configPath, dataDir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no database at %s: %w", path, err)
	}
	return path, nil
}

// dataPath resolves the database file of --data / --config.
func (a *app) dataPath(cmd *cobra.Command, configPath, dataDir string) (string, error) {
	flags := map[string]string{}
	if cmd.Flags().Changed("data") {
		flags["data_dir"] = dataDir
	}
	cfg, err := configs.Load(configPath, a.environ, flags)
	if err != nil {
		return "", err
	}
	return filepath.Join(cfg.DataDir, dbFile), nil
}

// lockTimeoutFlag is --lock-timeout, of the offline commands that open a
// data folder's database file themselves (migrate, restore --data,
// compact; serve's is its storage.lock_timeout setting): how long they wait for a file's lock while another process (a
// running or stopping server) holds it, before they fail "in use by
// another process".
type lockTimeoutFlag struct{ d time.Duration }

func (f *lockTimeoutFlag) register(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.d, "lock-timeout", migrations.LockTimeout,
		"wait this long for the database file's lock while another process (a stopping server) holds it, then fail (0: do not wait)")
}

// timeout is the flag's value for store/bolt's OpenTimeout, where 0 is
// the default wait: 0 (do not wait) is one try there. A negative one is a
// usage error.
func (f *lockTimeoutFlag) timeout() (time.Duration, error) {
	switch {
	case f.d < 0:
		return 0, usagef("--lock-timeout %s: must not be negative (0: do not wait)", f.d)
	}
	return migrations.GivenLockWait(f.d), nil
}

// printSnapshot prints one snapshot's metadata; in JSON, the API's answer
// to a create or an upload.
func (c *common) printSnapshot(m client.SnapshotMeta) error {
	if c.output == outJSON {
		return c.printJSON(m)
	}
	return c.snapshotTable([]client.SnapshotMeta{m})
}

// printSnapshots prints a list of snapshots; in JSON, the API's answer
// ({"snapshots":[...]}), whatever their number.
func (c *common) printSnapshots(list []client.SnapshotMeta) error {
	if c.output == outJSON {
		return c.printJSON(struct {
			Snapshots []client.SnapshotMeta `json:"snapshots"`
		}{orEmpty(list)})
	}
	return c.snapshotTable(list)
}

func (c *common) snapshotTable(list []client.SnapshotMeta) error {
	rows := make([]string, 0, len(list))
	for _, m := range list {
		var keys uint64
		for _, ns := range m.Namespaces {
			keys += ns.Keys
		}
		rows = append(rows, fmt.Sprintf("%s\t%d\t%s\t%d\t%s\t%s\t%s", m.ID, m.Revision, timeText(m.Created), keys,
			ctxd.FormatBytes(m.Size), m.Origin, m.SHA256[:min(12, len(m.SHA256))]))
	}
	return c.table("ID\tREVISION\tCREATED\tKEYS\tSIZE\tORIGIN\tSHA256", rows)
}

func (c *common) printRestore(res client.RestoreResult) error {
	if c.output == outJSON {
		return c.printJSON(res)
	}
	what := "restored"
	if res.DryRun {
		what = "dry run: would restore"
	}
	kind := "whole database"
	if res.Partial {
		kind = "partial"
	}
	if _, err := fmt.Fprintf(c.out(), "%s (%s) from snapshot revision %d; revision now %d\n", what, kind, res.SnapshotRevision, res.Revision); err != nil {
		return err
	}
	rows := make([]string, 0, len(res.Namespaces))
	for _, d := range res.Namespaces {
		rows = append(rows, fmt.Sprintf("%s\t%d\t%d\t%d\t%d", d.Namespace, d.Added, d.Removed, d.Changed, d.Unchanged))
	}
	return c.table("NS\tADDED\tREMOVED\tCHANGED\tUNCHANGED", rows)
}
