#!/usr/bin/env python3
"""Faults under load (hardening campaign), all on loopback and bounded in time:

- SIGKILL of the supervisor under write load: the workers go within 1 s, a new server binds the same
  port at once, and every acknowledged write is there (both stores);
- PostgreSQL restarted under load: JSON 503s while it is down, nothing acknowledged lost, writes
  succeed within 2 s of it being back, and so do pokes across two servers on the one database;
- PostgreSQL without a free connection slot, at start and under load: clear errors, and recovery once
  slots free up;
- a soak of mixed traffic (writes, reads, category reads, subscribers coming and going, namespaces
  created and deleted, imports) sampling every process's RSS and open descriptors: no growth after
  the warm-up (both stores). EVENTODB_SOAK_SECONDS sets its length: 120 s by default, 30 s in
  sanitizer builds.

Correctness bounds (nothing lost, no descriptor growth, every error a JSON 503) are strict; timing
bounds are the ones the campaign promises, measured from events the test sees, never from sleeps.
"""

import http.client
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sse_client  # noqa: E402
from harness import unique  # noqa: E402

PG = harness.STORE == "postgres"


def setUpModule():
    if PG:
        harness.pg_cluster()


def tearDownModule():
    harness.cleanup()


def rpc(conn, token, method, *args, timeout=10):
    """One RPC on a persistent connection: (status, body) or (None, exception)."""
    body = json.dumps([method] + list(args)).encode()
    try:
        conn.request("POST", "/rpc", body=body, headers={"Authorization": "Bearer " + token,
                                                         "Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        ctype = r.getheader("Content-Type", "")
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        return None, e
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except ValueError:
        parsed = None
    if r.status != 200 and not (ctype.startswith("application/json") and isinstance(parsed, dict)
                                and isinstance(parsed.get("error"), dict)):
        parsed = ("NOT JSON", ctype, raw[:300])
    return r.status, parsed


class Writers:
    """Threads writing to streams of their own, one message at a time on a keep-alive connection,
    recording what was acknowledged (stream, position, seq) and every other outcome, with times."""

    def __init__(self, srv, n=3, cat=None, token=None):
        self.srv = srv
        self.cat = cat or unique("load")
        self.token = token or srv.token
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []      # (stream, position, seq)
        self.outcomes = []   # (time.monotonic() at the answer, status or None, body or exception)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, i):
        stream = "%s-%d" % (self.cat, i)
        conn = self.srv.connection(timeout=10)
        seq = 0
        while not self.stop.is_set():
            st, body = rpc(conn, self.token, "stream.write", stream, {"type": "T", "data": {"seq": seq}})
            now = time.monotonic()
            with self.lock:
                self.outcomes.append((now, st, body))
                if st == 200:
                    self.acked.append((stream, body["position"], seq))
            seq += 1
            if st is None:
                conn = self.srv.connection(timeout=10)
                time.sleep(0.02)  # the server is gone or restarting: do not spin

    def halt(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def successes(self):
        with self.lock:
            return sum(1 for o in self.outcomes if o[1] == 200)

    def wait_successes(self, n, timeout=20):
        return harness.wait_until(lambda: self.successes() >= n, timeout)


def stored(srv, stream, token=None):
    """The stream's messages. A worker that has had no database connection may still be in
    its reconnect back-off (at most 1 s) when the others already write again, and a new
    client connection can land on it: a 503 there is retried for 3 s, nothing else is."""
    deadline = time.monotonic() + 3
    while True:
        r = srv.rpc("stream.get", stream, {"batchSize": -1}, token=token or srv.token)
        if r.status != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if r.status != 200:
        raise AssertionError("stream.get(%r) -> %r" % (stream, r))
    return r.body


class Checks(harness.TestCase):
    def assert_acked_present(self, srv, writers):
        """Every acknowledged write is stored at the position it was acknowledged with."""
        by_stream = {}
        for stream, pos, seq in writers.acked:
            by_stream.setdefault(stream, []).append((pos, seq))
        self.assertTrue(by_stream, "no write was acknowledged")
        for stream, acks in by_stream.items():
            msgs = {m[2]: m[4] for m in stored(srv, stream, writers.token)}
            for pos, seq in acks:
                self.assertIn(pos, msgs, "%s: acknowledged position %d is missing" % (stream, pos))
                self.assertEqual(msgs[pos], {"seq": seq}, "%s: position %d holds another message" % (stream, pos))

    def assert_errors_are_json_503(self, outcomes):
        """Every answer that is not 200 is a JSON error body with status 503 (connection errors, when
        the server was not there at all, are not answers)."""
        bad = [(st, body) for _, st, body in outcomes if st not in (None, 200)
               and (st != 503 or not isinstance(body, dict) or not body["error"].get("code"))]
        self.assertEqual(bad[:5], [], "%d answers were not JSON 503s" % len(bad))


# ---------------------------------------------------------------------------
# SIGKILL of the supervisor
# ---------------------------------------------------------------------------


class TestSupervisorKilled(Checks):
    def test_sigkill_under_write_load(self):
        srv = harness.Server(name="killed", workers=2).start()
        writers = Writers(srv, 3).start()
        try:
            self.assertTrue(writers.wait_successes(100), "writes did not get going")
            workers = srv.worker_pids()
            self.assertEqual(len(workers), 2)
            os.kill(srv.pid, signal.SIGKILL)
            t0 = time.monotonic()
            gone = harness.wait_until(lambda: not any(harness.pid_alive(p) for p in workers), 5, 0.01)
            took = time.monotonic() - t0
            self.assertTrue(gone, "workers %r still running 5 s after the supervisor was killed" % workers)
            self.assertLess(took, 1.0, "the workers took %.2f s to exit after the supervisor" % took)
        finally:
            writers.halt()
            srv.stop()
        # a new server on the same port, at once: nothing of the old one holds it
        again = harness.Server(name="again", workers=2, port=srv.port, db_url=srv.db_url, extra=srv.extra)
        t0 = time.monotonic()
        again.start()
        try:
            self.assertNotRegex(again.output(), r"(?i)address already in use")
            sys.stderr.write("# %d writes acknowledged before the kill; new server healthy after %.2f s\n"
                             % (len(writers.acked), time.monotonic() - t0))
            self.assert_acked_present(again, writers)
            # and it takes writes on every stream, after what was there
            for stream in {a[0] for a in writers.acked}:
                top = max(a[1] for a in writers.acked if a[0] == stream)
                self.assertGreater(again.write(stream)["position"], top)
        finally:
            again.stop()


# ---------------------------------------------------------------------------
# PostgreSQL: restarts and connection slots
# ---------------------------------------------------------------------------


class PgWire:
    """A minimal PostgreSQL client (protocol 3, trust authentication, simple queries), so a test can
    hold dozens of connection slots without a process for each. A refused connection raises
    ConnectionError with the server's message."""

    def __init__(self, port, user="postgres", db="eventodb", app="eventodb-fill"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buf = b""
        params = b"".join(k + b"\0" + v.encode() + b"\0" for k, v in
                          ((b"user", user), (b"database", db), (b"application_name", app))) + b"\0"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        try:
            self._until_ready()
        except RuntimeError as e:
            self.sock.close()
            raise ConnectionError(str(e))

    def _msg(self):
        while len(self._buf) < 5 or len(self._buf) < 1 + struct.unpack("!i", self._buf[1:5])[0]:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("PostgreSQL closed the connection")
            self._buf += data
        n = struct.unpack("!i", self._buf[1:5])[0]
        kind, body, self._buf = self._buf[:1], self._buf[5:1 + n], self._buf[1 + n:]
        return kind, body

    def _until_ready(self):
        """Reads up to ReadyForQuery; the data rows, or RuntimeError with the error message."""
        rows = []
        while True:
            kind, body = self._msg()
            if kind == b"E":
                fields = dict((f[:1], f[1:].decode("utf-8", "replace")) for f in body.split(b"\0") if f)
                raise RuntimeError(fields.get(b"M", "error"))
            if kind == b"D":
                ncol = struct.unpack("!h", body[:2])[0]
                off, row = 2, []
                for _ in range(ncol):
                    ln = struct.unpack("!i", body[off:off + 4])[0]
                    off += 4
                    row.append(None if ln < 0 else body[off:off + ln].decode())
                    off += max(ln, 0)
                rows.append(row)
            elif kind == b"Z":
                return rows

    def query(self, sql):
        q = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
        return self._until_ready()

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        self.sock.close()


def fill_slots(port, conns, limit=200):
    """Opens connections until PostgreSQL refuses one; returns the refusal message."""
    for _ in range(limit):
        try:
            conns.append(PgWire(port))
        except ConnectionError as e:
            return str(e)
    raise AssertionError("PostgreSQL took %d more connections" % limit)


def close_all(conns):
    for c in conns:
        c.close()
    del conns[:]


if PG:
    class TestPostgresRestart(Checks):
        def test_restart_under_load(self):
            # synchronous_commit on: an acknowledged commit survives an immediate (crash) stop
            pg = harness.PgCluster(settings={"synchronous_commit": "on"})
            a = harness.Server(db_url=pg, name="restartA", workers=2).start()
            b = harness.Server(db_url=pg, name="restartB", workers=2).start()
            cat = unique("poke")
            sub = sse_client.subscribe(b, {"category": cat})
            writers = Writers(a, 3).start()
            try:
                self.assertTrue(sub.wait_ready(), "no subscription on B")
                a.write(cat + "-0")
                self.assertTrue(sub.wait_pokes(1, 10), "no cross-host poke before the restart")
                self.assertTrue(writers.wait_successes(100), "writes did not get going")
                pg.stop("immediate")
                time.sleep(3)  # the outage; the writers keep writing
                pg.start()
                back = time.monotonic()
                # a write on A every 0.1 s until one is acknowledged; its poke must reach B
                probe_ok = None
                while time.monotonic() - back < 10:
                    r = harness.http_request(a.host, a.port, "POST", "/rpc",
                                             json.dumps(["stream.write", cat + "-1", {"type": "T", "data": {}}]),
                                             {"Authorization": "Bearer " + a.token}, timeout=10)
                    if r.status == 200:
                        probe_ok = time.monotonic()
                        break
                    time.sleep(0.1)
                self.assertIsNotNone(probe_ok, "no write succeeded within 10 s of PostgreSQL being back")
                poke = sub.wait_poke(lambda p: p["stream"] == cat + "-1", 10)
                poked = time.monotonic()
                # let the writers run on after the recovery
                n = writers.successes()
                self.assertTrue(writers.wait_successes(n + 50), "writes stopped after the recovery")
            finally:
                writers.halt()
                sub.close()
                if not pg.running:
                    pg.start()
            try:
                sys.stderr.write("# restart: first write %.2f s after PostgreSQL was back, cross-host poke %s\n"
                                 % (probe_ok - back, "%.2f s after it" % (poked - probe_ok) if poke else "missing"))
                failed_late = [(t - back, st, body) for t, st, body in writers.outcomes
                               if st != 200 and t > back + 2.0]
                self.assertEqual(failed_late[:3], [], "%d writes failed more than 2 s after PostgreSQL was back"
                                 % len(failed_late))
                self.assertLess(probe_ok - back, 2.0, "first write %.2f s after PostgreSQL was back" % (probe_ok - back))
                self.assertTrue(any(st == 503 for _, st, _ in writers.outcomes), "the outage was not seen")
                self.assert_errors_are_json_503(writers.outcomes)
                self.assert_acked_present(a, writers)
                self.assertIsNotNone(poke, "the write on A after the restart never poked B's subscriber")
                self.assertLess(poked - probe_ok, 2.0, "cross-host poke %.2f s after the write" % (poked - probe_ok))
            finally:
                a.stop()
                b.stop()
                pg.destroy()

    class TestConnectionSlots(Checks):
        @classmethod
        def setUpClass(cls):
            cls.pg = harness.PgCluster(settings={"max_connections": 30})

        @classmethod
        def tearDownClass(cls):
            cls.pg.destroy()

        def test_no_slot_at_start(self):
            conns = []
            try:
                refusal = fill_slots(self.pg.port, conns)
                self.assertRegex(refusal, r"too many clients|connection slots")
                srv = harness.Server(db_url=self.pg, name="noslots", workers=2)
                t0 = time.monotonic()
                rc = srv.run_to_exit(30)
                self.assertIsNotNone(rc, "the server neither started nor gave up within 30 s")
                self.assertNotEqual(rc, 0)
                out = srv.output()
                self.assertIn("cannot connect to the database at 127.0.0.1:%d" % self.pg.port, out)
                self.assertRegex(out, r"too many clients|connection slots", "the log must say why")
                sys.stderr.write("# no slot at start: exit %d after %.1f s\n" % (rc, time.monotonic() - t0))
            finally:
                close_all(conns)
            srv = harness.Server(db_url=self.pg, name="slotsfree", workers=2).start()
            try:
                srv.write(unique("free") + "-1")
            finally:
                srv.stop()

        def test_slots_taken_under_load(self):
            srv = harness.Server(db_url=self.pg, name="slots", workers=2).start()
            writers = Writers(srv, 3).start()
            conns = []
            try:
                self.assertTrue(writers.wait_successes(100), "writes did not get going")
                admin = PgWire(self.pg.port)
                conns.append(admin)
                fill_slots(self.pg.port, conns)
                # Take the server's connections away and their slots with them: terminate its
                # backends and fill each slot they free, until it holds none.
                ours = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                        "AND application_name <> 'eventodb-fill'")
                left = None
                for _ in range(50):
                    admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "backend_type = 'client backend' AND application_name <> 'eventodb-fill'")
                    time.sleep(0.05)
                    fill_slots(self.pg.port, conns)
                    left = int(admin.query(ours)[0][0])
                    if left == 0:
                        # A backend that ended between the fill and the count freed a slot
                        # nobody took yet: fill once more, and only a second empty count ends it.
                        time.sleep(0.1)
                        fill_slots(self.pg.port, conns)
                        left = int(admin.query(ours)[0][0])
                        if left == 0:
                            break
                self.assertEqual(left, 0, "the server kept %s connections" % left)
                t_full = time.monotonic()
                # no slot: writes fail, each with a JSON 503, for as long as it lasts
                n = len(writers.outcomes)
                harness.wait_until(lambda: sum(1 for o in writers.outcomes[n:] if o[1] == 503) >= 20 and
                                   time.monotonic() - t_full >= 1.5, 10)
                self.assertEqual(int(admin.query(ours)[0][0]), 0, "the server got a slot back")
                during = writers.outcomes[n:]
                self.assertGreaterEqual(sum(1 for o in during if o[1] == 503), 20, "writes did not fail: %r"
                                        % (during[-3:],))
                close_all(conns)
                freed = time.monotonic()
                n = writers.successes()
                self.assertTrue(writers.wait_successes(n + 50, 15), "writes did not recover within 15 s of "
                                "slots freeing up")
                recovered = next(t for t, st, _ in writers.outcomes if st == 200 and t > freed)
            finally:
                writers.halt()
                close_all(conns)
            try:
                sys.stderr.write("# slots: %.1f s without a slot (%d answers 503, e.g. %r), writes back %.2f s "
                                 "after slots freed up\n" % (freed - t_full, sum(1 for o in during if o[1] == 503),
                                                              during[-1][2], recovered - freed))
                self.assert_errors_are_json_503(writers.outcomes)
                msgs = {body["error"].get("message") for _, st, body in writers.outcomes if st == 503}
                self.assertTrue(all(m and "Database unavailable" in m for m in msgs), msgs)
                self.assertRegex(srv.output(), r"too many clients|connection slots",
                                 "the server log must name the cause")
                late = [o for o in writers.outcomes if o[0] > recovered + 1.0 and o[1] != 200]
                self.assertEqual(late[:3], [], "writes still failing after the recovery")
                self.assert_acked_present(srv, writers)
            finally:
                srv.stop()


# ---------------------------------------------------------------------------
# soak
# ---------------------------------------------------------------------------


def proc_sample(pid):
    """(RSS in KiB, open descriptors) of pid, or None once it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return rss, len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, StopIteration):
        return None


def ndjson(n, gpos0=1):
    t = "2024-05-06T07:08:09.123456Z"
    return "".join(json.dumps({"id": str(uuid.uuid4()), "stream": "imp-%d" % (i % 5), "type": "I", "pos": i // 5,
                               "gpos": gpos0 + i, "data": {"i": i}, "meta": None, "time": t}) + "\n"
                   for i in range(n)).encode()


class Soak:
    """Mixed traffic from a few threads, each on its own keep-alive connection, paced so that a
    2-core machine running other tests is loaded but not swamped. pause() stops every thread and
    closes its connections (a quiet server, to count descriptors); resume() goes on."""

    def __init__(self, srv):
        self.srv = srv
        self.tok = srv.token
        self.cat = unique("soak")
        self.run = threading.Event()
        self.run.set()
        self.quit = threading.Event()
        self.idle = {}
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []
        jobs = [self.writer, self.writer, self.reader, self.subscriber, self.subscriber, self.namespaces]
        self.threads = [threading.Thread(target=self._loop, args=(j, i), daemon=True) for i, j in enumerate(jobs)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _loop(self, job, i):
        state = {"i": i, "n": 0}
        while not self.quit.is_set():
            if not self.run.is_set():
                self._close(state)
                self.idle[i] = True
                self.run.wait(1)
                continue
            self.idle[i] = False
            try:
                job(state)
            except Exception as e:  # noqa: BLE001  every failure is reported at the end
                self.fail("%s: %r" % (job.__name__, e))
                self._close(state)
            state["n"] += 1
        self._close(state)

    def _close(self, state):
        for k in ("conn", "sub"):
            if state.get(k) is not None:
                state[k].close()
                state[k] = None

    def fail(self, what):
        with self.lock:
            self.errors.append(what)

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def call(self, state, method, *args, token=None):
        if state.get("conn") is None:
            state["conn"] = self.srv.connection(timeout=20)
        st, body = rpc(state["conn"], token or self.tok, method, *args, timeout=20)
        if st != 200:
            state["conn"] = None
            raise AssertionError("%s -> %s %r" % (method, st, body))
        self.count(method)
        return body

    # -- the jobs --------------------------------------------------------------
    def writer(self, state):
        s = "%s-%d" % (self.cat, (state["i"] * 7 + state["n"]) % 20)
        self.call(state, "stream.write", s, {"type": "W", "data": {"n": state["n"], "pad": "p" * 200},
                                              "metadata": {"w": state["i"]}})
        time.sleep(0.005)

    def reader(self, state):
        s = "%s-%d" % (self.cat, state["n"] % 20)
        k = state["n"] % 4
        if k == 0:
            self.call(state, "stream.get", s, {"batchSize": 50})
        elif k == 1:
            self.call(state, "stream.last", s)
        elif k == 2:
            self.call(state, "category.get", self.cat, {"batchSize": 100, "consumerGroup": {"member": 0, "size": 2}})
        else:
            self.call(state, "category.get", self.cat, {"position": max(1, state["n"] * 3), "batchSize": 20})
        time.sleep(0.01)

    def subscriber(self, state):
        kind = state["n"] % 3
        params = ({"stream": "%s-%d" % (self.cat, state["n"] % 20)}, {"category": self.cat}, {"all": "true"})[kind]
        sub = sse_client.subscribe(self.srv, params, timeout=20)
        state["sub"] = sub
        if sub.status != 200:
            raise AssertionError("subscribe -> %s %r" % (sub.status, sub.body[:200]))
        if not sub.wait(lambda: "ready" in sub.comments or sub.pokes, 20):
            raise AssertionError("subscription never got ready")
        self.count("subscribe")
        # follows live writes for a moment, then leaves (sometimes without reading what is there)
        sub.wait_pokes(len(sub.pokes) + 1, 0.5)
        sub.close()
        state["sub"] = None

    def namespaces(self, state):
        ns, tok = self.srv.create_namespace()
        self.count("ns.create")
        if state["n"] % 2 == 0:
            r = harness.http_request(self.srv.host, self.srv.port, "POST", "/import", ndjson(120),
                                     {"Authorization": "Bearer " + tok, "Content-Type": "application/x-ndjson"},
                                     timeout=30)
            if r.status != 200 or b'"done":true' not in r.raw:
                raise AssertionError("import -> %r" % (r,))
            self.count("import")
        self.call(state, "stream.write", "x-1", {"type": "T", "data": {"k": 1}}, token=tok)
        self.call(state, "ns.delete", ns)
        time.sleep(0.05)

    # -- control -------------------------------------------------------------------
    def pause(self):
        self.run.clear()
        harness.wait_until(lambda: len(self.idle) == len(self.threads) and all(self.idle.values()), 30)

    def resume(self):
        self.run.set()

    def stop(self):
        self.quit.set()
        self.run.set()
        for t in self.threads:
            t.join(30)


class TestSoak(harness.TestCase):
    def quiet_sample(self, pids):
        """Samples once the server is idle: descriptor counts that held still for a second."""
        last, same_since = None, time.monotonic()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            cur = {p: proc_sample(p) for p in pids}
            if last is None or {p: v[1] for p, v in cur.items() if v} != {p: v[1] for p, v in last.items() if v}:
                same_since = time.monotonic()
            elif time.monotonic() - same_since >= 1.0:
                return cur
            last = cur
            time.sleep(0.1)
        return last

    def test_mixed_traffic_soak(self):
        default = "30" if harness.SANITIZED else "120"
        seconds = float(os.environ.get("EVENTODB_SOAK_SECONDS", default))
        warmup = max(10.0, seconds / 4)
        srv = harness.Server(name="soak", workers=2, env=harness.rss_env()).start()
        pids = [srv.pid] + srv.worker_pids()
        names = {srv.pid: "supervisor"}
        for i, p in enumerate(pids[1:]):
            names[p] = "worker %d" % (i + 1)
        first = {p: proc_sample(p) for p in pids}
        load = Soak(srv).start()
        series = []
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < warmup:
                time.sleep(1)
            load.pause()
            base = self.quiet_sample(pids)
            load.resume()
            t1 = time.monotonic()
            while time.monotonic() - t1 < seconds - warmup:
                time.sleep(2)
                series.append({p: proc_sample(p) for p in pids})
            load.pause()
            end = self.quiet_sample(pids)
        finally:
            load.stop()
        try:
            lines = ["# soak on %s, %.0f s (%.0f s warm-up): %s" % (harness.STORE, seconds, warmup,
                     ", ".join("%s %d" % kv for kv in sorted(load.counts.items())))]
            for p in pids:
                peak = max((s[p][0] for s in series if s.get(p)), default=0)
                lines.append("#   %-10s RSS %s -> %s -> %s KiB (peak %d), fds %s -> %s -> %s (start, after warm-up, end)"
                             % (names[p], first[p][0] if first[p] else "-", base[p][0] if base[p] else "-",
                                end[p][0] if end[p] else "-", peak, first[p][1] if first[p] else "-",
                                base[p][1] if base[p] else "-", end[p][1] if end[p] else "-"))
            sys.stderr.write("\n" + "\n".join(lines) + "\n")
            self.assertEqual(load.errors[:5], [], "%d requests failed during the soak" % len(load.errors))
            for what in ("stream.write", "stream.get", "category.get", "subscribe", "ns.create", "import"):
                self.assertGreater(load.counts.get(what, 0), 0, "the soak ran no %s" % what)
            self.assertEqual(sorted(srv.worker_pids()), sorted(pids[1:]), "a worker was replaced during the soak")
            for p in pids:
                self.assertIsNotNone(end[p], "%s is gone" % names[p])
                # descriptors: exact, on a quiet server
                self.assertLessEqual(end[p][1], base[p][1], "%s: open descriptors grew from %d to %d"
                                     % (names[p], base[p][1], end[p][1]))
                # memory: allocator noise aside (a quarter over the warm-up figure or 8 MiB, whichever
                # is more; scaled under ASan), no growth
                allowed = harness.rss_bound_kb(max(8 * 1024, base[p][0] // 4))
                self.assertLess(end[p][0] - base[p][0], allowed, "%s: RSS grew from %d to %d KiB"
                                % (names[p], base[p][0], end[p][0]))
        finally:
            srv.stop()


if __name__ == "__main__":
    harness.main()
