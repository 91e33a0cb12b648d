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
# Each line gives wrk's requests/s and p99, and the CPU time per request of
# the server process and of wrk (from /proc and time(1)): on a machine whose
# cores are shared, CPU per request varies less than requests/s. A summary
# ends the run: medians, and each server's ratios to the bare handler paired
# by round (requests/s, and CPU per request of server and wrk together).
#
# Every server holds KEYS keys (k0..k<KEYS-1>, namespace default); each
# request reads one at random.
#
# Settings (environment): ROUNDS (3), DURATION (10s), CLIENTS (64),
# THREADS (2), VALUE_SIZE (256), KEYS (10000). Needs wrk, curl and GNU time
# (apt-get install wrk curl time), and python3 for the summary.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-64}
THREADS=${THREADS:-2}
VALUE_SIZE=${VALUE_SIZE:-256}
KEYS=${KEYS:-10000}
[ $# -gt 0 ] || set -- ./bin/ctxd

cd "$(dirname "$0")/.."
. perf/lib.sh # $work, $pids, cleanup at exit, wait_up

go build -o "$work/barehttp" ./perf/cmd/barehttp

pad=$(head -c $((VALUE_SIZE - 8)) /dev/zero | tr '\0' x)
value="{\"v\":\"$pad\"}"

names=()
urls=()
spids=()
port=18100
i=0
for bin in "$@"; do
	i=$((i + 1))
	for level in info warn; do
		port=$((port + 1))
		dir="$work/ctxd$i-$level"
		mkdir -p "$dir"
		"$bin" serve --addr "127.0.0.1:$port" --data "$dir/data" --log-level "$level" 2>"$dir/server.log" &
		pids+=($!)
		spids+=($!)
		wait_up "http://127.0.0.1:$port/healthz"
		for ((k = 0; k < KEYS; k += 128)); do # transactions of up to 128 puts (limits.max_txn_ops)
			ops=""
			for ((j = k; j < k + 128 && j < KEYS; j++)); do
				ops+="${ops:+,}{\"op\":\"put\",\"key\":\"k$j\",\"value\":$value}"
			done
			curl -fs -o /dev/null -X POST --data "{\"ops\":[$ops]}" "http://127.0.0.1:$port/v1/txn"
		done
		names+=("ctxd$i/$level")
		urls+=("http://127.0.0.1:$port/v1/ns/default/keys/k0")
	done
done
port=$((port + 1))
"$work/barehttp" -addr "127.0.0.1:$port" -keys "$KEYS" -value-size "$VALUE_SIZE" &
pids+=($!)
spids+=($!)
wait_up "http://127.0.0.1:$port/v1/ns/default/keys/k0"
names+=("bare")
urls+=("http://127.0.0.1:$port/v1/ns/default/keys/k0")

cat >"$work/random.lua" <<LUA
math.randomseed(os.time())
request = function()
	return wrk.format(nil, "/v1/ns/default/keys/k" .. math.random(0, $KEYS - 1))
end
LUA
hz=$(getconf CLK_TCK)
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$THREADS -c$CLIENTS -d$DURATION, random GETs of $KEYS keys, $VALUE_SIZE-byte values"
for n in $(seq "$ROUNDS"); do
	# (each line is also kept in $work/rounds for the summary)
	for j in "${!urls[@]}"; do
		before=$(cputicks "${spids[$j]}")
		out=$(/usr/bin/time -f 'wrkcpu %U %S' wrk -t"$THREADS" -c"$CLIENTS" -d"$DURATION" --latency -s "$work/random.lua" "${urls[$j]}" 2>&1)
		after=$(cputicks "${spids[$j]}")
		rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
		reqs=$(awk '/requests in/ {print $1}' <<<"$out")
		p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
		non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
		srvus=$(awk -v t=$((after - before)) -v r="$reqs" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / r}')
		wrkus=$(awk -v r="$reqs" '/^wrkcpu/ {printf "%.1f", ($2 + $3) * 1e6 / r}' <<<"$out")
		printf 'round %d %-12s %10s req/s  p99 %8s  server %5s µs/req  wrk %5s µs/req%s\n' \
			"$n" "${names[$j]}" "$rps" "$p99" "$srvus" "$wrkus" "${non2xx:+  NON-2XX $non2xx}" | tee -a "$work/rounds"
	done
done
for j in "${!names[@]}"; do
	case ${names[$j]} in ctxd*/info) echo "# ${names[$j]}: $(wc -l <"$work/${names[$j]%/*}-info/server.log") log lines" ;; esac
done

# Medians over the rounds; the ratios to bare are paired by round (each
# round's run against the bare handler's of the same round), with their
# interquartile range.
python3 - "$work/rounds" <<'PY'
import re, statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"round (\d+) (\S+)\s+([\d.]+) req/s\s+p99\s+([\d.]+)(ms|us|s)\s+server\s+([\d.]+) µs/req\s+wrk\s+([\d.]+)", line)
    if m:
        p99 = float(m[4]) * {"us": 0.001, "ms": 1, "s": 1000}[m[5]]
        rows.setdefault(m[2], {})[int(m[1])] = (float(m[3]), p99, float(m[6]), float(m[7]))
bare = rows.get("bare", {})
def q(a):
    a = sorted(a)
    return f"{st.median(a):.2f} [{a[len(a) // 4]:.2f}-{a[3 * len(a) // 4]:.2f}]" if a else "-"
print(f"{'median':12s} {'req/s':>8s} {'p99 ms':>7s} {'server µs':>9s} {'wrk µs':>7s} {'req/s / bare':>18s} {'bare CPU / CPU':>18s}")
for name, v in rows.items():
    med = lambda i: st.median(r[i] for r in v.values())
    both = [r for r in v if r in bare]
    rps = [v[r][0] / bare[r][0] for r in both]
    cpu = [(bare[r][2] + bare[r][3]) / (v[r][2] + v[r][3]) for r in both]
    print(f"{name:12s} {med(0):8.0f} {med(1):7.1f} {med(2):9.1f} {med(3):7.1f} {q(rps):>18s} {q(cpu):>18s}")
PY
