// Command barehttp is the floor that ctxd's HTTP read path is measured
// against: a bare net/http handler answering GET /v1/ns/{ns}/keys/{key}
// with the JSON record ctxd would send, from a map in memory. It has no
// router, no middleware, no log and no store. perf/getab.sh runs it beside
// ctxd under the same load generator.
//
//	barehttp -addr 127.0.0.1:8091 -keys 1 -value-size 256
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8091", "address to listen on")
	keys := flag.Int("keys", 1, "keys k0..k<N-1> in namespace default")
	valueSize := flag.Int("value-size", 256, "bytes of each value (a JSON object)")
	flag.Parse()

	records := make(map[string][]byte, *keys)
	now := time.Now().UTC()
	for i := range *keys {
		key := "k" + strconv.Itoa(i)
		records["/v1/ns/default/keys/"+key] = record(key, *valueSize, now)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := records[r.URL.Path]
		if r.Method != http.MethodGet || !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	srv := &http.Server{Addr: *addr, Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.ListenAndServe())
}

// record is ctxd's answer to a GET: {"ns","key","value",...} with a value of
// size bytes, {"v":"xx..."}.
func record(key string, size int, t time.Time) []byte {
	pad := max(size-len(`{"v":""}`), 0)
	value := `{"v":"` + strings.Repeat("x", pad) + `"}`
	return fmt.Appendf(nil, `{"ns":"default","key":%q,"value":%s,"version":1,"create_revision":1,"revision":1,"who":"api","updated_at":%q}`,
		key, value, t.Format(time.RFC3339Nano))
}
