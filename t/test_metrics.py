#!/usr/bin/env python3
"""GET /metrics (Prometheus text format 0.0.4, SPEC D23) and the admin listener (--admin-listen):
every line parses under a strict reading of the format, the counters move with traffic, and the
admin listener serves without a token while the public port still wants the admin token."""

import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s)(?:,(?:%s))*\})? (\S+)$" % (NAME, LABEL, LABEL))
HELP = re.compile(r"^# HELP (%s) (.+)$" % NAME)
TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)


def parse_exposition(text):
    """Strict parse: returns {family: {"type":..., "help":..., "samples": {(name, labels): value}}}.
    Raises AssertionError on anything the format does not allow."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    fams, current = {}, None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (n, line)
        assert line == line.strip() and line, "blank or padded line, " + where
        m = HELP.match(line)
        if m:
            assert m.group(1) not in fams, "family declared twice, " + where
            fams[m.group(1)] = {"help": m.group(2), "type": None, "samples": {}}
            current = m.group(1)
            continue
        m = TYPE.match(line)
        if m:
            assert m.group(1) == current, "TYPE without its HELP just before, " + where
            assert fams[current]["type"] is None, "second TYPE, " + where
            fams[current]["type"] = m.group(2)
            continue
        assert not line.startswith("#"), "unknown comment, " + where
        m = SAMPLE.match(line)
        assert m, "not a sample, " + where
        name, labels, value = m.group(1), (m.group(2) or "{}")[1:-1], m.group(3)
        v = float(value)  # raises on a malformed number
        assert not math.isnan(v), where
        fam = current
        assert fam is not None and fams[fam]["type"] is not None, "sample before its TYPE, " + where
        t = fams[fam]["type"]
        if t == "histogram":
            assert name in (fam + "_bucket", fam + "_sum", fam + "_count"), "stray histogram sample, " + where
        else:
            assert name == fam, "sample outside its family, " + where
        if t == "counter":
            assert name.endswith("_total"), "a counter not named _total, " + where
            assert v >= 0, where
        key = (name, labels)
        assert key not in fams[fam]["samples"], "duplicate series, " + where
        fams[fam]["samples"][key] = v
    for fam, f in fams.items():
        assert f["samples"], "family without samples: " + fam
        assert fam.startswith("eventodb_"), "name without the eventodb_ prefix: " + fam
    return fams


def value(fams, name, labels=""):
    for fam in fams.values():
        if (name, labels) in fam["samples"]:
            return fam["samples"][(name, labels)]
    raise KeyError((name, labels))


class TestMetrics(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        if harness.STORE != "sqlite":
            harness.pg_cluster()
        cls.admin_port = harness.free_port()
        cls.srv = harness.Server(name="metrics", workers=2,
                                 extra=["--admin-listen", "127.0.0.1:%d" % cls.admin_port]).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def scrape(self):
        r = harness.http_request("127.0.0.1", self.admin_port, "GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return parse_exposition(r.raw.decode("utf-8"))

    def test_every_line_parses(self):
        fams = self.scrape()
        types = {f: d["type"] for f, d in fams.items()}
        for fam in ("eventodb_http_requests_total", "eventodb_rpc_stream_write_total",
                    "eventodb_version_conflicts_total", "eventodb_sse_pokes_total", "eventodb_sse_coalesced_total",
                    "eventodb_sse_resyncs_total", "eventodb_sse_overruns_total", "eventodb_import_records_total",
                    "eventodb_pool_gets_total", "eventodb_pool_misses_total", "eventodb_worker_restarts_total",
                    "eventodb_rpc_responses_total", "eventodb_write_ring_appends_total"):
            self.assertEqual(types.get(fam), "counter", fam)
        for fam in ("eventodb_requests_in_flight", "eventodb_db_connections", "eventodb_db_queue_waiting",
                    "eventodb_pool_in_use", "eventodb_sse_subscribers", "eventodb_write_ring_head_bytes",
                    "eventodb_process_start_time_seconds", "eventodb_http_connections", "eventodb_worker_connections"):
            self.assertEqual(types.get(fam), "gauge", fam)
        self.assertEqual(types.get("eventodb_request_duration_seconds"), "histogram")
        # base units only: seconds and bytes, never micro- or milliseconds
        self.assertEqual([f for f in fams if re.search(r"_(us|ms|usec|msec|micro\w*|milli\w*)(_|$)", f)], [])
        h = fams["eventodb_request_duration_seconds"]["samples"]
        buckets = sorted(((float(re.search(r'le="([^"]+)"', k[1]).group(1)), v) for k, v in h.items()
                          if k[0].endswith("_bucket")))
        self.assertEqual(buckets[-1][0], math.inf)
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), "buckets must be cumulative")
        self.assertEqual(counts[-1], h[("eventodb_request_duration_seconds_count", "")])
        self.assertGreater(value(fams, "eventodb_process_start_time_seconds"), 1.7e9)
        for w in (1, 2):
            value(fams, "eventodb_worker_up", 'worker="%d"' % w)

    def test_counters_move_with_traffic(self):
        srv = self.srv
        before = self.scrape()
        s = unique("m") + "-1"
        for _ in range(7):
            srv.write(s)
        r = srv.rpc("stream.write", s, {"type": "T", "data": {}}, {"expectedVersion": 0})
        self.assertEqual(r.status, 409)
        srv.call("stream.get", s)
        after = self.scrape()

        def delta(name, labels=""):
            return value(after, name, labels) - value(before, name, labels)

        self.assertEqual(delta("eventodb_rpc_stream_write_total"), 8)
        self.assertEqual(delta("eventodb_rpc_responses_total", 'method="stream.write",class="2xx"'), 7)
        self.assertEqual(delta("eventodb_rpc_responses_total", 'method="stream.write",class="4xx"'), 1)
        self.assertEqual(delta("eventodb_rpc_responses_total", 'method="stream.get",class="2xx"'), 1)
        self.assertEqual(delta("eventodb_version_conflicts_total") + delta("eventodb_index_conflicts_total") >= 1,
                         True)
        # the scrape itself is one request on top of the nine
        self.assertGreaterEqual(delta("eventodb_request_duration_seconds_count"), 9)
        self.assertGreaterEqual(delta("eventodb_http_2xx_total"), 8)
        self.assertGreater(value(after, "eventodb_db_connections"), 0)

    def test_grafana_dashboard_uses_only_exported_metrics(self):
        import json
        path = os.path.join(harness.REPO, "contrib", "grafana", "eventodb.json")
        with open(path) as f:
            dash = json.load(f)
        names = {k[0] for fam in self.scrape().values() for k in fam["samples"]}
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        self.assertGreater(len(exprs), 10)
        for e in exprs:
            for name in re.findall(r"eventodb_[a-z_0-9]+", e):
                with self.subTest(expr=e):
                    self.assertIn(name, names, "the dashboard uses a metric the server does not export")

    def test_admin_listener_serves_without_token_public_port_refuses(self):
        srv = self.srv
        for path in ("/metrics", "/debug/stats", "/health"):
            with self.subTest(path=path):
                r = harness.http_request("127.0.0.1", self.admin_port, "GET", path)
                self.assertEqual(r.status, 200, r)
        # the admin listener is not the public API
        r = harness.http_request("127.0.0.1", self.admin_port, "POST", "/rpc", body='["sys.version"]',
                                 headers={"Authorization": "Bearer " + srv.token})
        self.assertError(r, 404, "NOT_FOUND")
        ns, tok = srv.create_namespace()
        for path in ("/metrics", "/debug/stats"):
            with self.subTest(path=path):
                self.assertError(srv.get(path), 401, "AUTH_REQUIRED")
                self.assertError(srv.get(path, headers={"Authorization": "Bearer " + tok}), 403, "AUTH_UNAUTHORIZED")
                r = srv.get(path, headers={"Authorization": "Bearer " + srv.token})
                self.assertEqual(r.status, 200, r)
        parse_exposition(srv.get("/metrics", headers={"Authorization": "Bearer " + srv.token}).text)


class TestAdminListenOption(harness.TestCase):
    def test_non_loopback_needs_admin_listen_any(self):
        if harness.STORE != "sqlite":
            harness.pg_cluster()
        port = harness.free_port()
        srv = harness.Server(name="adm-any", workers=1, extra=["--admin-listen", "0.0.0.0:%d" % port])
        self.assertNotEqual(srv.run_to_exit(), 0)
        self.assertIn("not a loopback address", srv.output())
        self.assertIn("--admin-listen-any", srv.output())
        srv = harness.Server(name="adm-any2", workers=1,
                             extra=["--admin-listen", "0.0.0.0:%d" % port, "--admin-listen-any"]).start()
        try:
            r = harness.http_request("127.0.0.1", port, "GET", "/metrics")
            self.assertEqual(r.status, 200)
        finally:
            srv.stop()
        for bad in ("7117", "localhost:7117", "127.0.0.1:0", "127.0.0.1:99999", "[::1]7117"):
            with self.subTest(spec=bad):
                srv = harness.Server(name="adm-bad", workers=1, extra=["--admin-listen", bad])
                self.assertNotEqual(srv.run_to_exit(), 0)
                self.assertIn("--admin-listen", srv.output())

    def test_off_is_no_admin_listener(self):
        # --help calls "off" the default: the word itself must be accepted, like --access-log off
        if harness.STORE != "sqlite":
            harness.pg_cluster()
        srv = harness.Server(name="adm-off", workers=1, extra=["--admin-listen", "off"]).start()
        try:
            self.assertEqual(srv.get("/health").status, 200)
            self.assertNotIn("admin listener on", srv.output())
        finally:
            srv.stop()


if __name__ == "__main__":
    harness.main()
