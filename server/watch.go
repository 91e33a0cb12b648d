package server

import (
	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/auth"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/realtime/socketio"
)

// realtimeOptions maps the websocket.* settings to the hub's options.
// budget is the snapshot budget both doors share, socketIOSessions counts
// the other door's clients for max_clients.
func realtimeOptions(c configs.WebSocket, access *auth.Authorizer, budget *snapbudget.Budget, socketIOSessions func() int) realtime.Options {
	return realtime.Options{
		SnapshotBudget:   budget,
		OtherClients:     socketIOSessions,
		Access:           access,
		PingInterval:     c.PingInterval,
		WriteTimeout:     c.WriteTimeout,
		MaxMessageBytes:  c.MaxMessageBytes,
		MaxSnapshotBytes: int(c.MaxSnapshotBytes),
		AllowedOrigins:   c.AllowedOrigins,
		MaxClients:       c.MaxClients,
		MaxLag:           c.MaxLag,
		LagGrace:         c.LagGrace,
		BatchInterval:    c.BatchInterval,
		RateLimit:        c.RateLimit,
		RateBurst:        c.RateBurst,
		MaxRefused:       c.RateLimitMaxRefused,
	}
}

// socketioOptions maps the websocket.* settings to the Socket.IO door's:
// the same origins, limits, lag (and its grace) and rate limit; Engine.IO's pings at
// ping_interval. A client that names no namespace gets compatNS
// (compat.namespace), as /ctx does: Framework0's two APIs share one context.
func socketioOptions(c configs.WebSocket, compatNS string, hub *realtime.Hub, access *auth.Authorizer, budget *snapbudget.Budget) socketio.Options {
	return socketio.Options{
		SnapshotBudget:   budget,
		PingInterval:     c.PingInterval,
		PingTimeout:      c.PingInterval,
		MaxPayload:       2 * c.MaxMessageBytes, // as /v1/watch: over twice the limit closes the connection
		MaxMessageBytes:  c.MaxMessageBytes,
		WindowBytes:      int(2 * c.MaxMessageBytes), // the changes a client has not read: the largest one fits twice
		MaxSnapshotBytes: int(c.MaxSnapshotBytes),
		WriteTimeout:     c.WriteTimeout,
		MaxLag:           c.MaxLag,
		LagGrace:         c.LagGrace,
		MaxClients:       c.MaxClients,
		OriginAllowed:    hub.OriginAllowed,
		OtherClients:     hub.Clients,
		Access:           access,
		RateLimit:        c.RateLimit,
		RateBurst:        c.RateBurst,
		MaxRefused:       c.RateLimitMaxRefused,
		Namespace:        compatNS,
	}
}

// notifyDumped is httpapi's OnDump hook: every dump file written tells the
// WebSocket and Socket.IO clients ("context_dumped"). Streamed exports (no
// file) do not.
func notifyDumped(hub *realtime.Hub, sio *socketio.Server) func(ctxd.DumpInfo) {
	return func(d ctxd.DumpInfo) {
		if d.Filename == "" {
			return
		}
		info := realtime.DumpInfo{
			Filename: d.Filename, Format: d.Format, Path: d.Path, Namespace: d.Namespace,
			Revision: d.Revision, KeyCount: d.KeyCount, IncludeHistory: d.IncludeHistory,
			FileSize: d.FileSize, Who: d.Who, Timestamp: d.Timestamp,
		}
		hub.NotifyDumped(info)
		sio.NotifyDumped(d.Namespace, info)
	}
}
