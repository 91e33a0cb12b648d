#!/usr/bin/env bash
# getab.sh: GET throughput and p99 of ctxd against a bare net/http handler
# (perf/cmd/barehttp), same load generator (wrk), same run, interleaved
# rounds. Each ctxd binary runs twice: with the default configuration (log
# level info: one access log line per request, to stderr, here a file on
# disk as a service's journal would be) and with --log-level warn.
#
#   perf/getab.sh                       # ./bin/ctxd
#   perf/getab.sh OLD/ctxd NEW/ctxd     # A/B of two builds
#
# Settings (environment): ROUNDS (3), DURATION (10s), CLIENTS (64),
# THREADS (2), VALUE_SIZE (256). Needs wrk and curl (apt-get install wrk curl).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-64}
THREADS=${THREADS:-2}
VALUE_SIZE=${VALUE_SIZE:-256}
[ $# -gt 0 ] || set -- ./bin/ctxd

cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/barehttp" ./perf/cmd/barehttp

pad=$(head -c $((VALUE_SIZE - 8)) /dev/zero | tr '\0' x)
value="{\"v\":\"$pad\"}"

names=()
urls=()
port=18100
wait_up() { # url
	for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
	echo "server at $1 did not start" >&2
	exit 1
}
i=0
for bin in "$@"; do
	i=$((i + 1))
	for level in info warn; do
		port=$((port + 1))
		dir="$work/ctxd$i-$level"
		mkdir -p "$dir"
		"$bin" serve --addr "127.0.0.1:$port" --data "$dir/data" --log-level "$level" 2>"$dir/server.log" &
		pids+=($!)
		wait_up "http://127.0.0.1:$port/healthz"
		curl -fs -o /dev/null -X PUT --data "$value" "http://127.0.0.1:$port/v1/ns/default/keys/k0"
		names+=("ctxd$i/$level")
		urls+=("http://127.0.0.1:$port/v1/ns/default/keys/k0")
	done
done
port=$((port + 1))
"$work/barehttp" -addr "127.0.0.1:$port" -value-size "$VALUE_SIZE" &
pids+=($!)
wait_up "http://127.0.0.1:$port/v1/ns/default/keys/k0"
names+=("bare")
urls+=("http://127.0.0.1:$port/v1/ns/default/keys/k0")

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$THREADS -c$CLIENTS -d$DURATION, $VALUE_SIZE-byte value"
for n in $(seq "$ROUNDS"); do
	for j in "${!urls[@]}"; do
		out=$(wrk -t"$THREADS" -c"$CLIENTS" -d"$DURATION" --latency "${urls[$j]}")
		rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
		non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
		printf 'round %d %-12s %10s req/s  p99 %8s%s\n' "$n" "${names[$j]}" "$rps" "$p99" "${non2xx:+  NON-2XX $non2xx}"
	done
done
for j in "${!names[@]}"; do
	case ${names[$j]} in ctxd*/info) echo "# ${names[$j]}: $(wc -l <"$work/${names[$j]%/*}-info/server.log") log lines" ;; esac
done
