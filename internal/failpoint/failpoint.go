// Package failpoint marks the steps of ctxd's dangerous operations (the
// file swaps of a restore or a defrag, the metadata of a snapshot, the
// answer after a commit, ...) with named points where a test can make the
// real binary crash or pause, exactly there.
//
// # Basics
//
// Code calls Hit with one of the Name constants below; All lists them, so
// that tests and code agree on the names. In the production build Hit is
// an empty function that the compiler inlines away: a call costs nothing
// and the binary holds no trace of this package (robustness tests check
// that its symbols are absent). A binary built with -tags failpoints reads
// the environment variable CTXD_FAILPOINTS at start and arms the points it
// names:
//
//	CTXD_FAILPOINTS='snapshot-before-meta=crash'
//	CTXD_FAILPOINTS='commit-before-answer=crash@2;defrag-catch-up=sleep(200ms)'
//
// An action is crash (the process sends itself SIGKILL: no deferred
// function, no shutdown code runs, exactly as `kill -9`) or sleep(D) (D as
// time.ParseDuration reads it), optionally followed by @N: act on the N-th
// hit only. Without @N, sleep acts at every hit and crash at the first.
// Before it acts, the armed binary writes one JSON line to stderr:
//
//	{"level":"warn","failpoint":"snapshot-before-meta","action":"crash","hit":1,"message":"failpoint fired"}
//
// so a test tells a crash at the point from any other death.
//
// # Caveats
//
// A spec that does not parse, or names an unknown point, stops the armed
// binary at start with exit code 2: a point renamed or removed is noticed,
// not silently never reached. A point that still exists but that the
// operation no longer reaches is the test's to notice (robustness tests
// fail when the armed process outlives the operation). The -tags failpoints
// build is for tests only.
package failpoint

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvVar is the environment variable an armed binary reads.
const EnvVar = "CTXD_FAILPOINTS"

// Name names a failpoint.
type Name string

// The failpoints, in the order of the operations they mark. Each says
// where it is and what is on disk when it fires.
const (
	// SnapshotAfterCopy: a snapshot's copy is written and fsynced to a temp
	// file in the snapshots folder, not yet verified nor renamed.
	SnapshotAfterCopy Name = "snapshot-after-copy"
	// SnapshotBeforeMeta: the verified snapshot file is renamed to
	// <id>.db, its metadata <id>.json is not written yet.
	SnapshotBeforeMeta Name = "snapshot-before-meta"
	// RestoreAfterCopy: a full restore has copied the snapshot next to the
	// live file (ctxd.db.restore.tmp); writers still run.
	RestoreAfterCopy Name = "restore-after-copy"
	// RestoreBeforeRename: writers are paused, the live database is
	// closed and kept as ctxd.db.swap-backup; the prepared file is not yet
	// renamed over ctxd.db.
	RestoreBeforeRename Name = "restore-before-rename"
	// RestoreAfterRename: the restored file is ctxd.db (renamed, folder
	// fsynced) and not yet opened nor loaded.
	RestoreAfterRename Name = "restore-after-rename"
	// DefragCatchUp: a defrag's copy has caught up once with the writes
	// made since it began; writers still run.
	DefragCatchUp Name = "defrag-catch-up"
	// DefragBeforeRename: the compact copy is complete, writers are
	// paused, the live database is closed and kept as
	// ctxd.db.swap-backup; the copy is not yet renamed over ctxd.db.
	DefragBeforeRename Name = "defrag-before-rename"
	// DefragAfterRename: the compact copy is ctxd.db (renamed, folder
	// fsynced) and not yet opened nor loaded.
	DefragAfterRename Name = "defrag-after-rename"
	// CompactBetweenChunks: a compaction has raised its mark and committed
	// one chunk of deletions, and has more to do.
	CompactBetweenChunks Name = "compact-between-chunks"
	// CommitBeforeAnswer: the writer's group is durable (its write-ahead
	// log records appended and fdatasynced, or, for a request too large
	// for the log, its bbolt transaction committed); nothing of it is
	// readable yet, no caller has been answered, no follower woken.
	CommitBeforeAnswer Name = "commit-before-answer"
	// WALRotate: a write-ahead log append did not fit in the current
	// segment; the records that fit are written and fdatasynced, the next
	// segment is renamed into place and the folder not yet fsynced; the
	// rest of the group is not written.
	WALRotate Name = "wal-rotate"
	// CommitterBeforeRelease: the committer's bbolt transaction (a batch
	// of acknowledged changes and meta/wal_seq) is committed; the changes
	// are still in the overlay and the log segments that hold them are
	// not released.
	CommitterBeforeRelease Name = "committer-before-release"
	// ReplayBetweenBatches: Open is replaying the write-ahead log into the
	// database (the server does not listen yet) and has committed a batch
	// of 4096 changes with its meta/wal_seq; the rest of the log, if any,
	// is not replayed yet.
	ReplayBetweenBatches Name = "replay-between-batches"
	// DumpBeforeRename: a server-side dump is written to its temp file in
	// the dump folder, not yet fsynced nor renamed.
	DumpBeforeRename Name = "dump-before-rename"
	// EtcdRestoreAfterSwitch: a full restore into etcd has written the
	// new generation and switched <prefix>meta/gen to it; the replaced
	// generation's keys are not deleted yet.
	EtcdRestoreAfterSwitch Name = "etcd-restore-after-switch"
)

// All lists every failpoint: the names CTXD_FAILPOINTS may arm.
var All = []Name{
	SnapshotAfterCopy, SnapshotBeforeMeta,
	RestoreAfterCopy, RestoreBeforeRename, RestoreAfterRename,
	DefragCatchUp, DefragBeforeRename, DefragAfterRename,
	CompactBetweenChunks, CommitBeforeAnswer, WALRotate, CommitterBeforeRelease,
	ReplayBetweenBatches, DumpBeforeRename, EtcdRestoreAfterSwitch,
}

// Kind is what an armed point does.
type Kind int

// The kinds of action.
const (
	Crash Kind = iota + 1 // SIGKILL the process
	Sleep                 // pause the goroutine that hit the point
)

// Action is what an armed point does, and at which hit.
type Action struct {
	Kind  Kind
	Sleep time.Duration // for Sleep
	// At, when non-zero, acts at the At-th hit only (counting from 1).
	At int
}

// String is the action as CTXD_FAILPOINTS spells it.
func (a Action) String() string {
	s := "crash"
	if a.Kind == Sleep {
		s = "sleep(" + a.Sleep.String() + ")"
	}
	if a.At > 0 {
		s += "@" + strconv.Itoa(a.At)
	}
	return s
}

// Acts reports whether the action runs at the hit-th hit (from 1).
func (a Action) Acts(hit int64) bool {
	switch {
	case a.At > 0:
		return hit == int64(a.At)
	case a.Kind == Crash:
		return hit == 1
	default:
		return true
	}
}

// Parse reads a CTXD_FAILPOINTS value: name=action terms separated by
// semicolons (see the package doc). Every name must be in All, once.
func Parse(spec string) (map[Name]Action, error) {
	out := map[Name]Action{}
	for term := range strings.SplitSeq(spec, ";") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		name, action, ok := strings.Cut(term, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not name=action", EnvVar, term)
		}
		n := Name(strings.TrimSpace(name))
		if !slices.Contains(All, n) {
			return nil, fmt.Errorf("%s: unknown failpoint %q (known: %s)", EnvVar, n, joinNames(All))
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("%s: failpoint %q armed twice", EnvVar, n)
		}
		a, err := parseAction(strings.TrimSpace(action))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", EnvVar, n, err)
		}
		out[n] = a
	}
	return out, nil
}

func parseAction(s string) (Action, error) {
	var a Action
	if body, at, ok := strings.Cut(s, "@"); ok {
		n, err := strconv.Atoi(at)
		if err != nil || n < 1 {
			return Action{}, fmt.Errorf("%q: the hit after @ must be a number from 1", s)
		}
		a.At = n
		s = body
	}
	switch {
	case s == "crash":
		a.Kind = Crash
	case strings.HasPrefix(s, "sleep(") && strings.HasSuffix(s, ")"):
		d, err := time.ParseDuration(s[len("sleep(") : len(s)-1])
		if err != nil || d < 0 {
			return Action{}, fmt.Errorf("%q: sleep needs a duration such as sleep(100ms)", s)
		}
		a.Kind, a.Sleep = Sleep, d
	default:
		return Action{}, fmt.Errorf("unknown action %q: use crash or sleep(DURATION), optionally with @N", s)
	}
	return a, nil
}

func joinNames(names []Name) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}
