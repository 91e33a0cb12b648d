package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/store"
)

// namespacesResponse is the body of GET /v1/ns.
type namespacesResponse struct {
	Namespaces []ctxd.Namespace `json:"namespaces"`
}

var (
	bodyHealthy = []byte(`{"status":"ok"}`)
	bodyReady   = []byte(`{"status":"ready"}`)
)

// status serves GET /v1/status.
func (s *Server) status(c echo.Context) error {
	st, err := s.st.Status()
	if err != nil {
		return err
	}
	if !tokenOf(c).Unlimited() {
		// The keys and namespaces a limited token may read, as GET /v1/ns
		// lists them: the others' counts are not its to see.
		nss, err := s.st.Namespaces()
		if err != nil {
			return err
		}
		if nss, err = s.visibleNamespaces(c, nss); err != nil {
			return err
		}
		st.Keys, st.Namespaces = 0, len(nss)
		for _, n := range nss {
			st.Keys += n.Keys
		}
		// The read cache counts every key of the prefix (etcd) or every
		// key read (bolt): not a limited token's to see.
		st.ReadCache = nil
	}
	alarm, alarmMessage := ctxd.AlarmNone, ""
	if st.QuotaAlarm != "" {
		// Reads still work, so /readyz stays ready: the status says why
		// writes are refused.
		alarm, alarmMessage = ctxd.AlarmInsufficientStorage, st.QuotaAlarm
	}
	if err := s.st.Ready(); errors.Is(err, store.ErrFailed) {
		// Before the quota's: no write at all is taken, until a restart.
		// A failed store still answers its status, which without this
		// said nothing of it.
		alarm, alarmMessage = ctxd.AlarmStoreFailed, err.Error()
	}
	return sendJSON(c, http.StatusOK, ctxd.ServerStatus{
		Version:           s.cfg.Version,
		Revision:          st.Revision,
		CompactedRevision: st.CompactedRevision,
		Keys:              st.Keys,
		Namespaces:        st.Namespaces,
		DBSizeBytes:       st.DBSizeBytes,
		FileSizeBytes:     st.FileSizeBytes,
		InUseBytes:        st.InUseBytes,
		FreePages:         st.FreePages,
		SchemaVersion:     st.SchemaVersion,
		QuotaBytes:        st.QuotaBytes,
		UsedBytes:         st.UsedBytes,
		Alarm:             alarm,
		AlarmMessage:      alarmMessage,
		Clients:           s.clients(),
		UptimeSeconds:     int64(time.Since(s.started) / time.Second),
		StartedAt:         s.started.UTC().Truncate(time.Second),
		ReadCache:         st.ReadCache,
		LastRestore:       st.LastRestore,
	})
}

// clients is the number of connected WebSocket clients (0 without a hub).
func (s *Server) clients() int {
	if s.cfg.Clients == nil {
		return 0
	}
	return s.cfg.Clients()
}

// namespaces serves GET /v1/ns.
func (s *Server) namespaces(c echo.Context) error {
	nss, err := s.st.Namespaces()
	if err != nil {
		return err
	}
	if nss, err = s.visibleNamespaces(c, nss); err != nil { // access.go: those the token may read
		return err
	}
	if nss == nil {
		nss = []ctxd.Namespace{}
	}
	return sendJSON(c, http.StatusOK, namespacesResponse{Namespaces: nss})
}

// healthz serves GET /healthz: the process is up. It does not touch the store.
func (s *Server) healthz(c echo.Context) error {
	return writeJSON(c, http.StatusOK, bodyHealthy)
}

// readyz serves GET /readyz: 200 while the store is ready (Ready), 503
// otherwise (closed, failed, unreachable, or replacing its database with
// a restore), and 503 while the server drains before it stops (Drain).
func (s *Server) readyz(c echo.Context) error {
	err := s.notReady()
	s.readiness.note(s.log, err)
	if err != nil && s.cfg.Access != nil {
		// /readyz answers without a token: with access control on, why
		// (a failed disk's error, with the data folder's paths) is for
		// the log and /v1/status, which need one.
		err = errNotReadyWhy
	}
	if err != nil {
		return &notReadyError{err: err}
	}
	return writeJSON(c, http.StatusOK, bodyReady)
}

// errNotReadyWhy stands for why the server is not ready in /readyz's
// answer when access control is on.
var errNotReadyWhy = errors.New("why is in the server's log, and in /v1/status (alarm_message) for a token that may read it")

// notReady is why the server is not ready, nil when it is: the store's
// Ready alone. The full status is not readiness: on etcd it asks a member
// for its database size and counts the namespaces, and a probe that
// waited for it went 503 on every instance when one etcd member was down
// or the prefix held thousands of namespaces, while reads and writes
// were served. Ready covers what the status used to catch: a closed or
// failed store (bolt), an etcd that does not confirm a linearizable read.
func (s *Server) notReady() error {
	if s.draining.Load() {
		return errShuttingDown
	}
	return s.st.Ready()
}

// readinessLog logs /readyz's answer when it changes. A probe comes every
// few seconds: one line each, while the server is not ready, would bury
// the line that said why (a failed store's, say) under its copies. Every
// probe still has its access log line, at info.
type readinessLog struct {
	mu   sync.Mutex
	last string // why the last probe was not ready; "" when it was ready
}

// note logs why the server is not ready (a warning), or that it is ready
// again, unless the last probe found the same.
func (r *readinessLog) note(log zerolog.Logger, notReady error) {
	why := ""
	if notReady != nil {
		why = notReady.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if why == r.last {
		return
	}
	was := r.last
	r.last = why
	if why == "" {
		log.Info().Str("was", was).Msg("ready again")
		return
	}
	log.Warn().Str("reason", why).Msg("not ready")
}

// sendJSON encodes v with encoding/json, for the bodies that are not on a
// hot path.
func sendJSON(c echo.Context, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeJSON(c, status, b)
}
