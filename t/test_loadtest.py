#!/usr/bin/env python3
"""eventodb-loadtest against the real server: in test mode on the embedded store and on
PostgreSQL. Its JSON must have every field, be consistent with itself, and its per-method
counts must equal the deltas of the server's own counters (GET /debug/stats) over the run."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LT_BIN = os.environ.get("EVENTODB_LOADTEST_BIN") or os.path.join(harness.REPO, "src", "eventodb-loadtest")
ZERO_TOKEN = "ns_ZGVmYXVsdA_" + "0" * 64

REQUIRED = ["timestamp", "duration_s", "total_ops", "writes", "reads", "errors", "ops_per_sec",
            "avg_latency_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
METHODS = ["stream.write", "stream.get", "category.get", "sys.version"]
COUNTERS = {"stream.write": "rpc_stream_write", "stream.get": "rpc_stream_get",
            "category.get": "rpc_category_get", "sys.version": "rpc_sys"}
PROGRESS_RE = re.compile(r"^eventodb-loadtest: +\d+s +\d+ ops/s +\d+ errors +p50 [\d.]+ ms +p99 [\d.]+ ms", re.M)


class TestModeServer(harness.Server):
    """eventodb --test-mode: the embedded store in a private directory, as the SDK suites run it."""

    def __init__(self):
        super().__init__(db_url="(test mode)", token=ZERO_TOKEN, workers=2, name="loadtest-testmode")

    def argv(self):
        return [harness.BIN, "--test-mode", "--port=%d" % self.port, "--token=%s" % self.token,
                "--workers=2", "--log-level=warn"]


def run_lt(args, cwd, timeout=120, token=None, env=None):
    """Runs the load tester; returns (returncode, stdout, stderr)."""
    argv = [LT_BIN] + list(args)
    if token is not None:
        argv += ["--token", token]
    e = dict(os.environ)
    e.pop("EVENTODB_TOKEN", None)
    if env:
        e.update(env)
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)
    return p.returncode, p.stdout, p.stderr


class LoadTestCases:
    """The cases, run on each server (SRV set by the subclass)."""

    SRV = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lt-", dir=harness.module_tmp())

    # -- helpers -------------------------------------------------------------
    def stats(self):
        r = self.SRV.get("/debug/stats", headers={"Authorization": "Bearer " + self.SRV.token})
        self.assertEqual(r.status, 200, r)
        return r.body["stats"]

    def allocs_status(self):
        r = self.SRV.get("/debug/pprof/allocs", headers={"Authorization": "Bearer " + self.SRV.token})
        return r.status

    def run_json(self, *args, expect_rc=0, token=None, **kw):
        tok = self.SRV.token if token is None else token
        out = os.path.join(self.tmp, "r-%d.json" % time.monotonic_ns())
        rc, so, se = run_lt(["--url", "http://127.0.0.1:%d" % self.SRV.port, "--output", out] + list(args),
                            self.tmp, token=tok, **kw)
        self.assertEqual(rc, expect_rc, "exit %d\nstdout:\n%s\nstderr:\n%s" % (rc, so, se))
        with open(out) as f:
            res = json.load(f)
        return res, so, se

    def assertConsistent(self, res, duration, connections):
        """Every field present and consistent with the others."""
        for k in REQUIRED:
            self.assertIn(k, res)
        self.assertRegex(res["timestamp"], harness.RFC3339_RE)
        now = time.time()
        self.assertLess(abs(harness.parse_rfc3339(res["timestamp"]) - now), 120)
        self.assertEqual(res["errors"], 0, res.get("first_error"))
        self.assertEqual(res["failures"], 0)
        self.assertIsNone(res["first_error"])
        self.assertGreater(res["total_ops"], 0)
        m = res["methods"]
        self.assertEqual(sorted(m), sorted(METHODS))
        self.assertEqual(res["total_ops"], res["writes"] + res["reads"] + res["other"])
        self.assertEqual(res["total_ops"], sum(m[x]["count"] for x in METHODS))
        self.assertEqual(res["writes"], m["stream.write"]["count"])
        self.assertEqual(res["reads"], m["stream.get"]["count"] + m["category.get"]["count"])
        self.assertEqual(res["other"], m["sys.version"]["count"])
        # the run lasts --duration plus the requests in flight at its end
        self.assertGreaterEqual(res["duration_s"], duration)
        self.assertLess(res["duration_s"], duration + 10)
        self.assertAlmostEqual(res["ops_per_sec"], res["total_ops"] / res["duration_s"],
                               delta=0.002 * res["ops_per_sec"] + 0.1)
        lat = [res[k] for k in ("min_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")]
        self.assertGreater(lat[0], 0)
        self.assertEqual(lat, sorted(lat), "percentiles ordered: %r" % (lat,))
        self.assertGreaterEqual(res["avg_latency_ms"], res["min_ms"])
        self.assertLessEqual(res["avg_latency_ms"], res["max_ms"])
        for name in METHODS:
            x = m[name]
            if x["count"] == 0:
                self.assertIsNone(x["p50_ms"])
                continue
            self.assertEqual(x["errors"], 0)
            ml = [x[k] for k in ("min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms")]
            self.assertEqual(ml, sorted(ml))
            self.assertGreaterEqual(x["max_ms"], 0)
            self.assertLessEqual(x["max_ms"], res["max_ms"])
            self.assertGreaterEqual(x["min_ms"], res["min_ms"])
        c = res["client"]
        self.assertGreater(c["cpu_s"], 0)
        self.assertAlmostEqual(c["cpu_us_per_op"], c["cpu_s"] * 1e6 / res["total_ops"], delta=0.01)
        self.assertEqual(c["reconnects"], 0)
        self.assertEqual(res["connections"], connections)

    def assertCountsMatch(self, res, before, after):
        """The load tester's counts are the server's counter deltas (prefill writes included)."""
        m = res["methods"]
        for name in METHODS:
            want = m[name]["count"] + (res["prefill_writes"] if name == "stream.write" else 0)
            self.assertEqual(after[COUNTERS[name]] - before[COUNTERS[name]], want, name)
            # and the tool saw the same deltas over its own window (after the prefill)
            self.assertEqual(m[name]["server_count"], m[name]["count"], name)
        self.assertEqual(after["rpc_errors"] - before["rpc_errors"], 0)
        self.assertTrue(res["server_counters"]["available"])
        self.assertTrue(res["server_counters"]["match"])

    def assertAllocs(self, res, single):
        """allocs are measured where the server offers /debug/pprof/allocs, null and explained otherwise."""
        st = self.allocs_status()
        a = res["allocs"]
        if st == 200:
            self.assertTrue(a["available"], a)
            self.assertIsNotNone(res["allocs_per_request"])
            self.assertGreaterEqual(res["allocs_per_request"], 0)
            self.assertAlmostEqual(res["allocs_per_request"], a["allocs"] / res["total_ops"], delta=0.006)
            # per worker: every worker, and together the run plus one snapshot's own allocations
            self.assertEqual([w["worker"] for w in a["per_worker"]], [1, 2])
            self.assertEqual(sum(w["allocs"] for w in a["per_worker"]), a["allocs"] + a["snapshot_allocs"])
            for name in METHODS:
                per = res["methods"][name]["allocs_per_request"]
                if single and res["methods"][name]["count"] > 0:
                    self.assertAlmostEqual(per, res["allocs_per_request"], delta=0.01)
                else:
                    self.assertIsNone(per)
        else:
            self.assertFalse(a["available"])
            self.assertIn("answered %d" % st, a["reason"])
            self.assertIsNone(res["allocs_per_request"])
            self.assertIsNone(res["alloc_bytes_per_request"])
            self.assertTrue(all(res["methods"][n]["allocs_per_request"] is None for n in METHODS))

    # -- cases ---------------------------------------------------------------
    def test_mixed_load_fields_counts_and_progress(self):
        streams = ["test-stream-%d" % i for i in range(20)]
        ver0 = {s: self.SRV.call("stream.version", s) for s in streams}
        before = self.stats()
        res, so, se = self.run_json("--duration", "2.5", "--connections", "4", "--streams", "20",
                                    "--read-every", "3")
        after = self.stats()
        self.assertEqual(res["mix"], "mixed")
        self.assertEqual(res["prefill_writes"], 0)
        self.assertConsistent(res, 2.5, 4)
        self.assertCountsMatch(res, before, after)
        self.assertAllocs(res, single=False)
        self.assertEqual(res["methods"]["category.get"]["count"] + res["other"], 0)
        # every connection reads once after every 3 writes
        self.assertLessEqual(abs(res["reads"] - res["total_ops"] / 4), 4)
        # the writes landed in test-stream-0..19, spread over all of them
        grown = {s: self.SRV.call("stream.version", s) - (-1 if ver0[s] is None else ver0[s]) for s in streams}
        self.assertEqual(sum(grown.values()), res["writes"])
        self.assertTrue(all(g > 0 for g in grown.values()), grown)
        got = self.SRV.call("stream.get", "test-stream-3", {"batchSize": 1})
        self.assertEqual(got[0][1], "LoadTest")
        # progress once a second on stderr, the summary on stdout
        self.assertGreaterEqual(len(PROGRESS_RE.findall(se)), 2, se)
        self.assertIn("counters   match the server's", so)
        self.assertIn("ops/s", so)

    def test_single_method_mixes(self):
        for mix in METHODS:
            with self.subTest(mix=mix):
                before = self.stats()
                res, so, se = self.run_json("--mix", mix, "--duration", "1", "--connections", "3", "--streams",
                                            "5", "--batch-size", "4", "--quiet")
                after = self.stats()
                self.assertConsistent(res, 1, 3)
                self.assertEqual(res["total_ops"], res["methods"][mix]["count"])
                self.assertCountsMatch(res, before, after)
                self.assertAllocs(res, single=True)
                # the reading mixes fill every stream with --batch-size messages first
                self.assertEqual(res["prefill_writes"], 20 if mix in ("stream.get", "category.get") else 0)
                self.assertEqual(PROGRESS_RE.findall(se), [])

    def test_read_heavy_and_category_read(self):
        for mix, read in (("read-heavy", "stream.get"), ("category-read", "category.get")):
            with self.subTest(mix=mix):
                before = self.stats()
                res, _, _ = self.run_json("--mix", mix, "--duration", "1.5", "--connections", "2", "--streams",
                                          "6", "--categories", "3", "--read-every", "4", "--quiet")
                after = self.stats()
                self.assertConsistent(res, 1.5, 2)
                self.assertCountsMatch(res, before, after)
                self.assertEqual(res["prefill_writes"], 60)
                self.assertEqual(res["reads"], res["methods"][read]["count"])
                # one write per four reads, on each connection
                self.assertLessEqual(abs(res["writes"] - res["total_ops"] / 5), 2)
                if mix == "category-read":
                    # three categories test0..test2; stream N is in test(N mod 3)
                    for c in range(3):
                        got = self.SRV.call("category.get", "test%d" % c, {"batchSize": -1})
                        names = {m[1] for m in got}
                        self.assertEqual(names, {"test%d-stream-%d" % (c, n) for n in range(6) if n % 3 == c})

    def test_output_in_profile_dir(self):
        d = os.path.join(self.tmp, "p", "q")
        rc, so, se = run_lt(["--url", "http://127.0.0.1:%d" % self.SRV.port, "--mix", "sys.version",
                             "--duration", "0.5", "--connections", "1", "--profile-dir", d, "--quiet"],
                            self.tmp, token=self.SRV.token)
        self.assertEqual(rc, 0, se)
        with open(os.path.join(d, "load-test-results.json")) as f:
            res = json.load(f)
        self.assertEqual(res["mix"], "sys.version")
        self.assertIn(os.path.join(d, "load-test-results.json"), so)
        # without --output or --profile-dir: the current directory; the token from the environment
        rc, so, se = run_lt(["--url", "http://127.0.0.1:%d" % self.SRV.port, "--mix", "sys.version",
                             "--duration", "0.3", "--quiet"], self.tmp, env={"EVENTODB_TOKEN": self.SRV.token})
        self.assertEqual(rc, 0, se)
        with open(os.path.join(self.tmp, "load-test-results.json")) as f:
            res = json.load(f)
        self.assertTrue(res["server_counters"]["available"], res["server_counters"])
        self.assertNotIn(self.SRV.token, so + se)
        with open(os.path.join(self.tmp, "load-test-results.json")) as f:
            self.assertNotIn(self.SRV.token, f.read())

    def test_interrupt_reports_what_was_done(self):
        out = os.path.join(self.tmp, "int.json")
        p = subprocess.Popen([LT_BIN, "--url", "http://127.0.0.1:%d" % self.SRV.port, "--token", self.SRV.token,
                              "--duration", "60", "--connections", "2", "--output", out],
                             cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # wait for the first progress line, so the run is under way
        line = p.stderr.readline()
        while line and not PROGRESS_RE.match(line):
            line = p.stderr.readline()
        p.send_signal(signal.SIGINT)
        so, se = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, se)
        with open(out) as f:
            res = json.load(f)
        self.assertTrue(res["interrupted"])
        self.assertLess(res["duration_s"], 30)
        self.assertGreater(res["total_ops"], 0)
        self.assertIn("interrupted", so)


class TestLoadTestTestMode(LoadTestCases, harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.SRV = TestModeServer().start()
        h = cls.SRV.call("sys.health")
        assert h["backend"] == "sqlite", h


class TestLoadTestPostgres(LoadTestCases, harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.SRV = harness.Server(db_url=harness.pg_cluster(), name="loadtest-pg").start()
        h = cls.SRV.call("sys.health")
        assert h["backend"] == "postgres", h

    def test_tenant_token_runs_without_server_counters(self):
        ns, tok = self.SRV.create_namespace()
        res, so, _ = self.run_json("--duration", "0.5", "--connections", "2", "--streams", "3", "--quiet",
                                   token=tok)
        self.assertEqual(res["errors"], 0)
        self.assertGreater(res["writes"], 0)
        self.assertFalse(res["server_counters"]["available"])
        self.assertIn("answered 403", res["server_counters"]["reason"])
        self.assertIn("admin token", res["server_counters"]["reason"])
        self.assertIn("counters   not compared", so)
        # the writes went to the tenant's namespace
        self.assertEqual(self.SRV.call("ns.info", ns)["messageCount"], res["writes"])

    def test_rejected_requests_are_errors(self):
        # a well-formed token of no namespace: every request is refused (403)
        bad = harness.make_token(harness.unique("nons"))
        res, so, _ = self.run_json("--duration", "0.5", "--connections", "2", "--quiet", expect_rc=1, token=bad)
        self.assertGreater(res["total_ops"], 0)
        self.assertEqual(res["errors"], res["total_ops"])
        self.assertEqual(res["failures"], 0)
        self.assertRegex(res["first_error"], r"^stream\.write: HTTP 403 \{.*AUTH_UNAUTHORIZED.*\}$")
        self.assertIn("first error", so)


class TestLoadTestCommandLine(harness.TestCase):
    def test_help(self):
        for flag in ("--help", "-h", "-help"):
            p = subprocess.run([LT_BIN, flag], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 0)
            self.assertEqual(p.stderr, "")
            for opt in ("--url", "--token", "--duration", "--connections", "--streams", "--read-every",
                        "--batch-size", "--categories", "--profile-dir", "--mix", "--output", "--help"):
                self.assertIn(opt, p.stdout)
            for mix in ["mixed", "read-heavy", "category-read"] + METHODS:
                self.assertRegex(p.stdout, r"(?m)^  %s " % re.escape(mix))
            self.assertIn("default 10", p.stdout)

    def test_man_page_lists_every_option_and_mix(self):
        builddir = os.environ.get("EVENTODB_BUILDDIR") or harness.REPO
        path = os.path.join(builddir, "man", "eventodb-loadtest.1")
        with open(path) as f:
            text = f.read()
        help_text = subprocess.run([LT_BIN, "--help"], capture_output=True, text=True, timeout=10).stdout
        opts = re.findall(r"(?m)^  --([a-z-]+)", help_text)
        self.assertGreaterEqual(len(opts), 14)
        for o in opts:
            self.assertIn(".B \\-\\-%s" % o.replace("-", "\\-"), text, "man page misses --%s" % o)
        for mix in ["mixed", "read-heavy", "category-read"] + METHODS:
            self.assertIn(".B %s\n" % mix.replace("-", "\\-"), text, mix)
        for sec in ("OPTIONS", "EXAMPLES", "FILES", "SEE ALSO", "EXIT STATUS"):
            self.assertIn(".SH %s" % sec, text)
        self.assertNotIn("@", text.splitlines()[0])
        if shutil.which("groff"):
            p = subprocess.run(["groff", "-ww", "-man", "-Tutf8", path], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.stderr, "", "groff warnings")

    def test_bad_flags_one_line_exit_2(self):
        tmp = tempfile.mkdtemp(prefix="lt-flags-", dir=harness.module_tmp())
        cases = [
            (["--bogus"], "unknown option --bogus"),
            (["--connections", "0"], "--connections must be between 1 and"),
            (["--connections", "many"], "--connections wants a whole number"),
            (["--duration", "soon"], "--duration wants a time"),
            (["--duration", "0"], "--duration must be between"),
            (["--read-every"], "--read-every needs a value"),
            (["--mix", "writes"], "unknown --mix \"writes\""),
            (["--url", "ftp://127.0.0.1/"], "must start with http://"),
            (["--url", "http://"], "invalid --url"),
            (["--token", "a b"], "invalid --token"),
            (["--streams", "2", "--categories", "3"], "--categories (3) cannot be more than --streams (2)"),
            (["--quiet=yes"], "--quiet takes no value"),
            (["leftover"], "unexpected argument \"leftover\""),
        ]
        for argv, msg in cases:
            with self.subTest(argv=argv):
                p = subprocess.run([LT_BIN] + argv, capture_output=True, text=True, timeout=10, cwd=tmp)
                self.assertEqual(p.returncode, 2, p)
                self.assertEqual(p.stdout, "")
                self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
                self.assertTrue(p.stderr.startswith("eventodb-loadtest: "), p.stderr)
                self.assertIn(msg, p.stderr)
        self.assertEqual(os.listdir(tmp), [])

    def test_unreachable_server(self):
        tmp = tempfile.mkdtemp(prefix="lt-down-", dir=harness.module_tmp())
        p = subprocess.run([LT_BIN, "--url", "http://127.0.0.1:%d" % harness.free_port(), "--duration", "1"],
                           capture_output=True, text=True, timeout=30, cwd=tmp)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("cannot reach", p.stderr)
        self.assertIn("refused", p.stderr)
        self.assertEqual(os.listdir(tmp), [])


class TestProfileScripts(harness.TestCase):
    """contrib/profile-baseline.sh and contrib/compare-profiles.sh end to end, on the binaries just
    built: every step the server offers runs, every other one is reported as skipped."""

    def test_baseline_then_compare(self):
        # what this build's server offers, asked of a server of its own
        srv = TestModeServer().start()
        h = {"Authorization": "Bearer " + srv.token}
        cpu_status = srv.get("/debug/pprof/profile?seconds=1", headers=h, timeout=60).status
        allocs_status = srv.get("/debug/pprof/allocs", headers=h).status
        srv.stop()
        out = os.path.join(tempfile.mkdtemp(prefix="lt-prof-", dir=harness.module_tmp()), "run")
        env = dict(os.environ, EVENTODB_BIN=harness.BIN, EVENTODB_LOADTEST_BIN=LT_BIN)
        env.pop("EVENTODB_TOKEN", None)
        p = subprocess.run(["sh", os.path.join(harness.REPO, "contrib", "profile-baseline.sh"), "--no-build",
                            "--duration", "4", "--cpu-seconds", "2", "--method-seconds", "1", "--connections", "4",
                            "--out", out], capture_output=True, text=True, timeout=300, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for f in ("load-test-results.json", "stats-before.json", "stats-after.json", "meta.txt", "summary.txt",
                  "eventodb", "server.log"):
            self.assertTrue(os.path.exists(os.path.join(out, f)), f)
        with open(os.path.join(out, "load-test-results.json")) as f:
            res = json.load(f)
        self.assertEqual(res["errors"], 0)
        self.assertTrue(res["server_counters"]["match"])
        with open(os.path.join(out, "summary.txt")) as f:
            summary = f.read()
        self.assertEqual(summary, p.stdout)
        if cpu_status == 200:
            with open(os.path.join(out, "cpu.txt")) as f:
                self.assertRegex(f.readline(), r"^Total: \d+ samples")
            self.assertIn("top functions by CPU", summary)
            if shutil.which("dot"):
                with open(os.path.join(out, "cpu.svg")) as f:
                    self.assertIn("<svg", f.read())
        else:
            self.assertIn("SKIPPED: GET /debug/pprof/profile answered %d" % cpu_status, summary)
            self.assertFalse(os.path.exists(os.path.join(out, "cpu.prof")))
        if allocs_status == 200:
            self.assertIsNotNone(res["allocs_per_request"])
            self.assertIn("allocations per request, by method", summary)
            self.assertIn("top allocation sites during the load", summary)
            for m in METHODS:
                with open(os.path.join(out, "methods", m + ".json")) as f:
                    mr = json.load(f)
                self.assertEqual(mr["mix"], m)
                self.assertIsNotNone(mr["methods"][m]["allocs_per_request"])
        else:
            self.assertIn("SKIPPED: GET /debug/pprof/allocs answered %d" % allocs_status, summary)
            self.assertIsNone(res["allocs_per_request"])
        self.assertIn("skipped steps:" if (cpu_status != 200 or allocs_status != 200) else "every step ran", summary)

        cmp = os.path.join(harness.REPO, "contrib", "compare-profiles.sh")
        p = subprocess.run(["sh", cmp, out, out], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"throughput +[\d.]+ -> [\d.]+ +ops/s  \+0\.0 %")
        self.assertRegex(p.stdout, r"latency p99 +[\d.]+ -> [\d.]+ +ms  \+0\.0 %")
        if cpu_status == 200:
            self.assertIn("CPU per request, largest changes", p.stdout)
            with open(os.path.join(out, "meta.txt")) as f:
                aslr_off = "aslr=off\n" in f.read()
            self.assertIn("google-pprof --text --base" if aslr_off else "a run had address randomization on",
                          p.stdout)
        p = subprocess.run(["sh", cmp, out], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run(["sh", cmp, out, harness.module_tmp()], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("has no load-test-results.json", p.stderr)


def tearDownModule():
    harness.cleanup()


if __name__ == "__main__":
    harness.main()
