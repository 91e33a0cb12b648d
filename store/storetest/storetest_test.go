package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/patch"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/bolt"
)

// The suite's negative control: checks must fail against a backend that
// breaks the contract. Each broken backend wraps a real bolt store and
// gets one thing wrong; the check that should notice runs against it with
// a recording testing.TB, which must have recorded a failure. The same
// check against the unbroken store must pass, so that a failure means the
// breakage was noticed, not that the check cannot pass at all.
func TestChecksFailOnBrokenBackends(t *testing.T) {
	cases := []struct {
		broken string // what the backend gets wrong
		check  string // the check that must notice
		wrap   func(store.Backend) store.Backend
	}{
		{"skips a revision on every put", "VersionsAndRevisions", func(b store.Backend) store.Backend { return &skipsRevisions{Backend: b} }},
		{"answers reads one version ahead", "ConcurrentCompareAndSwapIsExact", func(b store.Backend) store.Backend { return &versionAhead{Backend: b} }},
		{"loses a change from the log", "ReadLogInOrderWithoutGaps", func(b store.Backend) store.Backend { return &logGap{Backend: b, missing: 3} }},
		{"applies half a transaction", "TxnAllOrNothing", func(b store.Backend) store.Backend { return &halfTxn{Backend: b} }},
		{"ignores a patch's expected version", "PatchCompareAndSwap", func(b store.Backend) store.Backend { return &patchIgnoresExpect{Backend: b} }},
		{"gives each patch of a transaction a budget of its own", "PatchesOfARequestShareOneBudget", func(b store.Backend) store.Backend { return &budgetPerPatch{Backend: b} }},
		{"lists values when asked not to", "ListWithoutValuesAndCount", func(b store.Backend) store.Backend { return &listsValues{Backend: b} }},
		{"makes a keepalive a put", "KeepAliveMovesTheDeadlineWithoutAVersion", func(b store.Backend) store.Backend { return &keepAliveAsPut{Backend: b} }},
	}
	for _, c := range cases {
		t.Run(c.check+"/"+strings.ReplaceAll(c.broken, " ", "_"), func(t *testing.T) {
			run := checkNamed(t, c.check)

			honest := record(t, func(r testing.TB) { run(r, boltHarness(nil)) })
			require.False(t, honest.Failed(), "the check fails on the real backend:\n%s", honest.report())

			broken := record(t, func(r testing.TB) { run(r, boltHarness(c.wrap)) })
			assert.True(t, broken.Failed(), "%s did not notice a backend that %s", c.check, c.broken)
			t.Logf("%s reported:\n%s", c.check, broken.report())
		})
	}
}

// Every check has a name of its own, so that -run selects exactly one.
func TestCheckNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range checks {
		assert.False(t, seen[c.name], "two checks named %s", c.name)
		seen[c.name] = true
	}
}

func checkNamed(t *testing.T, name string) func(testing.TB, Harness) {
	t.Helper()
	for _, c := range checks {
		if c.name == name {
			return c.run
		}
	}
	t.Fatalf("no check named %s", name)
	return nil
}

// boltHarness opens real bolt stores, wrapped by wrap when it is set.
func boltHarness(wrap func(store.Backend) store.Backend) Harness {
	return Harness{
		Open: func(t testing.TB, dir string, cfg Config) store.Backend {
			s, err := bolt.Open(filepath.Join(dir, "ctxd.db"), bolt.Options{Limits: cfg.Limits, Now: cfg.Now})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			if wrap == nil {
				return s
			}
			return wrap(s)
		},
		Defrag:    true,
		Clock:     true,
		Snapshots: true, Expiry: true,
		TTLUnit: 500 * time.Millisecond, // as store/bolt's conformance test
	}
}

// recorder is a testing.TB that records failures instead of failing the
// test. It embeds the real test for everything else (TempDir, Context,
// Log); FailNow ends the check's goroutine as testing does.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	messages []string
	cleanups []func()
}

// record runs fn with a recorder in a goroutine of its own (FailNow exits
// it), then runs the cleanups fn registered, newest first.
func record(t *testing.T, fn func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	run := func(f func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		<-done
	}
	run(func() { fn(r) })
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		run(r.cleanups[i])
	}
	return r
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.messages = append(r.messages, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }
func (r *recorder) Fatal(args ...any) { r.Error(args...); r.FailNow() }
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.FailNow()
}

func (r *recorder) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}

func (r *recorder) FailNow() {
	r.Fail()
	runtime.Goexit()
}

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// A skip ends the check without a failure.
func (r *recorder) Skip(args ...any)                 { r.SkipNow() }
func (r *recorder) Skipf(format string, args ...any) { r.SkipNow() }
func (r *recorder) SkipNow()                         { runtime.Goexit() }

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// report summarises the first failures: testify's messages are long.
func (r *recorder) report() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lines []string
	for i, m := range r.messages {
		if i == 3 {
			lines = append(lines, fmt.Sprintf("(and %d more)", len(r.messages)-3))
			break
		}
		lines = append(lines, summary(m))
	}
	return strings.Join(lines, "\n")
}

// summary shortens a testify failure to where it failed and what was
// checked (its message, else its error line).
func summary(message string) string {
	var where, what, errLine string
	for _, line := range strings.Split(message, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "Error Trace:"); ok && where == "" {
			where = filepath.Base(strings.TrimSpace(rest)) + ": "
		} else if rest, ok := strings.CutPrefix(line, "Messages:"); ok {
			what = strings.TrimSpace(rest)
		} else if rest, ok := strings.CutPrefix(line, "Error:"); ok && errLine == "" {
			errLine = strings.TrimSpace(rest)
		}
	}
	if what == "" {
		what = errLine
	}
	if what == "" {
		what = strings.TrimSpace(message)
	}
	return where + what
}

// skipsRevisions burns a revision after every put, as a backend that
// counted a hidden bookkeeping write as a change would.
type skipsRevisions struct{ store.Backend }

func (b *skipsRevisions) Put(ctx context.Context, ns, key string, value json.RawMessage, expect *uint64, who string) (ctxd.Record, error) {
	r, err := b.Backend.Put(ctx, ns, key, value, expect, who)
	if err == nil {
		_, err = b.Backend.Put(ctx, "internal", "bookkeeping", json.RawMessage(`0`), nil, "backend")
	}
	return r, err
}

// versionAhead answers Get with the version after the real one.
type versionAhead struct{ store.Backend }

func (b *versionAhead) Get(ns, key string) (ctxd.Record, error) {
	r, err := b.Backend.Get(ns, key)
	r.Version++
	return r, err
}

// logGap leaves one revision out of every ReadLog.
type logGap struct {
	store.Backend
	missing uint64
}

func (b *logGap) ReadLog(after uint64, limit int) ([]ctxd.Change, error) {
	changes, err := b.Backend.ReadLog(after, limit)
	kept := changes[:0]
	for _, c := range changes {
		if c.Revision != b.missing {
			kept = append(kept, c)
		}
	}
	return kept, err
}

// halfTxn applies a transaction's writes one by one, so that a write that
// fails leaves those before it applied.
type halfTxn struct{ store.Backend }

func (b *halfTxn) Txn(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	var res ctxd.TxnResult
	for _, w := range writes {
		r, err := b.Backend.Txn(ctx, []ctxd.Write{w})
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		res.Revision = r.Revision
		res.Records = append(res.Records, r.Records...)
	}
	return res, nil
}

// patchIgnoresExpect drops a patch's expected version.
type patchIgnoresExpect struct{ store.Backend }

func (b *patchIgnoresExpect) Patch(ctx context.Context, ns, key string, p ctxd.Patch, _ *uint64, who string) (ctxd.Record, error) {
	return b.Backend.Patch(ctx, ns, key, p, nil, who)
}

// budgetPerPatch applies each patch of a transaction itself, alone
// (patch.Apply: a budget of its own), and commits the results as puts on
// condition of the versions it read: all or nothing still, but each patch
// may do all of patch.WorkBytes.
type budgetPerPatch struct{ store.Backend }

func (b *budgetPerPatch) Txn(ctx context.Context, writes []ctxd.Write) (ctxd.TxnResult, error) {
	writes = slices.Clone(writes)
	for i := range writes {
		w := &writes[i]
		if w.Op != ctxd.OpPatch {
			continue
		}
		r, err := b.Backend.Get(w.Namespace, w.Key)
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		v, err := patch.Apply(r.Value, w.Patch, ctxd.DefaultLimits)
		if err != nil {
			return ctxd.TxnResult{}, err
		}
		w.Op, w.Value, w.Patch, w.Expect = ctxd.OpPut, v, ctxd.Patch{}, u64(r.Version)
	}
	return b.Backend.Txn(ctx, writes)
}

// listsValues reads the values of a listing without values.
type listsValues struct{ store.Backend }

func (b *listsValues) List(ns string, opts ctxd.ListOptions) (ctxd.ListPage, error) {
	opts.NoValues = false
	return b.Backend.List(ns, opts)
}

// keepAliveAsPut extends a key by putting its value again with the ttl: a
// new version, revision, history entry and feed event per heartbeat.
type keepAliveAsPut struct{ store.Backend }

func (b *keepAliveAsPut) KeepAlive(ctx context.Context, ns, key string, ttl time.Duration, expect *uint64) (ctxd.Record, error) {
	r, err := b.Backend.Get(ns, key)
	if err != nil || r.ExpiresAt.IsZero() {
		return b.Backend.KeepAlive(ctx, ns, key, ttl, expect)
	}
	res, err := b.Backend.Txn(ctx, []ctxd.Write{{Namespace: ns, Key: key, Op: ctxd.OpPut, Value: r.Value, Expect: expect, Who: r.Who, TTL: ttl}})
	if err != nil {
		return ctxd.Record{}, err
	}
	return res.Records[0], nil
}
