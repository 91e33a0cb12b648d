// Package perf is ctxd's performance suite, the code behind `ctxd perf`.
//
// # Basics
//
// [Run] measures a ctxd server end to end, over HTTP and WebSocket on
// loopback, with the scenarios of [ScenarioNames] (write-latency,
// write-throughput, read-latency, read-throughput, mixed, cas-contention,
// fanout, disk-growth, snapshot; and peers, with [Config.Compare]), and
// returns a [Report]. The report is
// written as report.json ([Report.WriteJSON], fields documented in
// REPORT.md) and as a self-contained report.html with SVG charts
// ([Report.WriteHTML]); [Compare] sets two reports side by side with a
// noise-aware verdict per metric.
//
// The server is either started by the caller in this process on a temporary
// folder, with the real HTTP stack and real fsync ([Target.Fresh]), or a
// running server at [Target.URL]. Scenarios that need a database of their
// own (disk-growth, snapshot) get a fresh server from Target.Fresh;
// disk-growth and each fanout run get one from [Target.Isolated] when the
// caller can start a server alone in a child process, so that the memory
// they report (memory.go) is the server's own.
//
// # At scale
//
// With [Config.Preload] the request-loop scenarios run a second time on a
// database the caller filled to that size ([Preload], through the store's
// own import), after its open to /readyz with a cold page cache, its
// memory then, and a restart after a crash were measured ([AtScale],
// atscale.go): the report sets each run beside its fresh twin.
//
// # Peers
//
// The peers scenario runs the same puts, gets and mixes against ctxd and
// other servers in alternating rounds and reports each one's medians and
// ctxd's as ratios of theirs (peers.go): etcd, embedded in the
// ctxd-etcd-peer command (a module of its own: the ctxd binary does not
// link etcd) and loaded there by etcd's Go client, and nethttp, a bare
// net/http handler over a map in this process, the HTTP floor, and
// walhttp, that handler with puts made durable in ctxd's write-ahead log
// and nothing else (walhttp.go), the durable floor. A peer in a
// child process speaks JSON lines on its standard input and output
// ([ServePeer], [StartPeerProcess]) and runs its load in this package's
// load loop, so every server is measured the same way.
//
// # Method
//
// Closed-loop scenarios run N clients, each one request at a time on its own
// keep-alive connection, for a warm-up and then a measured window; only
// requests that start inside the window count, and only successful ones
// (failures are counted as errors, and a run with errors says so). A
// window ends only once a request started in it was answered: one that
// none was by its end is extended until one is, and says so.
// Fixed-rate work (fanout's writers, and the latency scenarios with --rate)
// is timed from each request's intended send time whenever the sender was
// late for it (every worker busy), so a stalled server shows up in the
// percentiles instead of silently lowering the load (coordinated
// omission); a sender that was early sleeps and is timed from when it
// woke, so the sleep's overshoot (the generator's timer, not the server)
// is not counted. Latencies go into HDR histograms (three
// significant digits). Each window is cut into ten intervals; the spread of
// the per-interval values is what [Compare] treats as noise.
//
// Requests go through a minimal HTTP/1.1 client (httpconn.go) rather than
// net/http's Transport: load generator and server share the machine's
// cores, so the generator is kept lean to leave them to the server.
//
// # Caveats
//
// Client and server share the CPU: the report records the number of cores,
// the Go version, the machine, its load average and, per run, the CPU that
// other processes used; numbers are to be read in that context.
// Against a running server (--target), disk-growth and snapshot change its
// whole database (compaction, restore) and run only when asked to.
package perf
