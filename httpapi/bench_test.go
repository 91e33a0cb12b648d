package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/framework0/ctxd/httpapi"
	"github.com/framework0/ctxd/internal/testkit"
	"github.com/framework0/ctxd/store/bolt"
)

// benchServer is a handler over a real store, called directly (no network),
// so the numbers are httpapi's own cost plus the store's.
func benchServer(b *testing.B) (http.Handler, *bolt.Store) {
	b.Helper()
	st := testkit.OpenBolt(b, bolt.Options{}).Store
	return httpapi.New(st, httpapi.Config{}, zerolog.New(io.Discard)).Handler(), st
}

func BenchmarkGetKey(b *testing.B) {
	h, st := benchServer(b)
	_, err := st.Put(bg, "default", "app/config", json.RawMessage(`{"debug":true,"level":3,"name":"service"}`), nil, "bench")
	require.NoError(b, err)
	b.ReportAllocs()
	defer testkit.CPUPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "/v1/ns/default/keys/app%2Fconfig", nil)
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

func BenchmarkListKeys(b *testing.B) {
	h, st := benchServer(b)
	for i := range 100 {
		_, err := st.Put(bg, "default", "k"+strconv.Itoa(i), json.RawMessage(`{"i":`+strconv.Itoa(i)+`}`), nil, "bench")
		require.NoError(b, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/ns/default/keys?limit=100", nil))
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func BenchmarkPutKey(b *testing.B) {
	h, _ := benchServer(b)
	body := `{"debug":true,"level":3,"name":"service"}`
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/v1/ns/default/keys/app%2Fconfig", strings.NewReader(body)))
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkPatchKey is 64 concurrent PATCHes of one key, each setting its
// own member of a 64-member document (merge patch, JSON Patch).
func BenchmarkPatchKey(b *testing.B) {
	members := make([]string, 64)
	for i := range members {
		members[i] = `"f` + strconv.Itoa(i) + `":"` + strings.Repeat("v", 32) + `"`
	}
	for _, c := range []struct{ name, contentType, format string }{
		{"merge", "application/merge-patch+json", `{"f%d":%d}`},
		{"json", "application/json-patch+json", `[{"op":"replace","path":"/f%d","value":%d}]`},
	} {
		b.Run(c.name, func(b *testing.B) {
			h, st := benchServer(b)
			_, err := st.Put(bg, "default", "doc", json.RawMessage("{"+strings.Join(members, ",")+"}"), nil, "bench")
			require.NoError(b, err)
			var workers atomic.Int64
			b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := workers.Add(1) % 64
				for n := 0; pb.Next(); n++ {
					req := httptest.NewRequest(http.MethodPatch, "/v1/ns/default/keys/doc", strings.NewReader(fmt.Sprintf(c.format, w, n)))
					req.Header.Set("Content-Type", c.contentType)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Errorf("status %d: %s", rec.Code, rec.Body)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "patches/s")
		})
	}
}

// BenchmarkListLargeValues lists a page of 100 keys whose values are 64 KiB
// each, with values (6.4 MiB of JSON to read, copy and send) and without
// (values=false: the keys, versions and revisions only).
func BenchmarkListLargeValues(b *testing.B) {
	h, st := benchServer(b)
	value := json.RawMessage(`"` + strings.Repeat("x", 64<<10-2) + `"`)
	for i := range 100 {
		_, err := st.Put(bg, "default", "big/"+strconv.Itoa(1000+i), value, nil, "bench")
		require.NoError(b, err)
	}
	for _, values := range []string{"true", "false"} {
		b.Run("values="+values, func(b *testing.B) {
			b.ReportAllocs()
			var bytes int
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/ns/default/keys?limit=100&values="+values, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				bytes = w.Body.Len()
			}
			b.ReportMetric(float64(bytes), "bytes/answer")
		})
	}
}
