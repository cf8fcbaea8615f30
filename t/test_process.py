#!/usr/bin/env python3
"""Process behaviour: worker respawn, non-blocking DB access, DB outage, SIGTERM (D13),
default token on restart (D7)."""

import http.client
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import make_token, unique  # noqa: E402

MSG = {"type": "T", "data": {"x": 1}}
ADMIN_TOKEN_RE = re.compile(r"ns_ZGVmYXVsdA_[0-9a-fA-F]{64}")


def setUpModule():
    harness.pg_cluster()


def tearDownModule():
    harness.cleanup()


def try_rpc(srv, method, *args, timeout=15, **kw):
    """rpc() that returns the exception instead of raising it."""
    try:
        return srv.rpc(method, *args, timeout=timeout, **kw)
    except (OSError, http.client.HTTPException) as e:
        return e


class TestCategoryIndex(harness.TestCase):
    def test_category_get_uses_the_category_index(self):
        """category.get must be served by messages_category (not a scan of the primary key):
        the index's scan counter grows when only category reads run."""
        srv = harness.Server(name="catindex", workers=1).start()
        try:
            cat = unique("idx")
            for i in range(30):
                srv.write("%s-%d" % (cat, i % 3), data={"i": i})
            pg = harness.pg_cluster()
            q = ("SELECT coalesce(sum(idx_scan),0) FROM pg_stat_user_indexes "
                 "WHERE schemaname='eventodb_default' AND indexrelname='messages_category'")

            def scans():
                return int(pg.psql(q) or 0)

            time.sleep(1.2)  # let earlier statistics reach the collector
            before = scans()
            for _ in range(5):
                got = srv.call("category.get", cat, {"position": 1, "batchSize": 10})
                self.assertEqual(len(got), 10)
                srv.call("category.get", cat, {"consumerGroup": {"member": 0, "size": 2}})
                srv.call("category.get", cat, {"correlation": "workflow"})
            self.assertTrue(harness.wait_until(lambda: scans() >= before + 15, 10),
                            "messages_category scans: before %d, after %d" % (before, scans()))
        finally:
            srv.stop()


class TestWorkers(harness.TestCase):
    def test_killed_worker_is_replaced(self):
        srv = harness.Server(name="workers", workers=2).start()
        try:
            kids = harness.wait_until(lambda: len(srv.worker_pids()) >= 2 and srv.worker_pids(), 10)
            self.assertTrue(kids, "no worker processes found under pid %d" % srv.pid)
            self.assertGreaterEqual(len(kids), 2, kids)
            victim = kids[0]
            os.kill(victim, signal.SIGKILL)
            t0 = time.monotonic()
            answered = False
            while time.monotonic() - t0 < 5:
                r = try_rpc(srv, "sys.version", timeout=2)
                if isinstance(r, harness.Resp) and r.status == 200:
                    answered = True
                    break
                time.sleep(0.05)
            self.assertTrue(answered, "server did not answer within 5 s after a worker was killed")

            def replaced():
                now = srv.worker_pids()
                new = [p for p in now if p not in kids]
                return len(now) >= len(kids) and victim not in now and new

            new = harness.wait_until(replaced, 5)
            self.assertTrue(new, "no new worker appeared (before %r, now %r)" % (kids, srv.worker_pids()))
            self.assertTrue(srv.running())
            # the whole server keeps working, on every worker
            s = unique("wk") + "-1"
            for i in range(40):
                r = try_rpc(srv, "stream.write", s, MSG)
                self.assertIsInstance(r, harness.Resp, r)
                self.assertEqual(r.status, 200, r)
            self.assertEqual(srv.call("stream.version", s), 39)
            self.assertEqual(srv.stop(), 0)
        finally:
            srv.stop()


class TestNonBlocking(harness.TestCase):
    def test_locked_category_does_not_block_worker(self):
        pg = harness.pg_cluster()
        srv = harness.Server(name="nonblock", workers=1, extra=["--db-pool-size", "2"]).start()
        sess = None
        try:
            srv.call("stream.write", "other-1", MSG)
            sess = pg.psql_session()
            sess.stdin.write("SELECT pg_advisory_lock(\"eventodb_default\".hash_64('lockcat'));\n")
            sess.stdin.flush()
            locked = harness.wait_until(lambda: pg.psql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1", 10)
            self.assertTrue(locked, "could not take the advisory lock")

            result = {}

            def writer():
                result["r"] = try_rpc(srv, "stream.write", "lockcat-1", MSG, timeout=60)
                result["t"] = time.monotonic()

            th = threading.Thread(target=writer)
            th.start()
            time.sleep(1.0)
            self.assertTrue(th.is_alive(), "write finished while the category lock was held: %r" % result)
            # the single worker still serves other requests quickly
            t0 = time.monotonic()
            for i in range(20):
                if i % 2:
                    r = try_rpc(srv, "stream.get", "other-1", timeout=5)
                    self.assertIsInstance(r, harness.Resp, r)
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(len(r.body), 1)
                else:
                    r = try_rpc(srv, "stream.version", "lockcat-1", timeout=5)
                    self.assertIsInstance(r, harness.Resp, r)
                    self.assertEqual(r.status, 200, r)
                    self.assertIsNone(r.body)
            elapsed = time.monotonic() - t0
            self.assertLess(elapsed, 5, "20 reads took %.1f s while a write was blocked" % elapsed)
            self.assertTrue(th.is_alive(), "write finished while the category lock was held: %r" % result)
            # other categories can still be written
            r = try_rpc(srv, "stream.write", "other-1", MSG, timeout=5)
            self.assertIsInstance(r, harness.Resp, r)
            self.assertEqual(r.status, 200, r)
            # release: the pending write completes
            t_release = time.monotonic()
            pg.close_session(sess)
            sess = None
            th.join(15)
            self.assertFalse(th.is_alive(), "write did not complete after the lock was released")
            r = result["r"]
            self.assertIsInstance(r, harness.Resp, r)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body["position"], 0)
            self.assertLess(result["t"] - t_release, 5)
            self.assertEqual(srv.call("stream.version", "lockcat-1"), 0)
        finally:
            pg.close_session(sess)
            srv.stop()


class TestDatabaseOutage(harness.TestCase):
    def test_outage_and_recovery(self):
        pg = harness.pg_cluster()
        srv = harness.Server(name="outage", workers=2).start()
        try:
            s = unique("out") + "-1"
            srv.call("stream.write", s, MSG)
            pg.stop("fast")
            try:
                calls = [("stream.version", s), ("stream.get", s), ("stream.write", s, MSG),
                         ("category.get", s.split("-")[0]), ("stream.last", s)]
                for call in calls:
                    with self.subTest(call=call[0]):
                        t0 = time.monotonic()
                        r = try_rpc(srv, *call, timeout=20)
                        took = time.monotonic() - t0
                        self.assertIsInstance(r, harness.Resp, "%s: no HTTP answer (%r) after %.1f s"
                                              % (call[0], r, took))
                        self.assertLessEqual(took, 15, "%s took %.1f s" % (call[0], took))
                        self.assertIn(r.status, (503, 500), r)
                        self.assertTrue(r.is_json, r)
                        self.assertTrue(r.error().get("code"), r)
                        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
                # requests that need no database still work
                r = try_rpc(srv, "sys.version", timeout=15)
                self.assertIsInstance(r, harness.Resp, r)
                self.assertEqual(r.status, 200, r)
                r = srv.get("/health", timeout=15)
                self.assertIsInstance(r, harness.Resp, r)
            finally:
                pg.start()
            t0 = time.monotonic()
            last = None
            ok = False
            while time.monotonic() - t0 < 15:
                last = try_rpc(srv, "stream.version", s, timeout=15)
                if isinstance(last, harness.Resp) and last.status == 200:
                    ok = True
                    break
                time.sleep(0.2)
            self.assertTrue(ok, "no recovery within 15 s after PostgreSQL restarted: %r" % (last,))
            self.assertEqual(last.body, 0)
            # every worker recovers: many requests, all fine
            for i in range(20):
                r = try_rpc(srv, "stream.write", s, MSG, timeout=15)
                if not (isinstance(r, harness.Resp) and r.status == 200):
                    # one retry per request for a connection found dead on first use
                    time.sleep(0.2)
                    r = try_rpc(srv, "stream.write", s, MSG, timeout=15)
                self.assertIsInstance(r, harness.Resp, r)
                self.assertEqual(r.status, 200, r)
            self.assertEqual(srv.call("stream.version", s), 20)
        finally:
            if not pg.running:
                pg.start()
            srv.stop()


class TestShutdown(harness.TestCase):
    def test_sigterm_exits_zero(self):
        srv = harness.Server(name="sigterm", extra=["--shutdown-timeout", "5"]).start()
        srv.call("stream.write", unique("sd") + "-1", MSG)
        kids = srv.worker_pids()
        # an idle keep-alive connection must not hold the shutdown up
        idle = srv.connection()
        self.assertEqual(srv.rpc("sys.version", conn=idle).status, 200)
        self.addCleanup(idle.close)
        srv.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            rc = srv.proc.wait(10)
        except Exception:  # noqa: BLE001
            rc = None
        took = time.monotonic() - t0
        try:
            self.assertEqual(rc, 0, "exit code %r after SIGTERM (%.1f s)" % (rc, took))
            self.assertLess(took, 5 + 1)
            gone = harness.wait_until(lambda: not any(harness.pid_alive(p) for p in kids), 5)
            self.assertTrue(gone, "workers still alive after exit: %r" % kids)
            self.assertIn("shutdown", srv.output().lower())
        finally:
            srv.stop()

    def test_sigterm_drains_in_flight_request(self):
        pg = harness.pg_cluster()
        srv = harness.Server(name="sigterm-drain", workers=1,
                             extra=["--shutdown-timeout", "10", "--db-pool-size", "2"]).start()
        sess = pg.psql_session()
        try:
            sess.stdin.write("SELECT pg_advisory_lock(\"eventodb_default\".hash_64('draincat'));\n")
            sess.stdin.flush()
            self.assertTrue(harness.wait_until(lambda: pg.psql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1", 10))
            result = {}

            def writer():
                result["r"] = try_rpc(srv, "stream.write", "draincat-1", MSG, timeout=30)

            th = threading.Thread(target=writer)
            th.start()
            time.sleep(0.5)
            self.assertTrue(th.is_alive())
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            self.assertIsNone(srv.proc.poll(), "server exited with a request in flight before the timeout")
            pg.close_session(sess)
            th.join(10)
            self.assertFalse(th.is_alive())
            r = result["r"]
            self.assertIsInstance(r, harness.Resp, r)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body["position"], 0)
            try:
                rc = srv.proc.wait(8)
            except Exception:  # noqa: BLE001
                rc = None
            self.assertEqual(rc, 0, "exit code after draining")
            self.assertEqual(pg.psql('SELECT count(*) FROM "eventodb_default".messages '
                                     "WHERE stream_name = 'draincat-1'"), "1")
        finally:
            pg.close_session(sess)
            srv.stop()

    def test_sigterm_with_stuck_request_is_bounded(self):
        pg = harness.pg_cluster()
        srv = harness.Server(name="sigterm-stuck", workers=1,
                             extra=["--shutdown-timeout", "2", "--db-pool-size", "2"]).start()
        sess = pg.psql_session()
        try:
            sess.stdin.write("SELECT pg_advisory_lock(\"eventodb_default\".hash_64('stuckcat'));\n")
            sess.stdin.flush()
            self.assertTrue(harness.wait_until(lambda: pg.psql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1", 10))
            result = {}

            def writer():
                result["r"] = try_rpc(srv, "stream.write", "stuckcat-1", MSG, timeout=30)

            th = threading.Thread(target=writer)
            th.start()
            time.sleep(0.5)
            self.assertTrue(th.is_alive())
            kids = srv.worker_pids()
            srv.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            try:
                rc = srv.proc.wait(12)
            except Exception:  # noqa: BLE001
                rc = None
            took = time.monotonic() - t0
            self.assertIsNotNone(rc, "server still running 12 s after SIGTERM with --shutdown-timeout 2")
            self.assertLess(took, 2 + 4, "shutdown took %.1f s with --shutdown-timeout 2" % took)
            th.join(10)
            self.assertFalse(th.is_alive(), "client request still hanging after the server exited")
            gone = harness.wait_until(lambda: not any(harness.pid_alive(p) for p in kids), 5)
            self.assertTrue(gone, "workers still alive after exit: %r" % kids)
        finally:
            pg.close_session(sess)
            srv.stop()


class TestDefaultTokenRestart(harness.TestCase):
    def test_d7(self):
        pg = harness.pg_cluster()
        url = pg.create_database("d7_" + unique("db"))
        tok = make_token("default")
        # first start: creates default with this token
        a = harness.Server(url, token=tok, name="d7-first").start()
        a.call("stream.write", "d7-1", MSG)
        self.assertEqual(a.stop(), 0)
        # restart without --token: starts, says default exists, prints no token
        b = harness.Server(url, with_token=False, name="d7-notoken").start()
        try:
            log = b.output()
            self.assertIsNone(ADMIN_TOKEN_RE.search(log), "a token was printed on restart:\n" + log[-3000:])
            self.assertRegex(log.lower(), r"default namespace.*exist|exist.*default namespace")
            self.assertEqual(b.call("stream.version", "d7-1", token=tok), 0)
        finally:
            b.stop()
        # a different --token: refuses to start with a clear error
        c = harness.Server(url, token=make_token("default"), name="d7-other")
        rc = c.run_to_exit(20)
        log = c.output()
        self.assertIsNotNone(rc, "server with a different --token did not exit:\n" + log[-3000:])
        self.assertNotEqual(rc, 0, log[-3000:])
        self.assertIn("token", log.lower(), log[-3000:])
        # the same token: starts
        d = harness.Server(url, token=tok, name="d7-same").start()
        try:
            self.assertEqual(d.call("stream.version", "d7-1", token=tok), 0)
            self.assertError(d.rpc("sys.version", token=c.token), 403, "AUTH_UNAUTHORIZED")
        finally:
            d.stop()

    def test_first_start_without_token_prints_working_token(self):
        pg = harness.pg_cluster()
        url = pg.create_database("d7b_" + unique("db"))
        a = harness.Server(url, with_token=False, name="d7-fresh").start()
        try:
            m = harness.wait_until(lambda: ADMIN_TOKEN_RE.search(a.output()), 5)
            self.assertTrue(m, "no default token printed on first start:\n" + a.output()[-3000:])
            tok = m.group(0)
            self.assertEqual(a.rpc("sys.version", token=tok).status, 200)
            self.assertTrue(a.call("ns.list", token=tok))
        finally:
            a.stop()
        # restart with the printed token: accepted
        b = harness.Server(url, token=tok, name="d7-fresh-again").start()
        try:
            self.assertEqual(b.rpc("sys.version", token=tok).status, 200)
        finally:
            b.stop()

    def test_token_for_other_namespace_refused(self):
        pg = harness.pg_cluster()
        url = pg.create_database("d7c_" + unique("db"))
        for bad in (make_token("notdefault"), "garbage"):
            with self.subTest(token=bad):
                s = harness.Server(url, token=bad, name="d7-bad")
                rc = s.run_to_exit(20)
                self.assertIsNotNone(rc, "server with --token %r kept running" % bad)
                self.assertNotEqual(rc, 0)


if __name__ == "__main__":
    harness.main()
