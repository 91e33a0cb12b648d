package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/server"
	"github.com/framework0/ctxd/store/snapshots"
)

// etcdRestoreFlags are the flags of `ctxd restore` that target an etcd
// prefix instead of a data folder.
type etcdRestoreFlags struct {
	endpoints, prefix string
	force             bool
}

func (f *etcdRestoreFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.endpoints, "etcd-endpoints", "", "restore into etcd at these client `URLs` (comma-separated) instead of a data folder")
	cmd.Flags().StringVar(&f.prefix, "etcd-prefix", "", "the etcd key `prefix` to restore into (default from config: /ctxd/)")
	cmd.Flags().BoolVar(&f.force, "force", false, "replace the data of an etcd prefix that holds some")
}

// load reads the configuration with the flags of the command: --data,
// and --etcd-endpoints (which sets store.backend etcd) and --etcd-prefix.
func (f *etcdRestoreFlags) load(cmd *cobra.Command, a *app, configPath, dataDir string) (configs.Config, error) {
	flags := map[string]string{}
	if cmd.Flags().Changed("data") {
		flags["data_dir"] = dataDir
	}
	if cmd.Flags().Changed("etcd-endpoints") {
		if cmd.Flags().Changed("data") {
			return configs.Config{}, usagef("--data and --etcd-endpoints name two targets: give one")
		}
		flags["store.backend"] = configs.BackendEtcd
		flags["etcd.endpoints"] = f.endpoints
	}
	if cmd.Flags().Changed("etcd-prefix") {
		flags["etcd.prefix"] = f.prefix
	}
	return configs.Load(configPath, a.environ, flags)
}

// restoreEtcd restores the snapshot file from into the etcd prefix of
// cfg: verified first (sha256 when known, then every page and record,
// by the store's Restore), refused when the prefix holds data and force
// is not set (a dry run says so and changes nothing).
func (a *app) restoreEtcd(ctx context.Context, cfg configs.Config, from, sum string, opts ctxd.RestoreOptions, force bool) error {
	checked, err := snapshots.CheckFile(from, sum)
	if err != nil {
		return err
	}
	st, err := server.OpenEtcd(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	target := "etcd prefix " + cfg.Etcd.Prefix + " at " + strings.Join(cfg.Etcd.Endpoints, ",")
	if !opts.IsPartial() && !force {
		if rev := st.Revision(); rev > 0 {
			refusal := fmt.Errorf("the %s holds data (changes up to revision %d): give --force to replace it", target, rev)
			if !opts.DryRun {
				return refusal
			}
			fmt.Fprintf(a.stdout, "dry run: refused without --force: %v\n", refusal)
		}
	}
	if checked == 0 {
		fmt.Fprintf(a.stdout, "sha256 not checked: no --sha256 and no %s beside the file (pages and records were)\n", snapshots.MetaPath(from))
	}
	stop := a.spinner("verifying and restoring " + from + " into the " + target)
	opts.Who = "ctxd restore"
	res, err := st.Restore(ctx, from, opts)
	stop()
	if err != nil {
		return err
	}
	if !opts.DryRun && !opts.IsPartial() {
		fmt.Fprintf(a.stdout, "restored into the %s at revision %d, from snapshot revision %d\n", target, res.Revision, res.SnapshotRevision)
	}
	c := &common{a: a, output: outTable}
	return c.printRestore(res)
}
