package robustness_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/client"
	"github.com/framework0/ctxd/internal/failpoint"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/wal"
)

// The data folder every crash starts from (see newTemplate): in default,
// keys k00000.. written with tag A, a snapshot of that, then the same keys
// rewritten with tag B; a few keys in namespace other; a dump of default
// in dumps/state.json.
const (
	templateKeys = 2000
	otherKeys    = 10
	dumpName     = "state.json"
)

// template is a data folder filled once by the production binary and
// copied for each crash.
type template struct {
	dir    string
	rev    uint64 // its revision
	snapID string // the snapshot of the A state
	dump   []byte // dumps/state.json
}

// outcome is the state a crashed operation must leave, as the production
// binary finds it on restart.
type outcome int

const (
	// unchanged: the template's data, plus every write acknowledged while
	// the operation ran.
	unchanged outcome = iota
	// restored: the snapshot's data, whole (a full restore took effect;
	// writes acknowledged before it are replaced, as a restore does).
	restored
	// defaultRestored: namespace default is the snapshot's, the others as
	// unchanged (a partial restore of default took effect).
	defaultRestored
)

// crashCase is one crash at one failpoint.
type crashCase struct {
	name  string         // the subtest; the point's name when empty
	point failpoint.Name // where the process must die
	spec  string         // CTXD_FAILPOINTS; "<point>=crash" when empty
	// writes: a client writes keys to namespace live, one after the
	// other, from before the operation starts until the process dies;
	// every acknowledged one must survive (unless a restore replaced it).
	writes bool
	// op runs the operation against the armed server; it returns the
	// client's error (the connection is cut by the crash).
	op   func(t *testing.T, c *client.Client, tp template) error
	want outcome
	// onDisk checks the folder the crash left, before the restart: the
	// files prove where the process died. db0 is ctxd.db as it was before
	// the armed server started.
	onDisk func(t *testing.T, dir string, db0 os.FileInfo)
	// after checks more, against the restarted production binary.
	after func(t *testing.T, c *client.Client, tp template)
	// env is more environment for the armed server.
	env []string
}

// crashCases: every failpoint at least once (TestCrashAtFailpoints
// checks that against failpoint.All).
func crashCases() []crashCase {
	var bigAcked int // by the wal-rotate case
	snapshot := func(t *testing.T, c *client.Client, _ template) error {
		_, err := c.CreateSnapshot(context.Background())
		return err
	}
	restore := func(t *testing.T, c *client.Client, tp template) error {
		_, err := c.RestoreSnapshot(context.Background(), tp.snapID, client.RestoreOptions{})
		return err
	}
	defrag := func(t *testing.T, c *client.Client, _ template) error {
		_, err := c.Defrag(context.Background())
		return err
	}
	return []crashCase{
		{
			point: failpoint.SnapshotAfterCopy, writes: true, op: snapshot, want: unchanged,
			onDisk: func(t *testing.T, dir string, _ os.FileInfo) {
				assert.Len(t, tempFiles(t, filepath.Join(dir, "snapshots")), 1, "the copy, in its temp file")
			},
		},
		{
			point: failpoint.SnapshotBeforeMeta, writes: true, op: snapshot, want: unchanged,
			onDisk: func(t *testing.T, dir string, _ os.FileInfo) {
				db, meta := snapshotFiles(t, filepath.Join(dir, "snapshots"))
				assert.Len(t, db, 2, "the new snapshot's file is in place")
				assert.Len(t, meta, 1, "its metadata is not")
			},
		},
		{
			point: failpoint.RestoreAfterCopy, writes: true, op: restore, want: unchanged,
			onDisk: func(t *testing.T, dir string, db0 os.FileInfo) {
				assert.FileExists(t, filepath.Join(dir, "ctxd.db.restore.tmp"))
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db"), true)
			},
		},
		{
			point: failpoint.RestoreBeforeRename, writes: true, op: restore, want: unchanged,
			onDisk: func(t *testing.T, dir string, db0 os.FileInfo) {
				assert.FileExists(t, filepath.Join(dir, "ctxd.db.restore.tmp"))
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db"), true)
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db.swap-backup"), true)
			},
		},
		{
			point: failpoint.RestoreAfterRename, writes: true, op: restore, want: restored,
			onDisk: func(t *testing.T, dir string, db0 os.FileInfo) {
				assert.NoFileExists(t, filepath.Join(dir, "ctxd.db.restore.tmp"))
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db"), false)
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db.swap-backup"), true)
			},
		},
		{
			name: "restore-partial/" + string(failpoint.CommitBeforeAnswer), point: failpoint.CommitBeforeAnswer,
			op: func(t *testing.T, c *client.Client, tp template) error {
				_, err := c.RestoreSnapshot(context.Background(), tp.snapID, client.RestoreOptions{Namespaces: []string{"default"}})
				return err
			},
			want: defaultRestored,
		},
		{
			point: failpoint.DefragCatchUp, writes: true, op: defrag, want: unchanged,
			onDisk: func(t *testing.T, dir string, db0 os.FileInfo) {
				assert.FileExists(t, filepath.Join(dir, "ctxd.db.defrag.tmp"))
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db"), true)
			},
		},
		{
			point: failpoint.DefragBeforeRename, writes: true, op: defrag, want: unchanged,
			onDisk: func(t *testing.T, dir string, db0 os.FileInfo) {
				assert.FileExists(t, filepath.Join(dir, "ctxd.db.defrag.tmp"))
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db"), true)
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db.swap-backup"), true)
			},
		},
		{
			// The catch-up is slowed down so that many writes land after
			// the copy: they must all be in the file swapped in.
			point: failpoint.DefragAfterRename, writes: true, op: defrag, want: unchanged,
			spec: string(failpoint.DefragCatchUp) + "=sleep(300ms);" + string(failpoint.DefragAfterRename) + "=crash",
			onDisk: func(t *testing.T, dir string, db0 os.FileInfo) {
				assert.NoFileExists(t, filepath.Join(dir, "ctxd.db.defrag.tmp"))
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db"), false)
				assertSameFile(t, db0, filepath.Join(dir, "ctxd.db.swap-backup"), true)
			},
		},
		{
			point: failpoint.CompactBetweenChunks, writes: true, want: unchanged,
			op: func(t *testing.T, c *client.Client, _ template) error {
				_, err := c.Compact(context.Background(), 0, 1)
				return err
			},
			after: func(t *testing.T, c *client.Client, tp template) {
				ctx := context.Background()
				st, err := c.Status(ctx)
				require.NoError(t, err)
				mark := st.CompactedRevision
				require.GreaterOrEqual(t, mark, tp.rev, "the compaction mark was durable before the first chunk")
				_, err = c.Get(ctx, "default", "k01999", client.GetOptions{Rev: mark - 1})
				assert.ErrorIs(t, err, ctxd.ErrCompacted, "below the mark: compacted, never a wrong answer")
				r, err := c.Get(ctx, "default", "k01999", client.GetOptions{Rev: mark})
				require.NoError(t, err)
				assert.Equal(t, "B", tagOf(t, r.Value), "at the mark: the value in effect")
				// The first chunk (revisions 1 to 1000) was committed, the
				// next one was not: k00000's first change is gone, k01999's
				// (revision 2000) is still there.
				changes := func(key string) int {
					h, err := c.History(ctx, "default", key, client.HistoryOptions{})
					require.NoError(t, err)
					return len(h.Changes)
				}
				assert.Equal(t, 1, changes("k00000"))
				assert.Equal(t, 2, changes("k01999"))
				// Asked again at its mark, the compaction resumes from the
				// chunk where it stopped (meta/pruning) and removes the rest.
				_, err = c.Compact(ctx, mark, 1)
				require.NoError(t, err)
				assert.Equal(t, 1, changes("k01999"), "only the change in effect is left")
				// And the next one above it examines what is new.
				_, err = c.Put(ctx, "default", "raise", json.RawMessage(`1`), client.PutOptions{})
				require.NoError(t, err)
				_, err = c.Compact(ctx, 0, 1)
				require.NoError(t, err)
				assert.Equal(t, 1, changes("k00000"))
			},
		},
		{
			// The first write is answered; the second, a transaction, is
			// committed and its answer never sent.
			point: failpoint.CommitBeforeAnswer, spec: string(failpoint.CommitBeforeAnswer) + "=crash@2",
			op: func(t *testing.T, c *client.Client, _ template) error {
				ctx := context.Background()
				_, err := c.Put(ctx, "cba", "acked", json.RawMessage(`1`), client.PutOptions{})
				require.NoError(t, err)
				_, err = c.Txn(ctx, []client.TxnOp{
					{Op: "put", Namespace: "cba", Key: "t1", Value: json.RawMessage(`1`)},
					{Op: "put", Namespace: "cba", Key: "t2", Value: json.RawMessage(`2`)},
					{Op: "put", Namespace: "cba", Key: "t3", Value: json.RawMessage(`3`)},
				}, client.TxnOptions{})
				assert.True(t, client.IsOutcomeUnknown(err), "the client cannot know: %v", err)
				return err
			},
			want: unchanged,
			after: func(t *testing.T, c *client.Client, _ template) {
				ctx := context.Background()
				acked, err := c.Get(ctx, "cba", "acked", client.GetOptions{})
				require.NoError(t, err, "the acknowledged write")
				for i, key := range []string{"t1", "t2", "t3"} {
					r, err := c.Get(ctx, "cba", key, client.GetOptions{})
					require.NoError(t, err, "the committed transaction is there, whole")
					assert.JSONEq(t, fmt.Sprint(i+1), string(r.Value))
					assert.Equal(t, acked.ModRev+uint64(i)+1, r.ModRev, "at consecutive revisions after the acknowledged write")
				}
			},
		},
		{
			// A request too large for the write-ahead log (4 MiB of
			// changes here; 16 MiB by default) is committed to bbolt
			// directly: the import is committed, its answer never sent.
			name: "import-direct/" + string(failpoint.CommitBeforeAnswer), point: failpoint.CommitBeforeAnswer,
			env: []string{"CTXD_HTTP_MAX_BODY_BYTES=64MiB", "CTXD_WAL_DIRECT_BYTES=4MiB"},
			op: func(t *testing.T, c *client.Client, _ template) error {
				_, err := c.Import(context.Background(), "big", strings.NewReader(bigDump()))
				assert.True(t, client.IsOutcomeUnknown(err) || !isAPIError(err), "the client cannot know: %v", err)
				return err
			},
			want: unchanged,
			onDisk: func(t *testing.T, dir string, _ os.FileInfo) {
				assert.Less(t, largestLogRecord(t, dir), 1<<20, "the import's 6 MiB went through the write-ahead log, not to ctxd.db directly")
			},
			after: func(t *testing.T, c *client.Client, _ template) {
				recs := listAll(t, c, "big")
				require.Len(t, recs, bigImportKeys, "the committed import is there, whole")
				for i, r := range recs {
					assert.Equal(t, bigValue(i), string(r.Value), "big/%s", r.Key)
				}
			},
		},
		{
			// Values of ~1 MiB fill the log's segment (8 MiB here, 64
			// MiB by default): the crash comes as the writer moves on to
			// the next one.
			point: failpoint.WALRotate, writes: true, want: unchanged,
			env: []string{"CTXD_WAL_SEGMENT_BYTES=8MiB"},
			op: func(t *testing.T, c *client.Client, _ template) error {
				var err error
				bigAcked, err = putBig(c)
				return err
			},
			after: func(t *testing.T, c *client.Client, _ template) {
				recs := listAll(t, c, "big")
				assert.GreaterOrEqual(t, len(recs), bigAcked, "every acknowledged big write is there")
				for i, r := range recs {
					assert.Equal(t, fmt.Sprintf("b%03d", i), r.Key, "written one after the other")
					assert.Equal(t, bigValue(i), string(r.Value), "big/%s", r.Key)
				}
			},
		},
		{
			// The 20th commit of the committer has put a batch in bbolt,
			// with its position in the log; the batch is still in the
			// overlay and the log. The restart replays the records after
			// that position only: no change is applied twice (the replay
			// refuses a record whose revisions do not follow the file's).
			point: failpoint.CommitterBeforeRelease, writes: true, want: unchanged,
			spec: string(failpoint.CommitterBeforeRelease) + "=crash@20",
			op: func(t *testing.T, c *client.Client, _ template) error {
				for {
					if _, err := c.Status(context.Background()); err != nil {
						return err
					}
					time.Sleep(5 * time.Millisecond)
				}
			},
			after: func(t *testing.T, c *client.Client, _ template) {
				ctx := context.Background()
				for _, r := range liveKeys(t, c) {
					h, err := c.History(ctx, "live", r.Key, client.HistoryOptions{})
					require.NoError(t, err)
					assert.Len(t, h.Changes, 1, "live/%s was changed once", r.Key)
				}
			},
		},
		{
			point: failpoint.DumpBeforeRename, writes: true, want: unchanged,
			op: func(t *testing.T, c *client.Client, _ template) error {
				_, err := c.Dump(context.Background(), "default", dumpName, client.ExportOptions{})
				return err
			},
			onDisk: func(t *testing.T, dir string, _ os.FileInfo) {
				assert.Len(t, tempFiles(t, filepath.Join(dir, "dumps")), 1, "the new dump, in its temp file")
			},
		},
	}
}

// crashTestsElsewhere are the failpoints whose crash test is not a
// crashCase, and the test that crashes there.
var crashTestsElsewhere = map[failpoint.Name]string{
	failpoint.ReplayBetweenBatches:   "TestCrashMidReplay",
	failpoint.EtcdRestoreAfterSwitch: "TestClusterRestoreCrashAfterSwitch",
}

// TestCrashAtFailpoints crashes the armed binary at each failpoint
// (internal/failpoint) during the operation it marks, then restarts the
// production binary on the folder and checks that the state is the old
// one or the new one, whole: the data per namespace, every acknowledged
// write with its revision, every listed snapshot verified, the dump file,
// no file left half-written, bbolt's check and ctxd's own index
// cross-check of the file, and the server taking writes.
func TestCrashAtFailpoints(t *testing.T) {
	t.Parallel()
	cases := crashCases()
	var covered []failpoint.Name
	for _, tc := range cases {
		covered = append(covered, tc.point)
	}
	for p := range crashTestsElsewhere {
		covered = append(covered, p)
	}
	for _, p := range failpoint.All {
		assert.Contains(t, covered, p, "failpoint %s has no crash test", p)
	}

	tp := newTemplate(t)
	for _, tc := range cases {
		name := tc.name
		if name == "" {
			name = string(tc.point)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runCrashCase(t, tc, tp)
		})
	}
}

func runCrashCase(t *testing.T, tc crashCase, tp template) {
	dir := t.TempDir()
	copyTree(t, tp.dir, dir)
	dbPath := filepath.Join(dir, "ctxd.db")
	db0, err := os.Stat(dbPath)
	require.NoError(t, err)

	spec := tc.spec
	if spec == "" {
		spec = string(tc.point) + "=crash"
	}
	armed := testkit.StartServe(t, failpointBin, dir, testkit.ServeOptions{Env: testkit.CleanEnv(append([]string{failpoint.EnvVar + "=" + spec}, tc.env...)...)})
	c := newClient(t, armed.URL)
	var w *liveWriter
	if tc.writes {
		w = startLiveWriter(t, c)
		w.waitAcked(t, 20)
	}
	require.NoError(t, crashAt(armed, tc.point, func() error { return tc.op(t, c, tp) }))
	armedPoints, err := failpoint.Parse(spec)
	require.NoError(t, err)
	for p := range armedPoints {
		assert.True(t, firedLine(armed.Stderr.String(), p), "armed failpoint %s fired", p)
	}
	if w != nil {
		w.wait()
		t.Logf("%d writes acknowledged, %d with an unknown outcome", len(w.acked), len(w.unknown))
	}
	if tc.onDisk != nil {
		tc.onDisk(t, dir, db0)
	}

	p := testkit.StartServe(t, ctxdBin, dir, testkit.ServeOptions{})
	c = newClient(t, p.URL)
	ctx := context.Background()
	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.Revision, tp.rev, "the revision never goes back")

	// The data, per namespace.
	wantDefault, wantOther := map[string]int{"B": templateKeys}, map[string]int{"B": otherKeys}
	switch tc.want {
	case restored:
		wantDefault, wantOther = map[string]int{"A": templateKeys}, map[string]int{}
	case defaultRestored:
		wantDefault = map[string]int{"A": templateKeys}
	}
	assert.Equal(t, wantDefault, tags(t, c, "default"), "namespace default")
	assert.Equal(t, wantOther, tags(t, c, "other"), "namespace other")
	if w != nil {
		live := liveKeys(t, c)
		if tc.want == restored {
			assert.Empty(t, live, "a full restore replaces every namespace")
		} else {
			w.check(t, live)
		}
		assert.GreaterOrEqual(t, st.Revision, w.maxAckedRev(), "the revision never goes back")
	}

	// Files: snapshots, dumps, leftovers.
	list, err := c.Snapshots(ctx)
	require.NoError(t, err)
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
		_, err := c.RestoreSnapshot(ctx, m.ID, client.RestoreOptions{DryRun: true})
		assert.NoError(t, err, "listed snapshot %s verifies", m.ID)
	}
	assert.Equal(t, []string{tp.snapID}, ids, "no snapshot was listed half-made")
	assert.Empty(t, tempFiles(t, filepath.Join(dir, "snapshots")), "temp files are removed at start")
	dbs, metas := snapshotFiles(t, filepath.Join(dir, "snapshots"))
	assert.Len(t, dbs, 1, "a snapshot file without metadata is removed at start")
	assert.Len(t, metas, 1)
	assert.Equal(t, []string{dumpName}, testkit.DirNames(t, filepath.Join(dir, "dumps")), "no temp file left in dumps")
	dump, err := os.ReadFile(filepath.Join(dir, "dumps", dumpName))
	require.NoError(t, err)
	assert.Equal(t, tp.dump, dump, "the dump file is the old one, whole")
	leftovers, err := filepath.Glob(dbPath + ".*")
	require.NoError(t, err)
	assert.Empty(t, leftovers, "a restore's or defrag's files are removed at start")

	if tc.after != nil {
		tc.after(t, c, tp)
	}
	r, err := c.Put(ctx, "default", "after", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err, "the restarted server takes writes")
	assert.Greater(t, r.ModRev, st.Revision)

	stopServe(t, p)
	testkit.CheckBoltFile(t, dbPath)
	snap, err := bolt.OpenSnapshot(dbPath)
	require.NoError(t, err)
	assert.NoError(t, snap.Verify(), "records, history and key counts agree")
	require.NoError(t, snap.Close())
}

// crashAt runs op against p, whose CTXD_FAILPOINTS arms point to crash,
// and returns nil only if p died by SIGKILL after logging that point
// fired. An operation that completes, or fails while p lives on, did not
// reach the point: that is an error too, so a point that moved away from
// its operation is noticed (TestCrashAtNoticesAMissedPoint).
func crashAt(p *testkit.Process, point failpoint.Name, op func() error) error {
	opErr := op()
	var answer *client.APIError
	if opErr == nil || errors.As(opErr, &answer) {
		// The server answered: every point comes before the answer.
		select {
		case <-p.Done():
		default:
			return fmt.Errorf("the operation was answered (error: %v) without reaching failpoint %s", opErr, point)
		}
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		return fmt.Errorf("the operation failed (%v) and the process still runs: failpoint %s was not reached", opErr, point)
	}
	ws, ok := p.Cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return fmt.Errorf("the process ended with %v, not by SIGKILL at failpoint %s", p.Cmd.ProcessState, point)
	}
	if !firedLine(p.Stderr.String(), point) {
		return fmt.Errorf("the process died by SIGKILL without logging failpoint %s", point)
	}
	return nil
}

// firedLine reports whether log holds the armed binary's line for point.
func firedLine(log string, point failpoint.Name) bool {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev struct {
			Message   string `json:"message"`
			Failpoint string `json:"failpoint"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Message == "failpoint fired" && ev.Failpoint == string(point) {
			return true
		}
	}
	return false
}

// TestCrashAtNoticesAMissedPoint is the negative control of the crash
// tests: when the operation does not reach the armed point (it completes,
// or fails without crashing), crashAt fails; and a point name the binary
// does not know stops it at start.
func TestCrashAtNoticesAMissedPoint(t *testing.T) {
	t.Parallel()
	p := testkit.StartServe(t, failpointBin, t.TempDir(), testkit.ServeOptions{
		Env: testkit.CleanEnv(failpoint.EnvVar + "=" + string(failpoint.SnapshotBeforeMeta) + "=crash"),
	})
	c := newClient(t, p.URL)
	ctx := context.Background()
	_, err := c.Put(ctx, "default", "k", json.RawMessage(`1`), client.PutOptions{})
	require.NoError(t, err)

	err = crashAt(p, failpoint.SnapshotBeforeMeta, func() error { _, err := c.Defrag(ctx); return err })
	require.Error(t, err, "a defrag never reaches the snapshot's point")
	assert.Contains(t, err.Error(), "answered (error: <nil>) without reaching")

	err = crashAt(p, failpoint.SnapshotBeforeMeta, func() error {
		_, err := c.RestoreSnapshot(ctx, "20260101T000000Z-r1", client.RestoreOptions{})
		return err
	})
	require.Error(t, err, "a refused request reaches no point")
	assert.Contains(t, err.Error(), "snapshot not found")
	assert.Contains(t, err.Error(), "without reaching")

	_, err = c.CreateSnapshot(ctx)
	require.Error(t, err)
	require.NoError(t, crashAt(p, failpoint.SnapshotBeforeMeta, func() error { return err }), "and the point is there")

	_, err = testkit.StartServeErr(t, failpointBin, t.TempDir(), testkit.ServeOptions{
		Env: testkit.CleanEnv(failpoint.EnvVar + "=snapshot-before-metadata=crash"),
	})
	require.Error(t, err, "an unknown point stops the armed binary")
	assert.Contains(t, err.Error(), `unknown failpoint \"snapshot-before-metadata\"`)
	assert.Contains(t, err.Error(), "exit status 2")
}

// TestFailpointsCompiledOut: the production binary holds no trace of
// package failpoint (every Hit was inlined away and nothing else is
// linked), while the armed one has it.
func TestFailpointsCompiledOut(t *testing.T) {
	t.Parallel()
	symbols := func(bin string) []string {
		out, err := runGo(t, "tool", "nm", bin)
		require.NoError(t, err, out)
		var found []string
		for line := range strings.Lines(out) {
			if strings.Contains(line, "ctxd/internal/failpoint.") {
				found = append(found, strings.TrimSpace(line))
			}
		}
		return found
	}
	assert.Empty(t, symbols(ctxdBin), "the production binary")
	assert.True(t, slices.ContainsFunc(symbols(failpointBin), func(s string) bool {
		return strings.HasSuffix(s, "internal/failpoint.Hit")
	}), "the armed binary has failpoint.Hit")
}

// newTemplate fills a data folder with the production binary (see
// template).
func newTemplate(t *testing.T) template {
	t.Helper()
	tp := template{dir: t.TempDir()}
	p := testkit.StartServe(t, ctxdBin, tp.dir, testkit.ServeOptions{})
	c := newClient(t, p.URL)
	ctx := context.Background()
	fill(t, c, "default", "k", templateKeys, "A")
	meta, err := c.CreateSnapshot(ctx)
	require.NoError(t, err)
	tp.snapID = meta.ID
	fill(t, c, "default", "k", templateKeys, "B")
	fill(t, c, "other", "o", otherKeys, "B")
	_, err = c.Dump(ctx, "default", dumpName, client.ExportOptions{})
	require.NoError(t, err)
	st, err := c.Status(ctx)
	require.NoError(t, err)
	tp.rev = st.Revision
	stopServe(t, p)
	tp.dump, err = os.ReadFile(filepath.Join(tp.dir, "dumps", dumpName))
	require.NoError(t, err)
	return tp
}

// fill writes keys prefix00000.. of ns, n of them, each a ~120-byte value
// tagged tag, in transactions of 100.
func fill(t *testing.T, c *client.Client, ns, prefix string, n int, tag string) {
	t.Helper()
	pad := strings.Repeat("x", 100)
	var ops []client.TxnOp
	for i := range n {
		ops = append(ops, client.TxnOp{Op: "put", Namespace: ns, Key: fmt.Sprintf("%s%05d", prefix, i), Value: json.RawMessage(fmt.Sprintf(`{"tag":%q,"pad":%q}`, tag, pad))})
		if len(ops) == 100 || i == n-1 {
			_, err := c.Txn(context.Background(), ops, client.TxnOptions{})
			require.NoError(t, err)
			ops = nil
		}
	}
}

// tags counts the keys of ns per tag.
func tags(t *testing.T, c *client.Client, ns string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range listAll(t, c, ns) {
		out[tagOf(t, r.Value)]++
	}
	return out
}

func tagOf(t *testing.T, v json.RawMessage) string {
	t.Helper()
	var tagged struct{ Tag string }
	require.NoError(t, json.Unmarshal(v, &tagged))
	return tagged.Tag
}

// listAll lists every key of ns (none when it does not exist).
func listAll(t *testing.T, c *client.Client, ns string) []client.Record {
	t.Helper()
	recs, err := c.ListAll(context.Background(), ns, "")
	if client.IsNotFound(err) {
		return nil
	}
	require.NoError(t, err)
	return recs
}

// liveWriter puts keys w00000, w00001, ... of namespace live, each holding
// its number, one after the other, until a write fails.
type liveWriter struct {
	done chan struct{}

	mu      sync.Mutex
	acked   map[string]uint64 // key: the revision its answer gave
	unknown map[string]bool   // sent, no answer
}

func startLiveWriter(t *testing.T, c *client.Client) *liveWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &liveWriter{done: make(chan struct{}), acked: map[string]uint64{}, unknown: map[string]bool{}}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			key := fmt.Sprintf("w%05d", i)
			r, err := c.Put(ctx, "live", key, json.RawMessage(fmt.Sprint(i)), client.PutOptions{})
			w.mu.Lock()
			switch {
			case err == nil:
				w.acked[key] = r.ModRev
			case client.IsOutcomeUnknown(err):
				w.unknown[key] = true
			}
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

func (w *liveWriter) waitAcked(t *testing.T, n int) {
	testkit.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.acked) >= n
	}, "%d writes acknowledged", n)
}

// wait waits for the writer to stop (its server died).
func (w *liveWriter) wait() { <-w.done }

func (w *liveWriter) maxAckedRev() uint64 {
	var m uint64
	for _, rev := range w.acked {
		m = max(m, rev)
	}
	return m
}

// check: every acknowledged write is in live, with its value and the
// revision its answer gave; any other key there is one whose outcome was
// unknown, with its value.
func (w *liveWriter) check(t *testing.T, live []client.Record) {
	t.Helper()
	got := map[string]client.Record{}
	for _, r := range live {
		got[r.Key] = r
		var i int
		_, err := fmt.Sscanf(r.Key, "w%05d", &i)
		require.NoError(t, err)
		assert.JSONEq(t, fmt.Sprint(i), string(r.Value), "live/%s", r.Key)
		if _, ok := w.acked[r.Key]; !ok {
			assert.True(t, w.unknown[r.Key], "live/%s was never acknowledged nor sent without an answer", r.Key)
		}
	}
	for key, rev := range w.acked {
		r, ok := got[key]
		if assert.True(t, ok, "acknowledged write live/%s is lost", key) {
			assert.Equal(t, rev, r.ModRev, "live/%s is at the revision its answer gave", key)
		}
	}
}

func liveKeys(t *testing.T, c *client.Client) []client.Record { return listAll(t, c, "live") }

func newClient(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.New(url, client.WithHTTPClient(&http.Client{Timeout: time.Minute}))
	require.NoError(t, err)
	return c
}

// stopServe stops a server the way an operator does and checks that it
// exits cleanly.
func stopServe(t *testing.T, p *testkit.Process) {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(testkit.Deadline), "clean exit")
}

// tempFiles lists the temp files (fsutil's, or *.tmp) in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, name := range testkit.DirNames(t, dir) {
		if fsutil.IsTemp(name) || strings.HasSuffix(name, ".tmp") {
			out = append(out, name)
		}
	}
	return out
}

// snapshotFiles lists the snapshot files (*.db) and metadata files (*.json)
// in dir.
func snapshotFiles(t *testing.T, dir string) (dbs, metas []string) {
	t.Helper()
	for _, name := range testkit.DirNames(t, dir) {
		switch {
		case fsutil.IsTemp(name):
		case strings.HasSuffix(name, ".db"):
			dbs = append(dbs, name)
		case strings.HasSuffix(name, ".json"):
			metas = append(metas, name)
		}
	}
	return dbs, metas
}

// assertSameFile checks whether path is (same) or is not the file fi
// describes: a rename over the live database gives it another inode.
func assertSameFile(t *testing.T, fi os.FileInfo, path string, same bool) {
	t.Helper()
	now, err := os.Stat(path)
	if !assert.NoError(t, err) {
		return
	}
	assert.Equal(t, same, os.SameFile(fi, now), "%s is the file ctxd.db was before the operation: %v", filepath.Base(path), same)
}

// largestLogRecord is the size of the largest record in the write-ahead
// log of the data folder dir, read from a copy (opening a log may repair
// its tail).
func largestLogRecord(t *testing.T, dir string) int {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "wal")
	copyTree(t, filepath.Join(dir, "wal"), cp)
	log, err := wal.Open(cp, wal.Options{})
	require.NoError(t, err)
	defer log.Close()
	largest := 0
	require.NoError(t, log.Replay(log.FirstSeq()-1, func(_ uint64, rec []byte) error {
		largest = max(largest, len(rec))
		return nil
	}))
	return largest
}

// copyTree copies the regular files and folders under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o750)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	require.NoError(t, err)
}

// runGo runs the go command and returns its combined output.
func runGo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Keys of about 1 MiB each: bigImportKeys of them are more than the
// import-direct case's wal.direct_bytes, from which a request goes to
// bbolt directly; bigKeys fill more than the wal-rotate case's segment of
// the write-ahead log when written one by one. The cases make both small
// (the defaults, 16 and 64 MiB, cost 50 s more under -race), so that the
// code path they crash in is the same with less data.
const (
	bigImportKeys = 6  // 6 MiB: over the import-direct case's 4 MiB
	bigKeys       = 20 // 20 MiB: over the wal-rotate case's 8 MiB segment
)

// bigValue is the value of big key i: about 1 MiB of JSON.
func bigValue(i int) string {
	return fmt.Sprintf(`"%04d%s"`, i, strings.Repeat(string(rune('a'+i%26)), 1000*1000))
}

// bigDump is an import of bigImportKeys big keys.
func bigDump() string {
	var b strings.Builder
	b.WriteString(`{"context":{`)
	for i := range bigImportKeys {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"b%03d":%s`, i, bigValue(i))
	}
	b.WriteString("}}")
	return b.String()
}

// putBig puts the big keys one by one until a write fails, and returns
// how many were acknowledged.
func putBig(c *client.Client) (int, error) {
	for i := range bigKeys {
		if _, err := c.Put(context.Background(), "big", fmt.Sprintf("b%03d", i), json.RawMessage(bigValue(i)), client.PutOptions{}); err != nil {
			return i, err
		}
	}
	return bigKeys, nil
}

func isAPIError(err error) bool {
	var answer *client.APIError
	return errors.As(err, &answer)
}

// TestCrashMidReplay: a server dies with thousands of acknowledged
// changes in its write-ahead log that its committer never applied (held
// at committer-before-release, then killed); the next one dies while
// replaying them at start (replay-between-batches, after the first batch
// of 4096); the production binary then replays the rest and has every
// acknowledged change, once.
func TestCrashMidReplay(t *testing.T) {
	t.Parallel()
	tp := newTemplate(t)
	dir := t.TempDir()
	copyTree(t, tp.dir, dir)

	held := testkit.StartServe(t, failpointBin, dir, testkit.ServeOptions{
		Env: testkit.CleanEnv(failpoint.EnvVar + "=" + string(failpoint.CommitterBeforeRelease) + "=sleep(1h)"),
	})
	c := newClient(t, held.URL)
	const n = 6000
	fill(t, c, "replay", "r", n, "R")
	testkit.Eventually(t, func() bool { return firedLine(held.Stderr.String(), failpoint.CommitterBeforeRelease) },
		"the committer is held after its first commit")
	held.Kill()

	point := failpoint.ReplayBetweenBatches
	_, err := testkit.StartServeErr(t, failpointBin, dir, testkit.ServeOptions{
		Env: testkit.CleanEnv(failpoint.EnvVar + "=" + string(point) + "=crash"),
	})
	require.Error(t, err, "the armed server dies while it replays")
	assert.Contains(t, err.Error(), "signal: killed")
	assert.True(t, firedLine(err.Error(), point), "at %s", point)

	p := testkit.StartServe(t, ctxdBin, dir, testkit.ServeOptions{})
	replayed := replayedChanges(t, p.Stderr.String())
	assert.Positive(t, replayed, "the restart replayed the rest of the log")
	assert.Less(t, replayed, uint64(n), "the crashed replay had committed its first batch")
	c = newClient(t, p.URL)
	ctx := context.Background()
	assert.Equal(t, map[string]int{"R": n}, tags(t, c, "replay"), "every acknowledged change is there")
	assert.Equal(t, map[string]int{"B": templateKeys}, tags(t, c, "default"))
	st, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, tp.rev+n, st.Revision, "each change was applied once: no revision is missing or doubled")
	h, err := c.History(ctx, "replay", "r05999", client.HistoryOptions{})
	require.NoError(t, err)
	assert.Len(t, h.Changes, 1)
	stopServe(t, p)
	testkit.CheckBoltFile(t, filepath.Join(dir, "ctxd.db"))
	snap, err := bolt.OpenSnapshot(filepath.Join(dir, "ctxd.db"))
	require.NoError(t, err)
	assert.NoError(t, snap.Verify(), "records, history and key counts agree")
	require.NoError(t, snap.Close())
}

// replayedChanges reads the changes replayed from the "store opened" line
// of a server's log.
func replayedChanges(t *testing.T, log string) uint64 {
	t.Helper()
	for line := range strings.Lines(log) {
		var ev struct {
			Message string `json:"message"`
			Changes uint64 `json:"wal_replayed_changes"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "store opened" {
			return ev.Changes
		}
	}
	t.Fatal("no store opened line in the log")
	return 0
}
