#!/usr/bin/env python3
"""The micro-benchmarks (t/bench, make bench) in their short mode: every line
parses like `go test -benchmem` output, the counting allocator sees library
allocations, and the stream-name helpers allocate nothing."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BENCH = os.environ.get("EVENTODB_BENCH_BIN") or os.path.join(harness.REPO, "t", "bench")
LINE = re.compile(r"^(Benchmark[A-Za-z0-9_/]+)\t(\d+)\t(\d+(?:\.\d+)?) ns/op\t(\d+) B/op\t(\d+) allocs/op$")


def run_bench(*args, env=None):
    e = dict(os.environ)
    e.update(env or {"BENCH_SHORT": "1"})
    p = subprocess.run([BENCH] + list(args), capture_output=True, text=True, timeout=300, env=e)
    return p


class BenchTest(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(BENCH):
            raise AssertionError("benchmark binary not found: %s (make t/bench)" % BENCH)
        p = run_bench()
        cls.proc = p
        cls.rows = {}
        cls.bad = []
        for line in p.stdout.splitlines():
            m = LINE.match(line)
            if m is None:
                cls.bad.append(line)
                continue
            cls.rows[m.group(1)] = (int(m.group(2)), float(m.group(3)), int(m.group(4)), int(m.group(5)))

    def test_runs_and_every_line_parses(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        self.assertEqual(self.bad, [], "lines that are not name/iterations/ns/B/allocs")
        for line in self.proc.stdout.splitlines():
            self.assertEqual(len(line.split("\t")), 5, line)
        for name, (n, ns, b, allocs) in self.rows.items():
            self.assertGreater(n, 0, name)
            self.assertGreater(ns, 0, name)

    def test_every_case_is_there(self):
        want = ["BenchmarkWriteMessage/pg", "BenchmarkWriteMessage/sqlite", "BenchmarkWritePage100/pg",
                "BenchmarkWritePage100/sqlite", "BenchmarkStreamCategory", "BenchmarkStreamID",
                "BenchmarkStreamCardinalID", "BenchmarkRespRoundTrip", "BenchmarkRingAppend",
                "BenchmarkRingAppendRead", "BenchmarkTokenParse", "BenchmarkTokenLookup", "BenchmarkTokenAuth",
                "BenchmarkJSONEscape/plain", "BenchmarkJSONEscape/escapes", "BenchmarkJWStr/plain",
                "BenchmarkJWStr/escapes", "BenchmarkMallocFree/counted", "BenchmarkMallocFree/libc"]
        for name in want:
            self.assertIn(name, self.rows)

    def test_stream_name_helpers_allocate_nothing(self):
        for name in ("BenchmarkStreamCategory", "BenchmarkStreamID", "BenchmarkStreamCardinalID"):
            n, ns, b, allocs = self.rows[name]
            self.assertEqual((b, allocs), (0, 0), name)

    def test_library_allocations_are_counted(self):
        # jw_str into an evbuffer that is drained after every op: libevent
        # allocates a chain each time, and the counting allocator sees it.
        n, ns, b, allocs = self.rows["BenchmarkEvbufferFillDrain"]
        self.assertGreaterEqual(allocs, 1)
        self.assertGreaterEqual(b, 64)
        # the server's reusable response buffer does not
        self.assertEqual(self.rows["BenchmarkJWStr/plain"][3], 0)
        # the same escaping into a caller's array allocates nothing
        self.assertEqual(self.rows["BenchmarkJSONEscape/plain"][3], 0)
        # malloc through the counting allocator is counted, glibc's own name is not
        self.assertEqual(self.rows["BenchmarkMallocFree/counted"][2:], (64, 1))
        self.assertEqual(self.rows["BenchmarkMallocFree/libc"][2:], (0, 0))
        # replies are written into reused buffers: no allocation in steady state, one row or 100
        for case in ("BenchmarkWriteMessage/pg", "BenchmarkWritePage100/pg", "BenchmarkWritePage100/sqlite"):
            self.assertEqual(self.rows[case][3], 0, case)

    def test_filter_and_fixed_count(self):
        p = run_bench("StreamID", env={"BENCHTIME": "1000x"})
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual([l.split("\t")[0] for l in lines], ["BenchmarkStreamID"])
        self.assertEqual(lines[0].split("\t")[1], "1000")
        p = run_bench("NoSuchCase")
        self.assertNotEqual(p.returncode, 0)
        p = run_bench(env={"BENCHTIME": "soon"})
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    harness.main()
