// Package e2e tests the web dashboard end to end: the page served by
// httpapi, in headless Chromium driven over the DevTools protocol
// (chromedp), against a real server (store, snapshots, the realtime hub and
// the HTTP API on an httptest server).
//
// # Basics
//
// The tests need Chromium at /usr/bin/chromium (Debian's chromium package;
// `make test-tools` installs it), or the browser named by CTXD_CHROMIUM.
// Without it they fail, saying so: they are not skipped. One browser is
// shared by the package; each test has its own tab and its own server.
//
// # Caveats
//
// The tests wait for conditions in the page (polling the DOM), never for a
// fixed time. A failing test saves a screenshot and the page's HTML in its
// artifact folder (t.ArtifactDir: kept with `go test -artifacts`, else a
// temporary folder) and logs the paths, the page's console and the server log.
package e2e
