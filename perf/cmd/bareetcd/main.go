// Command bareetcd is the floor that ctxd's etcd backend is measured
// against over HTTP: a bare net/http handler in front of etcd's Go client.
// A PUT of /v1/ns/{ns}/keys/{key} is one etcd put of the body, answered
// with its revision once etcd has committed it; a GET is one linearizable
// etcd range read, answered with the value. It has no router beyond the
// standard mux, no middleware, no log, no envelope, no watch and no cache:
// what it costs next to etcd's own client is what any HTTP server in front
// of etcd costs on the same machine. perf/etcdab.sh runs it beside ctxd on
// etcd.
//
//	ctxd-etcd-peer --data /tmp/etcd --serve          # prints etcd's client URL, E
//	bareetcd -addr 127.0.0.1:8092 -endpoints E
//	ctxd perf --target http://127.0.0.1:8092 --compare etcd --etcd-endpoints E peers
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8092", "address to listen on")
	endpoints := flag.String("endpoints", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
	prefix := flag.String("prefix", "/bareetcd/", "etcd key prefix")
	flag.Parse()

	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/ns/{ns}/keys/{key}", func(w http.ResponseWriter, r *http.Request) {
		value, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		res, err := cli.Put(ctx, *prefix+r.PathValue("ns")+"/"+r.PathValue("key"), string(value))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, strconv.AppendInt([]byte(`{"revision":`), res.Header.Revision, 10), "}")
	})
	mux.HandleFunc("GET /v1/ns/{ns}/keys/{key}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		res, err := cli.Get(ctx, *prefix+r.PathValue("ns")+"/"+r.PathValue("key"))
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		case len(res.Kvs) == 0:
			http.Error(w, `{"error":{"code":"not_found"}}`, http.StatusNotFound)
		default:
			writeJSON(w, append([]byte(`{"value":`), res.Kvs[0].Value...), "}")
		}
	})
	// ctxd perf fills the keys its reads read with ctxd's import
	// ({"context":{key:value,...}}) and transactions of puts
	// ({"ops":[{"op":"put","ns","key","value"},...]}): here etcd
	// transactions of up to 100 puts.
	putAll := func(w http.ResponseWriter, r *http.Request, ops []clientv3.Op) {
		for len(ops) > 0 {
			n := min(len(ops), 100)
			if _, err := cli.Txn(r.Context()).Then(ops[:n]...).Commit(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			ops = ops[n:]
		}
		writeJSON(w, []byte(`{"ok":true`), "}")
	}
	mux.HandleFunc("POST /v1/ns/{ns}/import", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Context map[string]json.RawMessage `json:"context"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ops []clientv3.Op
		for key, value := range body.Context {
			ops = append(ops, clientv3.OpPut(*prefix+r.PathValue("ns")+"/"+key, string(value)))
		}
		putAll(w, r, ops)
	})
	mux.HandleFunc("POST /v1/txn", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Ops []struct {
				Op, NS, Key string
				Value       json.RawMessage
			}
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ops []clientv3.Op
		for _, op := range body.Ops {
			if op.Op != "put" {
				http.Error(w, "only puts", http.StatusBadRequest)
				return
			}
			ops = append(ops, clientv3.OpPut(*prefix+op.NS+"/"+op.Key, string(op.Value)))
		}
		putAll(w, r, ops)
	})
	// ctxd perf --target reads the server's version first.
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, []byte(`{"version":"bareetcd"`), "}")
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Fatal(srv.ListenAndServe())
}

func writeJSON(w http.ResponseWriter, body []byte, tail string) {
	body = append(body, tail...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
