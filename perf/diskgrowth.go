package perf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// diskWriters is how many clients write disk-growth's versions.
const diskWriters = 64

// ownServer returns a server with a database of its own: a fresh one when
// the suite starts servers (in a process of its own when isolated is set
// and the target can start one), else the target (the caller has checked
// that destructive scenarios may run there; srv is then nil). close stops
// a fresh one.
func (s *suite) ownServer(isolated bool) (srv *Server, ep endpoint, close func(), err error) {
	start := s.target.Fresh
	if isolated && s.target.Isolated != nil {
		start = s.target.Isolated
	}
	if start == nil {
		return nil, s.ep, func() {}, nil
	}
	srv, err = start()
	if err != nil {
		return nil, endpoint{}, nil, fmt.Errorf("start a server: %w", err)
	}
	var once sync.Once
	close = func() {
		once.Do(func() {
			if err := srv.Close(); err != nil {
				s.notef("stop server: %v", err)
			}
		})
	}
	s.cleanups = append(s.cleanups, close) // when the run ends early
	ep, err = s.endpoint(srv.URL)
	if err != nil {
		close()
		return nil, endpoint{}, nil, err
	}
	return srv, ep, close, nil
}

func (s *suite) diskGrowthSteps() []step {
	name := fmt.Sprintf("disk-growth/keys=%d", s.cfg.DiskKeys)
	versions := slices.Max(s.cfg.DiskVersions)
	est := time.Duration(s.cfg.DiskKeys*versions)*40*time.Microsecond + 2*time.Second
	return []step{{name: name, estimate: est, run: func(ctx context.Context) error {
		return s.diskGrowthRun(ctx, name)
	}}}
}

// diskGrowthRun writes DiskKeys keys, then more versions of each, taking
// the database's size as it grows; then compacts history to one version
// per key and defragments the file, taking the size after each.
func (s *suite) diskGrowthRun(ctx context.Context, name string) error {
	srv, ep, stop, err := s.ownServer(true)
	if err != nil {
		return err
	}
	defer stop()
	memBefore, _, haveMemory := s.readMemory(name, srv, ep)
	k := s.cfg.DiskKeys
	dg := DiskGrowthRun{Name: name, Keys: k, ValueSize: len(s.value), Points: []DiskPoint{}}
	errs := &errorLog{}
	defer func() {
		dg.RunErrors = errs.result()
		s.report.DiskGrowth = append(s.report.DiskGrowth, dg)
	}()
	c := newHTTPConn(ep)
	defer c.Close()

	// Every key has the same length, so a version is keyLen + len(value)
	// logical bytes.
	paths := make([]string, k)
	keyLen := 0
	for i := range k {
		key := fmt.Sprintf("%s-%07d", s.runID, i)
		paths[i] = keyPath(nsDisk, key)
		keyLen = len(key)
	}
	point := func(stage string, keys, perKey int, versions int64) (DiskPoint, error) {
		st, settled, err := settledStatus(c, s.settleTimeout())
		if err != nil {
			return DiskPoint{}, err
		}
		p := DiskPoint{
			Stage: stage, Keys: keys, VersionsPerKey: perKey, Versions: versions,
			LogicalBytes: versions * int64(keyLen+len(s.value)), FileBytes: st.FileSizeBytes, InUseBytes: st.InUseBytes,
			Unsettled: !settled,
		}
		if srv != nil && srv.DataDir != "" {
			if p.DiskBytes, p.WALBytes, err = folderUsage(srv.DataDir); err != nil {
				return DiskPoint{}, err
			}
		}
		if versions > 0 {
			p.BytesPerVersion = round1(float64(p.FileBytes) / float64(versions))
			p.InUseBytesPerVersion = round1(float64(p.InUseBytes) / float64(versions))
		}
		return p, nil
	}

	// The first version of every key, with points as the keys grow.
	began := time.Now()
	done := 0
	for _, n := range uniqueSorted(k/10, k/4, k/2, k) {
		if err := s.putAll(ctx, ep, paths[done:n], errs); err != nil {
			return err
		}
		done = n
		p, err := point("write", n, 1, int64(n))
		if err != nil {
			return err
		}
		dg.Points = append(dg.Points, p)
	}
	// More versions of every key, with a point at each of DiskVersions.
	written := 1
	for _, v := range uniqueSorted(s.cfg.DiskVersions...) {
		for ; written < v; written++ {
			if err := s.putAll(ctx, ep, paths, errs); err != nil {
				return err
			}
		}
		if v == 1 {
			continue // the last point of the first pass
		}
		p, err := point("write", k, v, int64(k)*int64(v))
		if err != nil {
			return err
		}
		dg.Points = append(dg.Points, p)
	}
	dg.WriteSeconds = round6(time.Since(began).Seconds())

	st, err := getStatus(c)
	if err != nil {
		return err
	}
	t := time.Now()
	if _, err := compact(c, st.Revision, 1); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	dg.CompactSeconds = round6(time.Since(t).Seconds())
	if dg.AfterCompaction, err = point("compacted", k, 1, int64(k)); err != nil {
		return err
	}
	t = time.Now()
	res, err := defrag(c)
	if err != nil {
		return fmt.Errorf("defrag: %w", err)
	}
	dg.DefragSeconds = round6(time.Since(t).Seconds())
	dg.DefragPauseMs = res.PauseMs
	if dg.AfterDefrag, err = point("defragmented", k, 1, int64(k)); err != nil {
		return err
	}
	if haveMemory {
		if after, process, ok := s.readMemory(name, srv, ep); ok {
			dg.Memory = memoryUse(process, memBefore, after, k, 10000, "keys")
		}
	}
	return nil
}

// walFolder is the write-ahead log's folder in a data folder (beside the
// database file, store/bolt.WALDir).
const walFolder = "wal"

// folderUsage returns what a server's data folder takes on disk, every
// file's allocated blocks (the database file, the write-ahead log, any
// other), and of that the write-ahead log's.
func folderUsage(dir string) (total, wal int64, err error) {
	walDir := filepath.Join(dir, walFolder)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // a file removed as we walked (a released log segment)
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		n := allocatedBytes(fi)
		total += n
		if strings.HasPrefix(path, walDir+string(filepath.Separator)) {
			wal += n
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("disk use of %s: %w", dir, err)
	}
	return total, wal, nil
}

// putAll puts the configured value at every path, with diskWriters clients.
func (s *suite) putAll(ctx context.Context, ep endpoint, paths []string, errs *errorLog) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var connErr atomic.Pointer[error]
	for range min(diskWriters, len(paths)) {
		wg.Go(func() {
			c := newHTTPConn(ep)
			defer c.Close()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(paths) {
					return
				}
				if err := c.expect(http.StatusOK, http.MethodPut, paths[i], s.value); err != nil {
					errs.add(err)
					if c.c == nil && c.connect() != nil {
						connErr.Store(&err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if p := connErr.Load(); p != nil {
		return fmt.Errorf("write versions: %w", *p)
	}
	return nil
}

// uniqueSorted returns the positive values of vs, sorted, without repeats.
func uniqueSorted(vs ...int) []int {
	out := slices.DeleteFunc(slices.Clone(vs), func(v int) bool { return v <= 0 })
	slices.Sort(out)
	return slices.Compact(out)
}
