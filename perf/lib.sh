# lib.sh: what the perf/*ab.sh scripts share. Sourced from the repository's
# root: a temporary work folder ($work), the background processes to stop
# at exit ($pids: append each one's $!), wait_up URL, which waits up to
# 10 s for a server to answer 2xx there and stops the script if it does not,
# and start_etcd PEER DIR, which starts an embedded etcd (ctxd-etcd-peer
# --serve) in DIR and sets $etcd_url to its client URL and $etcd_pid.

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

wait_up() { # url
	for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
	echo "server at $1 did not start" >&2
	exit 1
}

start_etcd() { # ctxd-etcd-peer folder
	mkdir -p "$2"
	"$1" --data "$2" --serve >"$2.out" 2>"$2.log" &
	etcd_pid=$!
	pids+=($etcd_pid)
	etcd_url=""
	for _ in $(seq 100); do
		etcd_url=$(grep -oE '^http://[0-9.:]+' "$2.out" | head -1 || true)
		[ -n "$etcd_url" ] && return 0
		sleep 0.1
	done
	echo "etcd did not start" >&2
	exit 1
}
