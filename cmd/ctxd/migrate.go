package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/store/bolt"
)

func (a *app) migrateCmd() *cobra.Command {
	var (
		configPath, dataDir string
		dryRun              bool
		lockTimeout         lockTimeoutFlag
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Upgrade a data folder to this binary's schema",
		Long: `Upgrade the database of a stopped server's data folder to the schema this
binary writes. --dry-run prints the plan and changes nothing. 'ctxd serve'
upgrades on start as well; migrate lets you look first.`,
		Example: `  ctxd migrate --data ./data --dry-run
  ctxd migrate --data ./data`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration `file` (for data_dir)")
	cmd.Flags().StringVar(&dataDir, "data", "", "data `folder` (default from config: ./data)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan, change nothing")
	lockTimeout.register(cmd)
	cmd.RunE = a.action(func(cmd *cobra.Command, _ []string) error {
		openTimeout, err := lockTimeout.timeout()
		if err != nil {
			return err
		}
		flags := map[string]string{}
		if cmd.Flags().Changed("data") {
			flags["data_dir"] = dataDir
		}
		cfg, err := configs.Load(configPath, a.environ, flags)
		if err != nil {
			return err
		}
		return migrate(a.stdout, filepath.Join(cfg.DataDir, dbFile), dryRun, openTimeout)
	})
	return cmd
}

// migrate prints the plan that brings the database at path to the current
// schema and, unless dryRun, applies it. Each wait for the file's lock
// lasts up to lockTimeout (bolt.Options.OpenTimeout).
//
// Integration point with package migrations: PlanFile (through
// bolt.PlanMigration, which names a database a server holds) reads the plan
// without changing the file; bolt.Open runs the same plan
// (migrations.Migrate) in one transaction, so applying it is opening and
// closing the store.
func migrate(out io.Writer, path string, dryRun bool, lockTimeout time.Duration) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no database at %s", path)
	}
	from, to, steps, err := bolt.PlanMigration(path, lockTimeout)
	if err != nil {
		return fmt.Errorf("plan migration of %s: %w", path, err)
	}
	switch {
	case from == 0:
		fmt.Fprintf(out, "%s: new database, no schema yet; it is initialised at schema %d when opened\n", path, to)
	case len(steps) == 0:
		fmt.Fprintf(out, "%s: schema %d is current, nothing to do\n", path, from)
		return nil
	default:
		fmt.Fprintf(out, "%s: schema %d -> %d\n", path, from, to)
		for _, s := range steps {
			fmt.Fprintf(out, "  %d -> %d: %s\n", s.From, s.From+1, s.Description)
		}
	}
	if dryRun {
		fmt.Fprintln(out, "dry run: nothing changed")
		return nil
	}
	st, err := bolt.Open(path, bolt.Options{OpenTimeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(out, "migrated to schema %d\n", to)
	return nil
}
