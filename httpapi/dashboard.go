package httpapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// The web dashboard: GET / is its page, GET /ui/{version}/{file} its
// scripts and styles, all embedded in the binary from web/ (plain HTML, CSS
// and JavaScript modules, no build step, no external request). The page
// talks to the v1 API and to GET /v1/watch like any other client.
//
//	GET /                        the page (Cache-Control: no-cache, ETag)
//	GET /ui/{version}/{file}     an asset; {version} is a hash of every asset
//
// The page names its assets under the current version, so a browser may
// keep them forever (immutable) and a new build is never mixed with an old
// one. An asset asked for under another version (a page cached before an
// upgrade) is still served, but must be revalidated. Everything is
// precompressed with gzip once, at start.

//go:embed web
var webFiles embed.FS

// web/index.html is the page; every other file of web/ is an asset.
const (
	webIndex        = "index.html"
	assetsPrefix    = "/ui/"
	assetsTemplate  = "{{ASSETS}}" // in index.html, replaced by /ui/{version}
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

// dashboardCSP is the page's Content-Security-Policy: its own scripts,
// styles and connections only ('self' covers ws:// and wss:// to the same
// host), no inline script, no framing.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// webContentTypes are the types of the files web/ may hold; a file of
// another kind fails the build of the dashboard (and its test).
var webContentTypes = map[string]string{
	".html": echo.MIMETextHTMLCharsetUTF8,
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
}

// webFile is one embedded file, ready to send.
type webFile struct {
	body, gz    []byte // gz is nil when compression does not pay
	contentType string
	etag        string
}

// dashboard holds the embedded files, prepared once.
type dashboard struct {
	version string // hash of every asset: the {version} of /ui/{version}/
	index   webFile
	assets  map[string]webFile // by file name under web/
}

// loadDashboard reads web/ from the binary and prepares every file.
func loadDashboard() (*dashboard, error) {
	root, err := fs.Sub(webFiles, "web")
	if err != nil {
		return nil, err
	}
	var names []string
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	d := &dashboard{assets: make(map[string]webFile, len(names))}
	raw := make(map[string][]byte, len(names))
	h := sha256.New()
	for _, name := range names {
		b, err := fs.ReadFile(root, name)
		if err != nil {
			return nil, err
		}
		if _, ok := webContentTypes[path.Ext(name)]; !ok {
			return nil, &fs.PathError{Op: "serve", Path: "web/" + name, Err: fs.ErrInvalid}
		}
		raw[name] = b
		if name != webIndex {
			h.Write([]byte(name))
			h.Write([]byte{0})
			h.Write(b)
		}
	}
	index, ok := raw[webIndex]
	if !ok {
		return nil, &fs.PathError{Op: "serve", Path: "web/" + webIndex, Err: fs.ErrNotExist}
	}
	d.version = hex.EncodeToString(h.Sum(nil)[:6])
	delete(raw, webIndex)
	d.index = newWebFile(webIndex, bytes.ReplaceAll(index, []byte(assetsTemplate), []byte(assetsPrefix+d.version)))
	for name, b := range raw {
		d.assets[name] = newWebFile(name, b)
	}
	return d, nil
}

func newWebFile(name string, body []byte) webFile {
	sum := sha256.Sum256(body)
	f := webFile{body: body, contentType: webContentTypes[path.Ext(name)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
	_, _ = zw.Write(body)                                    // a bytes.Buffer never fails
	_ = zw.Close()
	if buf.Len() < len(body)*9/10 {
		f.gz = buf.Bytes()
	}
	return f
}

// theDashboard is the embedded dashboard, prepared once per process.
var theDashboard = sync.OnceValues(loadDashboard)

// dashboardRoutes serves the page at / and its assets under /ui/. A build
// without a usable web/ folder is a programming error caught by the tests.
func (s *Server) dashboardRoutes() {
	d, err := theDashboard()
	if err != nil {
		panic("httpapi: embedded dashboard: " + err.Error())
	}
	e := s.e
	e.GET("/", d.serveIndex)
	e.HEAD("/", d.serveIndex)
	e.GET(assetsPrefix+":version/*", d.serveAsset)
	e.HEAD(assetsPrefix+":version/*", d.serveAsset)
}

// serveIndex answers the page. It is also what liveness probes of / get:
// always 200 while the process serves.
func (d *dashboard) serveIndex(c echo.Context) error {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	sendWebFile(c, d.index, cacheRevalidate)
	return nil
}

// serveAsset answers /ui/{version}/{file}.
func (d *dashboard) serveAsset(c echo.Context) error {
	name := strings.TrimPrefix(c.Param("*"), "/")
	f, ok := d.assets[name]
	if !ok {
		return echo.ErrNotFound
	}
	cache := cacheRevalidate
	if c.Param("version") == d.version {
		cache = cacheImmutable
	}
	sendWebFile(c, f, cache)
	return nil
}

// sendWebFile writes f with its type, ETag and cache policy, gzipped when the
// client takes it; http.ServeContent answers HEAD, If-None-Match (304) and
// ranges.
func sendWebFile(c echo.Context, f webFile, cache string) {
	res, req := c.Response(), c.Request()
	h := res.Header()
	h.Set(echo.HeaderContentType, f.contentType)
	h.Set("Cache-Control", cache)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add(echo.HeaderVary, echo.HeaderAcceptEncoding)
	body, etag := f.body, f.etag
	if f.gz != nil && acceptsGzip(req.Header.Get(echo.HeaderAcceptEncoding)) {
		body, etag = f.gz, etag[:len(etag)-1]+`-gz"`
		h.Set(echo.HeaderContentEncoding, "gzip")
	}
	h.Set("ETag", etag)
	http.ServeContent(res, req, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header names gzip with a
// weight above 0 ("gzip", "gzip;q=0.5", not "gzip;q=0").
func acceptsGzip(ae string) bool {
	for part := range strings.SplitSeq(ae, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		for param := range strings.SplitSeq(params, ";") {
			name, value, _ := strings.Cut(param, "=")
			if strings.EqualFold(strings.TrimSpace(name), "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}
