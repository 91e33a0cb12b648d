package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
	"github.com/framework0/ctxd/internal/yamldoc"
	"github.com/framework0/ctxd/store/bolt"
	"github.com/framework0/ctxd/store/wal"
)

// Config is the server configuration. Each field's YAML path is given in its
// comment; the environment variable is CTXD_ followed by that path in upper
// case with dots as underscores.
type Config struct {
	// Addr (addr) is the host:port to listen on; port 0 picks a free port.
	Addr string
	// DataDir (data_dir) is the data folder; the database is DataDir/ctxd.db.
	DataDir string
	// ShutdownTimeout (shutdown_timeout) bounds how long a graceful shutdown
	// waits for requests in flight before closing their connections.
	ShutdownTimeout time.Duration
	// ShutdownDrain (shutdown_drain) is how long a graceful shutdown keeps
	// serving first, with /readyz answering 503 and every answer closing
	// its connection, so that load balancers and clients of several
	// instances leave before connections are closed under them; 0: none.
	ShutdownDrain time.Duration
	Log           Log
	HTTP          HTTP
	// Auth (auth.*) is access control: who may call the API.
	Auth Auth
	// TLS (tls.*) serves HTTPS when a certificate is given.
	TLS TLS
	// Limits (limits.*) bound what one request may write; the store enforces them.
	Limits ctxd.Limits
	Compat Compat
	// Dumps (dumps.*) is where server-side dumps go.
	Dumps Dumps
	// Snapshots (snapshots.*) schedules snapshots and bounds uploads.
	Snapshots Snapshots
	// History (history.*) is how much history is kept.
	History History
	// Storage (storage.*) bounds the disk space the database may take.
	Storage Storage
	// WebSocket (websocket.*) configures the live change feed, GET /v1/watch.
	WebSocket WebSocket
	// Store (store.*) chooses the storage backend.
	Store Store
	// Etcd (etcd.*) is the etcd cluster of store.backend etcd.
	Etcd Etcd
	// WAL (wal.*) tunes the write-ahead log of the embedded store.
	WAL WAL

	// Warnings are what Load accepted but found questionable: a setting
	// given that has no effect with the others (the etcd settings under
	// the bolt backend, a burst with no rate), or settings that work
	// against each other. serve logs each at start.
	Warnings []string

	// sources is where Load took each setting given from (Source).
	sources map[string]string
}

// Source says where Load took the setting at path (a YAML path such as
// "etcd.ca_file") from: "file ctxd.yaml, line 3", "env CTXD_ETCD_CA_FILE",
// "flag"; "" for one left at its default. It is the Source of an [*Error]
// about that setting's value found after Load (a file it names that does
// not open).
func (c Config) Source(path string) string { return c.sources[path] }

// Storage backends (store.backend).
const (
	BackendBolt = "bolt"
	BackendEtcd = "etcd"
)

// Store chooses the storage backend.
type Store struct {
	// Backend (store.backend) is "bolt" (the embedded default, in
	// data_dir) or "etcd" (several ctxd instances on one etcd cluster,
	// etcd.*).
	Backend string
	// ReadCacheBytes (store.read_cache_bytes, bolt only) bounds the cache
	// of current key state that GETs are served from (keys, values and a
	// fixed overhead per entry); 0 turns it off (store/bolt/DESIGN.md,
	// "The Get cache").
	ReadCacheBytes int64
}

// Secret is a setting that must never be printed: a Config written to a
// log, an error or JSON shows "[redacted]" where it is set. Reveal gives
// the value to the one place that uses it.
type Secret string

// Reveal is the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String hides the secret from fmt and loggers.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalText hides the secret from encoders (JSON, YAML, zerolog).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Etcd is how ctxd reaches its etcd cluster.
type Etcd struct {
	// Endpoints (etcd.endpoints, comma-separated) are etcd's client URLs,
	// http://host:port or https://host:port.
	Endpoints []string
	// Prefix (etcd.prefix) is the key prefix of this deployment, "/ctxd/"
	// by default: deployments with different prefixes share a cluster.
	Prefix string
	// CAFile (etcd.ca_file) verifies etcd's certificate; CertFile and
	// KeyFile (etcd.cert_file, etcd.key_file) are ctxd's client
	// certificate. Any of them turns TLS on.
	CAFile, CertFile, KeyFile string
	// Username and Password (etcd.username, etcd.password) authenticate
	// to etcd when set.
	Username string
	Password Secret
	// DialTimeout (etcd.dial_timeout) bounds connecting at start;
	// RequestTimeout (etcd.request_timeout) bounds each request: a write
	// not answered within it is outcome_unknown.
	DialTimeout, RequestTimeout time.Duration
	// ReadCache (etcd.read_cache, default true) serves reads from each
	// instance's watch-fed cache of the prefix, linearizable; false reads
	// etcd directly (store/etcd/DESIGN.md, "Reads").
	ReadCache bool
	// ReadCacheMaxBytes (etcd.read_cache_max_bytes) bounds the cache: a
	// prefix that needs more is read from etcd directly.
	ReadCacheMaxBytes int64
}

// WAL tunes the embedded store's write-ahead log and the committer that
// applies it to the database file. The defaults are the measured best
// (store/bolt/DESIGN.md); other values are for tests: the power-loss
// trials make segments small so that the log rotates and releases files
// often, hold the committer back so that a long log is left to replay,
// and lower direct_bytes so that ordinary requests take the direct path.
type WAL struct {
	// SegmentBytes (wal.segment_bytes) is the size of each log file.
	SegmentBytes int64
	// CommitInterval (wal.commit_interval) is how long acknowledged writes
	// gather before the committer applies them to the database file.
	CommitInterval time.Duration
	// CommitChanges (wal.commit_changes): the committer applies at once
	// when this many changes wait.
	CommitChanges int
	// DirectBytes (wal.direct_bytes): a request with this many bytes of
	// changes or more skips the log and commits to the database file
	// directly (at most half of segment_bytes is used).
	DirectBytes int
}

// WebSocket configures the live change feed.
type WebSocket struct {
	// PingInterval (websocket.ping_interval) is how often the server pings
	// each client; one that answers no ping for twice as long is dropped.
	PingInterval time.Duration
	// WriteTimeout (websocket.write_timeout) bounds writing one frame to a
	// client: one that reads nothing for that long is dropped.
	WriteTimeout time.Duration
	// MaxMessageBytes (websocket.max_message_bytes) bounds a message from a
	// client (a context_set carries a value).
	MaxMessageBytes int64
	// MaxSnapshotBytes (websocket.max_snapshot_bytes) bounds the state a
	// client gets at connect (snapshot=true on /v1/watch, Socket.IO's
	// context_snapshot): a larger one is refused with too_large, rather
	// than held in memory whole for each client that asks.
	MaxSnapshotBytes int64
	// SnapshotMemoryBytes (websocket.snapshot_memory_bytes) bounds the
	// memory the snapshots of both feeds hold together, from when one is
	// built until it is written to its client: past it, a client's
	// snapshot waits for room (after a restart every client reconnects
	// and asks for one at once).
	SnapshotMemoryBytes int64
	// AllowedOrigins (websocket.allowed_origins, comma-separated) are the
	// browser origins allowed besides the server's own and localhost; "*"
	// allows any.
	AllowedOrigins []string
	// MaxClients (websocket.max_clients) caps the connected clients.
	MaxClients int
	// MaxLag (websocket.max_lag) is how many changes a client may fall
	// behind before it is closed with "lagged" (it then resumes).
	MaxLag uint64
	// LagGrace (websocket.lag_grace) is how long a client may stay more
	// than MaxLag changes behind before it is closed: a client that reads
	// at full speed drains a burst larger than MaxLag (an import, a large
	// transaction) within it. 0 closes it at once.
	LagGrace time.Duration
	// BatchInterval (websocket.batch_interval) paces /v1/watch clients with
	// batch=true while changes keep coming: at most one frame each per
	// interval, unless a full frame is ready; after a quiet spell the
	// first change goes at once. 0 turns pacing off.
	BatchInterval time.Duration
	// RateLimit (websocket.rate_limit) is how many messages per second
	// each connection (/v1/watch, Socket.IO) may send; more are refused
	// with rate_limited. 0 turns the limit off.
	RateLimit float64
	// RateBurst (websocket.rate_burst) is how many messages a connection
	// may send at once; 0 means RateLimit rounded up.
	RateBurst int
	// RateLimitMaxRefused (websocket.rate_limit_max_refused): a connection
	// with more than this many messages refused within 10 seconds is
	// closed (1008, rate_limited); 0 never closes one.
	RateLimitMaxRefused int
}

// Dumps configures server-side dumps, kept in DataDir/dumps unless Dir
// says otherwise.
type Dumps struct {
	// Dir (dumps.dir) is the dump folder; empty: DataDir/dumps. The
	// instances of an etcd deployment may share one (a shared volume), so
	// that each lists and serves every dump.
	Dir string
	// Keep (dumps.keep) is how many dump files the folder keeps: after
	// each server-side dump the oldest beyond it are removed. 0 keeps
	// all.
	Keep int
	// MaxBytes (dumps.max_bytes) bounds the dump files' total size: after
	// each server-side dump the oldest are removed until the rest fit
	// (the new dump stays, however large). 0: no bound.
	MaxBytes int64
}

// Snapshots configures snapshots, kept in DataDir/snapshots unless Dir
// says otherwise.
type Snapshots struct {
	// Dir (snapshots.dir) is the snapshots folder; empty:
	// DataDir/snapshots. The instances of an etcd deployment may share
	// one (a shared volume), so that each lists and restores every
	// snapshot.
	Dir string
	// Interval (snapshots.interval) takes a snapshot this often; 0 turns
	// scheduled snapshots off.
	Interval time.Duration
	// Keep (snapshots.keep) is how many snapshots to keep: after each
	// verified scheduled snapshot the oldest beyond it are removed. 0
	// keeps all.
	Keep int
	// MaxUploadBytes (snapshots.max_upload_bytes) bounds an uploaded
	// snapshot file.
	MaxUploadBytes int64
}

// DefaultLagGrace is websocket.lag_grace by default: as long as
// websocket.write_timeout, the time a client that reads nothing is given.
// A client reading at full speed drains far more than max_lag in it:
// `ctxd watch` had all of a 50,000-key import 0.52 s after it committed
// (README, Slow clients).
const DefaultLagGrace = 10 * time.Second

// DefaultBatchInterval is websocket.batch_interval by default: batch
// clients get at most 50 frames a second under load. With 1,000
// subscribers on two cores that was 0.5-0.65x the frames of no pacing
// and 1.1-1.5x the writes per second sustained, servers in their own
// processes (realtime/DESIGN.md, "Pacing"). maxBatchInterval bounds it.
const (
	DefaultBatchInterval = 20 * time.Millisecond
	maxBatchInterval     = time.Second
)

// DefaultKeepVersions is history.keep_versions by default: with the
// newest keep_revisions revisions kept whole, history is then bounded by
// the live keys, whatever the write rate (store/bolt/DESIGN.md, "Bounded
// growth"). With store.backend etcd the default is 1 (validateEtcd).
const DefaultKeepVersions = 10

// History configures history retention, applied in the background.
type History struct {
	// KeepVersions (history.keep_versions) caps the versions kept per key
	// (DefaultKeepVersions); 0 keeps all.
	KeepVersions int
	// KeepRevisions (history.keep_revisions): the newest this many
	// revisions are always kept whole, so watchers can resume and recent
	// point-in-time reads work, whatever keep_versions says.
	KeepRevisions uint64
	// KeepFor (history.keep_for) drops history older than this; 0 keeps
	// it forever.
	KeepFor time.Duration
	// CompactInterval (history.compact_interval) is how often retention is
	// applied.
	CompactInterval time.Duration
}

// Storage bounds the database's disk space.
type Storage struct {
	// QuotaBytes (storage.quota_bytes) is the storage quota: past it,
	// writes that add data answer 507 insufficient_storage. 0 turns it
	// off; QuotaAuto ("auto", the default) is decided at start by
	// DefaultQuota from the data folder's file system.
	QuotaBytes int64
	// ReserveBytes (storage.reserve_bytes) is the disk space that files
	// written beside the store (snapshots, dumps, a defrag's or a
	// restore's copy) leave free on their file system: they stop (507)
	// rather than take it. 0 checks nothing; fsutil.ReserveAuto ("auto",
	// the default) is a twentieth of each file system, at most 1 GiB.
	ReserveBytes fsutil.Reserve
	// LockTimeout (storage.lock_timeout) is how long the server waits at
	// start for the database file's lock while another process (a server
	// still stopping, an offline command) holds it, then fails; 0 tries
	// once. The offline commands' --lock-timeout is the same wait.
	LockTimeout time.Duration
}

// QuotaAuto is Storage.QuotaBytes when the quota is decided at start
// (DefaultQuota); written "auto".
const QuotaAuto = -1

// MaxDefaultQuota caps the quota chosen for "auto": etcd's suggested
// maximum for its own bbolt file, past which opening, defragmenting and
// snapshotting the file take long.
const MaxDefaultQuota = 8 << 30

// DefaultQuota is the quota "auto" stands for on a file system of
// fsBytes bytes (0: unknown): a quarter of it, at most MaxDefaultQuota;
// 2 GiB (etcd's default) when the size is unknown. A quarter leaves room
// on the disk for what the database needs beside itself: a defrag writes
// a second copy of the file, a snapshot a third, and the write-ahead log
// its segments.
func DefaultQuota(fsBytes int64) int64 {
	if fsBytes <= 0 {
		return 2 << 30
	}
	return min(fsBytes/4, MaxDefaultQuota)
}

// Compat configures the Framework0-compatible /ctx API.
type Compat struct {
	// Namespace (compat.namespace) is the namespace the /ctx API reads and
	// writes.
	Namespace string
}

// Log configures the server's log, written to standard error.
type Log struct {
	// Level (log.level) is one of trace, debug, info, warn, error.
	Level string
	// Format (log.format) is json (one JSON object per line) or console
	// (human-readable).
	Format string
}

// HTTP configures the HTTP server.
type HTTP struct {
	// MaxBodyBytes (http.max_body_bytes) bounds a request body.
	MaxBodyBytes int64
	// CORSOrigins (http.cors_origins, comma-separated) are the browser
	// origins allowed to call the API from their pages; "*" allows any.
	CORSOrigins []string
	// RateLimit (http.rate_limit) is the requests per second each client
	// (token, else IP address) may send; 0 turns the limit off.
	RateLimit float64
	// RateBurst (http.rate_burst) is how many requests a client may send at
	// once above RateLimit; 0 means RateLimit rounded up.
	RateBurst int
	// ReadHeaderTimeout (http.read_header_timeout) bounds reading a
	// request's headers; ReadTimeout (http.read_timeout) the whole request,
	// body included. A client slower than that is disconnected.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// MaxHeaderBytes (http.max_header_bytes) bounds a request's headers;
	// larger ones get 431 from Go's HTTP server, which closes the connection.
	MaxHeaderBytes int64
	// MaxConnections (http.max_connections) caps the connections the
	// server holds at once (WebSockets included); more wait in the
	// kernel's queue until one closes. 0: three quarters of the process's
	// open-file limit, so that the store always has files left to open.
	MaxConnections int
	// MaxSpoolBytes (http.max_spool_bytes) bounds the temp files that
	// answers hold at once (an export is written to one before it is
	// sent): no answer's passes it, all together pass it by at most the
	// oldest spilling answer's part; one that would pass it is refused
	// with 503, with Retry-After while others hold some, without when it
	// is larger on its own.
	MaxSpoolBytes int64
	// Pprof (http.pprof) serves Go's profiles of the running server at
	// /debug/pprof/ (admins only when access control is on). Off by default.
	Pprof bool
}

// Auth configures access control (see README, "Access control").
type Auth struct {
	// Mode (auth.mode) is auto (on when a tokens file is given or the
	// server listens on more than a loopback address), on or off.
	Mode string
	// TokensFile (auth.tokens_file) is the YAML file of the tokens' hashes
	// and rights, read at start and on SIGHUP.
	TokensFile string
	// Who (auth.who) is what a change made with a token is recorded as:
	// declared (the who its request gives, as Framework0 records it) or
	// token (the token's name, then the given who in parentheses).
	Who string
}

// TLS configures HTTPS. Both files or neither must be given.
type TLS struct {
	// CertFile (tls.cert_file) is the PEM certificate chain, reloaded on
	// SIGHUP.
	CertFile string
	// KeyFile (tls.key_file) is the PEM private key, reloaded with it.
	KeyFile string
}

// Auth modes.
const (
	AuthAuto = "auto"
	AuthOn   = "on"
	AuthOff  = "off"
)

// Authors of changes (auth.who).
const (
	WhoDeclared = "declared"
	WhoToken    = "token"
)

// AuthEnabled reports whether access control is on: auth.mode on, or auto
// and either a tokens file is given or the listen address is not a
// loopback one. A tokens file on a loopback address is access control
// asked for: behind a proxy on the same machine (as Running in production
// advises), loopback is not a trust boundary.
func (c Config) AuthEnabled() bool {
	switch c.Auth.Mode {
	case AuthOn:
		return true
	case AuthOff:
		return false
	}
	return c.Auth.TokensFile != "" || !IsLoopback(c.Addr)
}

// IsLoopback reports whether addr (host:port) listens on a loopback address
// only: localhost, 127.0.0.0/8 or ::1. An empty host (every interface) is
// not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		DataDir:         "./data",
		ShutdownTimeout: 10 * time.Second,
		Log:             Log{Level: "info", Format: "json"},
		HTTP: HTTP{MaxBodyBytes: 2 << 20, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			MaxHeaderBytes: 64 << 10, MaxSpoolBytes: 1 << 30},
		Auth:      Auth{Mode: AuthAuto, Who: WhoDeclared},
		Limits:    ctxd.DefaultLimits,
		Compat:    Compat{Namespace: ctxd.DefaultNamespace},
		Snapshots: Snapshots{Interval: 0, Keep: 7, MaxUploadBytes: 1 << 30},
		History:   History{KeepVersions: DefaultKeepVersions, KeepRevisions: 10000, CompactInterval: 5 * time.Minute},
		Storage:   Storage{QuotaBytes: QuotaAuto, ReserveBytes: fsutil.ReserveAuto, LockTimeout: 5 * time.Second}, // migrations.LockTimeout
		WebSocket: WebSocket{PingInterval: 30 * time.Second, WriteTimeout: 10 * time.Second,
			MaxMessageBytes: 2 << 20, MaxSnapshotBytes: 64 << 20, SnapshotMemoryBytes: 256 << 20, MaxClients: 10000, MaxLag: 10000, LagGrace: DefaultLagGrace,
			BatchInterval: DefaultBatchInterval, RateLimit: 100, RateBurst: 200, RateLimitMaxRefused: 100},
		Store: Store{Backend: BackendBolt, ReadCacheBytes: bolt.DefaultGetCacheBytes},
		Etcd: Etcd{Prefix: "/ctxd/", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second,
			ReadCache: true, ReadCacheMaxBytes: 1 << 30},
		WAL: WAL{SegmentBytes: wal.DefaultSegmentSize, CommitInterval: bolt.DefaultCommitInterval,
			CommitChanges: bolt.DefaultCommitChanges, DirectBytes: bolt.DefaultDirectBytes},
	}
}

// Error reports a bad setting: which one, where its value came from, and why
// it was refused.
type Error struct {
	// Field is the setting's YAML path, e.g. "limits.max_value_bytes"; empty
	// when the error is about the file as a whole.
	Field string
	// Source says where the value came from: "file ctxd.yaml, line 3",
	// "env CTXD_ADDR", "flag".
	Source string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	switch {
	case e.Field != "" && e.Source != "":
		fmt.Fprintf(&b, "%s (%s): ", e.Field, e.Source)
	case e.Field != "":
		b.WriteString(e.Field + ": ")
	case e.Source != "":
		b.WriteString(e.Source + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// EnvPrefix starts the name of every environment variable Load reads.
const EnvPrefix = "CTXD_"

// Load returns the configuration built from, in increasing precedence,
// [Defaults], the YAML file at path (none when path is ""), the CTXD_*
// variables in environ (as os.Environ returns them), and flags, a map from a
// setting's YAML path (such as "addr" or "log.level") to its value. Every
// error is an [*Error].
func Load(path string, environ []string, flags map[string]string) (Config, error) {
	c := Defaults()
	// Unset until a source sets it: its default depends on the backend.
	c.History.KeepVersions = keepVersionsUnset
	// sources records where each setting given came from, for the errors
	// of checks across settings (validate).
	sources := map[string]string{}
	if path != "" {
		if err := applyFile(&c, path, sources); err != nil {
			return Config{}, err
		}
	}
	env := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	for _, s := range settings {
		if v := env[s.env()]; v != "" {
			if err := s.set(&c, v); err != nil {
				return Config{}, &Error{Field: s.path, Source: "env " + s.env(), Err: err}
			}
			sources[s.path] = "env " + s.env()
		}
	}
	for p := range flags {
		if _, ok := lookup(p); !ok {
			return Config{}, &Error{Field: p, Source: "flag", Err: errors.New("unknown setting")}
		}
	}
	for _, s := range settings {
		if v, ok := flags[s.path]; ok {
			if err := s.set(&c, v); err != nil {
				return Config{}, &Error{Field: s.path, Source: "flag", Err: err}
			}
			sources[s.path] = "flag"
		}
	}
	if c.History.KeepVersions == keepVersionsUnset {
		c.History.KeepVersions = DefaultKeepVersions
		if c.Store.Backend == BackendEtcd {
			// etcd's compaction keeps exactly the change in effect per
			// key (validateEtcd): its retention is by keep_revisions.
			c.History.KeepVersions = 1
		}
	}
	from := func(field string) string {
		if s, ok := sources[field]; ok {
			return s
		}
		return "default"
	}
	if err := c.validate(from); err != nil {
		return Config{}, err
	}
	if len(sources) > 0 {
		c.sources = sources
	}
	defaults := Defaults()
	c.Warnings = c.warnings(func(field string) bool {
		// Given, with a value other than its default (the example
		// file gives every setting, at its default).
		s, _ := lookup(field)
		_, ok := sources[field]
		return ok && s.get(&c) != s.get(&defaults)
	})
	return c, nil
}

// warnings returns what Load accepts but a user most likely did not mean,
// given says whether a setting was given (not left at its default).
func (c Config) warnings(given func(field string) bool) []string {
	var out []string
	ignored := func(prefixes []string, why string) {
		var names []string
		for _, s := range settings {
			for _, p := range prefixes {
				if (s.path == p || strings.HasPrefix(s.path, p+".")) && given(s.path) {
					names = append(names, s.path)
				}
			}
		}
		if len(names) > 0 {
			out = append(out, strings.Join(names, ", ")+" ignored: "+why)
		}
	}
	if c.Store.Backend == BackendEtcd {
		ignored([]string{"store.read_cache_bytes", "wal"}, "they tune the bolt backend, and store.backend is etcd")
		ignored([]string{"storage.quota_bytes"}, "store.backend is etcd, whose own quota (etcd's --quota-backend-bytes) applies")
		ignored([]string{"storage.lock_timeout"}, "store.backend is etcd: there is no database file to lock")
	} else {
		ignored([]string{"etcd"}, "store.backend is bolt (set store.backend: etcd to run on etcd)")
	}
	if c.HTTP.RateLimit == 0 {
		ignored([]string{"http.rate_burst"}, "http.rate_limit is 0 (off)")
	}
	if c.WebSocket.RateLimit == 0 {
		ignored([]string{"websocket.rate_burst", "websocket.rate_limit_max_refused"}, "websocket.rate_limit is 0 (off)")
	}
	// A value travels inside a request or a message, with its key, who and
	// the other fields around it: with less room than that, a value of the
	// largest size goes by PUT but not in a transaction or a context_set.
	// A warning, not a refusal: such settings started before, and PUT works.
	for _, room := range []struct {
		field string
		size  int64
		what  string
	}{
		{"http.max_body_bytes", c.HTTP.MaxBodyBytes, "a transaction (POST /v1/txn) or an import"},
		{"websocket.max_message_bytes", c.WebSocket.MaxMessageBytes, "a context_set over /v1/watch or Socket.IO"},
	} {
		if room.size < int64(c.Limits.MaxValueBytes)+EnvelopeBytes {
			out = append(out, fmt.Sprintf("%s (%d) leaves less than %d bytes beside a value of limits.max_value_bytes (%d): "+
				"%s holding a value that large is refused (give it at least %d)",
				room.field, room.size, EnvelopeBytes, c.Limits.MaxValueBytes, room.what, int64(c.Limits.MaxValueBytes)+EnvelopeBytes))
		}
	}
	if c.WebSocket.MaxLag > c.History.KeepRevisions && (given("websocket.max_lag") || given("history.keep_revisions")) {
		out = append(out, fmt.Sprintf("websocket.max_lag (%d) is above history.keep_revisions (%d): a client that far behind "+
			"may find its position compacted (it gets compacted, not lagged, and must read the state again)",
			c.WebSocket.MaxLag, c.History.KeepRevisions))
	}
	return out
}

// keepVersionsUnset marks history.keep_versions as not given while Load
// reads its sources (a given value is at least 0).
const keepVersionsUnset = -1

// Validate checks every setting, as Load does, and returns an [*Error] for
// the first bad one.
func (c Config) Validate() error {
	return c.validate(func(string) string { return "" })
}

// validate is Validate, with from saying where a setting's value came
// from ("env CTXD_...", "file ..., line 3", "flag", "default"; "" when
// unknown): a check across two settings names both, and where each came
// from, so that the one the user set is named even when the other is the
// one said to be wrong.
func (c Config) validate(from func(field string) string) error {
	for _, s := range settings {
		var scratch Config
		if err := s.set(&scratch, s.get(&c)); err != nil {
			return &Error{Field: s.path, Source: from(s.path), Err: err}
		}
	}
	// other names a setting in a message, with where its value came from.
	other := func(field, value string) string {
		if src := from(field); src != "" {
			return field + " (" + value + ", " + src + ")"
		}
		return field + " (" + value + ")"
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		missing, given, value := "tls.key_file", "tls.cert_file", c.TLS.CertFile
		if c.TLS.KeyFile != "" {
			missing, given, value = given, missing, c.TLS.KeyFile
		}
		return &Error{Field: missing, Err: fmt.Errorf("give both tls.cert_file and tls.key_file, or neither: %s is set", other(given, value))}
	}
	if err := c.validateEtcd(from, other); err != nil {
		return err
	}
	if c.Limits.MaxTTL < c.Limits.MinTTL {
		return &Error{Field: "limits.max_ttl", Source: from("limits.max_ttl"), Err: fmt.Errorf("must be at least %s",
			other("limits.min_ttl", c.Limits.MinTTL.String()))}
	}
	if c.HTTP.MaxBodyBytes < int64(c.Limits.MaxValueBytes) {
		return &Error{Field: "http.max_body_bytes", Source: from("http.max_body_bytes"), Err: fmt.Errorf(
			"must be at least %s, or no value of the largest allowed size could be sent",
			other("limits.max_value_bytes", strconv.Itoa(c.Limits.MaxValueBytes)))}
	}
	if c.WebSocket.MaxMessageBytes < int64(c.Limits.MaxValueBytes) {
		return &Error{Field: "websocket.max_message_bytes", Source: from("websocket.max_message_bytes"), Err: fmt.Errorf(
			"must be at least %s, or a value the REST API takes could not be set over /v1/watch or Socket.IO",
			other("limits.max_value_bytes", strconv.Itoa(c.Limits.MaxValueBytes)))}
	}
	// The dump folder is ctxd's to delete in (DELETE /v1/dumps/...,
	// dumps.keep): never the database's folder nor the snapshots'.
	dumps := absPath(c.DumpsFolder())
	for _, o := range []struct{ field, folder string }{{"data_dir", c.DataDir}, {"snapshots.dir", c.SnapshotsFolder()}} {
		if dumps != absPath(o.folder) {
			continue
		}
		field, with := "dumps.dir", o.field
		if c.Dumps.Dir == "" {
			field, with = o.field, "dumps.dir"
		}
		return &Error{Field: field, Source: from(field), Err: fmt.Errorf(
			"the dump folder (%s) must be a folder of its own, not the one of %s: dumps are deleted there (DELETE /v1/dumps/{filename}, dumps.keep)",
			dumps, other(with, o.folder))}
	}
	return nil
}

// Default folders inside data_dir.
const (
	SnapshotsSubdir = "snapshots" // snapshots, unless snapshots.dir names another
	DumpsSubdir     = "dumps"     // server-side dumps, unless dumps.dir names another
)

// SnapshotsFolder is the snapshots folder: snapshots.dir, or the data
// folder's snapshots.
func (c Config) SnapshotsFolder() string {
	if c.Snapshots.Dir != "" {
		return c.Snapshots.Dir
	}
	return filepath.Join(c.DataDir, SnapshotsSubdir)
}

// FolderSource is where the folder of setting field (snapshots.dir,
// dumps.dir) came from, for an error about it: the setting's own source,
// or, when it is not set (the folder is inside data_dir), data_dir's.
func (c Config) FolderSource(field string) string {
	if src := c.Source(field); src != "" {
		return src
	}
	if src := c.Source("data_dir"); src != "" {
		return "not set; data_dir from " + src
	}
	return "not set; data_dir " + c.DataDir + " by default"
}

// DumpsFolder is the folder of server-side dumps: dumps.dir, or the data
// folder's dumps.
func (c Config) DumpsFolder() string {
	if c.Dumps.Dir != "" {
		return c.Dumps.Dir
	}
	return filepath.Join(c.DataDir, DumpsSubdir)
}

// absPath is path absolute and clean, to compare folders (as given:
// symbolic links are not followed, the folders may not exist yet).
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return filepath.Clean(path)
}

// validateEtcd checks what store.backend etcd needs, and refuses the
// settings etcd's backend cannot honour (store/etcd/DESIGN.md), naming
// each.
// other names a setting in a message with its value and where it came
// from.
func (c Config) validateEtcd(from func(string) string, other func(field, value string) string) error {
	if c.Store.Backend != BackendEtcd {
		return nil
	}
	refuse := func(field, why string) error { return &Error{Field: field, Source: from(field), Err: errors.New(why)} }
	switch {
	case len(c.Etcd.Endpoints) == 0:
		return refuse("etcd.endpoints", "store.backend is etcd: give at least one endpoint, such as http://127.0.0.1:2379")
	case c.Etcd.CertFile != "" && c.Etcd.KeyFile == "":
		return refuse("etcd.key_file", "give both etcd.cert_file and etcd.key_file, or neither: "+other("etcd.cert_file", c.Etcd.CertFile)+" is set")
	case c.Etcd.KeyFile != "" && c.Etcd.CertFile == "":
		return refuse("etcd.cert_file", "give both etcd.cert_file and etcd.key_file, or neither: "+other("etcd.key_file", c.Etcd.KeyFile)+" is set")
	case c.Etcd.Password != "" && c.Etcd.Username == "":
		return refuse("etcd.username", "etcd.password is set: give the user it belongs to")
	}
	// etcd's client speaks TLS to https:// endpoints only: to an http://
	// one it drops the TLS settings and talks plain text, the password
	// in the clear, without a word.
	if tlsFile, tlsField := c.Etcd.CAFile, "etcd.ca_file"; tlsFile != "" || c.Etcd.CertFile != "" {
		if tlsFile == "" {
			tlsFile, tlsField = c.Etcd.CertFile, "etcd.cert_file"
		}
		for _, ep := range c.Etcd.Endpoints {
			if strings.HasPrefix(strings.ToLower(ep), "http://") {
				return refuse("etcd.endpoints", fmt.Sprintf("%s is an http:// endpoint, which etcd's client reaches in plain text, "+
					"without TLS, although %s is set: write it https://", ep, other(tlsField, tlsFile)))
			}
		}
	}
	switch {
	case c.History.KeepVersions > 1:
		return refuse("history.keep_versions", "on etcd, compaction keeps exactly the change in effect per key: use 0 or 1")
	case c.History.KeepFor > 0:
		return refuse("history.keep_for", "on etcd, compaction is by revision, not age: use history.keep_versions 1 with history.keep_revisions, or etcd's --auto-compaction-*")
	}
	return nil
}

func applyFile(c *Config, path string, sources map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{Err: fsutil.ReadDenied(err)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) { // empty file
		return nil
	} else if err != nil {
		return &Error{Source: "file " + path, Err: err}
	}
	// A second document ("---") would be ignored, its settings with it.
	if line, err := yamldoc.SecondDocument(dec); err != nil {
		return &Error{Source: "file " + path, Err: err}
	} else if line > 0 {
		return &Error{Source: "file " + path, Err: fmt.Errorf("line %d: a second YAML document (after ---): put every setting in one", line)}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return applyNode(c, path, doc.Content[0], "", sources)
}

// applyNode applies the mapping n, found at YAML path prefix, to c, and
// records where each setting came from in sources.
func applyNode(c *Config, file string, n *yaml.Node, prefix string, sources map[string]string) error {
	where := func(n *yaml.Node) string { return fmt.Sprintf("file %s, line %d", file, n.Line) }
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" { // an empty section
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return &Error{Field: prefix, Source: where(n), Err: errors.New("expected a mapping of settings")}
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := k.Value
		if prefix != "" {
			p = prefix + "." + k.Value
		}
		// A key given twice in one mapping (a section pasted into the
		// example file beside its own) would let the last one win
		// silently: tls: given with files, then tls: empty, was no TLS.
		if first, ok := seen[k.Value]; ok {
			return &Error{Field: p, Source: where(k), Err: fmt.Errorf("given twice (first at line %d): keep one", first.Line)}
		}
		seen[k.Value] = k
		if s, ok := lookup(p); ok {
			if v.Kind != yaml.ScalarNode {
				return &Error{Field: p, Source: where(v), Err: errors.New("expected a single value")}
			}
			value := v.Value
			if v.Tag == "!!null" {
				// "~" and "null" are YAML's empty value, as "key:" alone
				// is: not a folder named "~" or a password "null".
				value = ""
			}
			if err := s.set(c, value); err != nil {
				return &Error{Field: p, Source: where(v), Err: err}
			}
			sources[p] = where(v)
			continue
		}
		if isSection(p) {
			if err := applyNode(c, file, v, p, sources); err != nil {
				return err
			}
			continue
		}
		return &Error{Field: p, Source: where(k), Err: errors.New("unknown field")}
	}
	return nil
}

// setting is one configurable value. set parses and checks a value given as
// text; get formats the current value so that set accepts it back.
type setting struct {
	path string
	set  func(c *Config, v string) error
	get  func(c *Config) string
}

// env returns the setting's environment variable.
func (s setting) env() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(s.path, ".", "_"))
}

// settings lists every setting, in the order of ctxd.example.yaml.
var settings = []setting{
	{
		path: "addr",
		set: func(c *Config, v string) error {
			if err := checkAddr(v); err != nil {
				return err
			}
			c.Addr = v
			return nil
		},
		get: func(c *Config) string { return c.Addr },
	},
	{
		path: "data_dir",
		set: func(c *Config, v string) error {
			if v = strings.TrimSpace(v); v == "" { // trimmed, as every path
				return errors.New("must not be empty")
			}
			c.DataDir = v
			return nil
		},
		get: func(c *Config) string { return c.DataDir },
	},
	durationSetting("shutdown_timeout", false, func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	durationSetting("shutdown_drain", true, func(c *Config) *time.Duration { return &c.ShutdownDrain }),
	choiceSetting("log.level", "level", func(c *Config) *string { return &c.Log.Level }, "trace", "debug", "info", "warn", "error"),
	choiceSetting("log.format", "format", func(c *Config) *string { return &c.Log.Format }, "json", "console"),
	sizeSetting("http.max_body_bytes", 1<<62, func(c *Config) *int64 { return &c.HTTP.MaxBodyBytes }),
	originsSetting("http.cors_origins", func(c *Config) *[]string { return &c.HTTP.CORSOrigins }),
	rateSetting("http.rate_limit", "requests", func(c *Config) *float64 { return &c.HTTP.RateLimit }),
	countSetting("http.rate_burst", false, func(c *Config) *int { return &c.HTTP.RateBurst }),
	durationIn("http.read_header_timeout", false, time.Second, maxDuration, networkFloor, func(c *Config) *time.Duration { return &c.HTTP.ReadHeaderTimeout }),
	durationIn("http.read_timeout", false, time.Second, maxDuration, networkFloor, func(c *Config) *time.Duration { return &c.HTTP.ReadTimeout }),
	sizeSetting("http.max_header_bytes", 1<<30, func(c *Config) *int64 { return &c.HTTP.MaxHeaderBytes }),
	countSetting("http.max_connections", false, func(c *Config) *int { return &c.HTTP.MaxConnections }),
	sizeSetting("http.max_spool_bytes", 1<<62, func(c *Config) *int64 { return &c.HTTP.MaxSpoolBytes }),
	boolSetting("http.pprof", func(c *Config) *bool { return &c.HTTP.Pprof }),
	choiceSetting("auth.mode", "mode", func(c *Config) *string { return &c.Auth.Mode }, AuthAuto, AuthOn, AuthOff),
	pathSetting("auth.tokens_file", func(c *Config) *string { return &c.Auth.TokensFile }),
	choiceSetting("auth.who", "who", func(c *Config) *string { return &c.Auth.Who }, WhoDeclared, WhoToken),
	pathSetting("tls.cert_file", func(c *Config) *string { return &c.TLS.CertFile }),
	pathSetting("tls.key_file", func(c *Config) *string { return &c.TLS.KeyFile }),
	sizeSetting("limits.max_key_bytes", ctxd.MaxKeyBytes, func(c *Config) *int { return &c.Limits.MaxKeyBytes }),
	sizeSetting("limits.max_value_bytes", 1<<31-1, func(c *Config) *int { return &c.Limits.MaxValueBytes }),
	{
		path: "limits.max_txn_ops",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("invalid number %q", v)
			}
			if n <= 0 {
				return errors.New("must be > 0")
			}
			c.Limits.MaxTxnOps = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(c.Limits.MaxTxnOps) },
	},
	durationSetting("limits.min_ttl", false, func(c *Config) *time.Duration { return &c.Limits.MinTTL }),
	durationSetting("limits.max_ttl", false, func(c *Config) *time.Duration { return &c.Limits.MaxTTL }),
	{
		path: "compat.namespace",
		set: func(c *Config, v string) error {
			if err := ctxd.ValidateNamespace(v); err != nil {
				return errors.New("must be 1 to 64 of A-Z a-z 0-9 . _ -")
			}
			c.Compat.Namespace = v
			return nil
		},
		get: func(c *Config) string { return c.Compat.Namespace },
	},
	pathSetting("dumps.dir", func(c *Config) *string { return &c.Dumps.Dir }),
	countSetting("dumps.keep", false, func(c *Config) *int { return &c.Dumps.Keep }),
	sizeOrZeroSetting("dumps.max_bytes", 1<<62, "no bound", func(c *Config) *int64 { return &c.Dumps.MaxBytes }),
	pathSetting("snapshots.dir", func(c *Config) *string { return &c.Snapshots.Dir }),
	durationIn("snapshots.interval", true, time.Second, maxDuration, "shorter takes snapshots without pause", func(c *Config) *time.Duration { return &c.Snapshots.Interval }),
	countSetting("snapshots.keep", false, func(c *Config) *int { return &c.Snapshots.Keep }),
	sizeSetting("snapshots.max_upload_bytes", 1<<62, func(c *Config) *int64 { return &c.Snapshots.MaxUploadBytes }),
	countSetting("history.keep_versions", false, func(c *Config) *int { return &c.History.KeepVersions }),
	countSetting("history.keep_revisions", false, func(c *Config) *uint64 { return &c.History.KeepRevisions }),
	durationSetting("history.keep_for", true, func(c *Config) *time.Duration { return &c.History.KeepFor }),
	durationIn("history.compact_interval", false, time.Second, maxDuration, "shorter runs the cleanup without pause", func(c *Config) *time.Duration { return &c.History.CompactInterval }),
	autoSizeSetting("storage.quota_bytes", "quota", "8GiB or 500MiB, auto: a quarter of the disk, at most 8 GiB, or 0: no quota",
		func(n int64) error {
			if n < minQuota {
				// An empty database takes 16 KiB: a smaller quota refuses
				// every write, for ever.
				return fmt.Errorf("must be at least %s (or auto, or 0: no quota); a smaller one leaves no room for any write", ctxd.FormatBytes(minQuota))
			}
			return nil
		},
		func(c *Config) *int64 { return &c.Storage.QuotaBytes }),
	autoSizeSetting("storage.reserve_bytes", "reserve", "1GiB or 500MiB, auto: a twentieth of the disk, at most 1 GiB, or 0: none", nil,
		func(c *Config) *fsutil.Reserve { return &c.Storage.ReserveBytes }),
	durationSetting("storage.lock_timeout", true, func(c *Config) *time.Duration { return &c.Storage.LockTimeout }),
	durationIn("websocket.ping_interval", false, time.Second, 24*time.Hour,
		"shorter drops every client before it can answer; longer overflows the timers of Socket.IO's JavaScript client, which then drops itself", func(c *Config) *time.Duration { return &c.WebSocket.PingInterval }),
	durationIn("websocket.write_timeout", false, time.Second, maxDuration, networkFloor, func(c *Config) *time.Duration { return &c.WebSocket.WriteTimeout }),
	sizeSetting("websocket.max_message_bytes", 1<<40, func(c *Config) *int64 { return &c.WebSocket.MaxMessageBytes }),
	sizeSetting("websocket.max_snapshot_bytes", 1<<40, func(c *Config) *int64 { return &c.WebSocket.MaxSnapshotBytes }),
	sizeSetting("websocket.snapshot_memory_bytes", 1<<40, func(c *Config) *int64 { return &c.WebSocket.SnapshotMemoryBytes }),
	originsSetting("websocket.allowed_origins", func(c *Config) *[]string { return &c.WebSocket.AllowedOrigins }),
	countSetting("websocket.max_clients", true, func(c *Config) *int { return &c.WebSocket.MaxClients }),
	countSetting("websocket.max_lag", true, func(c *Config) *uint64 { return &c.WebSocket.MaxLag }),
	durationSetting("websocket.lag_grace", true, func(c *Config) *time.Duration { return &c.WebSocket.LagGrace }),
	{
		path: "websocket.batch_interval",
		set: func(c *Config, v string) error {
			var d time.Duration
			if err := setDuration(&d, v, true); err != nil {
				return err
			}
			if d > maxBatchInterval {
				return fmt.Errorf("must be at most %s (it delays every batch frame under load)", maxBatchInterval)
			}
			c.WebSocket.BatchInterval = d
			return nil
		},
		get: func(c *Config) string { return c.WebSocket.BatchInterval.String() },
	},
	rateSetting("websocket.rate_limit", "messages", func(c *Config) *float64 { return &c.WebSocket.RateLimit }),
	countSetting("websocket.rate_burst", false, func(c *Config) *int { return &c.WebSocket.RateBurst }),
	countSetting("websocket.rate_limit_max_refused", false, func(c *Config) *int { return &c.WebSocket.RateLimitMaxRefused }),
	choiceSetting("store.backend", "backend", func(c *Config) *string { return &c.Store.Backend }, BackendBolt, BackendEtcd),
	sizeOrZeroSetting("store.read_cache_bytes", 1<<40, "no cache", func(c *Config) *int64 { return &c.Store.ReadCacheBytes }),
	{
		path: "etcd.endpoints",
		set: func(c *Config, v string) error {
			endpoints, err := parseEndpoints(v)
			if err != nil {
				return err
			}
			c.Etcd.Endpoints = endpoints
			return nil
		},
		get: func(c *Config) string { return strings.Join(c.Etcd.Endpoints, ",") },
	},
	{
		path: "etcd.prefix",
		set: func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			if len(v) < 2 || !strings.HasPrefix(v, "/") || !strings.HasSuffix(v, "/") ||
				strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				return fmt.Errorf("invalid prefix %q (use a path that starts and ends with /, such as /ctxd/)", v)
			}
			c.Etcd.Prefix = v
			return nil
		},
		get: func(c *Config) string { return c.Etcd.Prefix },
	},
	pathSetting("etcd.ca_file", func(c *Config) *string { return &c.Etcd.CAFile }),
	pathSetting("etcd.cert_file", func(c *Config) *string { return &c.Etcd.CertFile }),
	pathSetting("etcd.key_file", func(c *Config) *string { return &c.Etcd.KeyFile }),
	pathSetting("etcd.username", func(c *Config) *string { return &c.Etcd.Username }),
	{
		path: "etcd.password",
		set:  func(c *Config, v string) error { c.Etcd.Password = Secret(v); return nil },
		get:  func(c *Config) string { return c.Etcd.Password.Reveal() },
	},
	durationIn("etcd.dial_timeout", false, time.Second, maxDuration, etcdDialFloor, func(c *Config) *time.Duration { return &c.Etcd.DialTimeout }),
	durationIn("etcd.request_timeout", false, time.Second, maxDuration, etcdFloor, func(c *Config) *time.Duration { return &c.Etcd.RequestTimeout }),
	boolSetting("etcd.read_cache", func(c *Config) *bool { return &c.Etcd.ReadCache }),
	sizeSetting("etcd.read_cache_max_bytes", 1<<40, func(c *Config) *int64 { return &c.Etcd.ReadCacheMaxBytes }),
	{
		path: "wal.segment_bytes",
		set: func(c *Config, v string) error {
			// Segments are allocated whole, two at a time at least.
			n, err := parseSize(v, 1<<30)
			if err != nil {
				return err
			}
			if err := wal.CheckSegmentSize(n); err != nil {
				return err
			}
			c.WAL.SegmentBytes = n
			return nil
		},
		get: func(c *Config) string { return strconv.FormatInt(c.WAL.SegmentBytes, 10) },
	},
	durationSetting("wal.commit_interval", false, func(c *Config) *time.Duration { return &c.WAL.CommitInterval }),
	{
		path: "wal.commit_changes",
		set: func(c *Config, v string) error {
			n, err := parseWhole(v)
			if err != nil {
				return err
			}
			if n < 1 || n > bolt.DefaultMaxPending {
				// More could never wait: the writer waits for the
				// committer at DefaultMaxPending.
				return fmt.Errorf("must be 1 to %d (no more changes can wait to be applied)", bolt.DefaultMaxPending)
			}
			c.WAL.CommitChanges = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(c.WAL.CommitChanges) },
	},
	sizeSetting("wal.direct_bytes", 1<<31-1, func(c *Config) *int { return &c.WAL.DirectBytes }),
}

// parseEndpoints parses a comma-separated list of etcd client URLs
// (http:// or https://, host:port, no path).
func parseEndpoints(v string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || !validPort(u.Port()) ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			if err == nil && u.User != nil {
				// Not quoted whole: it holds a password (use
				// etcd.username and etcd.password).
				e = u.Redacted() + " (credentials in it: give etcd.username and etcd.password instead)"
			} else {
				e = strconv.Quote(e)
			}
			return nil, fmt.Errorf("invalid endpoint %s (use http://host:port or https://host:port, such as http://127.0.0.1:2379)", e)
		}
		out = append(out, strings.TrimSuffix(e, "/"))
	}
	return out, nil
}

// validPort says whether p is a TCP port one can dial (1 to 65535):
// url.Parse takes any digits, and an endpoint at port 0 or 99999 would
// only fail after etcd.dial_timeout, as if etcd were down.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// The kinds of setting that several share. field returns the setting's
// place in a Config.

// choiceSetting is one of choices; what names it in the error.
func choiceSetting(path, what string, field func(*Config) *string, choices ...string) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			if !slices.Contains(choices, v) {
				last := len(choices) - 1
				return fmt.Errorf("invalid %s %q (use %s or %s)", what, v, strings.Join(choices[:last], ", "), choices[last])
			}
			*field(c) = v
			return nil
		},
		get: func(c *Config) string { return *field(c) },
	}
}

// boolSetting is true or false.
func boolSetting(path string, field func(*Config) *bool) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			switch strings.ToLower(strings.TrimSpace(v)) {
			case "true":
				*field(c) = true
			case "false":
				*field(c) = false
			default:
				return fmt.Errorf("invalid boolean %q (use true or false)", v)
			}
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(*field(c)) },
	}
}

// sizeSetting is a byte count in 1..max (parseSize).
func sizeSetting[T int | int64](path string, max int64, field func(*Config) *T) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			n, err := parseSize(v, max)
			if err != nil {
				return err
			}
			*field(c) = T(n)
			return nil
		},
		get: func(c *Config) string { return strconv.FormatInt(int64(*field(c)), 10) },
	}
}

// autoSizeSetting is a size that may also be "auto" (stored as -1,
// decided at start or use: QuotaAuto, fsutil.ReserveAuto) or 0 (off):
// storage.quota_bytes and storage.reserve_bytes. what names it in the
// error, which gives examples; check, when set, refuses a size.
func autoSizeSetting[T ~int64](path, what, examples string, check func(n int64) error, field func(*Config) *T) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			switch strings.TrimSpace(v) {
			case "auto":
				*field(c) = -1
				return nil
			case "0":
				*field(c) = 0
				return nil
			}
			n, err := parseSize(v, 1<<62)
			if err != nil {
				return fmt.Errorf("invalid %s %q (use a size such as %s)", what, v, examples)
			}
			if check != nil {
				if err := check(n); err != nil {
					return err
				}
			}
			*field(c) = T(n)
			return nil
		},
		get: func(c *Config) string {
			if *field(c) == -1 {
				return "auto"
			}
			return strconv.FormatInt(int64(*field(c)), 10)
		},
	}
}

// sizeOrZeroSetting is a byte count in 1..max (parseSize), or 0, which
// zero says the meaning of ("no cache").
func sizeOrZeroSetting(path string, max int64, zero string, field func(*Config) *int64) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			if strings.TrimSpace(v) == "0" {
				*field(c) = 0
				return nil
			}
			n, err := parseSize(v, max)
			if err != nil {
				return fmt.Errorf("%w (or 0: %s)", err, zero)
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.FormatInt(*field(c), 10) },
	}
}

// countSetting is a whole number >= 0 (setCount); nonZero refuses 0.
func countSetting[T int | uint64](path string, nonZero bool, field func(*Config) *T) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			var n int
			if err := setCount(&n, v, nonZero); err != nil {
				return err
			}
			*field(c) = T(n)
			return nil
		},
		get: func(c *Config) string { return fmt.Sprint(*field(c)) },
	}
}

// rateSetting is a rate per second >= 0 (0: no limit); what is counted
// ("requests") names it in the error.
func rateSetting(path, what string, field func(*Config) *float64) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("invalid number %q (%s per second, such as 50 or 0.5; 0 turns the limit off)", v, what)
			}
			if f < 0 || f > 0 && (f < minRate || f > maxRate) {
				// Past these, a retry's wait or a burst overflows: a
				// client was told "retry after 1s" for ever.
				return fmt.Errorf("must be 0 (no limit) or %g to %g", minRate, maxRate)
			}
			*field(c) = f
			return nil
		},
		get: func(c *Config) string { return strconv.FormatFloat(*field(c), 'g', -1, 64) },
	}
}

// durationSetting is a duration (setDuration); zeroOK allows 0 ("off").
func durationSetting(path string, zeroOK bool, field func(*Config) *time.Duration) setting {
	return durationIn(path, zeroOK, 0, maxDuration, "", field)
}

// durationIn is a duration in least..most (setDuration), or 0 when
// zeroOK; why says what a value outside breaks. Without a floor, 1ns
// passed for a timeout or an interval: the server then dropped every
// client, or took snapshots in a loop that held a core.
func durationIn(path string, zeroOK bool, least, most time.Duration, why string, field func(*Config) *time.Duration) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			var d time.Duration
			if err := setDuration(&d, v, zeroOK); err != nil {
				return err
			}
			switch {
			case d == 0:
			case d < least && zeroOK:
				return fmt.Errorf("must be at least %s, or 0 to turn it off (%s)", least, why)
			case d < least:
				return fmt.Errorf("must be at least %s (%s)", least, why)
			case d > most:
				return fmt.Errorf("must be at most %s (%s)", most, why)
			}
			*field(c) = d
			return nil
		},
		get: func(c *Config) string { return field(c).String() },
	}
}

// networkFloor is why a network timeout is at least a second.
const networkFloor = "shorter cuts off clients on any real network"

// etcdFloor is why etcd.request_timeout is at least a second: with 1ns an
// instance started and was never ready, saying etcd did not answer.
const etcdFloor = "shorter fails requests a healthy etcd answers: a write waits for a quorum of members to sync their disks"

// etcdDialFloor is why etcd.dial_timeout is at least a second: it bounds
// the start's first reads and each reconnection's TCP and TLS handshake.
const etcdDialFloor = "shorter gives up on a healthy etcd: the start's first reads, and each connection's TCP and TLS handshake, must end within it"

// originsSetting is a comma-separated list of origins (parseOrigins).
func originsSetting(path string, field func(*Config) *[]string) setting {
	return setting{
		path: path,
		set: func(c *Config, v string) error {
			origins, err := parseOrigins(v)
			if err != nil {
				return err
			}
			*field(c) = origins
			return nil
		},
		get: func(c *Config) string { return strings.Join(*field(c), ",") },
	}
}

// pathSetting is a file's path, trimmed; "" is none.
func pathSetting(path string, field func(*Config) *string) setting {
	return setting{
		path: path,
		set:  func(c *Config, v string) error { *field(c) = strings.TrimSpace(v); return nil },
		get:  func(c *Config) string { return *field(c) },
	}
}

// parseOrigins parses a comma-separated list of origins
// (scheme://host[:port], http or https, no path) or "*"; "" is none.
func parseOrigins(v string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o != "*" {
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
				return nil, fmt.Errorf("invalid origin %q (use scheme://host[:port], such as https://dash.example.com, or *)", o)
			}
			o = strings.TrimSuffix(o, "/")
		}
		out = append(out, o)
	}
	return out, nil
}

func lookup(path string) (setting, bool) {
	for _, s := range settings {
		if s.path == path {
			return s, true
		}
	}
	return setting{}, false
}

// isSection reports whether path is a section (such as "log") that holds settings.
func isSection(path string) bool {
	for _, s := range settings {
		if strings.HasPrefix(s.path, path+".") {
			return true
		}
	}
	return false
}

// checkAddr accepts host:port with a numeric port; the host may be empty
// (all interfaces) or a name.
func checkAddr(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("invalid address %q (use host:port, such as 127.0.0.1:8080)", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q in %q (use 0 to 65535)", port, v)
	}
	return nil
}

// ParseSize parses a byte count as the configuration's sizes are written:
// a whole number, optionally followed by KiB, MiB or GiB, at least 1 (for
// flags that take a size, such as ctxd perf --preload).
func ParseSize(v string) (int64, error) { return parseSize(v, math.MaxInt64) }

// parseSize parses a byte count: a whole number, optionally followed by KiB,
// MiB or GiB. It must be in 1..max.
func parseSize(v string, max int64) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q (use a number of bytes, optionally with KiB, MiB or GiB)", v)
	}
	if n <= 0 {
		return 0, errors.New("must be > 0")
	}
	if n > max/mult {
		return 0, fmt.Errorf("must be at most %d bytes", max)
	}
	return n * mult, nil
}

// setDuration parses a duration such as 10s or 1h30m; zeroOK allows 0
// (meaning "off").
func setDuration(d *time.Duration, v string, zeroOK bool) error {
	v = strings.TrimSpace(v)
	if v == "0" && zeroOK {
		*d = 0
		return nil
	}
	parsed, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a number with a unit, such as 10s or 1h30m)", v)
	}
	if parsed < 0 || parsed == 0 && !zeroOK {
		if zeroOK {
			return errors.New("must be >= 0 (0 turns it off)")
		}
		return errors.New("must be > 0")
	}
	if parsed > maxDuration {
		// Past it, a deadline (limits.max_ttl) or a sum of two settings
		// (shutdown_timeout + shutdown_drain) overflows: a ttl of 2.5M
		// hours was stored as a deadline in 1727, and the key expired
		// at the next start.
		return fmt.Errorf("must be at most %s (100 years)", maxDuration)
	}
	*d = parsed
	return nil
}

// EnvelopeBytes is the room a request or a message needs besides its
// value: a key of the largest size escaped (\u0000 is 6 bytes each), a
// namespace, a who and the names of the fields.
const EnvelopeBytes = 8 << 10

// Bounds of storage.quota_bytes and of the rate limits.
const (
	minQuota = 1 << 20
	minRate  = 0.001 // one per 1,000 s
	maxRate  = 1e9
)

// maxDuration bounds every duration setting.
const maxDuration = 100 * 365 * 24 * time.Hour

// parseWhole parses a whole number, of either sign: the caller says
// which are allowed.
func parseWhole(v string) (int, error) {
	parsed, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", v)
	}
	return parsed, nil
}

// setCount parses a whole number >= 0, or > 0 when nonZero. A negative
// one is told the bound that holds: ">= 0" would send the user to a 0
// that nonZero refuses in turn.
func setCount(n *int, v string, nonZero bool) error {
	parsed, err := parseWhole(v)
	if err != nil {
		return err
	}
	if nonZero && parsed <= 0 {
		return errors.New("must be > 0")
	}
	if parsed < 0 {
		return errors.New("must be >= 0")
	}
	*n = parsed
	return nil
}
