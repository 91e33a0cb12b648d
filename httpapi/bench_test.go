package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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
