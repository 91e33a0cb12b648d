package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The dashboard's behaviour in a browser is tested in httpapi/e2e; these
// tests check how its files are served.

// assetRE matches an asset link of the page: /ui/{version}/{file}.
var assetRE = regexp.MustCompile(`/ui/([0-9a-f]{12})/([A-Za-z0-9._-]+)`)

// importRE matches a JavaScript module's relative imports.
var importRE = regexp.MustCompile(`from '\./([A-Za-z0-9._-]+)'`)

func TestDashboardPage(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do(http.MethodGet, "/", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "text/html; charset=UTF-8", r.header.Get("Content-Type"))
	assert.Equal(t, "no-cache", r.header.Get("Cache-Control"), "the page is revalidated: it names the current assets")
	assert.NotEmpty(t, r.header.Get("ETag"))
	assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	assert.Equal(t, "DENY", r.header.Get("X-Frame-Options"))
	csp := r.header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		assert.Contains(t, csp, d)
	}
	page := string(r.body)
	assert.NotContains(t, page, "{{ASSETS}}")
	assert.Regexp(t, `<script type="module" src="/ui/[0-9a-f]{12}/app\.js"></script>`, page)
	assert.Regexp(t, `<link rel="stylesheet" href="/ui/[0-9a-f]{12}/app\.css">`, page)

	// Liveness probes of / get a 200, with or without a body.
	r = e.do(http.MethodHead, "/", "")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Empty(t, r.body)

	// A revalidation is a 304.
	etag := e.do(http.MethodGet, "/", "").header.Get("ETag")
	r = e.do(http.MethodGet, "/", "", "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, r.status)
}

func TestDashboardAssets(t *testing.T) {
	e := newEnv(t, envOptions{})
	page := string(e.do(http.MethodGet, "/", "").body)
	links := assetRE.FindAllStringSubmatch(page, -1)
	require.NotEmpty(t, links)
	version := links[0][1]

	wantType := map[string]string{
		".js":  "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8",
		".svg": "image/svg+xml",
	}
	// Every file the page names, and every module those import, is served.
	todo := []string{}
	for _, l := range links {
		require.Equal(t, version, l[1], "every link names the same version")
		todo = append(todo, l[2])
	}
	seen := map[string]bool{}
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		r := e.do(http.MethodGet, "/ui/"+version+"/"+name, "", "Accept-Encoding", "identity")
		require.Equal(t, http.StatusOK, r.status, name)
		assert.Equal(t, wantType[filepath.Ext(name)], r.header.Get("Content-Type"), name)
		assert.Equal(t, "public, max-age=31536000, immutable", r.header.Get("Cache-Control"), name)
		assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"), name)
		assert.NotEmpty(t, r.header.Get("ETag"), name)
		onDisk, err := os.ReadFile(filepath.Join("web", name))
		require.NoError(t, err)
		assert.Equal(t, onDisk, r.body, "%s is served as embedded", name)
		for _, m := range importRE.FindAllStringSubmatch(string(r.body), -1) {
			todo = append(todo, m[1])
		}
	}
	for _, name := range []string{"app.js", "api.js", "json.js", "live.js", "diff.js", "util.js", "app.css"} {
		assert.True(t, seen[name], "%s is reachable from the page", name)
	}

	// Under another version (a page from before an upgrade) an asset is
	// still served, but revalidated.
	r := e.do(http.MethodGet, "/ui/000000000000/app.js", "")
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "no-cache", r.header.Get("Cache-Control"))

	etag := e.do(http.MethodGet, "/ui/"+version+"/app.js", "", "Accept-Encoding", "identity").header.Get("ETag")
	r = e.do(http.MethodGet, "/ui/"+version+"/app.js", "", "Accept-Encoding", "identity", "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, r.status)

	for _, p := range []string{
		"/ui/" + version + "/nope.js",
		"/ui/" + version + "/index.html", // the page is served at / only
		"/ui/" + version + "/..%2Fdashboard.go",
		"/ui/" + version + "/",
	} {
		r := e.do(http.MethodGet, p, "")
		assert.Equal(t, http.StatusNotFound, r.status, p)
		assert.Contains(t, string(r.body), `"code":"not_found"`, p)
	}
}

func TestDashboardGzip(t *testing.T) {
	e := newEnv(t, envOptions{})
	page := e.do(http.MethodGet, "/", "")
	version := assetRE.FindStringSubmatch(string(page.body))[1]
	path := "/ui/" + version + "/app.js"

	plain := e.do(http.MethodGet, path, "", "Accept-Encoding", "identity")
	require.Equal(t, http.StatusOK, plain.status)
	assert.Empty(t, plain.header.Get("Content-Encoding"))
	assert.Contains(t, plain.header.Values("Vary"), "Accept-Encoding")

	gz := e.do(http.MethodGet, path, "", "Accept-Encoding", "br, gzip")
	require.Equal(t, http.StatusOK, gz.status)
	assert.Equal(t, "gzip", gz.header.Get("Content-Encoding"))
	assert.Less(t, len(gz.body), len(plain.body))
	assert.NotEqual(t, plain.header.Get("ETag"), gz.header.Get("ETag"), "each encoding has its own ETag")
	zr, err := gzip.NewReader(bytes.NewReader(gz.body))
	require.NoError(t, err)
	unzipped, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, plain.body, unzipped)

	for _, ae := range []string{"gzip;q=0", "deflate, gzip ; q=0.0", "br", "gzip;q=nope"} {
		refused := e.do(http.MethodGet, path, "", "Accept-Encoding", ae)
		assert.Empty(t, refused.header.Get("Content-Encoding"), ae)
		assert.Equal(t, plain.body, refused.body, ae)
	}
	weighted := e.do(http.MethodGet, path, "", "Accept-Encoding", "identity;q=0.5, GZIP;q=0.8")
	assert.Equal(t, "gzip", weighted.header.Get("Content-Encoding"))
}

// TestDashboardOffline checks that no embedded file points outside the
// server: no CDN, no font service, no absolute URL (the SVG namespace is a
// name, not a request).
func TestDashboardOffline(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("web", "*"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	absolute := regexp.MustCompile(`(?i)(https?:|wss?:)?//[a-z0-9-]+(\.[a-z0-9-]+)+`)
	cssLoad := regexp.MustCompile(`(?i)@import|url\(`) // a stylesheet's own requests
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		text := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		assert.Empty(t, absolute.FindAllString(text, -1), "%s refers to something outside the server", f)
		if filepath.Ext(f) == ".css" {
			assert.Empty(t, cssLoad.FindAllString(text, -1), "%s loads something", f)
		}
	}
}
