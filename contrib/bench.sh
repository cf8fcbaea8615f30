#!/bin/sh
# Throughput of stream.write and stream.get with wrk (16 connections), run
# several times; prints each run and the median requests/s. Starts its own
# throwaway PostgreSQL (fsync on, as in production) and server.
#   contrib/bench.sh [runs] [seconds]
# BENCH_STORE=sqlite runs the server on the embedded store instead;
# BENCH_STORE=both runs PostgreSQL and then SQLite in one invocation.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
secs=${2:-10}
bin=${EVENTODB_BIN:-$top/src/eventodb}
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install wrk)"; exit 1; }
port=${PORT:-18080}
srv=
. "$top/contrib/throwaway-pg.sh"
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	pg_throwaway_stop
}
trap cleanup EXIT INT TERM
pg_throwaway_start eventodb-bench 55433 -c max_connections=200
EVENTODB_TOKEN="ns_ZGVmYXVsdA_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
export EVENTODB_TOKEN
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

bench_store() {
	store=$1
	if [ "$store" = sqlite ]; then
		mkdir -p "$dir/sqlite"
		url="sqlite://metadata.db"
		extra="--data-dir $dir/sqlite"
	else
		url="postgres://postgres@127.0.0.1:$pgport/eventodb"
		extra=""
	fi
	"$bin" --listen 127.0.0.1 --port $port --db-url "$url" $extra \
		--token "$EVENTODB_TOKEN" --log-level warn ${BENCH_SERVER_ARGS:-} >"$dir/server-$store.log" 2>&1 &
	srv=$!
	for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
	for i in $(seq 0 9); do
		curl -sf -H "Authorization: Bearer $EVENTODB_TOKEN" "http://127.0.0.1:$port/rpc" \
			-d '["stream.write","benchread-1",{"type":"Filled","data":{"i":'$i',"text":"hello world"}}]' >/dev/null
	done
	for what in write get; do
		: > "$dir/$what.rps"
		for r in $(seq 1 "$runs"); do
			rps=$(wrk -t2 -c16 -d"${secs}s" -s "$top/contrib/bench/$what.lua" "http://127.0.0.1:$port" 2>"$dir/$what.err" |
				awk '/Requests\/sec/ {print $2}')
			echo "$store stream.$what run $r: $rps req/s"
			echo "$rps" >> "$dir/$what.rps"
		done
		echo "$store stream.$what median of $runs: $(median < "$dir/$what.rps") req/s (wrk -t2 -c16 -d${secs}s)"
		[ -s "$dir/$what.err" ] && { echo "errors:"; sort "$dir/$what.err" | uniq -c | head; }
	done
	kill "$srv"; wait "$srv" 2>/dev/null; srv=
}

case "${BENCH_STORE:-postgres}" in
both) bench_store postgres; bench_store sqlite ;;
*) bench_store "${BENCH_STORE:-postgres}" ;;
esac
