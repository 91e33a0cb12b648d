#!/usr/bin/env bash
# etcdab.sh: ctxd on etcd against the floor of any HTTP server in front of
# etcd, each as a ratio of etcd's own Go client in the same run. One
# embedded etcd (ctxd-etcd-peer --serve) holds a ctxd instance's prefix and
# perf/cmd/bareetcd's (a bare net/http handler: one etcd put or range read
# per request). Each round runs `ctxd perf --target URL --compare etcd
# --etcd-endpoints E peers` against ctxd, then against bareetcd: both
# measured beside etcd's client on the same etcd, at the same time of the
# round.
#
#   perf/etcdab.sh                  # ./bin/ctxd (make build first)
#   ROUNDS=5 perf/etcdab.sh
#
# Each line gives a target's puts and gets at 64 clients and their ratios
# to etcd's client. The summary gives the medians and ctxd's ratio to the
# bare handler, paired by round: what ctxd's own layer costs, apart from
# what HTTP in front of etcd costs on this machine.
#
# Settings (environment): ROUNDS (3), DURATION (3s), CTXD (./bin/ctxd).
# Needs curl and python3.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3s}
CTXD=${CTXD:-./bin/ctxd}

cd "$(dirname "$0")/.."
. perf/lib.sh # $work, $pids, cleanup at exit, wait_up, start_etcd

go build -o "$work/bareetcd" ./perf/cmd/bareetcd
peer=$(dirname "$CTXD")/ctxd-etcd-peer

start_etcd "$peer" "$work/etcd"
E=$etcd_url

CTXD_STORE_BACKEND=etcd CTXD_ETCD_ENDPOINTS=$E CTXD_ETCD_PREFIX=/etcdab/ \
	"$CTXD" serve --addr 127.0.0.1:18201 --data "$work/ctxd" 2>"$work/ctxd.log" &
pids+=($!)
wait_up http://127.0.0.1:18201/readyz
"$work/bareetcd" -addr 127.0.0.1:18202 -endpoints "$E" 2>"$work/bare.log" &
pids+=($!)
wait_up http://127.0.0.1:18202/v1/status

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); one etcd at $E; ctxd perf peers, 64 clients, $DURATION"
for n in $(seq "$ROUNDS"); do
	for target in ctxd:18201 bare:18202; do
		name=${target%:*}
		out=$("$CTXD" perf --target "http://127.0.0.1:${target#*:}" --compare etcd --etcd-endpoints "$E" \
			--duration "$DURATION" --warmup 1s --rounds 1 --out "$work/out" peers 2>&1) || true
		# The rows of a run: "peers/put/c=64 ctxd OPS ...", then
		# "etcd OPS ... RATIO" (the target's ops/s as a ratio of etcd's).
		line=$(awk -v name="$name" '
			$1 ~ /^peers\/(put|get)\/c=64$/ { op = $1; sub(/^peers\//, "", op); sub(/\/.*/, "", op); ops[op] = $3; next }
			op != "" && $1 == "etcd" { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9.]+x$/) { ratio[op] = $i; break }; op = "" }
			END { printf "%s put %s/s %s etcd  get %s/s %s etcd", name, ops["put"], ratio["put"], ops["get"], ratio["get"] }
		' <<<"$out")
		grep -q "ERRORS in this run" <<<"$out" && line+="  ERRORS"
		echo "round $n $line" | tee -a "$work/rounds"
	done
done

python3 - "$work/rounds" <<'PY'
import re, statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"round (\d+) (\S+) put \S+ ([\d.]+)x etcd\s+get \S+ ([\d.]+)x etcd", line)
    if m:
        rows.setdefault(m[2], {})[int(m[1])] = (float(m[3]), float(m[4]))
def med(v, i):
    return st.median(r[i] for r in v.values()) if v else float("nan")
for name, v in rows.items():
    print(f"median {name:5s} put {med(v, 0):.2f}x etcd  get {med(v, 1):.2f}x etcd")
ctxd, bare = rows.get("ctxd", {}), rows.get("bare", {})
both = [r for r in ctxd if r in bare]
if both:
    print("ctxd / bare, paired by round: put %.2fx  get %.2fx" % (
        st.median(ctxd[r][0] / bare[r][0] for r in both), st.median(ctxd[r][1] / bare[r][1] for r in both)))
PY
