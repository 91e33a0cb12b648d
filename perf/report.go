package perf

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/framework0/ctxd/internal/fsutil"
)

// ReportFormat names the layout of report.json. It changes only when a
// field is removed or changes meaning; new fields may be added within it.
const ReportFormat = "ctxd-perf/1"

// Report is one run of the suite: report.json. Its fields are documented
// in REPORT.md; their names are stable within ReportFormat.
type Report struct {
	Format         string    `json:"format"`
	StartedAt      time.Time `json:"started_at"`
	FinishedAt     time.Time `json:"finished_at"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`
	Command        string    `json:"command"`
	// Units says the units of the numbers below, for a reader of the file
	// alone (REPORT.md has them too).
	Units    Units      `json:"units"`
	Machine  Machine    `json:"machine"`
	Target   TargetInfo `json:"target"`
	Settings Settings   `json:"settings"`
	// Interrupted is set when the run was stopped before its end
	// (Ctrl-C): what it holds is what finished, and what did not is
	// missing or partial.
	Interrupted bool `json:"interrupted"`
	// Errors counts every failed request and failed step of the run.
	Errors     int64           `json:"errors"`
	Failures   []Failure       `json:"failures"`
	Runs       []Measurement   `json:"runs"`
	Fanout     []FanoutRun     `json:"fanout"`
	DiskGrowth []DiskGrowthRun `json:"disk_growth"`
	Snapshot   []SnapshotRun   `json:"snapshot"`
	// Memory is the memory category's headline numbers.
	Memory MemorySummary `json:"memory"`
	// Peers are the servers of the peers scenario (ctxd first), and
	// Comparisons its runs, each pair side by side.
	Peers       []PeerInfo   `json:"peers"`
	Comparisons []Comparison `json:"comparisons"`
	// AtScale is the large database of --preload (nil without it).
	AtScale *AtScale      `json:"at_scale,omitempty"`
	Skipped []Skip        `json:"skipped"`
	Targets []TargetCheck `json:"targets"`
	Metrics []Metric      `json:"metrics"`
}

// Units are the units of report.json's numbers, by kind (ReportUnits).
type Units struct {
	// Latency: every latency and percentile (p50, ms, commit_ms...).
	Latency string `json:"latency"`
	// Duration: every *_seconds field.
	Duration string `json:"duration"`
	// Size: every *_bytes field.
	Size string `json:"size"`
	// Rate: every *_per_sec field.
	Rate string `json:"rate"`
	// Percentile: the percentile of a distribution point (0 to 100).
	Percentile string `json:"percentile"`
}

// ReportUnits are the units of every report.json of ReportFormat.
var ReportUnits = Units{
	Latency:    "milliseconds, to the nanosecond (nearest-rank percentiles, within +0.1% of the exact value)",
	Duration:   "seconds",
	Size:       "bytes",
	Rate:       "per second",
	Percentile: "percent",
}

// Machine is where the suite ran. Client and server share it.
type Machine struct {
	Cores       int    `json:"cores"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	GoVersion   string `json:"go_version"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	CPU         string `json:"cpu"`
	MemoryBytes int64  `json:"memory_bytes"`
	Hostname    string `json:"hostname"`
	// CtxdVersion is the version of the binary that ran the suite.
	CtxdVersion string `json:"ctxd_version"`
	// LoadAverage is the 1-minute load average when the run started (other
	// work on the machine skews the numbers); LoadAverageEnd when it ended,
	// the run's own load included.
	LoadAverage    float64 `json:"load_average"`
	LoadAverageEnd float64 `json:"load_average_end"`
}

// TargetInfo is the server measured.
type TargetInfo struct {
	// Mode is "in-process" (a server started by the suite on a temporary
	// folder) or "remote" (--target).
	Mode          string `json:"mode"`
	URL           string `json:"url"`
	ServerVersion string `json:"server_version"`
	// DataDir and Filesystem are where an in-process server keeps its
	// database (fsync costs depend on them); ServerLogLevel is its log
	// level (at info, each request writes an access log line).
	DataDir        string `json:"data_dir,omitempty"`
	Filesystem     string `json:"filesystem,omitempty"`
	ServerLogLevel string `json:"server_log_level,omitempty"`
}

// Settings are the parameters of the run.
type Settings struct {
	Scenarios         []string `json:"scenarios"`
	DurationSeconds   float64  `json:"duration_seconds"`
	WarmupSeconds     float64  `json:"warmup_seconds"`
	Clients           []int    `json:"clients"`
	ValueSize         int      `json:"value_size"`
	Quick             bool     `json:"quick"`
	Rate              int      `json:"rate"`
	HotKeys           int      `json:"hot_keys"`
	KeyOrder          string   `json:"key_order"`
	ReadKeys          int      `json:"read_keys"`
	ReadOps           []string `json:"read_ops"`
	MixedClients      int      `json:"mixed_clients"`
	CASClients        int      `json:"cas_clients"`
	FanoutSubscribers []int    `json:"fanout_subscribers"`
	// FanoutSocketIOSubscribers: the Socket.IO runs of fanout.
	FanoutSocketIOSubscribers []int `json:"fanout_socketio_subscribers"`
	FanoutRate                int   `json:"fanout_rate"`
	FanoutBatch               bool  `json:"fanout_batch"`
	FanoutWriters             int   `json:"fanout_writers"`
	DiskKeys                  int   `json:"disk_keys"`
	DiskVersions              []int `json:"disk_versions"`
	SnapshotKeys              []int `json:"snapshot_keys"`
	SnapshotRepeats           int   `json:"snapshot_repeats"`
	// Compare are the peers of the peers scenario, Rounds its rounds and
	// CompareClients its concurrency.
	Compare        []string `json:"compare"`
	Rounds         int      `json:"rounds"`
	CompareClients int      `json:"compare_clients"`
	// PreloadBytes is --preload: the size of the large database (0: none).
	PreloadBytes int64 `json:"preload_bytes"`
}

// Failure is a step that could not run to its end (its setup failed, or
// its server). It counts as an error.
type Failure struct {
	Step  string `json:"step"`
	Error string `json:"error"`
}

// Skip is a scenario that was not run, and why.
type Skip struct {
	Scenario string `json:"scenario"`
	Reason   string `json:"reason"`
}

// Measurement is one measured request loop: a scenario at one concurrency level.
type Measurement struct {
	// Name identifies the run across reports, e.g.
	// "write-throughput/distinct/c=64".
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	// Database is "fresh" (the suite's new database) or "large" (the
	// database of --preload; the run's name then starts with "large/").
	Database string `json:"database"`
	// Op is put, get, list, history, mixed or cas.
	Op      string `json:"op"`
	Clients int    `json:"clients"`
	// Instances is how many servers of the deployment the clients were
	// spread over (read-instances); 0: the target alone.
	Instances int `json:"instances,omitempty"`
	// Keys says which keys are used: distinct, hot-16, existing-10000, ...
	Keys string `json:"keys"`
	// Rate is the fixed rate the requests were sent at (ops/s), 0 for
	// closed loop (each client sends its next request when the last one
	// is answered).
	Rate            int     `json:"rate"`
	WarmupSeconds   float64 `json:"warmup_seconds"`
	DurationSeconds float64 `json:"duration_seconds"`
	// ElapsedSeconds is what OpsPerSec is over: the window,
	// DurationSeconds (longer when extended); at a fixed rate the server
	// could not sustain, longer: the time its operations took to be sent
	// (from the first's send to the last's, plus one mean gap).
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// WindowExtended is set when no operation started in the window had
	// been answered (or had failed) by its end: the window was extended
	// until one was, and its numbers rest on the few that started before.
	WindowExtended bool `json:"window_extended"`
	// Ops were measured in the window; OpsPerSec is their rate over
	// ElapsedSeconds (0 when no op succeeded: "no op completed", not a
	// measurement), and OpsPerSecSpread its standard deviation over the
	// window's intervals.
	Ops             int64   `json:"ops"`
	OpsPerSec       float64 `json:"ops_per_sec"`
	OpsPerSecSpread float64 `json:"ops_per_sec_spread"`
	Latency         Latency `json:"latency"`
	P50Spread       float64 `json:"p50_spread"`
	P99Spread       float64 `json:"p99_spread"`
	// Distribution is the latency curve (percentile, ms).
	Distribution []Quantile `json:"distribution"`
	Intervals    []Interval `json:"intervals"`
	// RunErrors: the failed requests, warm-up included.
	RunErrors
	// ReadFraction, Reads and Writes: for mixed.
	ReadFraction float64  `json:"read_fraction,omitempty"`
	Reads        *Latency `json:"reads,omitempty"`
	Writes       *Latency `json:"writes,omitempty"`
	// CAS: for cas-contention.
	CAS *CASResult `json:"cas,omitempty"`
	// OtherCPUCores is how many cores, on average, processes other than
	// this one kept busy during the run (in-process runs only): well above
	// 0, the numbers are lower than the machine can do.
	OtherCPUCores float64 `json:"other_cpu_cores"`
	// Commits: what the server's writer did, for runs that write, when
	// the server exposes its metrics (servermetrics.go).
	Commits *CommitStats `json:"commits,omitempty"`
	// CommitsUnmeasured says, for a run that writes, why Commits is
	// missing: the server's /metrics could not be read.
	CommitsUnmeasured string `json:"commits_unmeasured"`
}

// Interval is one tenth of a run's measured window.
type Interval struct {
	StartSeconds float64 `json:"start_seconds"`
	OpsPerSec    float64 `json:"ops_per_sec"`
	P50          float64 `json:"p50"`
	P99          float64 `json:"p99"`
}

// CASResult is what the compare-and-swap increments did. Each operation is
// a read of the counter and a put of the counter + 1 with If-Match; a 409
// is a conflict (the operation is retried by the next one).
type CASResult struct {
	Keys            int     `json:"keys"`
	Successes       int64   `json:"successes"`
	Conflicts       int64   `json:"conflicts"`
	SuccessesPerSec float64 `json:"successes_per_sec"`
	ConflictsPerSec float64 `json:"conflicts_per_sec"`
	// ConflictsPerSecSpread is its standard deviation over the intervals.
	ConflictsPerSecSpread float64 `json:"conflicts_per_sec_spread"`
	// TotalSuccesses counts the warm-up too; CounterSum is the sum of the
	// counters read back at the end: CounterCheck is "ok" when they are
	// equal, "mismatch" otherwise (an error).
	TotalSuccesses int64  `json:"total_successes"`
	CounterSum     int64  `json:"counter_sum"`
	CounterCheck   string `json:"counter_check"`
}

// FanoutRun is one fan-out measurement: Subscribers WebSocket clients
// while writers put at Rate per second.
type FanoutRun struct {
	Name string `json:"name"`
	// Protocol is the subscribers': "watch" (/v1/watch) or "socketio"
	// (Socket.IO over WebSocket); empty in reports older than it (watch).
	// "peer-watch" is a peer's own feed (--compare etcd: etcd's watch,
	// each subscriber a client of its own), measured with the same writes
	// beside ctxd's; Peer names the peer (empty: ctxd).
	Protocol    string `json:"protocol"`
	Peer        string `json:"peer,omitempty"`
	Subscribers int    `json:"subscribers"`
	// Instances is how many servers the subscribers were spread over
	// (the target and Config.MoreTargets; 0 in older reports: 1).
	Instances int `json:"instances,omitempty"`
	// Rate is the offered rate of writes; WritesPerSec what was sustained
	// (the writes acknowledged over the time they were meant to take, or
	// longer, the time they took to be sent: see sendSpan).
	Rate            int     `json:"rate"`
	Batch           bool    `json:"batch"`
	Writers         int     `json:"writers"`
	DurationSeconds float64 `json:"duration_seconds"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	Writes          int64   `json:"writes"`
	WritesPerSec    float64 `json:"writes_per_sec"`
	// FailedWrites counts the writes that failed (counted in Errors too):
	// WritesPerSec counts only the acknowledged ones, and the tables give
	// this beside it.
	FailedWrites int64 `json:"failed_writes"`
	// Deliveries counts (change, subscriber) arrivals; Expected is
	// Writes x Subscribers; Missed and Duplicates must be 0.
	Deliveries int64 `json:"deliveries"`
	Expected   int64 `json:"expected"`
	Missed     int64 `json:"missed"`
	Duplicates int64 `json:"duplicates"`
	// Frames counts the frames that carried at least one of the run's
	// changes, over all subscribers; ChangesPerFrame is Deliveries /
	// Frames (1 without batch=true; with it, how much the server's
	// batching coalesced). 0 in reports older than them.
	Frames          int64   `json:"frames,omitempty"`
	ChangesPerFrame float64 `json:"changes_per_frame,omitempty"`
	// AckToArrival: from a write's acknowledgement (its PUT answered) to
	// its arrival at a subscriber; 0 when it arrived first, none for a
	// write never acknowledged (SendToArrival has it).
	AckToArrival Latency `json:"ack_to_arrival"`
	// SendToArrival: from when the write was sent (its intended send time
	// when the writer was late: see paced) to its arrival: end-to-end
	// latency free of coordinated omission.
	SendToArrival Latency `json:"send_to_arrival"`
	// AckP50Spread, AckP99Spread and SendP99Spread are the standard
	// deviations of those percentiles over the tenths of the writes.
	AckP50Spread  float64 `json:"ack_p50_spread"`
	AckP99Spread  float64 `json:"ack_p99_spread"`
	SendP99Spread float64 `json:"send_p99_spread"`
	// WriteLatency: the PUTs, from when they were sent (paced).
	WriteLatency     Latency    `json:"write_latency"`
	Distribution     []Quantile `json:"distribution"`
	SendDistribution []Quantile `json:"send_distribution"`
	// Memory: the server's before the subscribers connected and at the
	// end, with them still connected; per 1,000 subscribers.
	Memory *MemoryUse `json:"memory,omitempty"`
	RunErrors
}

// DiskGrowthRun is the database file as Keys keys get more versions.
type DiskGrowthRun struct {
	Name      string `json:"name"`
	Keys      int    `json:"keys"`
	ValueSize int    `json:"value_size"`
	// Points are taken while writing; AfterCompaction after POST
	// /v1/compact kept one version per key; AfterDefrag after POST
	// /v1/defrag rewrote the file.
	Points          []DiskPoint `json:"points"`
	AfterCompaction DiskPoint   `json:"after_compaction"`
	AfterDefrag     DiskPoint   `json:"after_defrag"`
	WriteSeconds    float64     `json:"write_seconds"`
	CompactSeconds  float64     `json:"compact_seconds"`
	DefragSeconds   float64     `json:"defrag_seconds"`
	DefragPauseMs   float64     `json:"defrag_pause_ms"`
	// Memory: the server's when it started (empty) and at the end (after
	// the defrag); per 10,000 keys.
	Memory *MemoryUse `json:"memory,omitempty"`
	RunErrors
}

// DiskPoint is the database's size at one point.
type DiskPoint struct {
	Stage string `json:"stage"` // write, compacted, defragmented
	Keys  int    `json:"keys"`
	// VersionsPerKey written so far; Versions is the number of versions
	// history holds (after compaction, one per key).
	VersionsPerKey int   `json:"versions_per_key"`
	Versions       int64 `json:"versions"`
	// LogicalBytes is the keys and values of those versions.
	LogicalBytes int64 `json:"logical_bytes"`
	FileBytes    int64 `json:"file_bytes"`
	InUseBytes   int64 `json:"in_use_bytes"`
	// DiskBytes is what the server's data folder takes on disk (every
	// file's allocated blocks: the database file, the write-ahead log),
	// and WALBytes the write-ahead log's part: the log's segments are
	// preallocated (64 MiB each by default, and the next one once the
	// current is half full), so it takes its size before any record.
	// Both 0 against a running server (its folder is not known here).
	DiskBytes int64 `json:"disk_bytes"`
	WALBytes  int64 `json:"wal_bytes"`
	// Unsettled is set when the server had not applied every write it
	// acknowledged to its database file when the sizes were read (after
	// Config.SettleTimeout, 5 s): FileBytes, InUseBytes and DiskBytes lag
	// the writes.
	Unsettled bool `json:"unsettled"`
	// BytesPerVersion is FileBytes / Versions; InUseBytesPerVersion
	// InUseBytes / Versions.
	BytesPerVersion      float64 `json:"bytes_per_version"`
	InUseBytesPerVersion float64 `json:"in_use_bytes_per_version"`
}

// SnapshotRun times the whole-database operations at one database size.
// Times are medians over Repeats, in seconds.
type SnapshotRun struct {
	Name    string `json:"name"`
	Keys    int    `json:"keys"`
	Repeats int    `json:"repeats"`
	// FileBytes is the database file; SnapshotBytes the snapshot file;
	// DumpBytes the JSON dump.
	FileBytes     int64   `json:"file_bytes"`
	SnapshotBytes int64   `json:"snapshot_bytes"`
	DumpBytes     int64   `json:"dump_bytes"`
	LoadSeconds   float64 `json:"load_seconds"`
	// Unsettled: as DiskPoint's, for FileBytes.
	Unsettled bool `json:"unsettled"`
	// SnapshotSeconds: POST /v1/snapshots (write, fsync, verify).
	SnapshotSeconds float64 `json:"snapshot_seconds"`
	// DumpSeconds: POST /v1/ns/{ns}/dumps?format=json (a file on the server).
	DumpSeconds float64 `json:"dump_seconds"`
	// ExportSeconds: GET /v1/ns/{ns}/export?format=json, read to the end.
	ExportSeconds float64 `json:"export_seconds"`
	// RestoreSeconds: POST /v1/snapshots/{id}/restore (verify and swap).
	RestoreSeconds float64 `json:"restore_seconds"`
	Spread         Spread  `json:"spread"`
	RunErrors
}

// RunErrors is the errors of one element of runs, fanout, disk_growth or
// snapshot, embedded in it: its fields are the element's own in report.json.
type RunErrors struct {
	// Errors counts what failed in the run (requests, mostly); ErrorSamples
	// are up to maxErrorSamples distinct messages of it.
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
}

// Spread is the standard deviation of each time over the repeats.
type Spread struct {
	SnapshotSeconds float64 `json:"snapshot_seconds"`
	DumpSeconds     float64 `json:"dump_seconds"`
	ExportSeconds   float64 `json:"export_seconds"`
	RestoreSeconds  float64 `json:"restore_seconds"`
}

// TargetCheck is one of the project's performance targets against what
// this run measured.
type TargetCheck struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	// Met is "yes", "no", "n/a" when the run did not measure it, or
	// "yes, with errors" when the numbers meet it but the runs they come
	// from had errors (Errors of them): a target is not shown met by
	// the requests that happened to succeed.
	Met string `json:"met"`
	// Errors are those of the runs the check's numbers come from.
	Errors int64 `json:"errors"`
}

// Metric is one number of the report in a flat list, for Compare: its
// Name is stable across runs of the same settings.
type Metric struct {
	Name   string  `json:"name"`
	Unit   string  `json:"unit"`
	Value  float64 `json:"value"`
	Spread float64 `json:"spread"`
	// Better is "higher" or "lower".
	Better string `json:"better"`
	// Errors are those of the run the metric comes from (its requests
	// that failed, its missed deliveries...): its value is then suspect.
	Errors int64 `json:"errors"`
}

// WriteJSON writes the report, indented, to path through a temp file.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return fsutil.WriteFileBytes(path, 0o644, append(b, '\n'))
}

// ReadReport reads a report.json.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	if r.Format != ReportFormat {
		return nil, fmt.Errorf("read report %s: format %q, this ctxd reads %q", path, r.Format, ReportFormat)
	}
	return &r, nil
}
