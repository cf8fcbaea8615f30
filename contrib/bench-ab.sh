#!/bin/sh
# A/B throughput of two server binaries under the same wrk load, run
# interleaved (A B A B ...) so that a busy machine slows both alike. Each run
# starts a fresh server (--workers 2) on one throwaway PostgreSQL (fsync on),
# runs wrk -t2 -c16 with contrib/bench/write.lua (BENCH_SCRIPT=get: get.lua,
# BENCH_SCRIPT=version: version.lua),
# and stops it. Prints every run, the median of each side and B/A. A binary
# built with --enable-alloc-stats also gets its heap allocations per request
# (from /debug/pprof/allocs before and after the run).
#   contrib/bench-ab.sh BIN_A BIN_B [runs] [seconds]
# e.g. the counting allocator's cost:
#   ./configure --enable-alloc-stats && make && cp src/eventodb /tmp/eventodb-counting
#   ./configure && make && contrib/bench-ab.sh src/eventodb /tmp/eventodb-counting 5 10
# BENCH_CONNECTIONS sets wrk's connections (16). BENCH_STORE=sqlite runs on
# the embedded store; BENCH_SERVER_ARGS adds server
# flags, BENCH_PG_ARGS PostgreSQL ones (e.g. "-c synchronous_commit=off", to
# measure CPU rather than the disk's commit latency).
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [runs] [seconds]" >&2; exit 2; }
bin_a=$1
bin_b=$2
runs=${3:-5}
secs=${4:-10}
conns=${BENCH_CONNECTIONS:-16}
script=$top/contrib/bench/${BENCH_SCRIPT:-write}.lua
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)"; exit 1; }
port=${PORT:-23080}
srv=
. "$top/contrib/throwaway-pg.sh"
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	pg_throwaway_stop
}
trap cleanup EXIT INT TERM
if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
	echo "something already listens on port $port (set PORT)"
	exit 1
fi
pg_throwaway_start eventodb-ab "${PGPORT_AB:-23433}" -c max_connections=200 ${BENCH_PG_ARGS:-}
EVENTODB_TOKEN="ns_ZGVmYXVsdA_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
export EVENTODB_TOKEN
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
total_allocs() {
	curl -sf -H "Authorization: Bearer $EVENTODB_TOKEN" "http://127.0.0.1:$port/debug/pprof/allocs?limit=1" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["allocs"])' 2>/dev/null || true
}

# one run of binary $2 (label $1); appends req/s to $dir/$1.rps
run_one() {
	label=$1 bin=$2 r=$3
	if [ "${BENCH_STORE:-postgres}" = sqlite ]; then
		mkdir -p "$dir/sqlite"
		set -- --db-url "sqlite://metadata.db" --data-dir "$dir/sqlite"
	else
		set -- --db-url "postgres://postgres@127.0.0.1:$pgport/eventodb"
	fi
	"$bin" --listen 127.0.0.1 --port "$port" --workers 2 "$@" --token "$EVENTODB_TOKEN" --log-level warn \
		${BENCH_SERVER_ARGS:-} >"$dir/server-$label.log" 2>&1 &
	srv=$!
	for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
	# never measure someone else's server on the same port
	kill -0 "$srv" 2>/dev/null || { echo "$label: the server did not start:"; cat "$dir/server-$label.log"; exit 1; }
	for i in $(seq 0 9); do
		curl -sf -H "Authorization: Bearer $EVENTODB_TOKEN" "http://127.0.0.1:$port/rpc" \
			-d '["stream.write","benchread-1",{"type":"Filled","data":{"i":'$i',"text":"hello world"}}]' >/dev/null
	done
	a0=$(total_allocs)
	wrk -t2 -c"$conns" -d"${secs}s" -s "$script" "http://127.0.0.1:$port" >"$dir/wrk.out" 2>"$dir/wrk.err"
	a1=$(total_allocs)
	rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.out")
	reqs=$(awk '/requests in/ {print $1}' "$dir/wrk.out")
	lat=$(awk '/Latency/ {print $2; exit}' "$dir/wrk.out")
	extra=
	if [ -n "$a0" ] && [ -n "$a1" ] && [ -n "$reqs" ]; then
		per=$(awk -v a="$a0" -v b="$a1" -v n="$reqs" 'BEGIN {printf "%.1f", (b - a) / n}')
		echo "$per" >>"$dir/$label.allocs"
		extra=", $per allocs/request"
	fi
	echo "$label run $r: $rps req/s, latency avg $lat$extra ($bin)"
	echo "$rps" >>"$dir/$label.rps"
	[ -s "$dir/wrk.err" ] && { echo "wrk errors:"; sort "$dir/wrk.err" | uniq -c | head; }
	kill "$srv"
	wait "$srv" 2>/dev/null || true
	srv=
}

for r in $(seq 1 "$runs"); do
	run_one A "$bin_a" "$r"
	run_one B "$bin_b" "$r"
done
ma=$(median <"$dir/A.rps")
mb=$(median <"$dir/B.rps")
echo "A median of $runs: $ma req/s ($bin_a)"
echo "B median of $runs: $mb req/s ($bin_b)"
[ -s "$dir/B.allocs" ] && echo "B median allocs/request: $(median <"$dir/B.allocs")"
[ -s "$dir/A.allocs" ] && echo "A median allocs/request: $(median <"$dir/A.allocs")"
awk -v a="$ma" -v b="$mb" 'BEGIN {printf "B/A: %.3f (wrk -t2 -c%s -d%ss, %s)\n", b / a, "'"$conns"'", "'"$secs"'", "'"$(basename "$script")"'"}'
