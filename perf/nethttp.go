package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// The nethttp peer: a bare Go net/http handler (http.ServeMux) over an
// in-memory map, with ctxd's REST paths for put and get. It keeps nothing
// on disk and checks nothing: what it costs is what any Go HTTP key-value
// server pays (parsing, routing, answering over loopback), the floor
// ctxd's reads are measured against. It runs in the suite's process, as
// ctxd does when the suite starts it, and is loaded by the same client.

// bareStore is the handler's data: a map per namespace.
type bareStore struct {
	mu  sync.RWMutex
	ns  map[string]map[string][]byte
	rev uint64
	// durable, when set, makes each put durable before it is applied
	// (the walhttp peer).
	durable *durableLog
}

// newBareStore returns a store holding readKeys keys of value in
// perf-read.
func newBareStore(readKeys int, value []byte) *bareStore {
	st := &bareStore{ns: map[string]map[string][]byte{}}
	for i := range readKeys {
		st.put(nsRead, readKey(i), append([]byte(nil), value...))
	}
	return st
}

func (b *bareStore) put(ns, key string, value []byte) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.ns[ns]
	if m == nil {
		m = map[string][]byte{}
		b.ns[ns] = m
	}
	m[key] = value
	b.rev++
	return b.rev
}

// revision is the number of puts applied.
func (b *bareStore) revision() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.rev
}

func (b *bareStore) get(ns, key string) ([]byte, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	v, ok := b.ns[ns][key]
	return v, ok
}

// forget drops a namespace: the new keys of earlier put runs, so that
// the suite's process does not hold every value ever written.
func (b *bareStore) forget(ns string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.ns, ns)
}

// handler answers PUT and GET /v1/ns/{ns}/keys/{key} with small JSON
// bodies shaped like ctxd's.
func (b *bareStore) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/ns/{ns}/keys/{key}", func(w http.ResponseWriter, r *http.Request) {
		value, err := io.ReadAll(io.LimitReader(r.Body, 2<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ns, key := r.PathValue("ns"), r.PathValue("key")
		var rev uint64
		if b.durable != nil {
			if rev, err = b.durable.put(ns, key, value); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		} else {
			rev = b.put(ns, key, value)
		}
		out := make([]byte, 0, 64+len(ns)+len(key))
		out = append(append(append(out, `{"ns":`...), strconv.Quote(ns)...), `,"key":`...)
		out = append(append(append(out, strconv.Quote(key)...), `,"revision":`...), strconv.FormatUint(rev, 10)...)
		writeJSON(w, append(out, '}'))
	})
	mux.HandleFunc("GET /v1/ns/{ns}/keys/{key}", func(w http.ResponseWriter, r *http.Request) {
		ns, key := r.PathValue("ns"), r.PathValue("key")
		value, ok := b.get(ns, key)
		if !ok {
			http.Error(w, `{"error":{"code":"not_found"}}`, http.StatusNotFound)
			return
		}
		out := make([]byte, 0, 64+len(ns)+len(key)+len(value))
		out = append(append(append(out, `{"ns":`...), strconv.Quote(ns)...), `,"key":`...)
		out = append(append(append(out, strconv.Quote(key)...), `,"value":`...), value...)
		writeJSON(w, append(out, '}'))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// barePeer is the nethttp peer: the handler on a loopback port.
type barePeer struct {
	httpPeer
	store *bareStore
}

// startBarePeer starts the handler with readKeys keys of value in perf-read.
func startBarePeer(readKeys int, value []byte) (*barePeer, error) {
	return serveBare(newBareStore(readKeys, value), PeerInfo{
		Name:    PeerNetHTTP,
		About:   "a bare Go net/http handler (http.ServeMux) over an in-memory map, not durable: the HTTP floor",
		Version: runtime.Version(), Process: "in-process", Client: httpClientAbout,
	}, nil)
}

// serveBare serves st's handler on a loopback port, as the peer about
// describes (its URL set here); release runs after the server stopped.
func serveBare(st *bareStore, about PeerInfo, release func() error) (*barePeer, error) {
	if release == nil {
		release = func() error { return nil }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen: %w", err), release())
	}
	srv := &http.Server{Handler: st.handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	about.URL = "http://" + ln.Addr().String()
	ep, err := parseEndpoint(about.URL)
	if err != nil {
		return nil, errors.Join(err, srv.Close(), release())
	}
	p := &barePeer{store: st}
	p.httpPeer = httpPeer{ep: ep, about: about}
	p.stop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return errors.Join(err, release())
	}
	return p, nil
}

// run measures r, then drops what its puts wrote: the values are garbage
// before the next server's run, not live data its collections must mark.
func (p *barePeer) run(ctx context.Context, r PeerRun) (Measurement, error) {
	defer p.store.forget(nsWrite)
	return p.httpPeer.run(ctx, r)
}
