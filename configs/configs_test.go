package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/fsutil"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ctxd.yaml")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestDefaults(t *testing.T) {
	c := Defaults()
	assert.Equal(t, "127.0.0.1:8080", c.Addr)
	assert.Equal(t, "./data", c.DataDir)
	assert.Equal(t, 10*time.Second, c.ShutdownTimeout)
	assert.Equal(t, Log{Level: "info", Format: "json"}, c.Log)
	assert.Equal(t, int64(2<<20), c.HTTP.MaxBodyBytes)
	assert.Equal(t, ctxd.Limits{MaxKeyBytes: 1024, MaxValueBytes: 1 << 20, MaxTxnOps: 128, MinTTL: time.Second, MaxTTL: 365 * 24 * time.Hour}, c.Limits)
	assert.Equal(t, Compat{Namespace: "default"}, c.Compat)
	require.NoError(t, c.Validate())

	loaded, err := Load("", nil, nil)
	require.NoError(t, err)
	assert.Equal(t, c, loaded)
}

// An empty document after the settings (a trailing "---", as templating
// tools leave, or one with only a comment) is no second document: the
// file loads.
func TestATrailingEmptyDocumentLoads(t *testing.T) {
	for _, file := range []string{"addr: 127.0.0.1:1\n---\n", "addr: 127.0.0.1:1\n---\n# the end\n", "---\naddr: 127.0.0.1:1\n...\n"} {
		c, err := Load(writeFile(t, file), nil, nil)
		require.NoError(t, err, "%q", file)
		assert.Equal(t, "127.0.0.1:1", c.Addr)
	}
}

// The example file documents every setting with its default: loading it must
// give the defaults, and it must mention every setting.
func TestExampleFileIsDefaults(t *testing.T) {
	c, err := Load("ctxd.example.yaml", nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "file ctxd.example.yaml, line 14", c.Source("addr"))
	c.sources = nil // where the values came from, not what they are
	assert.Equal(t, Defaults(), c)

	data, err := os.ReadFile("ctxd.example.yaml")
	require.NoError(t, err)
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &doc))
	found := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if prefix != "" {
				p = prefix + "." + p
			}
			if n.Content[i+1].Kind == yaml.MappingNode {
				walk(n.Content[i+1], p)
			} else {
				found[p] = true
			}
		}
	}
	walk(doc.Content[0], "")
	for _, s := range settings {
		assert.True(t, found[s.path], "ctxd.example.yaml does not show %s", s.path)
		assert.Contains(t, string(data), s.env(), "ctxd.example.yaml does not name %s", s.env())
	}
}

// The README's configuration table names every setting and its variable.
func TestReadmeListsEverySetting(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for _, s := range settings {
		assert.Contains(t, string(data), "`"+s.path+"`", "README.md does not list %s", s.path)
		assert.Contains(t, string(data), s.env(), "README.md does not name %s", s.env())
	}
}

func TestEnvNames(t *testing.T) {
	var names []string
	for _, s := range settings {
		names = append(names, s.env())
	}
	assert.Equal(t, []string{
		"CTXD_ADDR", "CTXD_DATA_DIR", "CTXD_SHUTDOWN_TIMEOUT", "CTXD_SHUTDOWN_DRAIN", "CTXD_LOG_LEVEL", "CTXD_LOG_FORMAT",
		"CTXD_HTTP_MAX_BODY_BYTES", "CTXD_HTTP_CORS_ORIGINS", "CTXD_HTTP_RATE_LIMIT", "CTXD_HTTP_RATE_BURST",
		"CTXD_HTTP_READ_HEADER_TIMEOUT", "CTXD_HTTP_READ_TIMEOUT", "CTXD_HTTP_MAX_HEADER_BYTES", "CTXD_HTTP_MAX_CONNECTIONS", "CTXD_HTTP_MAX_SPOOL_BYTES", "CTXD_HTTP_PPROF",
		"CTXD_AUTH_MODE", "CTXD_AUTH_TOKENS_FILE", "CTXD_AUTH_WHO", "CTXD_TLS_CERT_FILE", "CTXD_TLS_KEY_FILE",
		"CTXD_LIMITS_MAX_KEY_BYTES", "CTXD_LIMITS_MAX_VALUE_BYTES",
		"CTXD_LIMITS_MAX_TXN_OPS", "CTXD_LIMITS_MIN_TTL", "CTXD_LIMITS_MAX_TTL", "CTXD_COMPAT_NAMESPACE",
		"CTXD_DUMPS_DIR", "CTXD_DUMPS_KEEP", "CTXD_DUMPS_MAX_BYTES", "CTXD_SNAPSHOTS_DIR", "CTXD_SNAPSHOTS_INTERVAL", "CTXD_SNAPSHOTS_KEEP", "CTXD_SNAPSHOTS_MAX_UPLOAD_BYTES",
		"CTXD_HISTORY_KEEP_VERSIONS", "CTXD_HISTORY_KEEP_REVISIONS", "CTXD_HISTORY_KEEP_FOR", "CTXD_HISTORY_COMPACT_INTERVAL",
		"CTXD_STORAGE_QUOTA_BYTES", "CTXD_STORAGE_RESERVE_BYTES", "CTXD_STORAGE_LOCK_TIMEOUT",
		"CTXD_WEBSOCKET_PING_INTERVAL", "CTXD_WEBSOCKET_WRITE_TIMEOUT", "CTXD_WEBSOCKET_MAX_MESSAGE_BYTES", "CTXD_WEBSOCKET_MAX_SNAPSHOT_BYTES", "CTXD_WEBSOCKET_SNAPSHOT_MEMORY_BYTES",
		"CTXD_WEBSOCKET_ALLOWED_ORIGINS", "CTXD_WEBSOCKET_MAX_CLIENTS", "CTXD_WEBSOCKET_MAX_LAG",
		"CTXD_WEBSOCKET_LAG_GRACE", "CTXD_WEBSOCKET_BATCH_INTERVAL", "CTXD_WEBSOCKET_RATE_LIMIT", "CTXD_WEBSOCKET_RATE_BURST", "CTXD_WEBSOCKET_RATE_LIMIT_MAX_REFUSED",
		"CTXD_STORE_BACKEND", "CTXD_STORE_READ_CACHE_BYTES", "CTXD_ETCD_ENDPOINTS", "CTXD_ETCD_PREFIX", "CTXD_ETCD_CA_FILE", "CTXD_ETCD_CERT_FILE",
		"CTXD_ETCD_KEY_FILE", "CTXD_ETCD_USERNAME", "CTXD_ETCD_PASSWORD", "CTXD_ETCD_DIAL_TIMEOUT", "CTXD_ETCD_REQUEST_TIMEOUT",
		"CTXD_ETCD_READ_CACHE", "CTXD_ETCD_READ_CACHE_MAX_BYTES",
		"CTXD_WAL_SEGMENT_BYTES", "CTXD_WAL_COMMIT_INTERVAL", "CTXD_WAL_COMMIT_CHANGES", "CTXD_WAL_DIRECT_BYTES",
	}, names)
}

func TestPrecedence(t *testing.T) {
	file := `
addr: 10.0.0.1:9000
data_dir: " /var/lib/ctxd "
shutdown_timeout: 30s
log:
  level: debug
  format: console
http:
  max_body_bytes: 4MiB
websocket:
  max_message_bytes: 4MiB
limits:
  max_key_bytes: 512
  max_value_bytes: 2097152
  max_txn_ops: 64
`
	// fromFile sets what file sets.
	fromFile := func(c *Config) {
		c.Addr = "10.0.0.1:9000"
		c.DataDir = "/var/lib/ctxd"
		c.ShutdownTimeout = 30 * time.Second
		c.Log = Log{Level: "debug", Format: "console"}
		c.HTTP.MaxBodyBytes = 4 << 20
		c.WebSocket.MaxMessageBytes = 4 << 20
		c.Limits = ctxd.Limits{MaxKeyBytes: 512, MaxValueBytes: 2 << 20, MaxTxnOps: 64, MinTTL: time.Second, MaxTTL: 365 * 24 * time.Hour}
	}
	tests := []struct {
		name  string
		file  string
		env   []string
		flags map[string]string
		want  func(c *Config)
	}{
		{name: "defaults", want: func(c *Config) {}},
		{name: "file overrides defaults", file: file, want: fromFile},
		{
			name: "partial file keeps other defaults",
			file: "log:\n  format: console\n",
			want: func(c *Config) { c.Log.Format = "console" },
		},
		{
			name: "empty file and empty sections",
			file: "# nothing\nlog:\nlimits:\n",
			want: func(c *Config) {},
		},
		{
			name: "env overrides file",
			file: file,
			env: []string{
				"CTXD_ADDR=:7000", "CTXD_LOG_LEVEL=warn", "CTXD_LIMITS_MAX_TXN_OPS=10",
				"CTXD_SHUTDOWN_TIMEOUT= 1m", "CTXD_HTTP_MAX_BODY_BYTES=3145728", // trimmed, as every duration
			},
			want: func(c *Config) {
				fromFile(c)
				c.Addr = ":7000"
				c.ShutdownTimeout = time.Minute
				c.Log.Level = "warn"
				c.HTTP.MaxBodyBytes = 3 << 20
				c.Limits.MaxTxnOps = 10
			},
		},
		{
			name: "every env variable",
			env: []string{
				"CTXD_ADDR=0.0.0.0:1", "CTXD_DATA_DIR=/d", "CTXD_SHUTDOWN_TIMEOUT=2s",
				"CTXD_LOG_LEVEL=error", "CTXD_LOG_FORMAT=console", "CTXD_HTTP_MAX_BODY_BYTES=16KiB",
				"CTXD_LIMITS_MAX_KEY_BYTES=16", "CTXD_LIMITS_MAX_VALUE_BYTES=1KiB", "CTXD_LIMITS_MAX_TXN_OPS=2", "CTXD_LIMITS_MIN_TTL=2s", "CTXD_LIMITS_MAX_TTL=1h",
				"CTXD_COMPAT_NAMESPACE=legacy",
				"CTXD_DUMPS_DIR=/shared/dumps", "CTXD_SNAPSHOTS_DIR=/shared/snapshots", "CTXD_SNAPSHOTS_INTERVAL=1h", "CTXD_SNAPSHOTS_KEEP=3", "CTXD_SNAPSHOTS_MAX_UPLOAD_BYTES=1MiB",
				"CTXD_HISTORY_KEEP_VERSIONS=5", "CTXD_HISTORY_KEEP_REVISIONS=0", "CTXD_HISTORY_KEEP_FOR=720h",
				"CTXD_HISTORY_COMPACT_INTERVAL=30s", "CTXD_STORAGE_QUOTA_BYTES=3GiB", "CTXD_STORAGE_RESERVE_BYTES=0", "CTXD_STORAGE_LOCK_TIMEOUT=0s",
				"CTXD_WEBSOCKET_PING_INTERVAL=5s", "CTXD_WEBSOCKET_WRITE_TIMEOUT=3s", "CTXD_WEBSOCKET_MAX_MESSAGE_BYTES=64KiB", "CTXD_WEBSOCKET_MAX_SNAPSHOT_BYTES=1MiB", "CTXD_WEBSOCKET_SNAPSHOT_MEMORY_BYTES=8MiB",
				"CTXD_WEBSOCKET_ALLOWED_ORIGINS=https://a.example, http://b.example:8080/", "CTXD_WEBSOCKET_MAX_CLIENTS=7",
				"CTXD_WEBSOCKET_MAX_LAG=100", "CTXD_WEBSOCKET_LAG_GRACE=0", "CTXD_WEBSOCKET_BATCH_INTERVAL=0", "CTXD_WEBSOCKET_RATE_LIMIT=2.5", "CTXD_WEBSOCKET_RATE_BURST=0",
				"CTXD_WEBSOCKET_RATE_LIMIT_MAX_REFUSED=0",
				"CTXD_HTTP_CORS_ORIGINS=https://app.example", "CTXD_HTTP_RATE_LIMIT=12.5", "CTXD_HTTP_RATE_BURST=40",
				"CTXD_HTTP_READ_HEADER_TIMEOUT=3s", "CTXD_HTTP_READ_TIMEOUT=20s", "CTXD_HTTP_MAX_HEADER_BYTES=16KiB", "CTXD_HTTP_MAX_SPOOL_BYTES=5MiB",
				"CTXD_AUTH_MODE=on", "CTXD_AUTH_TOKENS_FILE=/etc/ctxd/tokens.yaml", "CTXD_AUTH_WHO=token",
				"CTXD_TLS_CERT_FILE=/etc/ctxd/cert.pem", "CTXD_TLS_KEY_FILE=/etc/ctxd/key.pem",
				"CTXD_STORE_BACKEND=bolt", "CTXD_STORE_READ_CACHE_BYTES=4MiB", "CTXD_ETCD_ENDPOINTS=http://e1:2379, https://e2:2379/", "CTXD_ETCD_PREFIX=/team/",
				"CTXD_ETCD_CA_FILE=/ca.pem", "CTXD_ETCD_CERT_FILE=/c.pem", "CTXD_ETCD_KEY_FILE=/k.pem",
				"CTXD_ETCD_USERNAME=ctxd", "CTXD_ETCD_PASSWORD=s3cret", "CTXD_ETCD_DIAL_TIMEOUT=2s", "CTXD_ETCD_REQUEST_TIMEOUT=1s",
				"CTXD_ETCD_READ_CACHE=false", "CTXD_ETCD_READ_CACHE_MAX_BYTES=64MiB",
				"CTXD_WAL_SEGMENT_BYTES=64KiB", "CTXD_WAL_COMMIT_INTERVAL=1h", "CTXD_WAL_COMMIT_CHANGES=65536",
				"CTXD_WAL_DIRECT_BYTES=8KiB",
			},
			want: func(c *Config) {
				*c = Config{
					Addr: "0.0.0.0:1", DataDir: "/d", ShutdownTimeout: 2 * time.Second,
					Log: Log{Level: "error", Format: "console"},
					HTTP: HTTP{MaxBodyBytes: 16 << 10, CORSOrigins: []string{"https://app.example"}, RateLimit: 12.5, RateBurst: 40,
						ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 20 * time.Second, MaxHeaderBytes: 16 << 10, MaxSpoolBytes: 5 << 20},
					Auth:      Auth{Mode: AuthOn, TokensFile: "/etc/ctxd/tokens.yaml", Who: WhoToken},
					TLS:       TLS{CertFile: "/etc/ctxd/cert.pem", KeyFile: "/etc/ctxd/key.pem"},
					Limits:    ctxd.Limits{MaxKeyBytes: 16, MaxValueBytes: 1 << 10, MaxTxnOps: 2, MinTTL: 2 * time.Second, MaxTTL: time.Hour},
					Compat:    Compat{Namespace: "legacy"},
					Dumps:     Dumps{Dir: "/shared/dumps"},
					Snapshots: Snapshots{Dir: "/shared/snapshots", Interval: time.Hour, Keep: 3, MaxUploadBytes: 1 << 20},
					History:   History{KeepVersions: 5, KeepRevisions: 0, KeepFor: 720 * time.Hour, CompactInterval: 30 * time.Second},
					Storage:   Storage{QuotaBytes: 3 << 30},
					WebSocket: WebSocket{PingInterval: 5 * time.Second, WriteTimeout: 3 * time.Second, MaxMessageBytes: 64 << 10, MaxSnapshotBytes: 1 << 20, SnapshotMemoryBytes: 8 << 20,
						AllowedOrigins: []string{"https://a.example", "http://b.example:8080"}, MaxClients: 7, MaxLag: 100,
						BatchInterval: 0, RateLimit: 2.5, RateBurst: 0, RateLimitMaxRefused: 0},
					Store: Store{Backend: BackendBolt, ReadCacheBytes: 4 << 20},
					Etcd: Etcd{Endpoints: []string{"http://e1:2379", "https://e2:2379"}, Prefix: "/team/", CAFile: "/ca.pem",
						CertFile: "/c.pem", KeyFile: "/k.pem", Username: "ctxd", Password: "s3cret",
						DialTimeout: 2 * time.Second, RequestTimeout: time.Second, ReadCache: false, ReadCacheMaxBytes: 64 << 20},
					WAL: WAL{SegmentBytes: 64 << 10, CommitInterval: time.Hour, CommitChanges: 65536, DirectBytes: 8 << 10},
					Warnings: []string{
						"etcd.endpoints, etcd.prefix, etcd.ca_file, etcd.cert_file, etcd.key_file, etcd.username, etcd.password, " +
							"etcd.dial_timeout, etcd.request_timeout, etcd.read_cache, etcd.read_cache_max_bytes ignored: " +
							"store.backend is bolt (set store.backend: etcd to run on etcd)",
						"websocket.max_lag (100) is above history.keep_revisions (0): a client that far behind may find " +
							"its position compacted (it gets compacted, not lagged, and must read the state again)",
					},
				}
			},
		},
		{
			name: "empty env counts as unset; client and unknown variables are ignored",
			env: []string{
				"CTXD_ADDR=", "CTXD_SERVER=http://example:1", "CTXD_TOKEN=secret", "CTXD_NOPE=1",
				"PATH=/bin", "ADDR=1.2.3.4:5",
			},
			want: func(c *Config) {},
		},
		{
			name:  "flags override env and file",
			file:  file,
			env:   []string{"CTXD_ADDR=:7000", "CTXD_DATA_DIR=/env", "CTXD_LOG_FORMAT=json"},
			flags: map[string]string{"addr": "127.0.0.1:0", "data_dir": "/flag", "log.level": "trace"},
			want: func(c *Config) {
				fromFile(c)
				c.Addr = "127.0.0.1:0"
				c.DataDir = "/flag"
				c.Log = Log{Level: "trace", Format: "json"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			got, err := Load(path, tt.env, tt.flags)
			require.NoError(t, err)
			want := Defaults()
			tt.want(&want)
			got.sources = nil // where the values came from (Source), not what they are
			assert.Equal(t, want, got)
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		flags map[string]string
		field string
		want  string // substring of the message
	}{
		{name: "unknown top-level field", file: "adr: x:1\n", field: "adr", want: "config: adr (file "},
		{name: "unknown field names line", file: "addr: 127.0.0.1:1\n\nlimits:\n  max_keys: 3\n", field: "limits.max_keys", want: "line 4): unknown field"},
		{name: "server section is not a server setting", file: "server:\n  addr: x\n", field: "server", want: "unknown field"},
		{name: "section given a value", file: "log: debug\n", field: "log", want: "expected a mapping"},
		{name: "setting given a mapping", file: "addr:\n  host: x\n", field: "addr", want: "expected a single value"},
		{name: "setting given a list", file: "data_dir: [a, b]\n", field: "data_dir", want: "expected a single value"},
		// A section pasted beside the example's own: the last one won, and
		// an empty tls: after one with files turned TLS off without a word.
		{name: "section given twice", file: "tls:\n  cert_file: a.pem\n  key_file: a.key\naddr: :1\ntls:\n  cert_file: \"\"\n", field: "tls", want: "line 5): given twice (first at line 1)"},
		{name: "setting given twice", file: "log:\n  level: debug\n  level: info\n", field: "log.level", want: "given twice (first at line 2)"},
		{name: "bad yaml", file: "addr: [\n", want: "config: file "},
		{name: "bad duration in file", file: "shutdown_timeout: 10\n", field: "shutdown_timeout", want: `invalid duration "10"`},
		{name: "zero duration", file: "shutdown_timeout: 0s\n", field: "shutdown_timeout", want: "must be > 0"},
		{name: "negative drain", file: "shutdown_drain: -1s\n", field: "shutdown_drain", want: "must be >= 0"},
		{name: "negative value size", file: "limits:\n  max_value_bytes: -1\n", field: "limits.max_value_bytes", want: "limits.max_value_bytes (file "},
		{name: "zero value size", file: "limits:\n  max_value_bytes: 0\n", field: "limits.max_value_bytes", want: "must be > 0"},
		{name: "key limit above 1024", file: "limits:\n  max_key_bytes: 1025\n", field: "limits.max_key_bytes", want: "must be at most 1024"},
		{name: "bad size unit", file: "http:\n  max_body_bytes: 2MB\n", field: "http.max_body_bytes", want: `invalid size "2MB"`},
		{name: "zero min ttl", file: "limits:\n  min_ttl: 0s\n", field: "limits.min_ttl", want: "must be > 0"},
		{name: "bad max ttl", file: "limits:\n  max_ttl: forever\n", field: "limits.max_ttl", want: `invalid duration "forever"`},
		{name: "max ttl below min ttl", file: "limits:\n  min_ttl: 1m\n  max_ttl: 30s\n", field: "limits.max_ttl", want: "limits.max_ttl (file "},
		{name: "txn ops not a number", file: "limits:\n  max_txn_ops: many\n", field: "limits.max_txn_ops", want: `invalid number "many"`},
		{name: "bad log level", file: "log:\n  level: loud\n", field: "log.level", want: `invalid level "loud"`},
		{name: "bad log format", file: "log:\n  format: xml\n", field: "log.format", want: `invalid format "xml"`},
		{name: "addr without port", file: "addr: localhost\n", field: "addr", want: `invalid address "localhost"`},
		{name: "addr with bad port", file: "addr: localhost:http\n", field: "addr", want: `invalid port "http"`},
		{name: "addr port out of range", file: "addr: :70000\n", field: "addr", want: `invalid port "70000"`},
		{name: "empty data dir", file: "data_dir: ''\n", field: "data_dir", want: "must not be empty"},
		{name: "bad compat namespace", file: "compat:\n  namespace: a/b\n", field: "compat.namespace", want: "must be 1 to 64 of"},
		{name: "null data dir", file: "data_dir:\n", field: "data_dir", want: "must not be empty"},
		// YAML's ~ and null are the empty value, not a folder named "~".
		{name: "null data dir spelled ~", file: "data_dir: ~\n", field: "data_dir", want: "must not be empty"},
		{name: "null namespace spelled null", file: "compat:\n  namespace: null\n", field: "compat.namespace", want: "must be 1 to 64"},
		// A second document's settings were ignored without a word.
		{name: "second document", file: "addr: 127.0.0.1:1\n---\nhttp:\n  rate_limit: 5\n", want: "a second YAML document"},
		{name: "third document", file: "addr: 127.0.0.1:1\n---\n---\nhttp:\n  rate_limit: 5\n", want: "a second YAML document"},
		{name: "ttl past 100 years", file: "limits:\n  max_ttl: 2562047h\n", field: "limits.max_ttl", want: "must be at most 876000h0m0s (100 years)"},
		{name: "drain past 100 years", env: []string{"CTXD_SHUTDOWN_DRAIN=2562047h"}, field: "shutdown_drain", want: "at most"},
		// Bounds past which a setting broke the server while it ran.
		{name: "shutdown timeout past 100 years", env: []string{"CTXD_SHUTDOWN_TIMEOUT=2562047h"}, field: "shutdown_timeout", want: "must be at most 876000h0m0s (100 years)"},
		{name: "ping interval of 1ns", file: "websocket:\n  ping_interval: 1ns\n", field: "websocket.ping_interval", want: "must be at least 1s (shorter drops every client"},
		{name: "ping interval past a day", env: []string{"CTXD_WEBSOCKET_PING_INTERVAL=300h"}, field: "websocket.ping_interval", want: "must be at most 24h0m0s"},
		{name: "write timeout of 1ms", env: []string{"CTXD_WEBSOCKET_WRITE_TIMEOUT=1ms"}, field: "websocket.write_timeout", want: "must be at least 1s (shorter cuts off clients"},
		{name: "header timeout of 1us", env: []string{"CTXD_HTTP_READ_HEADER_TIMEOUT=1us"}, field: "http.read_header_timeout", want: "must be at least 1s"},
		{name: "read timeout of 1ns", file: "http:\n  read_timeout: 1ns\n", field: "http.read_timeout", want: "must be at least 1s"},
		{name: "snapshots every 1ns", env: []string{"CTXD_SNAPSHOTS_INTERVAL=1ns"}, field: "snapshots.interval", want: "must be at least 1s, or 0 to turn it off"},
		{name: "compaction every 1ms", env: []string{"CTXD_HISTORY_COMPACT_INTERVAL=1ms"}, field: "history.compact_interval", want: "must be at least 1s (shorter runs the cleanup"},
		{name: "rate limit too small to wait for", env: []string{"CTXD_HTTP_RATE_LIMIT=1e-10"}, field: "http.rate_limit", want: "0.001 to"},
		{name: "rate limit too large to burst", file: "websocket:\n  rate_limit: 1e300\n", field: "websocket.rate_limit", want: "0.001 to 1e+09"},
		{name: "quota below an empty database", env: []string{"CTXD_STORAGE_QUOTA_BYTES=1"}, field: "storage.quota_bytes", want: "must be at least 1.0 MiB"},
		{name: "commit changes that overflow", env: []string{"CTXD_WAL_COMMIT_CHANGES=9223372036854775807"}, field: "wal.commit_changes", want: "must be 1 to 65536"},
		{name: "segment of 1 TiB", env: []string{"CTXD_WAL_SEGMENT_BYTES=1099511627776"}, field: "wal.segment_bytes", want: "must be at most 1073741824 bytes"},
		{name: "message smaller than a value", file: "websocket:\n  max_message_bytes: 10\n", field: "websocket.max_message_bytes", want: "must be at least limits.max_value_bytes"},
		// Dumps are deleted in their folder (DELETE, dumps.keep): never the
		// database's or the snapshots'.
		{name: "dumps in the data folder", env: []string{"CTXD_DATA_DIR=/srv/ctxd", "CTXD_DUMPS_DIR=/srv/ctxd/"}, field: "dumps.dir", want: "must be a folder of its own, not the one of data_dir (/srv/ctxd, env CTXD_DATA_DIR)"},
		{name: "dumps in the snapshots folder", file: "dumps:\n  dir: /backup\nsnapshots:\n  dir: /backup/.\n", field: "dumps.dir", want: "not the one of snapshots.dir (/backup/."},
		{name: "snapshots in the default dumps folder", env: []string{"CTXD_DATA_DIR=/srv/ctxd", "CTXD_SNAPSHOTS_DIR=/srv/ctxd/dumps"}, field: "snapshots.dir", want: "not the one of dumps.dir"},
		{name: "negative dumps keep", env: []string{"CTXD_DUMPS_KEEP=-1"}, field: "dumps.keep", want: "dumps.keep"},
		{name: "bad dumps max bytes", file: "dumps:\n  max_bytes: lots\n", field: "dumps.max_bytes", want: "(or 0: no bound)"},
		{name: "bad origin", file: "websocket:\n  allowed_origins: dash.example.com\n", field: "websocket.allowed_origins", want: `invalid origin "dash.example.com"`},
		{name: "origin with a path", env: []string{"CTXD_WEBSOCKET_ALLOWED_ORIGINS=https://a.example/app"}, field: "websocket.allowed_origins", want: "invalid origin"},
		{name: "zero max clients", file: "websocket:\n  max_clients: 0\n", field: "websocket.max_clients", want: "must be > 0"},
		// A negative count is told the bound that holds, not ">= 0",
		// which 0 does not meet either.
		{name: "negative max clients", env: []string{"CTXD_WEBSOCKET_MAX_CLIENTS=-1"}, field: "websocket.max_clients", want: "must be > 0"},
		{name: "negative commit changes", env: []string{"CTXD_WAL_COMMIT_CHANGES=-1"}, field: "wal.commit_changes", want: "must be 1 to 65536"},
		{name: "zero max lag", env: []string{"CTXD_WEBSOCKET_MAX_LAG=0"}, field: "websocket.max_lag", want: "must be > 0"},
		{name: "negative lag grace", env: []string{"CTXD_WEBSOCKET_LAG_GRACE=-1s"}, field: "websocket.lag_grace", want: "must be >= 0"},
		{name: "lag grace without a unit", file: "websocket:\n  lag_grace: 10\n", field: "websocket.lag_grace", want: "duration"},
		{name: "negative batch interval", env: []string{"CTXD_WEBSOCKET_BATCH_INTERVAL=-1ms"}, field: "websocket.batch_interval", want: "must be >= 0"},
		{name: "batch interval too long", file: "websocket:\n  batch_interval: 2s\n", field: "websocket.batch_interval", want: "must be at most 1s"},
		{name: "bad auth mode", file: "auth:\n  mode: maybe\n", field: "auth.mode", want: `invalid mode "maybe"`},
		{name: "negative rate limit", env: []string{"CTXD_HTTP_RATE_LIMIT=-1"}, field: "http.rate_limit", want: "must be 0 (no limit) or 0.001 to 1e+09"},
		{name: "rate limit not a number", env: []string{"CTXD_HTTP_RATE_LIMIT=fast"}, field: "http.rate_limit", want: `invalid number "fast"`},
		{name: "negative websocket rate limit", file: "websocket:\n  rate_limit: -5\n", field: "websocket.rate_limit", want: "must be 0 (no limit) or 0.001 to 1e+09"},
		{name: "websocket rate limit not a number", env: []string{"CTXD_WEBSOCKET_RATE_LIMIT=lots"}, field: "websocket.rate_limit", want: `invalid number "lots" (messages per second`},
		{name: "negative websocket burst", env: []string{"CTXD_WEBSOCKET_RATE_BURST=-1"}, field: "websocket.rate_burst", want: "must be >= 0"},
		{name: "bad max refused", flags: map[string]string{"websocket.rate_limit_max_refused": "ten"}, field: "websocket.rate_limit_max_refused", want: `invalid number "ten"`},
		{name: "bad cors origin", env: []string{"CTXD_HTTP_CORS_ORIGINS=app.example"}, field: "http.cors_origins", want: "invalid origin"},
		{name: "cert without key", file: "tls:\n  cert_file: /c.pem\n", field: "tls.key_file", want: "give both"},
		{name: "zero ping interval", file: "websocket:\n  ping_interval: 0s\n", field: "websocket.ping_interval", want: "must be > 0"},
		{name: "negative quota", file: "storage:\n  quota_bytes: -1\n", field: "storage.quota_bytes", want: `storage.quota_bytes (file `},
		{name: "negative quota says what is allowed", env: []string{"CTXD_STORAGE_QUOTA_BYTES=-5GiB"}, field: "storage.quota_bytes", want: `invalid quota "-5GiB" (use a size such as 8GiB`},
		{name: "quota with a bad unit", flags: map[string]string{"storage.quota_bytes": "2GB"}, field: "storage.quota_bytes", want: `config: storage.quota_bytes (flag): invalid quota "2GB"`},
		{name: "quota not a size", env: []string{"CTXD_STORAGE_QUOTA_BYTES=lots"}, field: "storage.quota_bytes", want: "env CTXD_STORAGE_QUOTA_BYTES"},
		{name: "missing file", file: "-", want: "no such file"},
		{name: "bad read cache switch", env: []string{"CTXD_ETCD_READ_CACHE=yes"}, field: "etcd.read_cache", want: `invalid boolean "yes" (use true or false)`},
		{name: "negative get cache bound", env: []string{"CTXD_STORE_READ_CACHE_BYTES=-1"}, field: "store.read_cache_bytes", want: `must be > 0 (or 0: no cache)`},
		{name: "read cache bound of 0", file: "etcd:\n  read_cache_max_bytes: 0\n", field: "etcd.read_cache_max_bytes", want: `must be > 0`},
		{name: "bad backend", env: []string{"CTXD_STORE_BACKEND=redis"}, field: "store.backend", want: `invalid backend "redis" (use bolt or etcd)`},
		{name: "etcd without endpoints", file: "store:\n  backend: etcd\n", field: "etcd.endpoints", want: "give at least one endpoint"},
		{name: "bad etcd endpoint", flags: map[string]string{"etcd.endpoints": "http://a:2379,b:2379"}, field: "etcd.endpoints", want: `invalid endpoint "b:2379"`},
		{name: "etcd endpoint without port", env: []string{"CTXD_ETCD_ENDPOINTS=https://etcd.example"}, field: "etcd.endpoints", want: "invalid endpoint"},
		// A port out of range or 0, or no host, parses as a URL but can
		// never be dialled: refused here, not after etcd.dial_timeout.
		{name: "etcd endpoint with a port out of range", env: []string{"CTXD_ETCD_ENDPOINTS=http://127.0.0.1:99999"}, field: "etcd.endpoints", want: `invalid endpoint "http://127.0.0.1:99999"`},
		{name: "etcd endpoint with port 0", file: "etcd:\n  endpoints: http://127.0.0.1:0\n", field: "etcd.endpoints", want: `invalid endpoint "http://127.0.0.1:0"`},
		{name: "etcd endpoint without host", flags: map[string]string{"etcd.endpoints": "http://:2379"}, field: "etcd.endpoints", want: `invalid endpoint "http://:2379"`},
		{name: "bad etcd prefix", env: []string{"CTXD_ETCD_PREFIX=ctxd"}, field: "etcd.prefix", want: `invalid prefix "ctxd"`},
		{name: "zero etcd request timeout", file: "etcd:\n  request_timeout: 0s\n", field: "etcd.request_timeout", want: "must be > 0"},
		{name: "etcd request timeout of 1ns", env: []string{"CTXD_ETCD_REQUEST_TIMEOUT=1ns"}, field: "etcd.request_timeout", want: "must be at least 1s (shorter fails requests"},
		{name: "etcd dial timeout of 1ms", file: "etcd:\n  dial_timeout: 1ms\n", field: "etcd.dial_timeout", want: "must be at least 1s (shorter gives up on a healthy etcd: the start's first reads, and each connection's TCP and TLS handshake"},
		{
			name: "etcd client cert without key", env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://127.0.0.1:2379", "CTXD_ETCD_CERT_FILE=/c.pem"},
			field: "etcd.key_file", want: "give both etcd.cert_file and etcd.key_file, or neither: etcd.cert_file (/c.pem, env CTXD_ETCD_CERT_FILE) is set",
		},
		// The one missing is named, and the one given with where it came from.
		{
			name: "etcd client key without cert", env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=https://127.0.0.1:2379", "CTXD_ETCD_KEY_FILE=/k.pem"},
			field: "etcd.cert_file", want: "etcd.key_file (/k.pem, env CTXD_ETCD_KEY_FILE) is set",
		},
		// etcd's client drops the TLS settings for an http:// endpoint and
		// talks plain text: the CA, the certificate and the password's
		// privacy were lost without a word.
		{
			name: "etcd CA with an http endpoint", file: "store:\n  backend: etcd\netcd:\n  endpoints: https://e1:2379,HTTP://e2:2379\n  ca_file: /ca.pem\n",
			field: "etcd.endpoints", want: "HTTP://e2:2379 is an http:// endpoint, which etcd's client reaches in plain text, without TLS, although etcd.ca_file (/ca.pem, file ",
		},
		{
			name: "etcd client cert with an http endpoint", env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://127.0.0.1:2379", "CTXD_ETCD_CERT_FILE=/c.pem", "CTXD_ETCD_KEY_FILE=/k.pem"},
			field: "etcd.endpoints", want: "although etcd.cert_file (/c.pem, env CTXD_ETCD_CERT_FILE) is set: write it https://",
		},
		{
			name: "etcd password without user", env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://127.0.0.1:2379", "CTXD_ETCD_PASSWORD=x"},
			field: "etcd.username", want: "give the user",
		},
		{
			name: "keep_versions etcd cannot keep", file: "store:\n  backend: etcd\netcd:\n  endpoints: http://127.0.0.1:2379\nhistory:\n  keep_versions: 5\n",
			field: "history.keep_versions", want: "use 0 or 1",
		},
		{
			name: "keep_for on etcd", env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://127.0.0.1:2379", "CTXD_HISTORY_KEEP_FOR=24h"},
			field: "history.keep_for", want: "compaction is by revision",
		},
		{name: "wal segment too small", env: []string{"CTXD_WAL_SEGMENT_BYTES=1KiB"}, field: "wal.segment_bytes", want: "must be a multiple of 8 and at least 4096"},
		{name: "wal segment not aligned", file: "wal:\n  segment_bytes: 4100\n", field: "wal.segment_bytes", want: "must be a multiple of 8"},
		{name: "zero commit interval", flags: map[string]string{"wal.commit_interval": "0s"}, field: "wal.commit_interval", want: "must be > 0"},
		{name: "zero commit changes", env: []string{"CTXD_WAL_COMMIT_CHANGES=0"}, field: "wal.commit_changes", want: "must be 1 to 65536"},
		{
			name: "bad env names the variable", env: []string{"CTXD_LIMITS_MAX_VALUE_BYTES=0"},
			field: "limits.max_value_bytes",
			want:  "config: limits.max_value_bytes (env CTXD_LIMITS_MAX_VALUE_BYTES): must be > 0",
		},
		{name: "bad env duration", env: []string{"CTXD_SHUTDOWN_TIMEOUT=soon"}, field: "shutdown_timeout", want: "env CTXD_SHUTDOWN_TIMEOUT"},
		{name: "bad flag", flags: map[string]string{"log.format": "yaml"}, field: "log.format", want: "config: log.format (flag): invalid format"},
		{name: "unknown flag setting", flags: map[string]string{"port": "1"}, field: "port", want: "unknown setting"},
		{
			name: "body limit below value limit", env: []string{"CTXD_LIMITS_MAX_VALUE_BYTES=4MiB"},
			field: "http.max_body_bytes", want: "config: http.max_body_bytes (default): must be at least limits.max_value_bytes (4194304, env CTXD_LIMITS_MAX_VALUE_BYTES)",
		},
		// Checks across two settings name where each value came from.
		{name: "max ttl below min ttl, from env", env: []string{"CTXD_LIMITS_MIN_TTL=9000h"}, field: "limits.max_ttl",
			want: "config: limits.max_ttl (default): must be at least limits.min_ttl (9000h0m0s, env CTXD_LIMITS_MIN_TTL)"},
		{name: "key without cert, from a flag", flags: map[string]string{"tls.key_file": "/k.pem"}, field: "tls.cert_file",
			want: "tls.key_file (/k.pem, flag) is set"},
		{name: "etcd check, from a file", file: "store:\n  backend: etcd\netcd:\n  endpoints: http://e:2379\n  password: x\n", field: "etcd.username",
			want: "etcd.username (default)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			switch tt.file {
			case "":
			case "-":
				path = filepath.Join(t.TempDir(), "missing.yaml")
			default:
				path = writeFile(t, tt.file)
			}
			_, err := Load(path, tt.env, tt.flags)
			require.Error(t, err)
			var ce *Error
			require.True(t, errors.As(err, &ce), "error %v is not a *configs.Error", err)
			assert.Equal(t, tt.field, ce.Field)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "config: "), err.Error())
		})
	}
}

func TestValidate(t *testing.T) {
	c := Defaults()
	c.Limits.MaxTxnOps = 0
	err := c.Validate()
	require.Error(t, err)
	assert.Equal(t, "config: limits.max_txn_ops: must be > 0", err.Error())

	c = Defaults()
	c.Log.Level = "verbose"
	require.ErrorContains(t, c.Validate(), "config: log.level: invalid level")
}

// auth.mode auto turns access control on unless the server listens on a
// loopback address only and has no tokens file; on and off are what they
// say.
func TestAuthEnabled(t *testing.T) {
	for _, tc := range []struct {
		mode, addr string
		want       bool
		tokens     string
	}{
		// A tokens file is access control asked for, on loopback too (a
		// server behind a proxy on the same machine was left open).
		{AuthAuto, "127.0.0.1:8080", true, "/etc/ctxd/tokens.yaml"},
		{AuthOff, "127.0.0.1:8080", false, "/etc/ctxd/tokens.yaml"},
		{AuthAuto, "127.0.0.1:8080", false, ""},
		{AuthAuto, "127.1.2.3:8080", false, ""},
		{AuthAuto, "[::1]:8080", false, ""},
		{AuthAuto, "localhost:8080", false, ""},
		{AuthAuto, "LOCALHOST:0", false, ""},
		{AuthAuto, ":8080", true, ""},
		{AuthAuto, "0.0.0.0:8080", true, ""},
		{AuthAuto, "[::]:8080", true, ""},
		{AuthAuto, "10.0.0.5:8080", true, ""},
		{AuthAuto, "ctxd.internal:8080", true, ""},
		{AuthOn, "127.0.0.1:8080", true, ""},
		{AuthOff, "0.0.0.0:8080", false, ""},
	} {
		c := Defaults()
		c.Auth.Mode, c.Addr, c.Auth.TokensFile = tc.mode, tc.addr, tc.tokens
		assert.Equal(t, tc.want, c.AuthEnabled(), "mode %s addr %s tokens %q", tc.mode, tc.addr, tc.tokens)
	}
}

// storage.quota_bytes is a size, auto (the default, decided at start) or
// 0 (no quota), through the file, the environment and flags alike.
func TestQuotaSetting(t *testing.T) {
	assert.Equal(t, int64(QuotaAuto), Defaults().Storage.QuotaBytes)
	for v, want := range map[string]int64{"auto": QuotaAuto, "0": 0, "512MiB": 512 << 20, "12345678": 12345678, " 2GiB ": 2 << 30} {
		c, err := Load(writeFile(t, "storage:\n  quota_bytes: "+v+"\n"), nil, nil)
		require.NoError(t, err, v)
		assert.Equal(t, want, c.Storage.QuotaBytes, "file %q", v)
		c, err = Load("", []string{"CTXD_STORAGE_QUOTA_BYTES=" + v}, nil)
		require.NoError(t, err, v)
		assert.Equal(t, want, c.Storage.QuotaBytes, "env %q", v)
		c, err = Load("", nil, map[string]string{"storage.quota_bytes": v})
		require.NoError(t, err, v)
		assert.Equal(t, want, c.Storage.QuotaBytes, "flag %q", v)
		require.NoError(t, c.Validate(), "a loaded quota validates again: %q", v)
	}
	// File < env < flag.
	c, err := Load(writeFile(t, "storage:\n  quota_bytes: 1GiB\n"), []string{"CTXD_STORAGE_QUOTA_BYTES=2GiB"}, map[string]string{"storage.quota_bytes": "0"})
	require.NoError(t, err)
	assert.Equal(t, int64(0), c.Storage.QuotaBytes)
}

// storage.reserve_bytes is a size, auto (the default) or 0 (none),
// through the file, the environment and flags alike; a bad value names
// the field and what is allowed.
func TestReserveSetting(t *testing.T) {
	assert.Equal(t, fsutil.ReserveAuto, Defaults().Storage.ReserveBytes)
	for v, want := range map[string]fsutil.Reserve{"auto": fsutil.ReserveAuto, "0": 0, "512MiB": 512 << 20, " 2GiB ": 2 << 30} {
		c, err := Load(writeFile(t, "storage:\n  reserve_bytes: "+v+"\n"), nil, nil)
		require.NoError(t, err, v)
		assert.Equal(t, want, c.Storage.ReserveBytes, "file %q", v)
		c, err = Load("", []string{"CTXD_STORAGE_RESERVE_BYTES=" + v}, nil)
		require.NoError(t, err, v)
		assert.Equal(t, want, c.Storage.ReserveBytes, "env %q", v)
		c, err = Load("", nil, map[string]string{"storage.reserve_bytes": v})
		require.NoError(t, err, v)
		assert.Equal(t, want, c.Storage.ReserveBytes, "flag %q", v)
		require.NoError(t, c.Validate(), "a loaded reserve validates again: %q", v)
	}
	for _, v := range []string{"-1", "lots", "2GB"} {
		_, err := Load("", []string{"CTXD_STORAGE_RESERVE_BYTES=" + v}, nil)
		require.Error(t, err, v)
		assert.Contains(t, err.Error(), "storage.reserve_bytes (env CTXD_STORAGE_RESERVE_BYTES): invalid reserve", v)
	}
}

// "auto" is a quarter of the file system, at most 8 GiB; 2 GiB when the
// file system's size is unknown.
func TestDefaultQuota(t *testing.T) {
	assert.Equal(t, int64(2<<30), DefaultQuota(0))
	assert.Equal(t, int64(1<<30), DefaultQuota(4<<30))
	assert.Equal(t, int64(5<<30), DefaultQuota(20<<30))
	assert.Equal(t, int64(MaxDefaultQuota), DefaultQuota(1<<40))
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "1", want: 1},
		{in: " 42 ", want: 42},
		{in: "1KiB", want: 1024},
		{in: "2 MiB", want: 2 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "0", err: "must be > 0"},
		{in: "-3KiB", err: "must be > 0"},
		{in: "1.5MiB", err: "invalid size"},
		{in: "", err: "invalid size"},
		{in: "3GiB", err: "must be at most"},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in, 2<<30)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

// history.keep_versions defaults to DefaultKeepVersions on bolt and to 1
// on etcd, whose compaction keeps exactly the change in effect per key: a
// default configuration on etcd loads; a value given is kept on bolt.
func TestKeepVersionsDefaultByBackend(t *testing.T) {
	c, err := Load("", nil, nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultKeepVersions, c.History.KeepVersions)

	etcd := []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://127.0.0.1:2379"}
	c, err = Load("", etcd, nil)
	require.NoError(t, err, "the default configuration on etcd")
	assert.Equal(t, 1, c.History.KeepVersions)

	c, err = Load("", append(etcd, "CTXD_HISTORY_KEEP_VERSIONS=0"), nil)
	require.NoError(t, err)
	assert.Equal(t, 0, c.History.KeepVersions, "keep everything, given")

	c, err = Load("", []string{"CTXD_HISTORY_KEEP_VERSIONS=3"}, nil)
	require.NoError(t, err)
	assert.Equal(t, 3, c.History.KeepVersions)
}

// The etcd password never shows when a Config is printed, logged or
// encoded; the server gets it from Reveal.
func TestPasswordIsNeverPrinted(t *testing.T) {
	c := Defaults()
	c.Etcd.Username, c.Etcd.Password = "ctxd", "s3cret"
	var logged bytes.Buffer
	logger := zerolog.New(&logged)
	logger.Info().Interface("config", c).Msg("")
	enc, err := json.Marshal(c)
	require.NoError(t, err)
	y, err := yaml.Marshal(c)
	require.NoError(t, err)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", c), "%#v": fmt.Sprintf("%#v", c),
		"json": string(enc), "yaml": string(y), "zerolog": logged.String(),
	} {
		assert.NotContains(t, out, "s3cret", name)
		assert.Contains(t, out, "[redacted]", name)
	}
	assert.Equal(t, "s3cret", c.Etcd.Password.Reveal())
}

func TestUnknownEnv(t *testing.T) {
	environ := []string{
		"CTXD_LIMTS_MAX_TTL=1h",     // a letter short
		"CTXD_LIMITS_MAX_TTL=1h",    // a setting
		"CTXD_HTTP_RATELIMIT=5",     // an underscore short
		"CTXD_SERVER=http://x:8080", // the client's, given in others
		"CTXD_FROBNICATE=1",         // near nothing
		"CTXD_FROBNICATE=2",         // listed once
		"HOME=/root", "ctxd_addr=:1",
	}
	assert.Equal(t, []UnknownVar{
		{Name: "CTXD_FROBNICATE"},
		{Name: "CTXD_HTTP_RATELIMIT", Nearest: "CTXD_HTTP_RATE_LIMIT"},
		{Name: "CTXD_LIMTS_MAX_TTL", Nearest: "CTXD_LIMITS_MAX_TTL"},
	}, UnknownEnv(environ, "CTXD_SERVER"))
	assert.Empty(t, UnknownEnv([]string{"CTXD_ADDR=:1", "CTXD_ETCD_PASSWORD=x"}))
}

// Settings given that have no effect with the others, or that work
// against each other, are accepted with a warning each; values left at
// their defaults warn of nothing.
func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{name: "defaults", want: nil},
		{name: "defaults given", env: []string{"CTXD_HTTP_RATE_BURST=0", "CTXD_ETCD_PREFIX=/ctxd/", "CTXD_WEBSOCKET_MAX_LAG=10000"}},
		{name: "etcd settings on bolt", env: []string{"CTXD_ETCD_ENDPOINTS=http://e:2379"},
			want: []string{"etcd.endpoints ignored: store.backend is bolt (set store.backend: etcd to run on etcd)"}},
		{name: "bolt settings on etcd", env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://e:2379", "CTXD_STORE_READ_CACHE_BYTES=1MiB", "CTXD_WAL_COMMIT_INTERVAL=1s"},
			want: []string{"store.read_cache_bytes, wal.commit_interval ignored: they tune the bolt backend, and store.backend is etcd"}},
		{name: "a storage quota on etcd", env: []string{"CTXD_STORE_BACKEND=etcd", "CTXD_ETCD_ENDPOINTS=http://e:2379", "CTXD_STORAGE_QUOTA_BYTES=1GiB"},
			want: []string{"storage.quota_bytes ignored: store.backend is etcd, whose own quota (etcd's --quota-backend-bytes) applies"}},
		{name: "a burst without a rate", env: []string{"CTXD_HTTP_RATE_BURST=50", "CTXD_WEBSOCKET_RATE_LIMIT=0"},
			want: []string{"http.rate_burst ignored: http.rate_limit is 0 (off)"}},
		{name: "websocket limits without a rate", env: []string{"CTXD_WEBSOCKET_RATE_LIMIT=0", "CTXD_WEBSOCKET_RATE_BURST=5", "CTXD_WEBSOCKET_RATE_LIMIT_MAX_REFUSED=3"},
			want: []string{"websocket.rate_burst, websocket.rate_limit_max_refused ignored: websocket.rate_limit is 0 (off)"}},
		// Less room than a value and its fields: a transaction or a
		// context_set of a value that large is refused (PUT works).
		{name: "a body of exactly a value", env: []string{"CTXD_LIMITS_MAX_VALUE_BYTES=2MiB", "CTXD_WEBSOCKET_MAX_MESSAGE_BYTES=4MiB"},
			want: []string{"http.max_body_bytes (2097152) leaves less than 8192 bytes beside a value of limits.max_value_bytes (2097152): " +
				"a transaction (POST /v1/txn) or an import holding a value that large is refused (give it at least 2105344)"}},
		{name: "a message of exactly a value", env: []string{"CTXD_WEBSOCKET_MAX_MESSAGE_BYTES=1MiB"},
			want: []string{"websocket.max_message_bytes (1048576) leaves less than 8192 bytes beside a value of limits.max_value_bytes (1048576): " +
				"a context_set over /v1/watch or Socket.IO holding a value that large is refused (give it at least 1056768)"}},
		{name: "a lag beyond the revisions kept", env: []string{"CTXD_HISTORY_KEEP_REVISIONS=500"},
			want: []string{"websocket.max_lag (10000) is above history.keep_revisions (500): a client that far behind may find " +
				"its position compacted (it gets compacted, not lagged, and must read the state again)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("", tt.env, nil)
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.Warnings)
		})
	}
}

// An etcd endpoint with credentials in it is refused without echoing its
// password: the error goes to stderr and the logs. Before, it was quoted
// whole ("invalid endpoint \"https://root:s3cret@...\"").
func TestEtcdEndpointWithCredentialsIsNotEchoed(t *testing.T) {
	_, err := Load("", nil, map[string]string{"etcd.endpoints": "https://root:s3cret@etcd.example:2379"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
	assert.Contains(t, err.Error(), "invalid endpoint https://root:xxxxx@etcd.example:2379 (credentials in it: give etcd.username and etcd.password instead)")
}
