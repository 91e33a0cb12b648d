package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/snapshots"
)

// startMaintenance starts the background work the configuration asks for:
// scheduled snapshots and history retention. It returns the function that
// stops both and waits until they have.
func startMaintenance(cfg configs.Config, st store.Backend, snaps *snapshots.Manager, log zerolog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if cfg.Snapshots.Interval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info().Str("interval", cfg.Snapshots.Interval.String()).Int("keep", cfg.Snapshots.Keep).Msg("scheduled snapshots on")
			snaps.Schedule(ctx, cfg.Snapshots.Interval, cfg.Snapshots.Keep, func(err error) {
				failedStoreLevel(log, err).Err(err).Msg("scheduled snapshot failed")
			}, func(taken ctxd.SnapshotMeta, pruned []string) {
				log.Info().Str("id", taken.ID).Uint64("revision", taken.Revision).Int64("bytes", taken.Size).
					Strs("pruned", pruned).Msg("scheduled snapshot taken")
			})
		}()
	}
	h := cfg.History
	if h.KeepVersions > 0 || h.KeepFor > 0 {
		policy := store.RetentionPolicy{KeepVersions: h.KeepVersions, KeepRevisions: h.KeepRevisions, KeepFor: h.KeepFor}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(h.CompactInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				res, err := st.ApplyRetention(ctx, policy)
				switch {
				case errors.Is(err, ctxd.ErrNotSupported):
					// It never will be (etcd's user without its root role):
					// say so once, not at every tick.
					log.Warn().Err(err).Msg("history retention is off")
					return
				case err != nil && ctx.Err() == nil:
					failedStoreLevel(log, err).Err(err).Msg("history retention failed")
				case res.Removed > 0:
					log.Info().Int("removed", res.Removed).Uint64("compacted_revision", res.Revision).Msg("history retention applied")
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// failedStoreLevel is the level of a maintenance task's failure err: error,
// but info when the task was refused because the store failed, which the
// store's own line said once at error (every tick until the restart
// would repeat it).
func failedStoreLevel(log zerolog.Logger, err error) *zerolog.Event {
	if errors.Is(err, store.ErrFailed) {
		return log.Info()
	}
	return log.Error()
}
