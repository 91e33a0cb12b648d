package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/server"
)

// BenchmarkServeGet is a GET of one key (a 256-byte value) through the
// handler `ctxd serve` builds: server.New with the default configuration and
// serve's logger writing to a file, as a service's stderr would, the access
// log on (log=info, the default) or off (log=warn). The handler is called
// directly, without the network: perf/getab.sh measures it over loopback
// against a bare net/http handler.
//
//	go test -run '^$' -bench ServeGet -benchmem ./cmd/ctxd/
func BenchmarkServeGet(b *testing.B) {
	for _, level := range []string{"info", "warn"} {
		b.Run("log="+level, func(b *testing.B) {
			dir := b.TempDir()
			cfg, err := configs.Load("", nil, map[string]string{"data_dir": filepath.Join(dir, "data"), "log.level": level})
			require.NoError(b, err)
			logFile, err := os.Create(filepath.Join(dir, "server.log"))
			require.NoError(b, err)
			defer logFile.Close()
			srv, err := server.New(cfg, newLogger(logFile, cfg.Log))
			require.NoError(b, err)
			defer srv.Close()
			h := srv.Handler()

			value := `{"v":"` + strings.Repeat("x", 248) + `"}`
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/v1/ns/default/keys/k0", strings.NewReader(value)))
			require.Equal(b, http.StatusOK, w.Code, w.Body.String())

			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodGet, "/v1/ns/default/keys/k0", nil)
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
