package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/internal/testkit/etcdkit"
	ctxdserver "github.com/framework0/ctxd/server"
)

// defaultChromium is where Debian's chromium package puts the browser.
const defaultChromium = "/usr/bin/chromium"

// Timeouts: generous, because the tests wait for conditions rather than
// for time, and a slow machine (or -race) must not fail them.
const (
	testTimeout = 60 * time.Second // one test, from its first action
	waitTimeout = 20 * time.Second // one condition
)

// browser is the Chromium process shared by the package's tests.
var browser struct {
	once    sync.Once
	ctx     context.Context // the browser's context; each test opens a tab under it
	err     error
	cleanup func()
}

func TestMain(m *testing.M) {
	testkit.SmallLogSegments()
	testkit.VerifyNoLeaks(m, func() {
		if browser.cleanup != nil {
			browser.cleanup()
		}
		etcdkit.Stop()
	})
}

// chromiumPath is the browser to run: $CTXD_CHROMIUM, else Debian's.
func chromiumPath() string {
	if p := os.Getenv("CTXD_CHROMIUM"); p != "" {
		return p
	}
	return defaultChromium
}

// startBrowser starts Chromium once, headless, with a fresh profile.
func startBrowser() (context.Context, error) {
	browser.once.Do(func() {
		exe := chromiumPath()
		if _, err := os.Stat(exe); err != nil {
			browser.err = fmt.Errorf("the dashboard tests need Chromium, not found at %s (%v): "+
				"run `make test-tools` (apt-get install chromium), or set CTXD_CHROMIUM to a Chromium or Chrome binary", exe, err)
			return
		}
		// A fresh profile, and Chromium's temporary files, in one folder
		// removed at the end (a killed Chromium leaves its own behind).
		root, err := os.MkdirTemp("", "ctxd-e2e-chromium-")
		if err != nil {
			browser.err = err
			return
		}
		profile, tmp := filepath.Join(root, "profile"), filepath.Join(root, "tmp")
		if err := os.Mkdir(tmp, 0o700); err != nil {
			browser.err = err
			return
		}
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
			chromedp.ExecPath(exe),
			chromedp.Headless,
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			// Containers often have a small /dev/shm; background tabs must
			// not be throttled (the tests' tabs are not focused).
			chromedp.Flag("disable-dev-shm-usage", true),
			chromedp.Flag("disable-background-timer-throttling", true),
			chromedp.Flag("disable-renderer-backgrounding", true),
			chromedp.Flag("disable-backgrounding-occluded-windows", true),
			chromedp.UserDataDir(profile),
			chromedp.Env("TMPDIR="+tmp),
			chromedp.WindowSize(1280, 900),
		)
		ctx, cancelBrowser := chromedp.NewContext(allocCtx)
		browser.cleanup = func() {
			cancelBrowser()
			cancelAlloc()
			_ = os.RemoveAll(root)
		}
		// The first run starts the browser (with the context's lifetime, so
		// it has no timeout of its own); later contexts open tabs in it.
		if err := chromedp.Do(ctx); err != nil {
			browser.err = fmt.Errorf("start %s: %w", exe, err)
			return
		}
		browser.ctx = ctx
	})
	return browser.ctx, browser.err
}

// server is a whole ctxd server in the test process (testkit.StartServer:
// what `ctxd serve` runs), behind a watchControl.
type server struct {
	t     *testing.T
	ks    *testkit.Server
	url   string
	ws    *watchControl
	token string // sent by do when set
}

type serverOptions struct {
	// token, when set, turns on a stand-in for access control (see
	// requireToken): the API answers 401 without this bearer token.
	token string
	// tokensFile, when set, turns on ctxd's own access control (auth.mode
	// on) with this tokens file; reloadTokens reads it again. The API then
	// wants a token of the file (put and get send none).
	tokensFile string
	// quota is storage.quota_bytes (0: the default).
	quota int64
	// maxLag, when set, is websocket.max_lag, with no lag_grace: a feed
	// more changes behind is closed at once ("lagged").
	maxLag uint64
	// etcd runs the server on the etcd backend (the package's shared
	// embedded etcd, a prefix of the test's own).
	etcd bool
	// etcdEndpoint, when set, runs it on this etcd instead: a test's own
	// (etcdkit.Own), which it may stop and start.
	etcdEndpoint string
}

func newServer(t *testing.T, opts serverOptions) *server {
	t.Helper()
	if _, err := startBrowser(); err != nil {
		t.Fatal(err) // before anything else: the one thing to read
	}
	ws := &watchControl{}
	wrap := ws.wrap
	if opts.token != "" {
		wrap = func(h http.Handler) http.Handler { return requireToken(opts.token, ws.wrap(h)) }
	}
	settings := []testkit.ServerOption{testkit.WithServerOptions(ctxdserver.Version("e2e-test"), ctxdserver.WrapHandler(wrap)),
		testkit.WithConfig(func(c *configs.Config) {
			if opts.quota != 0 {
				c.Storage.QuotaBytes = opts.quota
			}
			if opts.maxLag != 0 {
				c.WebSocket.MaxLag, c.WebSocket.LagGrace = opts.maxLag, 0
			}
			if opts.tokensFile != "" {
				c.Auth.Mode, c.Auth.TokensFile = configs.AuthOn, opts.tokensFile
			}
		})}
	endpoint := opts.etcdEndpoint
	if opts.etcd && endpoint == "" {
		endpoint = etcdkit.Shared(t).Endpoint
	}
	if endpoint != "" {
		settings = append(settings, testkit.WithEtcd(endpoint, etcdkit.Prefix(etcdkit.Name(t))))
	}
	ks := testkit.StartServer(t, settings...)
	return &server{t: t, ks: ks, url: ks.URL, ws: ws, token: opts.token}
}

// newTokensServer starts a server with ctxd's access control on a tokens
// file of these entries (testkit.TokenEntry), and returns the file's path:
// writeTokens rewrites it, reloadTokens reads it again.
func newTokensServer(t *testing.T, entries ...string) (*server, string) {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	writeTokens(t, tokens, entries...)
	return newServer(t, serverOptions{tokensFile: tokens}), tokens
}

// writeTokens writes a tokens file of these entries (testkit.TokenEntry).
func writeTokens(t *testing.T, path string, entries ...string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte("tokens:\n"+strings.Join(entries, "")), 0o600))
}

// do sends one API request and returns the status and body.
func (s *server) do(method, path, body string, hdr ...string) (int, []byte) {
	s.t.Helper()
	if s.token != "" {
		hdr = append([]string{"Authorization", "Bearer " + s.token}, hdr...)
	}
	res, b := testkit.Send(s.t, http.DefaultClient, testkit.NewRequest(s.t, method, s.url+path, body, hdr...))
	return res.StatusCode, b
}

// reloadTokens reads the tokens file again, as SIGHUP does, and returns
// how many tokens the reload revoked.
func (s *server) reloadTokens() int {
	s.t.Helper()
	_, revoked, err := s.ks.Server().Access().Reload()
	require.NoError(s.t, err)
	return revoked
}

// put writes a key through the REST API, as another client would.
func (s *server) put(ns, key, value, who string) ctxd.Record {
	s.t.Helper()
	status, body := s.do(http.MethodPut, keyPath(ns, key)+"?who="+url.QueryEscape(who), value)
	require.Equal(s.t, http.StatusOK, status, "%s", body)
	var r ctxd.Record
	require.NoError(s.t, json.Unmarshal(body, &r))
	return r
}

// get reads a key through the REST API; ok is false on 404.
func (s *server) get(ns, key string) (r ctxd.Record, ok bool) {
	s.t.Helper()
	status, body := s.do(http.MethodGet, keyPath(ns, key), "")
	if status == http.StatusNotFound {
		return r, false
	}
	require.Equal(s.t, http.StatusOK, status, "%s", body)
	require.NoError(s.t, json.Unmarshal(body, &r))
	return r, true
}

func keyPath(ns, key string) string {
	return "/v1/ns/" + url.PathEscape(ns) + "/keys/" + url.PathEscape(key)
}

// fixturesPath serves testdata (test pages and the vendored socket.io
// client) on the server's own origin, in front of the API.
const fixturesPath = "/e2e-fixtures/"

// watchControl sits in front of the server: it records each GET
// /v1/watch connection's query and can cut every open connection and
// refuse new ones, as a network failure or a server restart would; and it
// can hold the answers of requests (applied, not yet answered).
type watchControl struct {
	mu      sync.Mutex
	refuse  bool
	conns   []net.Conn
	queries []url.Values
	held    *heldAnswers // nil: none held
}

// heldAnswers are the requests of one method and path (any path when
// path is "") whose answers wait for release to close.
type heldAnswers struct {
	method, path string
	release      chan struct{}
	asked        int // how many came
}

// holdAnswers makes the requests of method and path (any path when path
// is "") apply but wait for release to answer: what a slow server or
// network does (to the answer of a write whose change the feed has
// already brought, say). asked counts them. Call release before the test
// ends (defer it): a held answer keeps the server from stopping.
func (c *watchControl) holdAnswers(method, path string) (asked func() int, release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := &heldAnswers{method: method, path: path, release: make(chan struct{})}
	c.held = h
	var once sync.Once
	asked = func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return h.asked
	}
	release = func() {
		once.Do(func() {
			c.mu.Lock()
			if c.held == h {
				c.held = nil
			}
			c.mu.Unlock()
			close(h.release)
		})
	}
	return asked, release
}

func (c *watchControl) wrap(next http.Handler) http.Handler {
	fixtures := http.StripPrefix(fixturesPath, http.FileServer(http.Dir("testdata")))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, fixturesPath) {
			fixtures.ServeHTTP(w, r) // test pages, on the server's origin
			return
		}
		c.mu.Lock()
		held := c.held
		if held != nil && r.Method == held.method && (held.path == "" || r.URL.Path == held.path) {
			held.asked++
		} else {
			held = nil
		}
		c.mu.Unlock()
		if held != nil {
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			<-held.release
			maps.Copy(w.Header(), rec.Header())
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		if r.URL.Path != "/v1/watch" {
			next.ServeHTTP(w, r)
			return
		}
		c.mu.Lock()
		c.queries = append(c.queries, r.URL.Query())
		refuse := c.refuse
		c.mu.Unlock()
		if refuse {
			http.Error(w, "refused by the test", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(&hijackRecorder{ResponseWriter: w, c: c}, r)
	})
}

// cut closes every WebSocket connection and refuses new ones until allow.
func (c *watchControl) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = true
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

// refuseNew refuses new connections until allow; the open ones go on.
func (c *watchControl) refuseNew() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = true
}

func (c *watchControl) allow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = false
}

// connections returns the query of every /v1/watch request so far.
func (c *watchControl) connections() []url.Values {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]url.Values(nil), c.queries...)
}

type hijackRecorder struct {
	http.ResponseWriter
	c *watchControl
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err == nil {
		h.c.mu.Lock()
		h.c.conns = append(h.c.conns, conn)
		h.c.mu.Unlock()
	}
	return conn, rw, err
}

func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// page is one browser tab on the dashboard.
type page struct {
	t   *testing.T
	ctx context.Context // bounded by testTimeout
	tab context.Context // the tab itself, for the screenshot after a timeout

	mu      sync.Mutex
	console []string // console messages, log entries and exceptions, in order
	thrown  []string // uncaught exceptions (and CSP violations): each fails the test
}

// pageOptions change how openPage opens the page.
type pageOptions struct {
	// width and height, when set, emulate a mobile device of that size.
	width, height int64
	// noWait returns once the page is loaded, without waiting for the
	// dashboard's first requests (which wait for a token, say).
	noWait bool
	// fastTimers, when set, divides every delay of the page's timers
	// (setTimeout, setInterval) by this: its polls and timeouts of
	// seconds take a tenth of that with 10, and a test of them stays
	// quick. Its other waits shrink too (the feed's backoff, a notice's
	// life): for tests that look at neither.
	fastTimers int
}

// openPage opens a tab on the server's dashboard (path is appended to the
// server URL, "/" or "/#key=k") and waits until its first loads are done.
// When the test fails, the tab's screenshot and HTML are saved.
func openPage(t *testing.T, s *server, path string, opts ...pageOptions) *page {
	t.Helper()
	bctx, err := startBrowser()
	if err != nil {
		t.Fatal(err)
	}
	p := &page{t: t}
	tab, closeTab := chromedp.NewContext(bctx, chromedp.WithListener(p.listen))
	p.tab = tab
	ctx, cancel := context.WithTimeout(tab, testTimeout)
	p.ctx = ctx
	t.Cleanup(closeTab)
	t.Cleanup(cancel)
	t.Cleanup(p.afterTest) // runs first: the tab is still open
	// The first call opens the tab, with the tab's lifetime.
	if _, err := chromedp.Call(tab, log.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	// chromedp turns the Network domain on in every tab, for events no
	// test reads: off, so that the page's traffic (WebSocket frames of a
	// megabyte and more) is not copied to the test process as JSON.
	if _, err := chromedp.Call(tab, network.Disable, cdp.Empty{}); err != nil {
		t.Fatalf("turn the tab's Network domain off: %v", err)
	}
	var o pageOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.fastTimers > 0 {
		script := fmt.Sprintf(`for (const name of ["setTimeout", "setInterval"]) {
			const real = window[name].bind(window);
			window[name] = (fn, ms, ...args) => real(fn, (Number(ms) || 0) / %d, ...args);
		}`, o.fastTimers)
		if _, err := chromedp.Call(tab, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: script}); err != nil {
			t.Fatalf("speed up the page's timers: %v", err)
		}
	}
	if o.width > 0 {
		p.do(chromedp.EmulateViewport(o.width, o.height, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait))
	}
	p.do(chromedp.Navigate(s.url + path))
	if !o.noWait {
		p.waitReady()
	}
	return p
}

// openWithToken opens the dashboard at path on a server that asks for a
// token, enters secret at the first load's prompt, and waits until the
// first loads are done; opts as openPage's (noWait aside).
func openWithToken(t *testing.T, s *server, path, secret string, opts ...pageOptions) *page {
	t.Helper()
	var o pageOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	o.noWait = true
	p := openPage(t, s, path, o)
	p.enterToken(secret)
	p.waitReady()
	return p
}

// enterToken waits for the token dialog and enters secret.
func (p *page) enterToken(secret string) {
	p.t.Helper()
	p.waitFor("#token-dialog[open]")
	p.fill("#token-input", secret)
	p.click(`#token-form button[value="ok"]`)
}

// waitReady waits until the dashboard's first loads are done.
func (p *page) waitReady() {
	p.t.Helper()
	p.waitJS(`document.documentElement.dataset.ready === "true"`, "the first loads to finish")
}

// listen collects the tab's console; it runs in the tab's event loop.
func (p *page) listen(ev any) {
	var line string
	fatal := false
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			if a.Value != nil {
				args = append(args, string(a.Value))
			} else {
				args = append(args, a.Description)
			}
		}
		line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		line = fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, text)
		fatal = true
	case *log.EventEntryAdded:
		e := ev.Entry
		line = fmt.Sprintf("log %s %s: %s %s", e.Source, e.Level, e.Text, e.URL)
		fatal = strings.Contains(e.Text, "Content Security Policy")
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.console = append(p.console, line)
	if fatal {
		p.thrown = append(p.thrown, line)
	}
}

// afterTest fails the test on a page error, and on failure saves what the
// browser showed.
func (p *page) afterTest() {
	t := p.t
	p.mu.Lock()
	thrown := append([]string(nil), p.thrown...)
	console := strings.Join(p.console, "\n")
	p.mu.Unlock()
	for _, e := range thrown {
		t.Errorf("the page reported an error: %s", e)
	}
	if !t.Failed() {
		return
	}
	t.Logf("page console:\n%s", console)
	dir := t.ArtifactDir()
	ctx, cancel := context.WithTimeout(p.tab, 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err != nil {
		t.Logf("no screenshot: %v", err)
	} else if err := os.WriteFile(filepath.Join(dir, "screenshot.png"), png, 0o644); err == nil {
		t.Logf("screenshot of the page: %s", filepath.Join(dir, "screenshot.png"))
	}
	if html, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte(html), 0o644); err == nil {
			t.Logf("HTML of the page: %s", filepath.Join(dir, "page.html"))
		}
	}
}

// logged reports whether a line of the tab's console so far contains
// each of want.
func (p *page) logged(want ...string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range p.console {
		if containsAll(line, want) {
			return true
		}
	}
	return false
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// recordNotices records every text the page's notice shows from now on,
// however briefly; the function returns them so far.
func (p *page) recordNotices() func() []string {
	p.t.Helper()
	p.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const n = document.querySelector("#notice");
		window.noticesSeen = [];
		new MutationObserver(() => window.noticesSeen.push(n.textContent)).observe(n, {childList: true, characterData: true, subtree: true});
	})()`))
	return func() []string { return eval[[]string](p, `window.noticesSeen`) }
}

// do runs actions in the tab.
func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression and decodes its result.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the expression is truthy; what names the condition
// in the failure message.
func (p *page) waitJS(expr, what string) {
	p.t.Helper()
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// text is the text of the first element matching the CSS selector ("" if none).
func (p *page) text(sel string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`(document.querySelector(%s)?.textContent ?? "")`, jsString(sel)))
}

// waitText waits until the element's text contains each of want.
func (p *page) waitText(sel string, want ...string) {
	p.t.Helper()
	var conds []string
	for _, w := range want {
		conds = append(conds, fmt.Sprintf(`t.includes(%s)`, jsString(w)))
	}
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false; const t = e.textContent; return %s; })()`,
		jsString(sel), strings.Join(conds, " && "))
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("waiting for %s to contain %q: it has %q (%v)", sel, want, p.text(sel), err)
	}
}

// waitTextIs waits until the element's whole text (trimmed) is want.
func (p *page) waitTextIs(sel, want string) {
	p.t.Helper()
	expr := fmt.Sprintf(`(document.querySelector(%s)?.textContent.trim() === %s)`, jsString(sel), jsString(want))
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("waiting for %s to be %q: it is %q (%v)", sel, want, p.text(sel), err)
	}
}

// waitFor waits until an element matches the CSS selector.
func (p *page) waitFor(sel string) {
	p.t.Helper()
	p.waitJS(fmt.Sprintf(`document.querySelector(%s) !== null`, jsString(sel)), sel)
}

// count is the number of elements matching the CSS selector.
func (p *page) count(sel string) int {
	p.t.Helper()
	return eval[int](p, fmt.Sprintf(`document.querySelectorAll(%s).length`, jsString(sel)))
}

// click clicks the element with the mouse, as a person would.
//
// A list rendered again between the query and the click (the history
// re-read after a change) leaves the node the query found out of the
// page: Chrome answers "Could not find node with given id" before any
// mouse event is sent, and the click is made again on the new node.
// make test met it once (TestValueShownAsStored's Diff button).
func (p *page) click(sel string) {
	p.t.Helper()
	for attempt := 1; ; attempt++ {
		err := chromedp.Do(p.ctx, chromedp.Click(chromedp.CSS(sel)))
		if err == nil {
			return
		}
		if attempt < 5 && (strings.Contains(err.Error(), "Could not find node with given id") || strings.Contains(err.Error(), "Node is detached")) {
			continue
		}
		p.t.Fatalf("browser: click %s: %v", sel, err)
	}
}

// fill sets a field's value and fires its input event.
func (p *page) fill(sel, value string) {
	p.t.Helper()
	p.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.querySelector(%s); e.value = %s; e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); })()`,
		jsString(sel), jsString(value))))
}

func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
