package linearize_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	lin "github.com/framework0/ctxd/internal/linearize"
)

// TestRecorder: concurrent clients get strictly increasing times; an
// unknown or unfinished operation never returns; a failed one is left
// out; each client's operations after an unknown one take a new row.
func TestRecorder(t *testing.T) {
	r := lin.NewRecorder()
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for i := range 100 {
				id := r.Invoke(c, put("a", fmt.Sprintf("c%d-%d", c, i)))
				r.Return(id, rec("x", 1, 1, 1))
			}
		})
	}
	wg.Wait()
	h := r.History()
	require.Len(t, h, 800)
	seen := map[int64]bool{}
	for _, op := range h {
		require.Less(t, op.Call, op.Return)
		require.False(t, seen[op.Call] || seen[op.Return], "a time used twice")
		seen[op.Call], seen[op.Return] = true, true
	}

	r = lin.NewRecorder()
	a := r.Invoke(0, put("a", "1"))
	r.Unknown(a)
	b := r.Invoke(0, put("a", "2"))
	r.Return(b, failed)
	c := r.Invoke(0, get("a"))
	r.Return(c, notFound)
	d := r.Invoke(1, put("a", "3")) // never returns
	h = r.History()
	require.Len(t, h, 3)
	require.Equal(t, lin.Never, h[0].Return)
	require.Equal(t, lin.Unknown, h[0].Output.(lin.Output).Status)
	require.Equal(t, "a", h[1].Input.(lin.Input).Key)
	require.Less(t, h[1].Return, lin.Never)
	require.NotEqual(t, h[0].ClientId, h[1].ClientId, "client 0 after its unknown put")
	require.Equal(t, lin.Never, h[2].Return, "operation %d, still in flight", d)
	require.Equal(t, lin.Unknown, h[2].Output.(lin.Output).Status)
	require.Panics(t, func() { r.Return(a, notFound) })
}

// recordingT is a testing.TB whose failures are recorded instead of
// failing the test, for testing Check itself.
type recordingT struct {
	testing.TB
	errors []string
}

func (r *recordingT) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestCheckWritesVisualization: Check fails on a violation and writes the
// visualization where it says; with CTXD_LINEARIZE_DIR a passing history
// is written too.
func TestCheckWritesVisualization(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(lin.KeepDirEnv, dir)
	bad := lin.History{
		op(0, 1, 2, put("a", "x"), rec("x", 1, 1, 1)),
		op(1, 3, 4, get("a"), notFound),
	}
	rt := &recordingT{TB: t}
	r := lin.Check(rt, bad, 10*time.Second)
	require.Equal(t, porcupine.Illegal, r.Verdict)
	require.Len(t, rt.errors, 1)
	require.Contains(t, rt.errors[0], "not linearizable")
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-illegal.html")
	require.Contains(t, rt.errors[0], path)
	html, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(html), `get(a) → not found`)

	rt = &recordingT{TB: t}
	good := bad[:1]
	require.Equal(t, porcupine.Ok, lin.Check(rt, good, 10*time.Second).Verdict)
	require.Empty(t, rt.errors)
	require.FileExists(t, filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-ok.html"))
}
