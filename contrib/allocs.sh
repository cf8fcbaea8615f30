#!/bin/sh
# Heap allocations per request, counted by valgrind: runs one worker under
# memcheck, sends N1 then N2 requests of a kind in two runs, and prints
# (allocs(N2) - allocs(N1)) / (N2 - N1) for stream.write and stream.get.
# Counts everything in the process (libevent, libpq, json-c, ours).
#   contrib/allocs.sh [N1] [N2]
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
n1=${1:-200}
n2=${2:-1200}
bin=${EVENTODB_BIN:-$top/src/eventodb}
command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 1; }
port=${PORT:-18090}
. "$top/contrib/throwaway-pg.sh"
trap pg_throwaway_stop EXIT INT TERM
pg_throwaway_start eventodb-allocs "${PGPORT_ALLOCS:-23435}"
tok="ns_ZGVmYXVsdA_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
# Worker allocations for n requests of one kind: the worker is the child
# valgrind process that is not the supervisor.
count() {
	kind=$1 n=$2
	valgrind --trace-children=yes --log-file="$dir/vg.%p" "$bin" --listen 127.0.0.1 --port $port --workers 1 \
		--db-pool-size 1 --db-url "postgres://postgres@127.0.0.1:$pgport/eventodb" --token "$tok" \
		--log-level warn >"$dir/srv.log" 2>&1 &
	srv=$!
	for i in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
	python3 - "$port" "$tok" "$kind" "$n" <<'PY'
import http.client, sys
port, tok, kind, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"Authorization": "Bearer " + tok}
for i in range(n):
    body = ('["stream.write","alloc-%d",{"type":"T","data":{"i":%d}}]' % (i % 10, i)) if kind == "write" \
        else '["stream.get","alloc-1",{"batchSize":10}]'
    c.request("POST", "/rpc", body, h)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
	kill -TERM $srv; wait $srv || true
	grep -l "worker\|total heap usage" "$dir"/vg.* >/dev/null
	# the worker's log is the one with the most allocations
	grep -h "total heap usage" "$dir"/vg.* | awk '{gsub(",","",$5); print $5}' | sort -n | tail -n 1
	rm -f "$dir"/vg.*
}
for kind in write get; do
	a=$(count $kind $n1)
	b=$(count $kind $n2)
	echo "stream.$kind: $(( (b - a) / (n2 - n1) )) heap allocations per request (whole worker process, valgrind; $n1 vs $n2 requests)"
done
