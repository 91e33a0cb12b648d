package perf

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// The memory category: the server's resident memory and Go heap before and
// at the end of disk-growth (per 10,000 keys) and of each fan-out run (per
// 1,000 subscribers). Where the server runs decides how exact they are:
//
//   - in a process of its own (Target.Isolated, what `ctxd perf` does): the
//     server's process collects its garbage (twice: see collect) and gives
//     free memory back to the system, then reads its own heap and RSS: the
//     server's alone;
//   - in the suite's process (Target.Fresh alone, as in the package's
//     tests): the same after a collection, but the process also holds the
//     load generator (the subscribers' connections, the keys' paths);
//   - remote (Target.URL): from its /metrics, without a collection first,
//     so the heap includes garbage not yet collected.

// Where a measured server's memory comes from (MemoryUse.Process).
const (
	processOwn    = "own"
	processShared = "shared"
	processRemote = "remote"
)

// MemorySample is a server's memory at one moment.
type MemorySample struct {
	// RSSBytes is the resident set of the server's process; HeapBytes its
	// Go heap (live objects, after a collection where the suite can ask
	// for one).
	RSSBytes  int64 `json:"rss_bytes"`
	HeapBytes int64 `json:"heap_bytes"`
}

// MemoryUse is a server's memory before and at the end of a scenario, and
// the growth per unit of what the scenario added (keys, subscribers).
type MemoryUse struct {
	// Process is "own", "shared" (with the load generator) or "remote".
	Process string       `json:"process"`
	Before  MemorySample `json:"before"`
	After   MemorySample `json:"after"`
	// Per names the unit, e.g. "10000 keys"; RSSPer and HeapPer are
	// (After - Before) per that unit, or 0 when that is not measurable
	// (see memoryUse): Unmeasured then says why.
	Per        string `json:"per"`
	RSSPer     int64  `json:"rss_bytes_per"`
	HeapPer    int64  `json:"heap_bytes_per"`
	Unmeasured string `json:"unmeasured"`
}

// MemorySummary is the memory category's headline: growth per 10,000 keys
// (from disk-growth) and per 1,000 WebSocket subscribers (from the
// /v1/watch fan-out run closest to 1,000 subscribers whose growth was
// measurable). A growth that was not measurable is 0.
type MemorySummary struct {
	Process              string `json:"process"`
	KeysRun              string `json:"keys_run"`
	RSSPer10kKeys        int64  `json:"rss_bytes_per_10k_keys"`
	HeapPer10kKeys       int64  `json:"heap_bytes_per_10k_keys"`
	SubscribersRun       string `json:"subscribers_run"`
	RSSPer1kSubscribers  int64  `json:"rss_bytes_per_1k_subscribers"`
	HeapPer1kSubscribers int64  `json:"heap_bytes_per_1k_subscribers"`
}

// A growth per unit is scaled up from at least 1/memoryMinShare of the
// unit (100 subscribers for "per 1,000", 1,000 keys for "per 10,000"):
// from fewer, what does not grow with them (the first connection's
// buffers, the runtime's own growth) is scaled too, and the noise with
// it (one Socket.IO subscriber gave -16.9 GiB "per 1,000").
const memoryMinShare = 10

// memoryNoise is the least growth that counts as one: 1 MiB, or 1/20 of
// the memory before when that is more (a remote server's heap includes
// garbage not yet collected, and its baseline what earlier runs left).
// A smaller growth, or a shrink, is not a cost of what was added.
func memoryNoise(before int64) int64 { return max(1<<20, before/20) }

// memoryUse returns the growth from before to after per `per` units, when
// n units were added: each of RSS and heap only when n is at least
// per/memoryMinShare and the growth is above memoryNoise, else 0 and
// Unmeasured says why.
func memoryUse(process string, before, after MemorySample, n, per int, unit string) *MemoryUse {
	m := &MemoryUse{Process: process, Before: before, After: after, Per: fmt.Sprintf("%d %s", per, unit)}
	if least := per / memoryMinShare; n < least {
		noun := unit
		if n == 1 {
			noun = strings.TrimSuffix(unit, "s")
		}
		m.Unmeasured = fmt.Sprintf("%s %s, too few to scale to %s (%s or more)", commas(int64(n)), noun, commas(int64(per)), commas(int64(least)))
		return m
	}
	scale := float64(per) / float64(n)
	var why []string
	growth := func(what string, before, after int64) int64 {
		d := after - before
		if d < memoryNoise(before) {
			why = append(why, fmt.Sprintf("%s %s", what, signedBytes(d)))
			return 0
		}
		return int64(math.Round(float64(d) * scale))
	}
	m.RSSPer = growth("RSS", before.RSSBytes, after.RSSBytes)
	m.HeapPer = growth("heap", before.HeapBytes, after.HeapBytes)
	if len(why) > 0 {
		m.Unmeasured = strings.Join(why, ", ") + " in all: no growth above the noise (1 MiB, or 5% of the memory before)"
	}
	return m
}

// measured says whether m has a growth per unit.
func (m *MemoryUse) measured() bool { return m != nil && (m.RSSPer != 0 || m.HeapPer != 0) }

// memorySummary picks the headline numbers of the report's runs.
func memorySummary(r *Report) MemorySummary {
	var ms MemorySummary
	for _, d := range r.DiskGrowth {
		if d.Memory != nil && (ms.KeysRun == "" || d.Memory.measured()) {
			ms.Process, ms.KeysRun = d.Memory.Process, d.Name
			ms.RSSPer10kKeys, ms.HeapPer10kKeys = d.Memory.RSSPer, d.Memory.HeapPer
		}
	}
	best, bestMeasured := -1.0, false
	for _, f := range r.Fanout {
		if f.Memory == nil || f.Protocol == protocolSocketIO || f.Subscribers <= 0 {
			continue
		}
		// Closest to 1,000 subscribers on a log scale, of the runs whose
		// growth was measurable if any was.
		d, measured := math.Abs(math.Log(float64(f.Subscribers)/1000)), f.Memory.measured()
		if best < 0 || measured && !bestMeasured || measured == bestMeasured && d < best {
			best, bestMeasured = d, measured
			ms.SubscribersRun = f.Name
			ms.RSSPer1kSubscribers, ms.HeapPer1kSubscribers = f.Memory.RSSPer, f.Memory.HeapPer
			if ms.Process == "" {
				ms.Process = f.Memory.Process
			}
		}
	}
	return ms
}

// probeMemory reads a server's memory: through srv.Memory when the suite
// started it in a process of its own, else from its /metrics (after a
// collection of this process's garbage when it runs here).
func probeMemory(srv *Server, ep endpoint) (MemorySample, string, error) {
	if srv != nil && srv.Memory != nil {
		m, err := srv.Memory()
		return m, processOwn, err
	}
	process := processRemote
	if srv != nil {
		process = processShared
		collect()
	}
	c := newHTTPConn(ep)
	defer c.Close()
	m, err := scrapeMemory(c)
	return m, process, err
}

// scrapeMemory reads process_resident_memory_bytes and
// go_memstats_heap_alloc_bytes from the server's /metrics.
func scrapeMemory(c *httpConn) (MemorySample, error) {
	if err := c.expect(http.StatusOK, http.MethodGet, "/metrics", nil); err != nil {
		return MemorySample{}, fmt.Errorf("read memory: %w", err)
	}
	var m MemorySample
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(c.body.Bytes()))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := bytes.Cut(sc.Bytes(), []byte(" "))
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "process_resident_memory_bytes":
			dst = &m.RSSBytes
		case "go_memstats_heap_alloc_bytes":
			dst = &m.HeapBytes
		default:
			continue
		}
		v, err := strconv.ParseFloat(string(bytes.TrimSpace(value)), 64)
		if err != nil {
			continue
		}
		*dst = int64(v)
		found++
	}
	if found < 2 {
		return m, fmt.Errorf("read memory: /metrics has no process_resident_memory_bytes or go_memstats_heap_alloc_bytes")
	}
	return m, nil
}

// ProcessMemory collects this process's garbage, gives the free memory
// back to the system, and returns its memory: the live Go heap and the
// resident set (0 where /proc is missing). Without the giving back, the
// resident set would depend on when the runtime last did it.
func ProcessMemory() MemorySample {
	collect()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return MemorySample{RSSBytes: selfRSS(), HeapBytes: int64(ms.HeapAlloc)}
}

// collect runs two garbage collections, the second giving free memory back
// to the system: objects only sync.Pool caches hold (the WebSocket write
// buffers of the realtime hub, 32 KiB each) survive one collection and
// would count as live after it, depending on how busy the sockets were.
func collect() {
	runtime.GC()
	debug.FreeOSMemory()
}

// selfRSS reads this process's resident set from /proc (0 off Linux).
func selfRSS() int64 {
	kb := procField("/proc/self/status", "VmRSS")
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(kb, "kB")), 10, 64)
	return n << 10
}

// readMemory reads a server's memory for the run named name. A server
// whose memory cannot be read (no /metrics) does not fail the run: the
// run then has no memory numbers, and the person running the suite is told.
func (s *suite) readMemory(name string, srv *Server, ep endpoint) (MemorySample, string, bool) {
	m, process, err := probeMemory(srv, ep)
	if err != nil {
		s.notef("%s: no memory numbers: %v", name, err)
		return m, process, false
	}
	return m, process, true
}
