package server

import (
	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/configs"
	"github.com/framework0/ctxd/realtime"
)

// realtimeOptions maps the websocket.* settings to the hub's options.
func realtimeOptions(c configs.WebSocket) realtime.Options {
	return realtime.Options{
		PingInterval:    c.PingInterval,
		WriteTimeout:    c.WriteTimeout,
		MaxMessageBytes: c.MaxMessageBytes,
		AllowedOrigins:  c.AllowedOrigins,
		MaxClients:      c.MaxClients,
		MaxLag:          c.MaxLag,
	}
}

// notifyDumped is httpapi's OnDump hook: every dump file written tells the
// WebSocket clients ("context_dumped"). Streamed exports (no file) do not.
func notifyDumped(hub *realtime.Hub) func(ctxd.DumpInfo) {
	return func(d ctxd.DumpInfo) {
		if d.Filename == "" {
			return
		}
		hub.NotifyDumped(realtime.DumpInfo{
			Filename: d.Filename, Format: d.Format, Path: d.Path, Namespace: d.Namespace,
			Revision: d.Revision, KeyCount: d.KeyCount, IncludeHistory: d.IncludeHistory,
			FileSize: d.FileSize, Who: d.Who, Timestamp: d.Timestamp,
		})
	}
}
