#!/bin/sh
# A baseline profile of the server under load, in profiles/<stamp>/:
# builds with profiling (--with-gperftools, and --enable-alloc-stats where
# this tree has it), starts a server (test mode on the embedded store by
# default; --db-url or --pg for PostgreSQL), saves the heap, allocation and
# request counters before the load, runs eventodb-loadtest, takes a CPU
# profile of every worker in the middle of the load, saves the counters
# again, and prints the top functions by CPU and the top allocation sites
# (with an SVG call graph where graphviz is installed). Every step the build
# or the server cannot do is reported as skipped, with the reason.
#
#   contrib/profile-baseline.sh [options] [-- eventodb-loadtest options]
#     --db-url URL     PostgreSQL (or sqlite://) instead of test mode; the
#                      admin token comes from $EVENTODB_TOKEN if that
#                      database already has one
#     --pg             a throwaway PostgreSQL cluster (contrib/throwaway-pg.sh)
#     --duration S     seconds of load (30)
#     --cpu-seconds S  length of the CPU profile, centred in the load (10)
#     --mix NAME       eventodb-loadtest --mix (mixed)
#     --connections N  (16)    --workers N  server workers (2)
#     --method-seconds S  then S seconds of each single-method mix, for
#                      allocations per request by method (5; 0: none)
#     --out DIR        instead of profiles/<stamp>
#     --no-build       profile the binaries as they are ($EVENTODB_BIN and
#                      $EVENTODB_LOADTEST_BIN if set, else those in src/)
# compare two directories with contrib/compare-profiles.sh.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

duration=30 cpu_secs=10 mix=mixed connections=16 workers=2 method_secs=5
db_url= use_pg=no build=yes out=
while [ $# -gt 0 ]; do
	case $1 in
	--db-url) db_url=$2; shift 2 ;;
	--db-url=*) db_url=${1#*=}; shift ;;
	--pg) use_pg=yes; shift ;;
	--duration) duration=$2; shift 2 ;;
	--cpu-seconds) cpu_secs=$2; shift 2 ;;
	--mix) mix=$2; shift 2 ;;
	--connections) connections=$2; shift 2 ;;
	--workers) workers=$2; shift 2 ;;
	--method-seconds) method_secs=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--no-build) build=no; shift ;;
	--) shift; break ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "profile-baseline: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done
for n in "$duration" "$cpu_secs" "$connections" "$workers" "$method_secs"; do
	case $n in '' | *[!0-9]*) echo "profile-baseline: not a whole number: '$n'" >&2; exit 2 ;; esac
done
[ "$cpu_secs" -lt "$duration" ] || { echo "profile-baseline: --cpu-seconds must be below --duration" >&2; exit 2; }

stamp=$(date -u +%Y%m%d-%H%M%S)
out=${out:-profiles/$stamp}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=${EVENTODB_BIN:-$top/src/eventodb}
lt=${EVENTODB_LOADTEST_BIN:-$top/src/eventodb-loadtest}
skipped=
say() { echo "$*" | tee -a "$out/summary.txt"; }
skip() { say "SKIPPED: $*"; skipped="$skipped
  - $*"; }
: > "$out/summary.txt"

# ---- build ------------------------------------------------------------------
alloc_build=no
if [ "$build" = yes ]; then
	[ -x configure ] || ./autogen.sh >/dev/null
	# gperftools is on by default where libprofiler is found: ask only if it is not in
	want=
	grep -q '^#define HAVE_GPERFTOOLS 1' autoconf.h 2>/dev/null || want=--with-gperftools
	if ./configure --help | grep -q -- --enable-alloc-stats; then
		want="$want --enable-alloc-stats"
	else
		skip "configure --enable-alloc-stats: this tree's configure has no such option yet, so the server cannot count allocations (allocs per request stay null)"
	fi
	old=
	[ -f config.status ] && old=$(./config.status --config)
	need=no
	for f in $want; do
		case " $old " in *" $f "* | *" '$f' "*) ;; *) need=yes ;; esac
	done
	if [ "$need" = yes ] || [ ! -f config.status ]; then
		say "reconfiguring this tree for profiling: ./configure $old $want"
		eval "./configure -q $old $want" >"$out/configure.log" 2>&1 || {
			tail -n 20 "$out/configure.log"; echo "profile-baseline: configure failed (see $out/configure.log)"; exit 1; }
	fi
	make -j"$(nproc 2>/dev/null || echo 2)" src/eventodb src/eventodb-loadtest >"$out/build.log" 2>&1 || {
		tail -n 30 "$out/build.log"; echo "profile-baseline: build failed (see $out/build.log)"; exit 1; }
	grep -q '^#define HAVE_GPERFTOOLS 1' autoconf.h ||
		skip "gperftools: not configured in (libprofiler missing?), so no CPU profile"
fi
[ -x "$bin" ] && [ -x "$lt" ] || { echo "profile-baseline: $bin or $lt missing: build first (or drop --no-build)"; exit 1; }
if [ -f config.status ]; then
	case " $(./config.status --config) " in *" --enable-alloc-stats "* | *" '--enable-alloc-stats' "*) alloc_build=yes ;; esac
fi
# The server runs from a copy kept with the profiles: google-pprof needs the
# very binary that ran, under the path the profile names, long after the tree
# was rebuilt. Without address randomization (setarch -R) two runs of one
# binary have the same addresses, so google-pprof --base can subtract them.
cp "$bin" "$out/eventodb"
run=
aslr=on
if setarch "$(uname -m)" -R true 2>/dev/null; then
	run="setarch $(uname -m) -R"
	aslr=off
fi

# ---- server -----------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
srv= dir=
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	srv=
	[ "$use_pg" = yes ] && pg_throwaway_stop
	[ -n "${hdr:-}" ] && rm -f "$hdr"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$use_pg" = yes ]; then
	. "$top/contrib/throwaway-pg.sh"
	pg_throwaway_start eventodb-profile "$(free_port)" -c max_connections=200
	db_url="postgres://postgres@127.0.0.1:$pgport/eventodb"
fi
token=${EVENTODB_TOKEN:-ns_ZGVmYXVsdA_$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}
port=$(free_port)
url=http://127.0.0.1:$port
# the token reaches curl through a header file, the server and the load
# tester through the environment: never on a command line
hdr=$(mktemp)
printf 'Authorization: Bearer %s\n' "$token" >"$hdr"
export EVENTODB_TOKEN="$token"
srv_args="--port $port --workers $workers --log-level warn"
if "$bin" help 2>&1 | grep -q -- --profile-dir; then
	mkdir -p "$out/server"
	srv_args="$srv_args --profile-dir $out/server"
fi
if [ -n "$db_url" ]; then
	store=$db_url
	$run "$out/eventodb" --listen 127.0.0.1 --db-url "$db_url" $srv_args >"$out/server.log" 2>&1 &
else
	store="test mode (embedded store)"
	$run "$out/eventodb" --test-mode $srv_args >"$out/server.log" 2>&1 &
fi
srv=$!
up=no
for i in $(seq 1 100); do
	curl -sf "$url/health" >/dev/null 2>&1 && { up=yes; break; }
	kill -0 "$srv" 2>/dev/null || break
	sleep 0.1
done
if [ "$up" != yes ]; then
	tail -n 20 "$out/server.log"
	echo "profile-baseline: the server did not start (see $out/server.log; with --db-url, set EVENTODB_TOKEN to that database's admin token)"
	exit 1
fi

# GET with the admin token into a file; prints the HTTP status (000: no answer)
get() { curl -s -o "$2" -w '%{http_code}' -H @"$hdr" --max-time "${3:-30}" "$url$1" || true; }
# the server's own words for a refusal
reason() { python3 - "$1" <<'PY'
import json, sys
try:
    print(json.load(open(sys.argv[1]))["error"]["message"])
except Exception:
    print(open(sys.argv[1], errors="replace").read(200).strip() or "no body")
PY
}
snapshot() { # when: before or after
	for what in stats pprof/heap pprof/allocs; do
		f=$out/$(echo "$what" | sed 's|.*/||')-$1.json
		st=$(get "/debug/$what" "$f")
		if [ "$st" != 200 ]; then
			[ "$1" = before ] && skip "GET /debug/$what answered $st: $(reason "$f")"
			mv "$f" "$f.$st"
		fi
	done
	# the allocation sites as a heap profile google-pprof reads
	if [ -f "$out/allocs-$1.json" ]; then
		st=$(get "/debug/pprof/allocs?format=pprof" "$out/allocs-$1.heap")
		[ "$st" = 200 ] || { [ "$1" = before ] && skip "GET /debug/pprof/allocs?format=pprof answered $st"; rm -f "$out/allocs-$1.heap"; }
	fi
	return 0
}

cat >"$out/meta.txt" <<EOF
stamp=$stamp
git=$(git describe --always --dirty 2>/dev/null || echo unknown)
configure=$( [ -f config.status ] && ./config.status --config || echo unknown)
alloc_stats_build=$alloc_build
aslr=$aslr
store=$store
workers=$workers
mix=$mix
connections=$connections
duration=$duration
cpu_seconds=$cpu_secs
EOF
say "profile-baseline: $store, $workers workers, $mix mix, $connections connections, ${duration}s; results in $out"

# ---- load, with a CPU profile in the middle ----------------------------------
snapshot before
"$lt" --url "$url" --duration "$duration" --mix "$mix" --connections "$connections" --profile-dir "$out" "$@" \
	>"$out/loadtest.txt" 2>"$out/loadtest.err" &
ltpid=$!
# the run starts with the first progress line (connections open, streams filled)
while kill -0 "$ltpid" 2>/dev/null && ! grep -q ' 1s ' "$out/loadtest.err"; do sleep 0.2; done
sleep $(( (duration - cpu_secs) / 2 - 1 > 0 ? (duration - cpu_secs) / 2 - 1 : 0 ))
st=$(get "/debug/pprof/profile?seconds=$cpu_secs" "$out/cpu.prof" $((cpu_secs + 60)))
if [ "$st" != 200 ]; then
	skip "GET /debug/pprof/profile answered $st: $(reason "$out/cpu.prof")"
	mv "$out/cpu.prof" "$out/cpu.prof.$st"
fi
ltrc=0
wait "$ltpid" || ltrc=$?
snapshot after
cat "$out/loadtest.txt" | tee -a "$out/summary.txt"
[ "$ltrc" = 0 ] || say "eventodb-loadtest exited with $ltrc (see $out/loadtest.err)"

# ---- allocations per request by method ------------------------------------------
if [ "$method_secs" -gt 0 ] && [ -f "$out/allocs-before.json" ]; then
	mkdir -p "$out/methods"
	for m in stream.write stream.get category.get sys.version; do
		"$lt" --url "$url" --duration "$method_secs" --mix "$m" --connections "$connections" --quiet \
			--output "$out/methods/$m.json" >"$out/methods/$m.txt" 2>&1 || true
	done
	say ""
	say "allocations per request, by method (${method_secs}s of each alone):"
	python3 - "$out/methods" <<'PY' | tee -a "$out/summary.txt"
import json, os, sys
d = sys.argv[1]
for m in ("stream.write", "stream.get", "category.get", "sys.version"):
    try:
        r = json.load(open(os.path.join(d, m + ".json")))
    except Exception as e:
        print("  %-13s no result (%s)" % (m, e)); continue
    a, b = r.get("allocs_per_request"), r.get("alloc_bytes_per_request")
    print("  %-13s %10s allocs %12s bytes  %9.1f ops/s" % (m, "-" if a is None else "%.2f" % a,
          "-" if b is None else "%.1f" % b, r["ops_per_sec"]))
PY
elif [ "$method_secs" -gt 0 ]; then
	skip "allocations per request by method: the server does not count allocations"
fi
cleanup

# ---- what the profiles show ------------------------------------------------------
have_dot=no
command -v dot >/dev/null 2>&1 && have_dot=yes
if ! command -v google-pprof >/dev/null 2>&1 && { [ -f "$out/cpu.prof" ] || [ -f "$out/allocs-after.heap" ]; }; then
	skip "reading the profiles: google-pprof is not installed (apt-get install google-perftools); they are in $out"
elif [ -f "$out/cpu.prof" ]; then
	if google-pprof --text --nodecount=1000 "$out/eventodb" "$out/cpu.prof" >"$out/cpu.txt" 2>"$out/cpu.pprof.err"; then
		say ""
		say "top functions by CPU (google-pprof --text, every worker, ${cpu_secs}s in the middle of the load):"
		head -n 21 "$out/cpu.txt" | tee -a "$out/summary.txt"
		if [ "$have_dot" = yes ]; then
			google-pprof --svg "$out/eventodb" "$out/cpu.prof" >"$out/cpu.svg" 2>/dev/null && say "call graph: $out/cpu.svg"
		else
			skip "SVG call graph: graphviz (dot) is not installed"
		fi
	else
		skip "google-pprof could not read cpu.prof: $(head -n 3 "$out/cpu.pprof.err")"
	fi
fi
if command -v google-pprof >/dev/null 2>&1 && [ -f "$out/allocs-before.heap" ] && [ -f "$out/allocs-after.heap" ]
then
	# what the load allocated: the after profile less the before one (same binary, so --base is exact)
	if google-pprof --text --alloc_objects --nodecount=1000 --base="$out/allocs-before.heap" "$out/eventodb" \
		"$out/allocs-after.heap" >"$out/allocs.txt" 2>"$out/allocs.pprof.err"; then
		say ""
		say "top allocation sites during the load (google-pprof --alloc_objects, base = before the load):"
		head -n 21 "$out/allocs.txt" | tee -a "$out/summary.txt"
		[ "$have_dot" = yes ] && google-pprof --svg --alloc_objects --base="$out/allocs-before.heap" \
			"$out/eventodb" "$out/allocs-after.heap" >"$out/allocs.svg" 2>/dev/null && say "allocation graph: $out/allocs.svg"
	else
		skip "google-pprof could not read the allocation profiles: $(head -n 3 "$out/allocs.pprof.err")"
	fi
elif [ -f "$out/allocs-before.json" ] && [ -f "$out/allocs-after.json" ]; then
	say ""
	say "top allocation sites during the load (from /debug/pprof/allocs):"
	python3 - "$out/allocs-before.json" "$out/allocs-after.json" <<'PY' | tee "$out/allocs-sites.txt" | head -n 21 | tee -a "$out/summary.txt"
import json, sys
def sites(p):
    return {(s.get("object"), s.get("function"), s.get("offset")): s for s in json.load(open(p)).get("sites", [])}
b, a = sites(sys.argv[1]), sites(sys.argv[2])
rows = sorted(((s["allocs"] - b.get(k, {}).get("allocs", 0), s["bytes"] - b.get(k, {}).get("bytes", 0), k)
               for k, s in a.items()), reverse=True)
for n, by, (obj, fn, off) in rows[:20]:
    if n > 0:
        print("%10d allocs %12d bytes  %s %s+%s" % (n, by, obj, fn or "?", off))
PY
fi

say ""
if [ -n "$skipped" ]; then
	say "skipped steps:$skipped"
else
	say "every step ran"
fi
say "everything is in $out (compare two runs: contrib/compare-profiles.sh BASE OPT)"
