package perf

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The load generator's own costs, which it takes from the server's cores.
//
//	go test -run '^$' -bench . -benchmem ./perf/

// BenchmarkHTTPConnGet is one GET through the suite's HTTP/1.1 client,
// against a handler answering a 230-byte record, over loopback.
func BenchmarkHTTPConnGet(b *testing.B) {
	srv := httptest.NewServer(recordHandler())
	defer srv.Close()
	ep, err := parseEndpoint(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	c := newHTTPConn(ep)
	defer c.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.expect(http.StatusOK, http.MethodGet, "/v1/ns/default/keys/k", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNetHTTPGet is the same GET through net/http's client, for
// comparison.
func BenchmarkNetHTTPGet(b *testing.B) {
	srv := httptest.NewServer(recordHandler())
	defer srv.Close()
	hc := srv.Client()
	url := srv.URL + "/v1/ns/default/keys/k"
	b.ReportAllocs()
	for b.Loop() {
		resp, err := hc.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func recordHandler() http.Handler {
	body := []byte(`{"ns":"default","key":"k","value":{"v":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"version":1,"create_revision":1,"revision":1,"who":"api","updated_at":"2026-11-27T06:09:22.001222265Z"}`)
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// BenchmarkHistogramRecord is one latency recorded.
func BenchmarkHistogramRecord(b *testing.B) {
	h := newHistogram()
	d := 1234 * time.Microsecond
	for b.Loop() {
		h.record(d)
	}
}
