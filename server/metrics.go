package server

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/framework0/ctxd"
	"github.com/framework0/ctxd/internal/snapbudget"
	"github.com/framework0/ctxd/realtime"
	"github.com/framework0/ctxd/realtime/socketio"
	"github.com/framework0/ctxd/store"
	"github.com/framework0/ctxd/store/snapshots"
)

// metrics is the server's Prometheus registry, served at /metrics: every
// metric name starts with ctxd_ (plus the standard go_ and process_ ones).
type metrics struct {
	reg *prometheus.Registry

	commitSize     prometheus.Histogram
	commitDuration prometheus.Histogram
	snapshots      *prometheus.CounterVec
	snapshotTime   prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		commitSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ctxd_store_writes_per_commit",
			Help:    "Requests grouped into one durable commit by the writer (bolt: one write-ahead log append and fdatasync; etcd: one transaction).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ctxd_store_commit_duration_seconds",
			Help:    "Duration of one commit of the writer (bolt: its group's append to the write-ahead log and the fdatasync, from the group's start to its answers; etcd: the transaction's round trip).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ctxd_snapshots_total",
			Help: "Snapshots taken, by result (ok or error).",
		}, []string{"result"}),
		snapshotTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ctxd_snapshot_duration_seconds",
			Help:    "Time to write and verify a snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commitSize, m.commitDuration, m.snapshots, m.snapshotTime)
	return m
}

// onCommit is the store's commit hook.
func (m *metrics) onCommit(c store.CommitInfo) {
	m.commitSize.Observe(float64(c.Requests))
	m.commitDuration.Observe(c.Duration.Seconds())
}

// onSnapshot is the snapshot manager's creation hook.
func (m *metrics) onSnapshot(_ ctxd.SnapshotMeta, took time.Duration, err error) {
	if err != nil {
		m.snapshots.WithLabelValues("error").Inc()
		return
	}
	m.snapshots.WithLabelValues("ok").Inc()
	m.snapshotTime.Observe(took.Seconds())
}

// registerLogDropped adds the count of log lines the logger dropped.
func (m *metrics) registerLogDropped(dropped func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ctxd_log_dropped_lines_total",
		Help: "Log lines dropped because the log's output (stderr) did not keep up.",
	}, func() float64 { return float64(dropped()) }))
}

// registerStore adds the collector that reads the store and its snapshots
// at each scrape.
func (m *metrics) registerStore(st store.Backend, snaps *snapshots.Manager) {
	m.reg.MustRegister(&storeCollector{st: st, snaps: snaps})
}

// registerHub adds the collector that reads the /v1/watch hub and the
// Socket.IO door at each scrape.
func (m *metrics) registerHub(hub *realtime.Hub, sio *socketio.Server, snapshots *snapbudget.Budget) {
	m.reg.MustRegister(hubCollector{stats: hub.Stats, sio: sio, snapshots: snapshots})
}

// storeCollector reads the store's status and counters once per scrape.
type storeCollector struct {
	st    store.Backend
	snaps *snapshots.Manager
}

var (
	descUp         = prometheus.NewDesc("ctxd_store_up", "1 while the store answers its status and is ready (a restore in progress counts as ready); 0 while it is not: it failed (a full or failing data disk: until a restart), etcd does not answer, a restore swaps the database. While it does not answer its status, the store's other gauges are absent from the scrape.", nil, nil)
	descRevision   = prometheus.NewDesc("ctxd_store_revision", "Current revision.", nil, nil)
	descCompacted  = prometheus.NewDesc("ctxd_store_compacted_revision", "History below this revision is compacted.", nil, nil)
	descKeys       = prometheus.NewDesc("ctxd_store_keys", "Live keys, all namespaces.", nil, nil)
	descNamespaces = prometheus.NewDesc("ctxd_store_namespaces", "Namespaces.", nil, nil)
	descFileSize   = prometheus.NewDesc("ctxd_store_file_size_bytes", "Size of the database file.", nil, nil)
	descInUse      = prometheus.NewDesc("ctxd_store_in_use_bytes", "Bytes of the database file holding data.", nil, nil)
	descFreePages  = prometheus.NewDesc("ctxd_store_free_pages", "Free pages in the database file (a defrag gives them back).", nil, nil)
	descCommits    = prometheus.NewDesc("ctxd_store_commits_total", "Durable commits of the writer (bolt: write-ahead log appends, one fdatasync each; etcd: transactions that committed).", nil, nil)
	descWrites     = prometheus.NewDesc("ctxd_store_writes_total", "Write requests (and keepalives) the writer committed or refused.", nil, nil)
	descChanges    = prometheus.NewDesc("ctxd_store_changes_total", "Changes written (bolt: one revision each; etcd: the changes of one transaction share its revision).", nil, nil)
	descDiskWrite  = prometheus.NewDesc("ctxd_store_fsync_write_seconds_total", "Time bbolt spent writing and fsyncing pages: the committer's applies, off the acknowledgement path.", nil, nil)
	descPatchRetry = prometheus.NewDesc("ctxd_store_patch_retries_total", "etcd only: patches applied again because another write changed their key between their read and their commit (writers racing on the same keys, through other instances: an instance's own patches of one key take turns).", nil, nil)
	descApplies    = prometheus.NewDesc("ctxd_store_applies_total", "Transactions in which acknowledged writes were applied to the database file.", nil, nil)
	descApplied    = prometheus.NewDesc("ctxd_store_applied_changes_total", "Changes applied to the database file after their acknowledgement.", nil, nil)
	descApplyTime  = prometheus.NewDesc("ctxd_store_apply_seconds_total", "Time spent applying acknowledged writes to the database file, fsyncs included.", nil, nil)
	descPageWrite  = prometheus.NewDesc("ctxd_store_page_writes_total", "Pages bbolt wrote to the database file (applies and maintenance).", nil, nil)
	descPending    = prometheus.NewDesc("ctxd_store_pending_changes", "Acknowledged changes (durable in the write-ahead log) not yet applied to the database file.", nil, nil)
	descCompactRun = prometheus.NewDesc("ctxd_compactions_total", "History compactions run.", nil, nil)
	descCompacted2 = prometheus.NewDesc("ctxd_compaction_removed_changes_total", "Changes removed from history by compaction.", nil, nil)
	descExamined   = prometheus.NewDesc("ctxd_compaction_examined_changes_total", "Log entries compactions examined (each run examines what was written since the last one).", nil, nil)
	descDefrags    = prometheus.NewDesc("ctxd_defrags_total", "Online defragmentations.", nil, nil)
	descDefragWait = prometheus.NewDesc("ctxd_defrag_last_pause_seconds", "How long writes waited during the last defragmentation.", nil, nil)
	descSnapshots  = prometheus.NewDesc("ctxd_snapshots_stored", "Snapshots kept in the snapshots folder.", nil, nil)
	descQuota      = prometheus.NewDesc("ctxd_storage_quota_bytes", "The storage quota, storage.quota_bytes (0: none).", nil, nil)
	descUsed       = prometheus.NewDesc("ctxd_storage_used_bytes", "Bytes counted against the storage quota: the database file's bytes in use plus acknowledged writes not yet in it.", nil, nil)
	descExceeded   = prometheus.NewDesc("ctxd_storage_quota_exceeded", "1 since a write that adds data was refused for the storage quota (507 insufficient_storage), until the bytes in use fall back: smaller writes may still fit.", nil, nil)
	descRefused    = prometheus.NewDesc("ctxd_storage_quota_refused_writes_total", "Writes refused with 507 insufficient_storage by the storage quota.", nil, nil)

	// The etcd instance's read cache (absent on bolt).
	descCacheState    = prometheus.NewDesc("ctxd_read_cache_state", "1 for the read cache's state now (off, filling, ready, disabled), 0 for the others.", []string{"state"}, nil)
	descCacheKeys     = prometheus.NewDesc("ctxd_read_cache_keys", "Keys the read cache holds.", nil, nil)
	descCacheBytes    = prometheus.NewDesc("ctxd_read_cache_bytes", "Bytes the read cache counts (keys, values and a fixed overhead per entry).", nil, nil)
	descCacheMax      = prometheus.NewDesc("ctxd_read_cache_max_bytes", "The read cache's bound: etcd.read_cache_max_bytes, or store.read_cache_bytes on bolt.", nil, nil)
	descCacheFillKeys = prometheus.NewDesc("ctxd_read_cache_fill_keys", "Keys read so far by the read cache's fill in progress.", nil, nil)
	descCacheFills    = prometheus.NewDesc("ctxd_read_cache_fills_total", "Completed fills of the read cache.", nil, nil)
	descCacheFillTime = prometheus.NewDesc("ctxd_read_cache_last_fill_seconds", "How long the read cache's last completed fill took.", nil, nil)
	descCacheHits     = prometheus.NewDesc("ctxd_read_cache_hits_total", "Reads served by the read cache.", nil, nil)
	descCacheConfirms = prometheus.NewDesc("ctxd_read_cache_confirmations_total", "etcd only: requests that confirmed etcd's current revision before cached reads; one serves every read waiting when it is sent.", nil, nil)
	descCacheFallback = prometheus.NewDesc("ctxd_read_cache_fallbacks_total", "Reads the read cache did not serve: on etcd, reads that went to etcd because it was not ready or not caught up within a second; on bolt, GETs that missed it and read the database.", nil, nil)
)

// storeUp is whether the store's readiness, ready (Backend.Ready), makes
// ctxd_store_up 1. A failed store still answers its status, so the status
// alone kept the gauge at 1 while every write was refused until a
// restart. A restore in progress is not ready either, but it is routine
// and passes by itself: an alert on the gauge must not fire for it.
func storeUp(ready error) bool {
	return ready == nil || errors.Is(ready, store.ErrRestoring)
}

// readCacheStates are the values of ctxd_read_cache_state's label.
var readCacheStates = []string{ctxd.ReadCacheOff, ctxd.ReadCacheFilling, ctxd.ReadCacheReady, ctxd.ReadCacheDisabled}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, descUp, descRevision, descCompacted, descKeys, descNamespaces, descFileSize, descInUse,
		descFreePages, descCommits, descWrites, descChanges, descPatchRetry, descDiskWrite, descApplies, descApplied, descApplyTime,
		descPageWrite, descPending, descCompactRun, descCompacted2, descExamined, descDefrags, descDefragWait, descSnapshots,
		descQuota, descUsed, descExceeded, descRefused, descCacheState, descCacheKeys, descCacheBytes, descCacheMax,
		descCacheFillKeys, descCacheFills, descCacheFillTime, descCacheHits, descCacheFallback, descCacheConfirms)
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge, counter := senders(ch)
	st, err := c.st.Status()
	up := 0.0
	if err == nil && storeUp(c.st.Ready()) {
		up = 1
	}
	gauge(descUp, up) // always: an alert on the others' absence is too easy to get wrong
	if err == nil {
		gauge(descRevision, float64(st.Revision))
		gauge(descCompacted, float64(st.CompactedRevision))
		gauge(descKeys, float64(st.Keys))
		gauge(descNamespaces, float64(st.Namespaces))
		gauge(descFileSize, float64(st.FileSizeBytes))
		gauge(descInUse, float64(st.InUseBytes))
		gauge(descFreePages, float64(st.FreePages))
		gauge(descQuota, float64(st.QuotaBytes))
		gauge(descUsed, float64(st.UsedBytes))
		exceeded := 0.0
		if st.QuotaAlarm != "" {
			exceeded = 1
		}
		gauge(descExceeded, exceeded)
		if rc := st.ReadCache; rc != nil {
			for _, state := range readCacheStates {
				v := 0.0
				if state == rc.State {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(descCacheState, prometheus.GaugeValue, v, state)
			}
			gauge(descCacheKeys, float64(rc.Keys))
			gauge(descCacheBytes, float64(rc.Bytes))
			gauge(descCacheMax, float64(rc.MaxBytes))
			gauge(descCacheFillKeys, float64(rc.FillKeys))
			counter(descCacheFills, float64(rc.Fills))
			gauge(descCacheFillTime, rc.LastFillSeconds)
			counter(descCacheHits, float64(rc.Hits))
			counter(descCacheFallback, float64(rc.Fallbacks))
			if rc.Confirmations != nil {
				counter(descCacheConfirms, float64(*rc.Confirmations))
			}
		}
	}
	ws := c.st.Stats()
	counter(descCommits, float64(ws.Commits))
	counter(descWrites, float64(ws.Requests))
	counter(descChanges, float64(ws.Changes))
	counter(descPatchRetry, float64(ws.PatchRetries))
	counter(descDiskWrite, ws.DiskWrite.Seconds())
	counter(descApplies, float64(ws.Applies))
	counter(descApplied, float64(ws.Applied))
	counter(descApplyTime, ws.Apply.Seconds())
	counter(descPageWrite, float64(ws.PageWrites))
	gauge(descPending, float64(ws.Pending))
	counter(descCompactRun, float64(ws.Compactions))
	counter(descCompacted2, float64(ws.Compacted))
	counter(descExamined, float64(ws.CompactExamined))
	counter(descDefrags, float64(ws.Defrags))
	gauge(descDefragWait, ws.LastDefragPause.Seconds())
	counter(descRefused, float64(ws.QuotaRefused))
	if n, err := c.snaps.Count(); err == nil {
		gauge(descSnapshots, float64(n))
	}
}

// hubCollector reads the /v1/watch hub's and the Socket.IO door's
// counters once per scrape: the ctxd_ws_* series carry a protocol label,
// "watch" or "socketio". The Socket.IO door has no equivalent of the
// hub's frames_dropped (it writes its own queue), exported for
// protocol="watch" only; /v1/watch's changes are the ring's frames,
// shared by its clients, so change_bytes (each Socket.IO client's own
// copies) is exported for protocol="socketio" only.
type hubCollector struct {
	stats     func() realtime.Stats
	sio       *socketio.Server
	snapshots *snapbudget.Budget // both doors'
}

// Values of the protocol label of the ctxd_ws_* series.
const (
	protocolWatch    = "watch"
	protocolSocketIO = "socketio"
)

var (
	wsLabels      = []string{"protocol"}
	descWSClients = prometheus.NewDesc("ctxd_ws_clients", "Connected realtime clients, by protocol (watch: /v1/watch, socketio: Socket.IO past CONNECT, either transport); a client the server closed (lagged, revoked, rate limited) is not counted, though its connection may last until it reads the close.", wsLabels, nil)
	descWSBehind  = prometheus.NewDesc("ctxd_ws_lagging_clients", "Realtime clients held back right now because their socket has not drained (their window of changes, by count or, for socketio, by bytes, is full), by protocol.", wsLabels, nil)
	descWSChanges = prometheus.NewDesc("ctxd_ws_change_bytes", "Bytes of changes queued for Socket.IO clients and not yet written to their sockets (each client's at most about twice websocket.max_message_bytes; /v1/watch's clients share the ring's frames).", wsLabels, nil)
	descWSStalled = prometheus.NewDesc("ctxd_ws_stalled_clients", "Realtime clients whose next message waits right now until the answers they have not read drain (more than 1 MiB, or too many, queued), by protocol.", wsLabels, nil)
	descWSAnswers = prometheus.NewDesc("ctxd_ws_answer_bytes", "Bytes of answers (and notices, snapshots; not changes) queued for realtime clients and not yet written to their sockets, by protocol.", wsLabels, nil)
	descWSLagged  = prometheus.NewDesc("ctxd_ws_lagged_clients_total", "Realtime clients disconnected with 'lagged' because they fell too far behind, by protocol.", wsLabels, nil)
	descWSFrames  = prometheus.NewDesc("ctxd_ws_events_sent_total", "Frames written to realtime clients, by protocol (socketio: Engine.IO packets, pings included).", wsLabels, nil)
	descWSDropped = prometheus.NewDesc("ctxd_ws_frames_dropped_total", "Frames the WebSocket library dropped for /v1/watch clients (always 0 unless there is a bug).", wsLabels, nil)
	descWSLimited = prometheus.NewDesc("ctxd_ws_rate_limited_messages_total", "Client messages refused with 'rate_limited' (not applied) because the client sent more than websocket.rate_limit, by protocol (socketio: Socket.IO packets).", wsLabels, nil)
	descWSFlooded = prometheus.NewDesc("ctxd_ws_rate_limited_clients_total", "Realtime clients disconnected (1008, rate_limited) for sending past their rate limit, by protocol.", wsLabels, nil)
	descWSRevoked = prometheus.NewDesc("ctxd_ws_revoked_clients_total", "Realtime clients disconnected (1008, token_revoked) because a reload of the tokens file revoked their token, by protocol.", wsLabels, nil)

	descSnapshotHeld    = prometheus.NewDesc("ctxd_ws_snapshot_bytes", "Bytes the snapshots of both feeds hold now, from when one is built until it is written to its client (at most websocket.snapshot_memory_bytes).", nil, nil)
	descSnapshotWaiting = prometheus.NewDesc("ctxd_ws_snapshots_waiting", "Clients whose snapshot waits now for room under websocket.snapshot_memory_bytes.", nil, nil)
	descSnapshotWaits   = prometheus.NewDesc("ctxd_ws_snapshot_waits_total", "Snapshots that had to wait for room under websocket.snapshot_memory_bytes.", nil, nil)
)

func (c hubCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, descWSClients, descWSBehind, descWSChanges, descWSStalled, descWSAnswers, descWSLagged, descWSFrames, descWSDropped, descWSLimited, descWSFlooded, descWSRevoked,
		descSnapshotHeld, descSnapshotWaiting, descSnapshotWaits)
}

func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, protocol string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, protocol)
	}
	st := c.stats()
	send(descWSClients, prometheus.GaugeValue, float64(st.Clients), protocolWatch)
	send(descWSBehind, prometheus.GaugeValue, float64(st.Behind), protocolWatch)
	send(descWSStalled, prometheus.GaugeValue, float64(st.Stalled), protocolWatch)
	send(descWSAnswers, prometheus.GaugeValue, float64(st.AnswerBytes), protocolWatch)
	send(descWSLagged, prometheus.CounterValue, float64(st.Lagged), protocolWatch)
	send(descWSFrames, prometheus.CounterValue, float64(st.Frames), protocolWatch)
	send(descWSDropped, prometheus.CounterValue, float64(st.BufferFull), protocolWatch)
	send(descWSLimited, prometheus.CounterValue, float64(st.RateLimited), protocolWatch)
	send(descWSFlooded, prometheus.CounterValue, float64(st.RateLimitClosed), protocolWatch)
	send(descWSRevoked, prometheus.CounterValue, float64(st.Revoked), protocolWatch)
	if c.sio != nil {
		send(descWSClients, prometheus.GaugeValue, float64(c.sio.Clients()), protocolSocketIO)
		b := c.sio.Backlog()
		send(descWSBehind, prometheus.GaugeValue, float64(b.Held), protocolSocketIO)
		send(descWSChanges, prometheus.GaugeValue, float64(b.ChangeBytes), protocolSocketIO)
		send(descWSStalled, prometheus.GaugeValue, float64(b.Stalled), protocolSocketIO)
		send(descWSAnswers, prometheus.GaugeValue, float64(b.AnswerBytes), protocolSocketIO)
		send(descWSLagged, prometheus.CounterValue, float64(c.sio.Lagged()), protocolSocketIO)
		send(descWSFrames, prometheus.CounterValue, float64(c.sio.Sent()), protocolSocketIO)
		send(descWSLimited, prometheus.CounterValue, float64(c.sio.RateLimited()), protocolSocketIO)
		send(descWSFlooded, prometheus.CounterValue, float64(c.sio.RateLimitClosed()), protocolSocketIO)
		send(descWSRevoked, prometheus.CounterValue, float64(c.sio.Revoked()), protocolSocketIO)
	}
	gauge, counter := senders(ch)
	snaps := c.snapshots.Stats()
	gauge(descSnapshotHeld, float64(snaps.Held))
	gauge(descSnapshotWaiting, float64(snaps.Waiting))
	counter(descSnapshotWaits, float64(snaps.Waited))
}

// describe sends descs, for a collector's Describe.
func describe(ch chan<- *prometheus.Desc, descs ...*prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// senders return the functions a collector's Collect sends a gauge's and
// a counter's value on ch with.
func senders(ch chan<- prometheus.Metric) (gauge, counter func(*prometheus.Desc, float64)) {
	send := func(t prometheus.ValueType) func(*prometheus.Desc, float64) {
		return func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, t, v) }
	}
	return send(prometheus.GaugeValue), send(prometheus.CounterValue)
}
