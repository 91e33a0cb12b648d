#!/usr/bin/env bash
# fanoutab.sh: WebSocket fan-out of builds side by side, on bolt and on
# etcd, in alternating rounds. For each build (a folder holding ctxd and
# ctxd-etcd-peer, as `make build` leaves them in bin/) and each case it
# starts fresh servers, runs `ctxd perf ... fanout` (/v1/watch, batch=true)
# against them, and prints one line: writes/s sustained, ack-to-arrival p50
# and p99 (ms), missed and duplicate deliveries, the frames the servers
# wrote (ctxd_ws_events_sent_total) and changes per frame, and the CPU
# seconds of the ctxd servers, of etcd and of the load generator.
#
#   perf/fanoutab.sh                          # ./bin
#   perf/fanoutab.sh OLD/bin NEW/bin          # A/B of two builds
#   ROUNDS=3 CASES=etcd3 perf/fanoutab.sh OLD/bin NEW/bin
#
# Cases: bolt (one ctxd serve), etcd1 (one ctxd on etcd), etcd3 (three ctxd
# on one etcd prefix, the subscribers spread over them, the writes to the
# first). Each build gets its own etcd per round. The load generator's
# runs include a Socket.IO run of one subscriber (builds before 2026-12-02
# refuse --fanout-socketio-subscribers 0), not counted in the frames
# (protocol watch only) but in the CPU times.
#
# Settings (environment): ROUNDS (1), CASES ("bolt etcd1 etcd3"), SUBS
# (1000), RATE (1000), DURATION (5s), PERF_ARGS (more flags of ctxd perf,
# e.g. --fanout-writers 64). Needs curl and python3.
set -euo pipefail

ROUNDS=${ROUNDS:-1}
CASES=${CASES:-bolt etcd1 etcd3}
SUBS=${SUBS:-1000}
RATE=${RATE:-1000}
DURATION=${DURATION:-5s}
[ $# -gt 0 ] || set -- ./bin

cd "$(dirname "$0")/.."
. perf/lib.sh # $work, $pids, cleanup at exit, wait_up, start_etcd

# frames URL...: the /v1/watch frames the servers wrote so far.
frames() {
	local n=0 u
	for u in "$@"; do
		n=$((n + $(curl -fs "$u/metrics" | awk '/^ctxd_ws_events_sent_total\{protocol="watch"\}/ { printf "%d", $2 }')))
	done
	echo "$n"
}
# cputicks PID...: user and system clock ticks of the processes.
cputicks() {
	local n=0 p
	for p in "$@"; do n=$((n + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
	echo "$n"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $SUBS subscribers, $RATE writes/s offered, $DURATION"
for round in $(seq "$ROUNDS"); do
	for b in "$@"; do
		dir="$work/$round-$(basename "$(dirname "$b/x")")-$RANDOM"
		start_etcd "$b/ctxd-etcd-peer" "$dir/etcd"
		for c in $CASES; do
			servers=() urls=()
			case $c in
			bolt) n=1 env=() ;;
			etcd1 | etcd3) n=${c#etcd} env=(CTXD_STORE_BACKEND=etcd "CTXD_ETCD_ENDPOINTS=$etcd_url" "CTXD_ETCD_PREFIX=/$c/") ;;
			*) echo "unknown case $c" >&2; exit 2 ;;
			esac
			for i in $(seq "$n"); do
				env "${env[@]}" "$b/ctxd" serve --addr "127.0.0.1:1830$i" --data "$dir/$c$i" 2>"$dir/$c$i.log" &
				servers+=($!) urls+=("http://127.0.0.1:1830$i")
			done
			pids+=("${servers[@]}")
			for u in "${urls[@]}"; do wait_up "$u/readyz"; done
			more=()
			[ "$n" -gt 1 ] && more=(--more-targets "$(IFS=,; echo "${urls[*]:1}")")
			f0=$(frames "${urls[@]}") s0=$(cputicks "${servers[@]}") e0=$(cputicks "$etcd_pid")
			/usr/bin/env time -f "%U %S" -o "$dir/perf.time" "$b/ctxd" perf --target "${urls[0]}" "${more[@]}" \
				--fanout-subscribers "$SUBS" --fanout-rate "$RATE" --fanout-socketio-subscribers 1 \
				--duration "$DURATION" --out "$dir/out" ${PERF_ARGS:-} fanout >"$dir/perf.out" 2>&1 || tail -5 "$dir/perf.out" >&2
			f1=$(frames "${urls[@]}") s1=$(cputicks "${servers[@]}") e1=$(cputicks "$etcd_pid")
			python3 - "$(ls -t "$dir"/out/*/report.json | head -1)" "$round" "$b" "$c" $((f1 - f0)) \
				"$(tail -1 "$dir/perf.time" | awk '{ print ($1 + $2) }')" $((s1 - s0)) $((e1 - e0)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
report, rnd, build, case, frames, perf_cpu, srv, etcd, hz = sys.argv[1:]
f = next(x for x in json.load(open(report))["fanout"] if x.get("protocol", "watch") == "watch")
frames = int(frames)
print(f"round {rnd} {build} {case:5s} writes/s {f['writes_per_sec']:6.0f}  ack p50 {f['ack_to_arrival']['p50']:6.1f} p99 {f['ack_to_arrival']['p99']:6.1f} ms"
      f"  missed {f['missed']} dup {f['duplicates']}  frames {frames} ({f['deliveries'] / max(frames, 1):.2f} changes/frame)"
      f"  cpu s: ctxd {int(srv) / int(hz):.1f} etcd {int(etcd) / int(hz):.1f} perf {float(perf_cpu):.1f}", flush=True)
PY
			for p in "${servers[@]}"; do kill "$p"; done
			wait "${servers[@]}" 2>/dev/null || true
		done
		kill "$etcd_pid"
		wait "$etcd_pid" 2>/dev/null || true
	done
done
