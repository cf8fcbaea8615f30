#!/bin/sh
# Compares two profile directories written by contrib/profile-baseline.sh:
# throughput, latency, allocations per request (overall and by method), and
# the functions whose CPU time and allocation count per request changed most.
#   contrib/compare-profiles.sh BASE OPT
# The CPU comparison is per request (samples x sampling period / requests in
# the profile window), so runs of different throughput compare fairly. When
# both runs used the very same binary, google-pprof --base shows the sample
# difference as well; across two builds it cannot (it subtracts by address),
# and the script says so.
set -eu
[ $# = 2 ] || { echo "usage: contrib/compare-profiles.sh BASE OPT (two directories of contrib/profile-baseline.sh)" >&2; exit 2; }
base=$1 opt=$2
for d in "$base" "$opt"; do
	[ -f "$d/load-test-results.json" ] || { echo "compare-profiles: $d has no load-test-results.json (not a profile-baseline directory?)" >&2; exit 1; }
done

python3 - "$base" "$opt" <<'PY'
import json, os, re, struct, sys

base, opt = sys.argv[1], sys.argv[2]


def load(d, name):
    try:
        with open(os.path.join(d, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def meta(d):
    m = {}
    try:
        with open(os.path.join(d, "meta.txt")) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                m[k] = v
    except OSError:
        pass
    return m


def change(a, b, unit="", better="up"):
    if a is None or b is None:
        return "%12s -> %-12s n/a" % ("-" if a is None else "%.3f" % a, "-" if b is None else "%.3f" % b)
    pct = "" if a == 0 else "%+.1f %%" % ((b - a) * 100.0 / a)
    return "%12.3f -> %-12.3f %s%s" % (a, b, unit, ("  " + pct) if pct else "")


rb, ro = load(base, "load-test-results.json"), load(opt, "load-test-results.json")
mb, mo = meta(base), meta(opt)
print("compare %s -> %s" % (base, opt))
for k in ("git", "store", "workers", "mix", "connections", "duration"):
    if mb.get(k) != mo.get(k):
        print("  note: %s differs: %s -> %s" % (k, mb.get(k, "?"), mo.get(k, "?")))
for k in ("mix", "connections"):
    if rb.get(k) != ro.get(k):
        print("  WARNING: the loads differ (%s %s -> %s): the numbers are not comparable" % (k, rb.get(k), ro.get(k)))
if rb["errors"] or ro["errors"]:
    print("  WARNING: errors in the runs: %d -> %d" % (rb["errors"], ro["errors"]))
print()
print("  throughput    %s" % change(rb["ops_per_sec"], ro["ops_per_sec"], " ops/s"))
for k, label in (("avg_latency_ms", "latency avg"), ("p50_ms", "latency p50"), ("p95_ms", "latency p95"),
                 ("p99_ms", "latency p99"), ("max_ms", "latency max")):
    print("  %-13s %s" % (label, change(rb.get(k), ro.get(k), " ms")))
print("  allocs/req    %s" % change(rb.get("allocs_per_request"), ro.get("allocs_per_request")))
print("  bytes/req     %s" % change(rb.get("alloc_bytes_per_request"), ro.get("alloc_bytes_per_request")))
for r, d in ((rb, base), (ro, opt)):
    if r.get("allocs_per_request") is None:
        print("    (no allocation counts in %s: %s)" % (d, (r.get("allocs") or {}).get("reason")))
print("  client CPU    %s" % change(rb["client"]["cpu_us_per_op"], ro["client"]["cpu_us_per_op"], " us/req"))

rows = []
for m in ("stream.write", "stream.get", "category.get", "sys.version"):
    a, b = load(base, "methods/%s.json" % m), load(opt, "methods/%s.json" % m)
    if a or b:
        rows.append((m, a and a.get("allocs_per_request"), b and b.get("allocs_per_request"),
                     a and a.get("ops_per_sec"), b and b.get("ops_per_sec")))
if rows:
    print()
    print("  by method (each alone):")
    for m, a, b, ta, tb in rows:
        print("    %-13s allocs/req %s" % (m, change(a, b)))
        print("    %-13s ops/s      %s" % ("", change(ta, tb)))


def pprof_text(path):
    """{function: flat count} and the total of a google-pprof --text listing."""
    flat, total = {}, None
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"^Total: ([\d.]+)", line)
                if m:
                    total = float(m.group(1))
                    continue
                p = line.split(None, 5)
                if len(p) == 6 and p[1].endswith("%"):
                    try:
                        flat[p[5].strip()] = flat.get(p[5].strip(), 0.0) + float(p[0])
                    except ValueError:
                        pass
    except OSError:
        return None, None
    return flat, total


def period_us(path):
    """The sampling period of a gperftools CPU profile (its header's fourth word)."""
    try:
        with open(path, "rb") as f:
            w = struct.unpack("=5Q", f.read(40))
        return w[3] if w[0] == 0 and w[1] == 3 else None
    except (OSError, struct.error):
        return None


def diff(title, unit, per_b, per_o, n=15):
    names = set(per_b) | set(per_o)
    rows = sorted(names, key=lambda k: -abs(per_o.get(k, 0) - per_b.get(k, 0)))[:n]
    print()
    print(title)
    print("    %12s %12s %12s  function" % ("base", "opt", "change"))
    for k in rows:
        a, b = per_b.get(k, 0.0), per_o.get(k, 0.0)
        print("    %12.3f %12.3f %+12.3f  %s" % (a, b, b - a, k))
    print("    (%s)" % unit)


# CPU per request by function
fb, tb = pprof_text(os.path.join(base, "cpu.txt"))
fo, to = pprof_text(os.path.join(opt, "cpu.txt"))
if fb is None or fo is None:
    print()
    print("  CPU: no cpu.txt in %s (the run had no CPU profile)" % (base if fb is None else opt))
else:
    per = []
    for d, r, flat in ((base, rb, fb), (opt, ro, fo)):
        pu, secs = period_us(os.path.join(d, "cpu.prof")), float(meta(d).get("cpu_seconds") or 0)
        reqs = r["ops_per_sec"] * secs
        per.append({k: v * pu / reqs for k, v in flat.items()} if pu and reqs else None)
    if per[0] is not None and per[1] is not None:
        diff("  CPU per request, largest changes (microseconds of CPU per request, all workers):",
             "flat samples x sampling period / requests in the profile window", per[0], per[1])
    else:
        diff("  CPU share, largest changes (% of the samples):", "percent of all samples",
             {k: v * 100 / tb for k, v in fb.items()}, {k: v * 100 / to for k, v in fo.items()})

# allocations per request by function
ab, atb = pprof_text(os.path.join(base, "allocs.txt"))
ao, ato = pprof_text(os.path.join(opt, "allocs.txt"))
if ab is not None and ao is not None and rb["total_ops"] and ro["total_ops"]:
    diff("  allocations per request, largest changes:", "allocation calls during the load / requests",
         {k: v / rb["total_ops"] for k, v in ab.items()}, {k: v / ro["total_ops"] for k, v in ao.items()})
PY

# The literal google-pprof --base difference, where it is meaningful.
if [ -f "$base/cpu.prof" ] && [ -f "$opt/cpu.prof" ]; then
	echo
	if cmp -s "$base/eventodb" "$opt/eventodb" && grep -qx aslr=off "$base/meta.txt" && grep -qx aslr=off "$opt/meta.txt"
	then
		echo "  google-pprof --text --base (one binary at the same addresses; samples of OPT less BASE):"
		google-pprof --text --base="$base/cpu.prof" "$opt/eventodb" "$opt/cpu.prof" 2>/dev/null | head -n 20 | sed 's/^/    /'
	elif cmp -s "$base/eventodb" "$opt/eventodb"; then
		echo "  google-pprof --base: not run, a run had address randomization on (no setarch -R), so the same"
		echo "  function has different addresses in the two profiles; the table above compares by name."
	else
		echo "  google-pprof --base: not run, the two runs used different binaries and it subtracts by address;"
		echo "  the per-request table above compares by function name instead."
	fi
fi
