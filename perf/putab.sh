#!/usr/bin/env bash
# putab.sh: durable PUT throughput and latency of two (or more) ctxd builds,
# in interleaved rounds, the PUT counterpart of getab.sh. Each round runs
# every build's own `ctxd perf write-latency write-throughput` (in-process
# server on a fresh temporary folder, real fsyncs, the same load generator
# in every build as long as perf/ is unchanged), one build after the other,
# so that a busy spell of the shared machine hits both builds alike.
#
#   perf/putab.sh OLD/ctxd NEW/ctxd     # A/B of two builds
#
# Each line gives one run: 64 clients on distinct keys (puts/s, p50, p99),
# 64 clients on 16 hot keys (puts/s, p99), one client (p50), and the CPU
# time per put of the whole process (server and load generator, from
# time(1)): on a machine whose cores are shared, CPU per put varies less
# than puts/s. A summary ends the run: medians, and each build's ratios to
# the first build paired by round, with their interquartile range.
#
# Settings (environment): ROUNDS (5), DURATION (3s), WARMUP (1s),
# CLIENTS (64). Needs GNU time (apt-get install time) and python3.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
CLIENTS=${CLIENTS:-64}
[ $# -ge 1 ] || { echo "usage: $0 OLD/ctxd [NEW/ctxd ...]" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds of perf write-latency write-throughput --clients 1,$CLIENTS --duration $DURATION"
for n in $(seq "$ROUNDS"); do
	i=0
	for bin in "$@"; do
		i=$((i + 1))
		out="$work/b$i-r$n"
		/usr/bin/time -f 'cpu %U %S' -o "$out.time" "$bin" perf write-latency write-throughput \
			--clients "1,$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --out "$out" >"$out.log" 2>&1 ||
			{ echo "round $n build $i ($bin) failed: see below" >&2; tail -20 "$out.log" >&2; exit 1; }
		python3 - "$n" "b$i" "$CLIENTS" "$out" "$(cat /proc/loadavg | cut -d' ' -f1)" <<'PY' | tee -a "$work/rounds"
import glob, json, sys
n, name, clients, out, load = sys.argv[1:6]
rep = json.load(open(glob.glob(out + "/*/report.json")[0]))
runs = {r["name"]: r for r in rep["runs"]}
d = runs[f"write-throughput/distinct/c={clients}"]
h = runs[f"write-throughput/hot/c={clients}"]
one = runs["write-latency"]
user, sys_ = map(float, open(out + ".time").read().split()[1:3])
ops = sum(r["ops"] for r in rep["runs"])
print(f"round {n} {name} distinct {d['ops_per_sec']:.0f}/s p50 {d['latency']['p50']:.2f} p99 {d['latency']['p99']:.2f}"
      f" hot {h['ops_per_sec']:.0f}/s p99 {h['latency']['p99']:.2f} one p50 {one['latency']['p50']:.3f}"
      f" cpu {(user + sys_) * 1e6 / ops:.0f} µs/put load {load}")
PY
	done
done
i=0
for bin in "$@"; do i=$((i + 1)); echo "# b$i = $bin"; done

# Medians over the rounds; the ratios to b1 are paired by round.
python3 - "$work/rounds" <<'PY'
import re, statistics as st, sys
cols = ["distinct/s", "p50", "p99", "hot/s", "hot p99", "one p50", "cpu µs/put"]
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"round (\d+) (\S+) distinct ([\d.]+)/s p50 ([\d.]+) p99 ([\d.]+) hot ([\d.]+)/s p99 ([\d.]+) one p50 ([\d.]+) cpu ([\d.]+)", line)
    if m:
        rows.setdefault(m[2], {})[int(m[1])] = [float(x) for x in m.groups()[2:]]
def q(a):
    a = sorted(a)
    return f"{st.median(a):.2f} [{a[len(a) // 4]:.2f}-{a[3 * len(a) // 4]:.2f}]"
print("median  " + "  ".join(f"{c:>10s}" for c in cols))
for name, v in rows.items():
    print(f"{name:6s}  " + "  ".join(f"{st.median(r[i] for r in v.values()):10.2f}" for i in range(len(cols))))
base = rows.get("b1", {})
for name, v in rows.items():
    if name == "b1":
        continue
    both = [r for r in v if r in base]
    print(f"{name}/b1 (paired by round, median [quartiles]):")
    for i, c in enumerate(cols):
        print(f"  {c:>10s}  {q([v[r][i] / base[r][i] for r in both])}")
PY
