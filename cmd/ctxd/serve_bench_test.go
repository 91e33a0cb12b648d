package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/server"
)

// benchKeys is how many keys BenchmarkServeGet reads, in turn: enough that
// the namespace's bucket is not inlined in its parent, as in a real store.
const benchKeys = 1000

// BenchmarkServeGet is a GET of a key (a 256-byte value) through the
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
			log, logw := newLogger(logFile, cfg.Log)
			defer func() {
				require.NoError(b, logw.Close())
				b.ReportMetric(float64(logw.Dropped()), "dropped-lines")
			}()
			srv, err := server.New(cfg, log)
			require.NoError(b, err)
			defer srv.Close()
			h := srv.Handler()

			value := `{"v":"` + strings.Repeat("x", 248) + `"}`
			reqs := make([]*http.Request, benchKeys)
			for k := 0; k < benchKeys; k += 128 { // transactions of 128 puts (limits.max_txn_ops)
				var ops []string
				for j := k; j < k+128 && j < benchKeys; j++ {
					ops = append(ops, `{"op":"put","key":"k`+strconv.Itoa(j)+`","value":`+value+`}`)
					reqs[j] = httptest.NewRequest(http.MethodGet, "/v1/ns/default/keys/k"+strconv.Itoa(j), nil)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/txn", strings.NewReader(`{"ops":[`+strings.Join(ops, ",")+`]}`)))
				require.Equal(b, http.StatusOK, w.Code, w.Body.String())
			}

			b.ReportAllocs()
			b.ResetTimer()
			defer testkit.CPUPerOp(b)()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(benchKeys / 7)) // each goroutine reads the keys from its own place
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, reqs[i%benchKeys])
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
					i++
				}
			})
		})
	}
}
