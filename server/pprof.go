package server

import (
	"net/http"
	"net/http/pprof"
)

// pprofHandler serves Go's profiles of the running server (http.pprof):
// the index at /debug/pprof/, a CPU profile at /debug/pprof/profile?seconds=N,
// an execution trace, and every named profile (heap, goroutine, mutex,
// block, allocs) by name. The access middleware gives its routes no rule,
// so with access control on only admins reach them: a profile shows what
// the server does, and a CPU profile or trace costs it CPU while it runs.
//
// net/http/pprof also registers these handlers on http.DefaultServeMux
// when imported; ctxd never serves that mux, so they are reachable only
// here. The package costs the binary about 440 KB (profile encoding and
// the execution tracer), measured with make build's flags.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
