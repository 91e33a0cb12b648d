# lib.sh: what the perf/*ab.sh scripts share. Sourced from the repository's
# root: a temporary work folder ($work), the background processes to stop
# at exit ($pids: append each one's $!), and wait_up URL, which waits up to
# 10 s for a server to answer 2xx there and stops the script if it does not.

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
