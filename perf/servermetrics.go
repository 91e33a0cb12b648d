package perf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// The server's own view of its write path, read from its Prometheus
// metrics (GET /metrics) before and after each run that writes: how many
// commits the writes took and how long one took. It explains the write
// numbers: the writer commits one group of writes at a time to the
// write-ahead log, each commit costing one fdatasync; the committer applies
// them to the database file later, in batches with bbolt's own fsyncs.

// CommitStats is what the server's writer did during a run (warm-up
// included).
type CommitStats struct {
	// Commits is the number of fsynced commits; WritesPerCommit the write
	// requests each carried on average.
	Commits         int64   `json:"commits"`
	WritesPerCommit float64 `json:"writes_per_commit"`
	// CommitMs is the mean duration of a commit, its fdatasync included;
	// DiskMs the time bbolt spent writing and fsyncing pages (the
	// committer's, off the acknowledgement path) per commit.
	CommitMs float64 `json:"commit_ms"`
	DiskMs   float64 `json:"disk_ms"`
	// Applies is the number of batches in which the committer applied
	// acknowledged writes to the database file (off the acknowledgement
	// path); ChangesPerApply, PagesPerApply and ApplyMs what one held,
	// wrote and took. Zero from a server without a write-ahead log.
	Applies         int64   `json:"applies"`
	ChangesPerApply float64 `json:"changes_per_apply"`
	PagesPerApply   float64 `json:"pages_per_apply"`
	ApplyMs         float64 `json:"apply_ms"`
}

// commitCounters are the raw counters behind CommitStats.
type commitCounters struct {
	commits, writes     float64
	commitSecs, diskSec float64
	// optional: not every server has them
	applies, applied, applySecs, pages float64
	// pending is the acknowledged changes not yet applied to the
	// database file (0 on a store without a committer: etcd);
	// hasPending, that the server gave it (a server older than the
	// metric has the commit counters without it).
	pending    float64
	hasPending bool
}

var commitMetrics = map[string]func(*commitCounters, float64){
	"ctxd_store_commits_total":               func(c *commitCounters, v float64) { c.commits = v },
	"ctxd_store_writes_total":                func(c *commitCounters, v float64) { c.writes = v },
	"ctxd_store_commit_duration_seconds_sum": func(c *commitCounters, v float64) { c.commitSecs = v },
	"ctxd_store_fsync_write_seconds_total":   func(c *commitCounters, v float64) { c.diskSec = v },
}

// applyMetrics are the committer's counters, read when the server has
// them.
var applyMetrics = map[string]func(*commitCounters, float64){
	"ctxd_store_applies_total":         func(c *commitCounters, v float64) { c.applies = v },
	"ctxd_store_applied_changes_total": func(c *commitCounters, v float64) { c.applied = v },
	"ctxd_store_apply_seconds_total":   func(c *commitCounters, v float64) { c.applySecs = v },
	"ctxd_store_page_writes_total":     func(c *commitCounters, v float64) { c.pages = v },
	"ctxd_store_pending_changes":       func(c *commitCounters, v float64) { c.pending, c.hasPending = v, true },
}

// scrapeCommits reads the writer's counters; the error says why it could
// not (a token that may not read /metrics, an old server without them).
func scrapeCommits(c *httpConn) (cc commitCounters, err error) {
	if err := c.expect(http.StatusOK, http.MethodGet, "/metrics", nil); err != nil {
		if se := (*statusError)(nil); errors.As(err, &se) && se.status == http.StatusForbidden {
			return cc, fmt.Errorf("the token may not read /metrics (the admin and metrics roles may): %w", err)
		}
		return cc, err
	}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(c.body.Bytes()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := bytes.Cut(sc.Bytes(), []byte(" "))
		if !ok {
			continue
		}
		set, counted := commitMetrics[string(name)], true
		if set == nil {
			set, counted = applyMetrics[string(name)], false
		}
		if set == nil {
			continue
		}
		v, err := strconv.ParseFloat(string(bytes.TrimSpace(value)), 64)
		if err != nil {
			continue
		}
		set(&cc, v)
		if counted {
			found++
		}
	}
	if found != len(commitMetrics) {
		return cc, errors.New("GET /metrics: the server has no ctxd_store_commits_total and the writer's other counters (a ctxd older than them)")
	}
	return cc, nil
}

// commitStats returns what happened between two scrapes (nil when nothing
// was committed).
func commitStats(before, after commitCounters) *CommitStats {
	commits := after.commits - before.commits
	if commits <= 0 {
		return nil
	}
	cs := &CommitStats{
		Commits:         int64(commits),
		WritesPerCommit: round1((after.writes - before.writes) / commits),
		CommitMs:        round3((after.commitSecs - before.commitSecs) * 1000 / commits),
		DiskMs:          round3((after.diskSec - before.diskSec) * 1000 / commits),
	}
	if applies := after.applies - before.applies; applies > 0 {
		cs.Applies = int64(applies)
		cs.ChangesPerApply = round1((after.applied - before.applied) / applies)
		cs.PagesPerApply = round1((after.pages - before.pages) / applies)
		cs.ApplyMs = round3((after.applySecs - before.applySecs) * 1000 / applies)
	}
	return cs
}
