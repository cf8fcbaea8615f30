#!/usr/bin/env python3
"""Test mode (SPEC D2) on the embedded store, started exactly as the SDK harnesses do, and
concurrent writers on SQLite through two workers (issue: embedded store)."""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

ZERO_TOKEN = "ns_ZGVmYXVsdA_" + "0" * 64


class TestModeServer(harness.Server):
    """eventodb --test-mode --port=N --token=... (no address, no store flags)."""

    def __init__(self, extra=(), name="testmode", db_url="(test mode)"):
        super().__init__(db_url=db_url, token=ZERO_TOKEN, workers=None, extra=extra, name=name)
        self.pg_url = None if db_url == "(test mode)" else db_url

    def argv(self):
        a = [harness.BIN, "--test-mode", "--port=%d" % self.port, "--token=%s" % self.token]
        if self.pg_url:
            a.append("--db-url=%s" % self.pg_url)
        return a + self.extra

    def data_dir(self):
        m = re.search(r"data in (\S+)", self.log())
        return m.group(1) if m else None


SRV = None


def setUpModule():
    global SRV
    t0 = time.monotonic()
    SRV = TestModeServer().start()
    SRV.startup_seconds = time.monotonic() - t0


def tearDownModule():
    harness.cleanup()


class TestTestMode(harness.TestCase):
    def test_fast_start_on_loopback_with_embedded_store(self):
        self.assertLess(SRV.startup_seconds, 1.5, "healthy within ~1 s (includes process spawn)")
        h = SRV.call("sys.health", token=None)
        self.assertEqual(h["backend"], "sqlite")
        d = SRV.data_dir()
        self.assertTrue(d and os.path.isdir(d), d)
        # listens on loopback only: the listening socket is bound to 127.0.0.1
        with open("/proc/net/tcp") as f:
            local = [ln.split()[1] for ln in f.read().splitlines()[1:] if ln.split()[3] == "0A"]
        self.assertIn("0100007F:%04X" % SRV.port, local)
        self.assertNotIn("00000000:%04X" % SRV.port, local)

    def test_no_token_means_default(self):
        s = unique("tm") + "-1"
        r = SRV.rpc("stream.write", s, {"type": "T", "data": {"x": 1}}, token=None)
        self.assertOk(r)
        self.assertEqual(SRV.call("stream.version", s, token=ZERO_TOKEN), 0)
        # unparseable token and a non-Bearer header also mean default
        self.assertEqual(SRV.call("stream.version", s, token="garbage"), 0)
        r = SRV.rpc("stream.version", s, token=None, headers={"Authorization": "Basic abc"})
        self.assertEqual(r.body, 0)
        # default is the admin namespace
        self.assertOk(SRV.rpc("ns.list", token=None))

    def test_unknown_namespace_is_created_with_header(self):
        ns = unique("auto")
        tok = harness.make_token(ns)
        s = unique("iso") + "-1"
        r = SRV.rpc("stream.write", s, {"type": "T", "data": {}}, token=tok)
        self.assertOk(r)
        self.assertEqual(r.headers.get("X-EventoDB-Token"), tok)
        # second request: the namespace exists now, no header
        r = SRV.rpc("stream.version", s, token=tok)
        self.assertEqual(r.body, 0)
        self.assertIsNone(r.headers.get("X-EventoDB-Token"))
        # isolated from default
        self.assertIsNone(SRV.call("stream.version", s, token=None))
        info = SRV.call("ns.info", ns, token=None)
        self.assertEqual(info["namespace"], ns)
        self.assertEqual(info["messageCount"], 1)

    def test_custom_token_namespace_like_the_sdks(self):
        ns = "t_%d_custom" % os.getpid()
        tok = "ns_%s_%s" % (harness.b64url(ns), "0" * 64)
        r = SRV.call("ns.create", ns, {"token": tok, "description": "sdk style"}, token=ZERO_TOKEN)
        self.assertEqual(r["token"], tok)
        s = unique("c") + "-1"
        for i in range(3):
            SRV.write(s, data={"i": i}, token=tok)
        got = SRV.call("stream.get", s, token=tok)
        self.assertEqual([m[2] for m in got], [0, 1, 2])
        self.assertEqual([m[4]["i"] for m in got], [0, 1, 2])
        cats = SRV.call("ns.categories", token=tok)
        self.assertEqual(cats, [{"category": s.split("-")[0], "messageCount": 3, "streamCount": 1}])

    def test_concurrent_writers_through_two_workers(self):
        # 8 clients x 25 writes to one stream; positions must be 0..199, no gaps, no
        # duplicates, and no error (SQLITE_BUSY must never reach a client).
        s = unique("conc") + "-1"
        errors, positions = [], []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def client(i):
            conn = SRV.connection()
            barrier.wait(10)
            for j in range(25):
                r = SRV.rpc("stream.write", s, {"type": "T", "data": {"c": i, "j": j}}, token=None, conn=conn)
                with lock:
                    if r.status != 200:
                        errors.append(r)
                    else:
                        positions.append(r.body["position"])
            conn.close()

        ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(positions), list(range(200)))
        got = SRV.call("stream.get", s, {"batchSize": -1}, token=None)
        self.assertEqual([m[2] for m in got], list(range(200)))
        gp = [m[3] for m in got]
        self.assertEqual(len(set(gp)), 200)

    def test_auto_creation_stops_at_the_namespace_limit(self):
        srv = TestModeServer(name="testmode-limit", extra=["--max-namespaces", "3"]).start()
        try:
            made = []
            for _ in range(2):
                tok = harness.make_token(unique("lim"))
                r = srv.rpc("stream.write", "a-1", {"type": "T", "data": {}}, token=tok)
                self.assertOk(r)
                self.assertEqual(r.headers.get("X-EventoDB-Token"), tok)
                made.append(tok)
            over = unique("over")
            tok = harness.make_token(over)
            r = srv.rpc("stream.write", "a-1", {"type": "T", "data": {}}, token=tok)
            self.assertError(r, 507, "NAMESPACE_LIMIT")
            self.assertIsNone(r.headers.get("X-EventoDB-Token"))
            r = srv.get("/subscribe?stream=a-1&token=" + tok)
            self.assertError(r, 507, "NAMESPACE_LIMIT")
            r = srv.request("POST", "/import", body=b"", headers={"Authorization": "Bearer " + tok})
            self.assertError(r, 507, "NAMESPACE_LIMIT")
            # nothing was stored; the namespaces there and default go on working
            names = sorted(n["namespace"] for n in srv.call("ns.list", token=None))
            self.assertEqual(len(names), 3, names)
            self.assertNotIn(over, names)
            for t in made + [None]:
                self.assertEqual(srv.rpc("stream.version", "a-1", token=t).status, 200)
        finally:
            srv.stop()

    def test_zz_data_dir_removed_at_exit(self):
        srv = TestModeServer(name="testmode-exit").start()
        d = srv.data_dir()
        self.assertTrue(d and os.path.isdir(d))
        srv.write(unique("x") + "-1", token=None)
        srv.stop()
        self.assertEqual(srv.returncode, 0)
        self.assertFalse(os.path.exists(d), "test data directory %s must be removed" % d)


class TestModeWithPostgres(harness.TestCase):
    def test_test_mode_uses_given_store(self):
        url = harness.pg_cluster().url()
        srv = TestModeServer(name="testmode-pg", db_url=url).start()
        h = srv.call("sys.health", token=None)
        self.assertEqual(h["backend"], "postgres")
        ns = unique("pgauto")
        tok = harness.make_token(ns)
        r = srv.rpc("stream.write", "a-1", {"type": "T", "data": {}}, token=tok)
        self.assertOk(r)
        self.assertEqual(r.headers.get("X-EventoDB-Token"), tok)
        out = harness.pg_cluster().psql("SELECT count(*) FROM \"eventodb_%s\".messages" % ns)
        self.assertIn("1", out)
        srv.stop()


if __name__ == "__main__":
    harness.main()
