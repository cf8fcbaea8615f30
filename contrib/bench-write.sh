#!/bin/sh
# Write batching side by side (SPEC D24). One throwaway PostgreSQL with fsync
# and synchronous_commit on (as in production); in every round, one after the
# other (the order of off/on alternates between rounds):
#   pgbench  Message DB's write_message, one transaction per write, 16 clients,
#            one category / 100 streams, on the same cluster
#   off, on  this server (same binary) with --write-batch-max 1 and with the
#            default, each on its own database of that cluster
# in these cases: one category / 100 streams at 16 connections (req/s); 64
# categories at 16 (req/s); one connection (p50 latency); 64 connections, one
# category (p99 latency); the embedded store at 16 connections (req/s).
# Prints every run, then the medians with their ratios and the write batch
# sizes each case produced (the servers' write_batch_* counters).
#   contrib/bench-write.sh [rounds (6)] [seconds (10)]
# Every run starts after a CHECKPOINT, so one run's dirty pages do not land
# on the next; an even number of rounds gives off and on the first turn
# equally often.
# Ports: PORT (servers, 4 from there, default 25180), PGPORT_BENCH (25434).
# BENCH_ON_ARGS: more options for the batching servers (to try other caps);
# BENCH_ARGS: options for all four servers; CASES: a subset of the cases.
# The commit flush dominates: run it on a quiet machine (the load average is
# printed before and after) and compare only numbers from one invocation.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-6}
secs=${2:-10}
bin=${EVENTODB_BIN:-$top/src/eventodb}
for tool in wrk pgbench curl python3; do
	command -v $tool >/dev/null || { echo "$tool not installed"; exit 1; }
done
base=${PORT:-25180} # the servers take base .. base+3; PostgreSQL PGPORT_BENCH
pgport_bench=${PGPORT_BENCH:-25434}
srvs=
. "$top/contrib/throwaway-pg.sh"
cleanup() {
	for p in $srvs; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	pg_throwaway_stop
}
trap cleanup EXIT INT TERM
pg_throwaway_start "${BENCH_PREFIX:-eventodb-bench-write}" "$pgport_bench" -c max_connections=300 -c fsync=on \
	-c synchronous_commit=on
psql_do() { as_pg "$pgbin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U postgres "$@"; }
for db in off on pgb; do as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres "$db"; done
# pgbench's database: Message DB's table and functions only
sed 's/{{SCHEMA_NAME}}/"eventodb_default"/g' "$top/src/sql/namespace/001_message_store.sql" | psql_do -d pgb >/dev/null
cp "$top/contrib/bench/write_message.sql" "$dir/write_message.sql"
chmod 644 "$dir/write_message.sql"
EVENTODB_TOKEN="ns_ZGVmYXVsdA_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
export EVENTODB_TOKEN

# start NAME PORT URL [args]: a server in the background, until /health answers
start() {
	name=$1 port=$2 url=$3
	shift 3
	"$bin" --listen 127.0.0.1 --port "$port" --db-url "$url" --token "$EVENTODB_TOKEN" --log-level warn \
		${BENCH_ARGS:-} "$@" >"$dir/server-$name.log" 2>&1 &
	srvs="$srvs $!"
	for i in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0; sleep 0.1; done
	echo "server $name did not start:"; cat "$dir/server-$name.log"; exit 1
}
pg_url() { echo "postgres://postgres@127.0.0.1:$pgport/$1"; }
mkdir -p "$dir/sq-off" "$dir/sq-on"
start off $base "$(pg_url off)" --write-batch-max 1
start on $((base + 1)) "$(pg_url on)" ${BENCH_ON_ARGS:-}
start sq-off $((base + 2)) sqlite://metadata.db --data-dir "$dir/sq-off" --write-batch-max 1
start sq-on $((base + 3)) sqlite://metadata.db --data-dir "$dir/sq-on" ${BENCH_ON_ARGS:-}
port_of() { case $1 in off) echo $base ;; on) echo $((base + 1)) ;; sq-off) echo $((base + 2)) ;; sq-on) echo $((base + 3)) ;; esac; }

# The write batch counters of a server: batches msgs and the eight size buckets.
counters() {
	curl -sf -H "Authorization: Bearer $EVENTODB_TOKEN" "http://127.0.0.1:$1/debug/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)["stats"]
print(" ".join(str(s[k]) for k in ["write_batches", "write_batch_msgs", "write_batch_1", "write_batch_2",
    "write_batch_le_4", "write_batch_le_8", "write_batch_le_16", "write_batch_le_32", "write_batch_le_64",
    "write_batch_gt_64"]))'
}

# wrk output to "req/s p50-ms p99-ms"
wrk_parse() {
	awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
	     /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
	     END { printf "%s %.3f %.3f\n", rps, p50, p99 }'
}

: >"$dir/results"
# measure CASE VARIANT CONNS THREADS SCRIPT
measure() {
	case_=$1 v=$2 conns=$3 thr=$4 script=$5 port=$(port_of "$2")
	psql_do -d pgb -c CHECKPOINT >/dev/null
	before=$(counters "$port")
	res=$(wrk -t"$thr" -c"$conns" -d"${secs}s" --latency -s "$top/contrib/bench/$script" "http://127.0.0.1:$port" \
		2>"$dir/wrk.err" | wrk_parse)
	after=$(counters "$port")
	errs=$(wc -l <"$dir/wrk.err")
	load=$(cut -d' ' -f1 /proc/loadavg)
	# case variant req/s p50 p99 errors load, then the ten counters' increase
	echo "$case_ $v $res $errs $load $before $after" | awk '{
		printf "%s %s %s %s %s %s %s", $1, $2, $3, $4, $5, $6, $7
		for (i = 8; i <= 17; i++) printf " %d", $(i + 10) - $i
		printf "\n" }' >>"$dir/results"
	tail -n 1 "$dir/results" | awk '{ b = $8 > 0 ? $9 / $8 : 0
		printf "  %-9s %-7s %9.0f req/s  p50 %7.3f ms  p99 %8.3f ms  errors %s  load %s  batch avg %.1f\n",
		$1, $2, $3, $4, $5, $6, $7, b }'
}

pgb() {
	psql_do -d pgb -c CHECKPOINT >/dev/null
	tps=$(as_pg "$pgbin/pgbench" -n -h 127.0.0.1 -p "$pgport" -U postgres -c 16 -j 2 -T "$secs" \
		-f "$dir/write_message.sql" pgb 2>/dev/null | awk '/^tps/ {print $3}')
	load=$(cut -d' ' -f1 /proc/loadavg)
	echo "cat16 pgbench $tps 0 0 0 $load 0 0 0 0 0 0 0 0 0 0" >>"$dir/results"
	printf "  %-9s %-7s %9.0f tps    (write_message, 16 clients)  load %s\n" cat16 pgbench "$tps" "$load"
}

echo "PostgreSQL $(psql_do -d pgb -c 'SHOW server_version'): fsync=$(psql_do -d pgb -c 'SHOW fsync')," \
	"synchronous_commit=$(psql_do -d pgb -c 'SHOW synchronous_commit'); $(nproc) CPUs; load at start: $(cat /proc/loadavg)"
echo "warming up"
for v in off on sq-off sq-on; do
	wrk -t2 -c16 -d2s -s "$top/contrib/bench/write-category.lua" "http://127.0.0.1:$(port_of $v)" >/dev/null 2>&1
done
# CASES: the cases to run (default all: cat16 many16 conn1 conn64 sqlite16)
cases=${CASES:-cat16 many16 conn1 conn64 sqlite16}
want() { case " $cases " in *" $1 "*) return 0 ;; esac; return 1; }
for r in $(seq 1 "$runs"); do
	echo "round $r of $runs (${secs}s each)"
	if [ $((r % 2)) = 1 ]; then order="off on"; sqorder="sq-off sq-on"; else order="on off"; sqorder="sq-on sq-off"; fi
	want cat16 && pgb
	want cat16 && for v in $order; do measure cat16 "$v" 16 2 write-category.lua; done
	want many16 && for v in $order; do measure many16 "$v" 16 2 write.lua; done
	want conn1 && for v in $order; do measure conn1 "$v" 1 1 write-category.lua; done
	want conn64 && for v in $order; do measure conn64 "$v" 64 2 write-category.lua; done
	want sqlite16 && for v in $sqorder; do measure sqlite16 "$v" 16 2 write-category.lua; done
done
echo "load at end: $(cat /proc/loadavg)"
echo
echo "Medians of $runs rounds (wrk, ${secs}s each; batch sizes from the servers' counters over all rounds):"
awk -v runs="$runs" '
function median(key,   n, i, j, t, a) {
	n = cnt[key]; if (n == 0) return 0
	for (i = 1; i <= n; i++) a[i] = val[key, i]
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(key, v) { cnt[key]++; val[key, cnt[key]] = v }
{
	c = $1; v = $2
	add(c SUBSEP v SUBSEP "rps", $3); add(c SUBSEP v SUBSEP "p50", $4); add(c SUBSEP v SUBSEP "p99", $5)
	errs[c, v] += $6; loadmin = (NR == 1 || $7 < loadmin) ? $7 : loadmin; loadmax = $7 > loadmax ? $7 : loadmax
	for (i = 0; i < 10; i++) bc[c, v, i] += $(8 + i)
}
function dist(c, v,   s, i, names) {
	split("1 2 3-4 5-8 9-16 17-32 33-64 >64", names, " ")
	if (bc[c, v, 0] == 0) return "-"
	s = sprintf("avg %.1f:", bc[c, v, 1] / bc[c, v, 0])
	for (i = 2; i < 10; i++) if (bc[c, v, i] > 0) s = s sprintf(" %s:%.0f%%", names[i - 1], 100 * bc[c, v, i] / bc[c, v, 0])
	return s
}
function row(label, c, m, unit,   off, on, r, pg) {
	if (cnt[c SUBSEP (c == "sqlite16" ? "sq-on" : "on") SUBSEP m] == 0) return
	off = median(c SUBSEP "off" SUBSEP m); on = median(c SUBSEP "on" SUBSEP m)
	if (c == "sqlite16") { off = median(c SUBSEP "sq-off" SUBSEP m); on = median(c SUBSEP "sq-on" SUBSEP m) }
	r = off > 0 ? on / off : 0
	printf "%-34s %10.3f %10.3f %8.2fx", label " (" unit ")", off, on, r
	pg = median("cat16" SUBSEP "pgbench" SUBSEP "rps")
	if (c == "cat16" && pg > 0) printf " %9.2fx", on / pg
	else printf " %10s", ""
	printf "  %s\n", dist(c, c == "sqlite16" ? "sq-on" : "on")
}
END {
	printf "%-34s %10s %10s %9s %10s  %s\n", "case", "off", "on", "on/off", "on/pgbench", "write batches with batching on"
	if (cnt["cat16" SUBSEP "pgbench" SUBSEP "rps"] > 0)
		printf "%-34s %10.0f\n", "pgbench write_message, 16 (tps)", median("cat16" SUBSEP "pgbench" SUBSEP "rps")
	row("one category, 16 conns", "cat16", "rps", "req/s")
	row("64 categories, 16 conns", "many16", "rps", "req/s")
	row("one connection, p50", "conn1", "p50", "ms")
	row("64 connections, p99", "conn64", "p99", "ms")
	row("embedded store, 16 conns", "sqlite16", "rps", "req/s")
	if (bc["cat16", "off", 0] > 0)
		printf "(batching off, for comparison: %s at 16 connections, one category)\n", dist("cat16", "off")
	printf "load average during the runs: %s to %s\n", loadmin, loadmax
	for (k in errs) if (errs[k] > 0) { split(k, p, SUBSEP); printf "errors: %s %s: %d\n", p[1], p[2], errs[k] }
}' "$dir/results"
