package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/export"
	"github.com/framework0/ctxd/store"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes int64 = 2 << 20

// Config configures a Server.
type Config struct {
	// Version is the build version reported by /v1/status.
	Version string
	// MaxBodyBytes caps a request body; larger bodies get 413 too_large.
	// 0 (or negative) means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxPageBytes ends a list or history page once its values pass it
	// (keys.go); 0 means DefaultMaxPageBytes. Tests make it small.
	MaxPageBytes int
	// MaxSpoolBytes bounds the temp files that answers being sent hold at
	// once (sendSpooled); 0 means DefaultMaxSpoolBytes.
	MaxSpoolBytes int64
	// StallTimeout ends the answer of an export or dump (spooled to a
	// temp file first) to a client that reads none of it for that long:
	// the file and its descriptor are held meanwhile; and a snapshot
	// upload that sends nothing for that long (an upload is not held to
	// the server's read timeout). 0 means DefaultStallTimeout. Tests make
	// it small.
	StallTimeout time.Duration
	// Clients, when set, reports the connected WebSocket clients for
	// /v1/status (the realtime hub's Clients).
	Clients func() int
	// CompatNamespace is the namespace of the Framework0-compatible /ctx
	// API (compat.go); "" means "default".
	CompatNamespace string
	// Dumps is the folder of server-side dumps (export.go), opened by
	// export.OpenDir (with its Reserve); nil disables them.
	Dumps *export.Dir
	// DumpRetention bounds the dump folder after each server-side dump
	// (dumps.keep, dumps.max_bytes); zero keeps every file.
	DumpRetention export.Retention
	// OnDump, when set, is called after every successful dump: a file
	// written by POST /ctx/dump or POST /v1/ns/{ns}/dumps, or an export
	// sent by GET /v1/ns/{ns}/export (Filename empty). It runs in the
	// request's goroutine and must not block.
	OnDump func(ctxd.DumpInfo)
	// Snapshots, when set, serves /v1/snapshots (snapshots.go).
	Snapshots Snapshots
	// KeepVersions is how many versions per key POST /v1/compact keeps
	// below the mark (history.keep_versions; 0 or 1: the one in effect).
	KeepVersions int
	// MaxUploadBytes caps a snapshot upload (default DefaultMaxUploadBytes).
	MaxUploadBytes int64
	// Metrics, when set, receives the HTTP request metrics, and Gatherer
	// (usually the same registry) is served at GET /metrics.
	Metrics  prometheus.Registerer
	Gatherer prometheus.Gatherer
	// Access, when set, turns access control on (access.go): every route
	// but /healthz, /readyz and the dashboard's page needs a bearer token
	// with the rights the route asks for.
	Access *auth.Authorizer
	// CORSOrigins are the browser origins allowed to call the API ("*":
	// any; none by default), cors.go.
	CORSOrigins []string
	// RateLimit is each client's requests per second, with bursts of
	// RateBurst (ratelimit.go); 0: no limit.
	RateLimit float64
	RateBurst int
	// LocalHostsOnly refuses a request whose Host names a host other than
	// localhost (an IP address is fine): set while access control is off
	// because the server listens on loopback (crossorigin.go, DNS
	// rebinding).
	LocalHostsOnly bool
}

// Server serves the v1 API over a Store.
type Server struct {
	e       *echo.Echo
	st      store.Backend
	cfg     Config
	log     zerolog.Logger
	started time.Time
	ids     *requestIDs
	dumps   *dumps // export.go
	metrics *requestMetrics
	gate    *gate // gate.go: CORS, access control, rate limit
	// keyAllow is the Allow of a key's path (keyPathAllow).
	keyAllow string
	// draining is set by Drain.
	draining atomic.Bool
	// readiness logs /readyz's answer when it changes (status.go).
	readiness readinessLog
	// spooled is what the answers being sent hold of temp files.
	spooled atomic.Int64
	// spoolLeader is the answer that may take spooled past the bound
	// (spool.reserve).
	spoolLeader atomic.Pointer[spool]
}

// Drain starts the server's shutdown_drain: from now on /readyz answers
// 503 unavailable, so that load balancers stop sending requests, and
// every answer (the server still serves) closes its connection and
// carries ctxd.HeaderDraining, so that ctxd's client of several
// instances sends its next requests to another one.
func (s *Server) Drain() { s.draining.Store(true) }

// New returns a Server over st. log receives the access log (one line per
// request at info level) and errors; its format is the caller's choice.
func New(st store.Backend, cfg Config, log zerolog.Logger) *Server {
	if cfg.MaxPageBytes <= 0 {
		cfg.MaxPageBytes = DefaultMaxPageBytes
	}
	if cfg.MaxSpoolBytes <= 0 {
		cfg.MaxSpoolBytes = DefaultMaxSpoolBytes
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &Server{
		e:       echo.New(),
		st:      st,
		cfg:     cfg,
		log:     log,
		started: time.Now(),
		ids:     newRequestIDs(),
		dumps:   newDumps(cfg),
	}
	if cfg.Metrics != nil {
		s.metrics = newRequestMetrics(cfg.Metrics)
	}
	s.e.HideBanner = true
	s.e.HidePort = true
	s.e.HTTPErrorHandler = s.handleError
	s.e.Use(s.middleware)
	s.routes()
	s.keyAllow = keyPathAllow(s.e)
	s.gate = newGate(s)
	return s
}

// Handler returns the http.Handler that serves every route: Echo's,
// routing on the path as the client sent it (routeOnTheRawPath).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		routeOnTheRawPath(r.URL)
		s.e.ServeHTTP(w, r)
	})
}

// routeOnTheRawPath makes Echo route on the path as the client sent it,
// so that a route's parameters are always the raw segments that the
// handlers unescape once (parseNamespace, snapshotID). Echo routes on
// URL.RawPath, which net/http leaves empty when the path was sent in its
// default escaping: it then routed on the unescaped path, and a
// namespace or snapshot id sent as "%2541" was unescaped twice ("A").
// Only a path holding '%' once unescaped can be unescaped again. (Here
// rather than as an Echo Pre middleware, which takes Echo off its fast
// path for every request.)
func routeOnTheRawPath(u *url.URL) {
	if u.RawPath == "" && strings.IndexByte(u.Path, '%') >= 0 {
		u.RawPath = u.EscapedPath()
	}
}

// Echo returns the underlying Echo instance, so that other packages can add
// routes. Routes added there go through the same middleware and error format.
// Add them before serving.
func (s *Server) Echo() *echo.Echo { return s.e }

// getAndHead registers h for GET and HEAD at path: every GET route answers
// HEAD with its headers (a load balancer's probe, a download's size), as
// HTTP asks of a general-purpose server; net/http drops the body.
func getAndHead(e *echo.Echo, path string, h echo.HandlerFunc) {
	e.Match([]string{http.MethodGet, http.MethodHead}, path, h)
}

func (s *Server) routes() {
	e := s.e
	getAndHead(e, "/v1/ns", s.namespaces)
	getAndHead(e, "/v1/ns/:ns/keys", s.listKeys)
	// The key is taken from the escaped path, not from the wildcard
	// parameter: see parseKeyPath.
	e.GET(keyRoute, s.getKey)
	e.HEAD(keyRoute, s.getKey)
	e.PUT(keyRoute, s.putKey)
	e.PATCH(keyRoute, s.patchKey)
	e.DELETE(keyRoute, s.deleteKey)
	e.POST(keyRoute, s.keepAlive) // .../keys/{key}/keepalive
	e.POST("/v1/txn", s.txn)
	getAndHead(e, "/v1/status", s.status)
	getAndHead(e, "/v1/auth/self", s.authSelf)        // access.go
	getAndHead(e, "/v1/openapi.json", s.serveOpenAPI) // openapi.go
	getAndHead(e, "/healthz", s.healthz)
	getAndHead(e, "/readyz", s.readyz)
	s.exportRoutes()   // export.go
	s.compatRoutes()   // compat.go
	s.snapshotRoutes() // snapshots.go
	// GET / and /ui/: the dashboard (dashboard.go)
	s.dashboardRoutes()
	if s.cfg.Gatherer != nil {
		getAndHead(e, "/metrics", metricsHandler(s.cfg.Gatherer))
	}
}
