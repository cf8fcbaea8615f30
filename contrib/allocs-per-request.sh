#!/bin/sh
# Heap allocations per request, whole worker process (libraries included),
# for each single-method mix of eventodb-loadtest, on servers built with
# ./configure --enable-alloc-stats: one throwaway PostgreSQL (fsync off: the
# count does not depend on it), one worker, each binary in turn.
#   contrib/allocs-per-request.sh LOADTEST SERVER [SERVER...]
# Prints one line per server and method: allocs/request and bytes/request.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
loadtest=$1
shift
[ -x "$loadtest" ] && [ $# -ge 1 ] || { echo "usage: $0 LOADTEST SERVER [SERVER...]" >&2; exit 2; }
port=${PORT:-23581}
. "$top/contrib/throwaway-pg.sh"
srv=
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	pg_throwaway_stop
}
trap cleanup EXIT INT TERM
pg_throwaway_start eventodb-allocs 23582 -c fsync=off -c synchronous_commit=off
tok="ns_ZGVmYXVsdA_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
for bin in "$@"; do
	"$bin" --listen 127.0.0.1 --port $port --workers 1 --db-url "postgres://postgres@127.0.0.1:$pgport/eventodb" \
		--token "$tok" --log-level warn >"$dir/server.log" 2>&1 &
	srv=$!
	for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
	for mix in stream.write stream.get category.get sys.version; do
		"$loadtest" --url "http://127.0.0.1:$port" --token "$tok" --mix $mix --duration ${SECONDS_EACH:-5}s \
			--connections 4 --quiet --output "$dir/r.json" >/dev/null 2>&1 || true
		python3 - "$dir/r.json" "$bin" "$mix" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def num(v):
    return float("nan") if v is None else v
print("%-40s %-14s %8.1f allocs/req %9.0f B/req  (%d requests, %s)" % (sys.argv[2][-40:], sys.argv[3],
      num(r.get("allocs_per_request")), num(r.get("alloc_bytes_per_request")), r["total_ops"],
      "counting" if (r.get("allocs") or {}).get("available") else (r.get("allocs") or {}).get("reason")))
PY
	done
	kill "$srv"; wait "$srv" 2>/dev/null || true; srv=
done
