package testkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	testkit.VerifyNoLeaks(m)
}

// blockedLeak is the goroutine the negative control leaks on purpose.
func blockedLeak(release <-chan struct{}) { <-release }

// The negative control: the leak check the TestMains run does see a
// goroutine left running, and stops seeing it once it has ended.
func TestLeakCheckFindsALeak(t *testing.T) {
	release := make(chan struct{})
	go blockedLeak(release)
	err := goleak.Find(testkit.LeakOptions()...)
	require.Error(t, err, "a blocked goroutine must be reported")
	assert.Contains(t, err.Error(), "blockedLeak")
	close(release)
	require.NoError(t, goleak.Find(testkit.LeakOptions()...), "the goroutine has ended: no leak")
}

func TestOpenBoltReopen(t *testing.T) {
	b := testkit.OpenBolt(t, bolt.Options{})
	_, err := b.Put(context.Background(), "default", "k", json.RawMessage(`1`), nil, "test")
	require.NoError(t, err)
	b.Reopen()
	rec, err := b.Get("default", "k")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.ModRev)
}

// StartServer runs the whole server: REST, the watch, a restart on the
// same address with the data kept.
func TestStartServer(t *testing.T) {
	s := testkit.StartServer(t)
	ws := testkit.DialWatch(t, s.WatchURL(url.Values{"ns": {"default"}}), nil)
	ws.Expect(ctxd.TypeSubscribed)
	testkit.Eventually(t, func() bool { return s.Hub().Clients() == 1 })

	rec, err := s.Backend().Put(context.Background(), "default", "k", json.RawMessage(`"v"`), nil, "test")
	require.NoError(t, err)
	got := ws.Changes(rec.ModRev)
	assert.Equal(t, "k", got[len(got)-1].Key)

	addr := s.Addr
	s.Restart()
	assert.Equal(t, addr, s.Addr)
	res, err := http.Get(s.URL + "/v1/ns/default/keys/k")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, s.Logs.String(), `"message":"store opened"`)
}

// The commit hook runs its function once, where the commit lands (here the
// caller of a lone write), after it is durable.
func TestCommitHook(t *testing.T) {
	h := &testkit.CommitHook{}
	b := testkit.OpenBolt(t, bolt.Options{OnCommit: h.OnCommit})
	ran := 0
	h.Once(func() {
		ran++
		_, err := b.Get("default", "k")
		assert.NoError(t, err, "the commit is visible when the hook runs")
	})
	for i := range 2 {
		_, err := b.Put(context.Background(), "default", "k", json.RawMessage(strconv.Itoa(i)), nil, "test")
		require.NoError(t, err)
	}
	assert.Equal(t, 1, ran)
}

func TestPutKeys(t *testing.T) {
	b := testkit.OpenBolt(t, bolt.Options{})
	testkit.PutKeys(t, b.Store, "team", 250, json.RawMessage(`"v"`), "filler")
	assert.Equal(t, uint64(250), b.Revision())
	rec, err := b.Get("team", "k249")
	require.NoError(t, err)
	assert.Equal(t, `"v"`, string(rec.Value))
	assert.Equal(t, "filler", rec.Who)
	page, err := b.List("team", ctxd.ListOptions{Limit: 1000})
	require.NoError(t, err)
	assert.Len(t, page.Records, 250)
}

func TestNewRequestAndSend(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo", r.Header.Get("X-A")+","+r.Header.Get("X-B"))
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write(append([]byte(r.Method+" "+r.URL.RequestURI()+" "), b...))
	}))
	defer ts.Close()
	req := testkit.NewRequest(t, http.MethodPut, ts.URL+"/p?q=1", "body", "X-A", "a", "X-B", "b", "X-Odd")
	res, b := testkit.Send(t, ts.Client(), req)
	assert.Equal(t, http.StatusTeapot, res.StatusCode)
	assert.Equal(t, "a,b", res.Header.Get("X-Echo"))
	assert.Equal(t, "PUT /p?q=1 body", string(b))
	assert.Nil(t, testkit.NewRequest(t, http.MethodGet, ts.URL, "").Body, "no body when empty")
}

// The server binary compiles neither the kit nor goleak in, nor etcd's
// server (the kit's etcdkit, the local cluster of make cluster).
func TestBinaryDoesNotImportTheKit(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/framework0/ctxd/cmd/ctxd").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		assert.NotEqual(t, "github.com/framework0/ctxd/internal/testkit", pkg)
		assert.False(t, strings.HasPrefix(pkg, "go.uber.org/goleak"), pkg)
		assert.False(t, strings.HasPrefix(pkg, "go.etcd.io/etcd/server/"), pkg)
		assert.NotEqual(t, "github.com/framework0/ctxd/internal/localcluster", pkg)
	}
	assert.Contains(t, string(out), "github.com/framework0/ctxd/server")
}

// recordingTB is a testing.TB whose Error and Errorf are recorded instead
// of failing the test: what a check reports, for its negative control.
type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Error(args ...any) { r.errors = append(r.errors, fmt.Sprint(args...)) }
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// The proxy the CLI tests point ctxd at passes requests and answers
// through unchanged, escaped paths included, and reports an exchange the
// OpenAPI document does not describe; the same for HTTPClient.
func TestOpenAPIProxyAndClientReportDrift(t *testing.T) {
	var (
		mu    sync.Mutex
		paths []string
	)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.EscapedPath())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/healthz" {
			_, _ = io.WriteString(w, `{"status":"ok"}`)
			return
		}
		_, _ = io.WriteString(w, `{"surprise":true}`)
	}))
	t.Cleanup(backend.Close)
	api := testkit.NewOpenAPI(t)

	rec := &recordingTB{TB: t}
	proxy := api.Proxy(rec, backend.URL)
	for _, path := range []string{"/healthz", "/v1/undocumented%2Froute"} {
		res, err := http.Get(proxy + path)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, res.StatusCode)
		assert.NotEmpty(t, b, "the answer passes through")
	}
	mu.Lock()
	assert.Equal(t, []string{"/healthz", "/v1/undocumented%2Froute"}, paths, "paths passed as sent")
	mu.Unlock()
	require.Len(t, rec.errors, 1, "only the undocumented route is reported: %v", rec.errors)
	assert.Contains(t, rec.errors[0], "the path is not documented")

	rec = &recordingTB{TB: t}
	hc := api.HTTPClient(rec)
	res, err := hc.Get(backend.URL + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	res, err = hc.Get(backend.URL + "/v1/status")
	require.NoError(t, err)
	res.Body.Close()
	require.Len(t, rec.errors, 1, "%v", rec.errors)
	assert.Contains(t, rec.errors[0], "/v1/status")
}

// A labelling proxy holds the connections of one sender alone: while
// sender a is blackholed its request gets no answer, sender b's does;
// after Heal, a's held request is answered.
func TestTCPProxyBlackholesOneSender(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("X-From"))
	}))
	defer srv.Close()
	p := testkit.StartLabellingTCPProxy(t, strings.TrimPrefix(srv.URL, "http://"), testkit.HTTPHeaderLabel("X-From"))
	get := func(from string) <-chan string {
		got := make(chan string, 1)
		go func() {
			hc := &http.Client{Transport: &http.Transport{}} // a connection of its own
			defer hc.CloseIdleConnections()
			req, err := http.NewRequest(http.MethodGet, "http://"+p.Addr()+"/", nil)
			if err != nil {
				got <- err.Error()
				return
			}
			req.Header.Set("X-From", from)
			resp, err := hc.Do(req)
			if err != nil {
				got <- err.Error()
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			got <- string(body)
		}()
		return got
	}
	require.Equal(t, "a", <-get("a"), "before the blackhole")
	p.BlackholeFrom("a")
	held := get("a")
	require.Equal(t, "b", <-get("b"), "another sender goes on")
	select {
	case s := <-held:
		t.Fatalf("a blackholed sender got an answer: %q", s)
	case <-time.After(200 * time.Millisecond): // how long it is held, not a synchronisation
	}
	p.Heal()
	require.Equal(t, "a", <-held, "the held request after Heal")
}

// loggingTB is a test that failed or passed, recording what it logs.
type loggingTB struct {
	testing.TB
	failed bool
	logs   []string
}

func (l *loggingTB) Failed() bool                 { return l.failed }
func (l *loggingTB) Helper()                      {}
func (l *loggingTB) Logf(format string, a ...any) { l.logs = append(l.logs, fmt.Sprintf(format, a...)) }

// LogOnFailure writes a short log inline and keeps a long one in a file,
// logging its path; a test that passed logs nothing.
func TestLogOnFailure(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CTXD_TEST_LOGS", dir)
	// Kept logs older than a week go when another is kept; newer ones and
	// other files stay.
	weekOld, dayOld := filepath.Join(dir, "ctxd-old.log"), filepath.Join(dir, "ctxd-recent.log")
	notALog, notOurs := filepath.Join(dir, "ctxd-old.txt"), filepath.Join(dir, "other.log")
	for _, p := range []string{weekOld, dayOld, notALog, notOurs} {
		require.NoError(t, os.WriteFile(p, []byte("x\n"), 0o644))
	}
	for p, age := range map[string]time.Duration{weekOld: 8 * 24 * time.Hour, dayOld: 24 * time.Hour, notALog: 30 * 24 * time.Hour, notOurs: 30 * 24 * time.Hour} {
		require.NoError(t, os.Chtimes(p, time.Now().Add(-age), time.Now().Add(-age)))
	}
	failed := &loggingTB{TB: t, failed: true}
	testkit.LogOnFailure(failed, "short", "one\ntwo\n")
	long := strings.Repeat("a line of an etcd member's log\n", 500)
	testkit.LogOnFailure(failed, "etcd member m1 log", long)
	require.Len(t, failed.logs, 2)
	assert.Equal(t, "short:\none\ntwo\n", failed.logs[0])
	path, ok := strings.CutPrefix(failed.logs[1], "etcd member m1 log: 500 lines, kept in ")
	require.True(t, ok, failed.logs[1])
	kept, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, long, string(kept))
	assert.NoFileExists(t, weekOld)
	assert.FileExists(t, dayOld)
	assert.FileExists(t, notALog)
	assert.FileExists(t, notOurs, "a log another program keeps in the folder")

	passed := &loggingTB{TB: t}
	testkit.LogOnFailure(passed, "short", "one\n")
	assert.Empty(t, passed.logs)
}
