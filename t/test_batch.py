#!/usr/bin/env python3
"""Write batching (issue: write batching, SPEC D24): concurrent stream.writes share one
transaction and each keeps its own outcome. To be sure writes really share a batch, a test holds
the write lock they need (PostgreSQL: the category's advisory lock from a psql session; SQLite:
the namespace database's write lock) while one "plug" write waits for it, queues the writes it
wants batched behind the plug (the db_queue_waiting gauge says when they are queued), then
releases the lock: the plug commits alone, and everything queued goes as one batch, which the
write_batch_* counters show. Also: D19 races, gapless positions, two workers on overlapping
categories (no deadlock), SIGKILL of a worker, subscribers on every worker and on a second
server, and connections opened on demand."""

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402
from sse_client import subscribe  # noqa: E402

SQLITE = harness.STORE == "sqlite"
SRV = None
BUCKETS = ["write_batch_1", "write_batch_2", "write_batch_le_4", "write_batch_le_8", "write_batch_le_16",
           "write_batch_le_32", "write_batch_le_64", "write_batch_gt_64"]


def setUpModule():
    global SRV
    SRV = harness.Server(name="batch", workers=1).start()


def tearDownModule():
    harness.cleanup()


def stats(srv):
    r = srv.get("/debug/stats", headers={"Authorization": "Bearer " + srv.token})
    assert r.status == 200, r
    return r.body["stats"]


def delta(before, after):
    return {k: after[k] - before[k] for k in after if k.startswith("write_batch")}


def bucket(n):
    for limit, name in ((1, "write_batch_1"), (2, "write_batch_2"), (4, "write_batch_le_4"), (8, "write_batch_le_8"),
                        (16, "write_batch_le_16"), (32, "write_batch_le_32"), (64, "write_batch_le_64")):
        if n <= limit:
            return name
    return "write_batch_gt_64"


def data_dir(srv):
    return srv.extra[srv.extra.index("--data-dir") + 1]


class Hold:
    """Holds the lock that writes to category cat of namespace ns need."""

    def __init__(self, srv, ns, cat, db=None):
        self.srv, self.ns, self.cat, self.db = srv, ns, cat, db
        self.sess = self.conn = None

    def __enter__(self):
        if SQLITE:
            self.conn = sqlite3.connect(os.path.join(data_dir(self.srv), self.ns + ".db"), isolation_level=None,
                                        timeout=10)
            self.conn.execute("BEGIN IMMEDIATE")
            return self
        self.sess = harness.pg_cluster().psql_session(db=self.db)
        self.sess.stdin.write("SELECT pg_advisory_lock(\"eventodb_%s\".hash_64('%s'));\nSELECT 'locked';\n"
                              % (self.ns, self.cat))
        self.sess.stdin.flush()
        while True:
            line = self.sess.stdout.readline()
            if line == "":
                raise AssertionError("psql ended before taking the lock: " + self.sess.stderr.read())
            if line.strip() == "locked":
                return self

    def release(self):
        if self.conn is not None:
            self.conn.rollback() if self.conn.in_transaction else None
            self.conn.close()
            self.conn = None
        if self.sess is not None:
            harness.PgCluster.close_session(self.sess)
            self.sess = None

    def __exit__(self, *exc):
        self.release()


class Call(threading.Thread):
    """One RPC in its own thread (its own connection); .r is the response."""

    def __init__(self, srv, *args, token=harness.DEFAULT):
        super().__init__(daemon=True)
        self.srv, self.args, self.token, self.r = srv, args, token, None
        self.start()

    def run(self):
        try:
            self.r = self.srv.rpc(*self.args, token=self.token, timeout=60)
        except Exception as e:  # noqa: BLE001
            self.r = e

    def result(self, timeout=30):
        self.join(timeout)
        assert not self.is_alive(), "no answer to %r" % (self.args,)
        return self.r


def wait_queued(srv, n, timeout=10):
    """Until the (single) worker has n operations waiting in its store's queue."""
    ok = harness.wait_until(lambda: stats(srv)["db_queue_waiting"] == n, timeout, 0.01)
    assert ok, "queue never reached %d (now %d)" % (n, stats(srv)["db_queue_waiting"])


def send_plug(srv, tok, cat):
    """A write to cat that waits for the held lock: once it is waiting, what follows queues."""
    n = stats(srv)["rpc_stream_write"]
    plug = Call(srv, "stream.write", cat + "-plug", msg(), token=tok)

    def waiting():
        st = stats(srv)
        return st["rpc_stream_write"] == n + 1 and st["db_queue_waiting"] == 0

    assert harness.wait_until(waiting, 10, 0.01), "the plug write never reached the store"
    if not SQLITE:
        assert harness.wait_until(lambda: harness.pg_cluster().psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") != "0", 10), \
            "the plug write is not waiting for the lock"
    return plug


def msg(i=0, **extra):
    m = {"type": "T", "data": {"i": i}}
    m.update(extra)
    return m


def batched(test, srv, ns, tok, cat, calls):
    """Runs calls (lists of rpc args) as one batch: behind a plug write to cat that waits for the
    held lock, each queued in order. Returns (responses, counter deltas, the plug's response)."""
    before = stats(srv)
    with Hold(srv, ns, cat) as hold:
        plug = send_plug(srv, tok, cat)
        started = []
        for i, args in enumerate(calls):
            started.append(Call(srv, *args, token=tok))
            wait_queued(srv, i + 1)
        hold.release()
        rs = [c.result() for c in started]
        p = plug.result()
    test.assertEqual(p.status, 200, p)
    after = stats(srv)
    return rs, delta(before, after), p


class Base(harness.TestCase):
    def ns(self, srv=None):
        return (srv or SRV).create_namespace()

    def assertConflict(self, r, expected, actual):
        self.assertError(r, 409, "STREAM_VERSION_CONFLICT",
                         "Expected version %d, stream is at version %d" % (expected, actual))
        self.assertEqual(r.body["error"]["details"], {"expected": expected, "actual": actual})


class TestOneBatch(Base):
    def test_conflict_duplicate_and_ordinary_writes_in_one_batch(self):
        ns, tok = self.ns()
        cat = unique("mix")
        s, s2 = cat + "-1", cat + "-2"
        taken = str(uuid.uuid4())
        SRV.call("stream.write", cat + "-0", msg(), {"id": taken}, token=tok)
        twice = str(uuid.uuid4())
        ids = [str(uuid.uuid4()) for _ in range(8)]
        calls = [
            ("stream.write", s, msg(1), {"id": ids[0]}),                           # s@0
            ("stream.write", s, msg(2), {"id": ids[1], "expectedVersion": 5}),     # conflict: s is at 0
            ("stream.write", s2, msg(3), {"id": taken}),                          # the table has it
            ("stream.write", s2, msg(4), {"id": twice}),                          # s2@0
            ("stream.write", s, msg(5), {"id": twice}),                           # earlier in this batch
            ("stream.write", s, msg(6), {"id": ids[2], "expectedVersion": 0}),     # s@1: nothing moved it
            ("stream.write", s2, msg(7), {"id": ids[3], "expectedVersion": -1}),   # conflict: s2 is at 0
            ("stream.write", s2, msg(8), {"id": ids[4]}),                          # s2@1
            ("stream.write", cat + "-3", msg(9), {"id": ids[5], "expectedVersion": -1}),  # new stream@0
        ]
        rs, d, _ = batched(self, SRV, ns, tok, cat, calls)
        self.assertEqual(d[bucket(len(calls))], 1, "the writes did not go as one batch: %r" % d)
        self.assertEqual(d["write_batch_retries"], 0, d)
        self.assertEqual(d["write_batch_msgs"], len(calls) + 1, d)  # and the plug alone
        self.assertEqual(rs[0].body["position"], 0, rs[0])
        self.assertConflict(rs[1], 5, 0)
        self.assertError(rs[2], 409, "MESSAGE_EXISTS")
        self.assertEqual(rs[3].body["position"], 0, rs[3])
        self.assertError(rs[4], 409, "MESSAGE_EXISTS")
        self.assertEqual(rs[5].body["position"], 1, rs[5])
        self.assertConflict(rs[6], -1, 0)
        self.assertEqual(rs[7].body["position"], 1, rs[7])
        self.assertEqual(rs[8].body["position"], 0, rs[8])
        # global positions follow the batch's order
        gps = [r.body["globalPosition"] for r in (rs[0], rs[3], rs[5], rs[7], rs[8])]
        self.assertEqual(gps, sorted(gps))
        self.assertEqual(len(set(gps)), 5)
        got = SRV.call("stream.get", s, token=tok)
        self.assertEqual([(m[0], m[2], m[3], m[4]) for m in got],
                         [(ids[0], 0, rs[0].body["globalPosition"], {"i": 1}),
                          (ids[2], 1, rs[5].body["globalPosition"], {"i": 6})])
        got = SRV.call("stream.get", s2, token=tok)
        self.assertEqual([(m[0], m[2], m[4]) for m in got], [(twice, 0, {"i": 4}), (ids[4], 1, {"i": 8})])

    def test_expected_version_race_of_16_in_one_batch(self):
        ns, tok = self.ns()
        cat = unique("race")
        s = cat + "-1"
        for i in range(3):
            SRV.call("stream.write", s, msg(i), token=tok)
        before = stats(SRV)
        with Hold(SRV, ns, cat) as hold:
            plug = send_plug(SRV, tok, cat)
            racers = [Call(SRV, "stream.write", s, msg(100 + i), {"expectedVersion": 2}, token=tok)
                      for i in range(16)]
            wait_queued(SRV, 16)
            hold.release()
            rs = [c.result() for c in racers]
            self.assertEqual(plug.result().status, 200)
        d = delta(before, stats(SRV))
        self.assertEqual(d["write_batch_le_16"], 1, "the 16 did not share one batch: %r" % d)
        wins = [r for r in rs if r.status == 200]
        self.assertEqual(len(wins), 1, rs)
        self.assertEqual(wins[0].body["position"], 3)
        for r in rs:
            if r.status != 200:
                self.assertConflict(r, 2, 3)
        self.assertEqual(SRV.call("stream.version", s, token=tok), 3)

    def test_expected_version_races_free_running(self):
        ns, tok = self.ns()
        for rnd in range(4):
            s = unique("free") + "-1"
            expected = -1 if rnd % 2 == 0 else 0
            if expected == 0:
                SRV.call("stream.write", s, msg(), token=tok)
            barrier = threading.Barrier(16)
            rs = [None] * 16

            def go(i):
                barrier.wait(10)
                rs[i] = SRV.rpc("stream.write", s, msg(i), {"expectedVersion": expected}, token=tok)

            ts = [threading.Thread(target=go, args=(i,)) for i in range(16)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            wins = [r for r in rs if r.status == 200]
            self.assertEqual(len(wins), 1, rs)
            self.assertEqual(wins[0].body["position"], expected + 1)
            for r in rs:
                if r.status != 200:
                    self.assertConflict(r, expected, expected + 1)

    def test_16_writers_on_one_stream_get_every_position_once(self):
        ns, tok = self.ns()
        s = unique("gapless") + "-1"
        per = 20
        acks = {}
        lock = threading.Lock()
        before = stats(SRV)

        def writer(w):
            for i in range(per):
                mid = str(uuid.uuid4())
                r = SRV.rpc("stream.write", s, msg(w * 1000 + i), {"id": mid}, token=tok)
                assert r.status == 200, r
                with lock:
                    acks[mid] = (r.body["position"], r.body["globalPosition"], w * 1000 + i)

        ts = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        n = 16 * per
        self.assertEqual(len(acks), n)
        self.assertEqual(sorted(p for p, _, _ in acks.values()), list(range(n)))
        got = SRV.call("stream.get", s, {"batchSize": -1}, token=tok)
        self.assertEqual([m[2] for m in got], list(range(n)))
        for m in got:
            self.assertEqual(acks[m[0]], (m[2], m[3], m[4]["i"]), "acknowledgement differs from stream.get")
        self.assertEqual([m[3] for m in got], sorted(m[3] for m in got), "global positions out of stream order")
        d = delta(before, stats(SRV))
        self.assertGreater(d["write_batch_msgs"] - d["write_batches"], 0, "no write shared a transaction: %r" % d)

    def test_16_writers_on_one_stream_in_one_batch(self):
        ns, tok = self.ns()
        cat = unique("one")
        s = cat + "-1"
        ids = [str(uuid.uuid4()) for _ in range(16)]
        rs, d, _ = batched(self, SRV, ns, tok, cat, [("stream.write", s, msg(i), {"id": ids[i]}) for i in range(16)])
        self.assertEqual(d["write_batch_le_16"], 1, d)
        # in arrival order: consecutive positions and increasing global positions
        self.assertEqual([r.body["position"] for r in rs], list(range(16)))
        gps = [r.body["globalPosition"] for r in rs]
        self.assertEqual(gps, sorted(gps))
        got = SRV.call("stream.get", s, token=tok)
        self.assertEqual([(m[0], m[2], m[3]) for m in got], list(zip(ids, range(16), gps)))


class TestCaps(Base):
    def test_message_and_byte_caps(self):
        srv = harness.Server(name="caps", workers=1,
                             extra=["--write-batch-max", "4", "--write-batch-bytes", "4096"]).start()
        try:
            ns, tok = srv.create_namespace()
            cat = unique("caps")
            rs, d, _ = batched(self, srv, ns, tok, cat, [("stream.write", cat + "-1", msg(i)) for i in range(10)])
            self.assertEqual([r.body["position"] for r in rs], list(range(10)))
            self.assertEqual((d["write_batch_le_4"], d["write_batch_2"], d["write_batch_1"]), (2, 1, 1), d)
            big = {"type": "T", "data": {"x": "y" * 3000}}
            rs, d, _ = batched(self, srv, ns, tok, cat, [("stream.write", cat + "-2", big) for _ in range(3)])
            self.assertEqual([r.body["position"] for r in rs], [0, 1, 2])
            self.assertEqual(d["write_batch_1"], 4, "a batch went over --write-batch-bytes: %r" % d)
        finally:
            srv.stop()

    def test_batching_off(self):
        # one connection, so that writes queue (without batching, nothing holds them back)
        srv = harness.Server(name="nobatch", workers=1, extra=["--write-batch-max", "1", "--db-pool-size", "1"]).start()
        try:
            ns, tok = srv.create_namespace()
            cat = unique("off")
            s = cat + "-1"
            rs, d, _ = batched(self, srv, ns, tok, cat, [("stream.write", s, msg(i), {"expectedVersion": e})
                                                        for i, e in enumerate([-1, 0, 1, 7, 2, 3])])
            self.assertEqual(d["write_batches"], 7, d)
            self.assertEqual(d["write_batch_1"], 7, d)
            self.assertEqual([r.status for r in rs], [200, 200, 200, 409, 200, 200])
            self.assertConflict(rs[3], 7, 2)
            self.assertEqual([r.body["position"] for r in rs if r.status == 200], [0, 1, 2, 3, 4])
        finally:
            srv.stop()


def category_of(s):
    return s.split("-", 1)[0]


class TestWorkers(Base):
    def test_two_workers_on_shuffled_overlapping_categories_never_deadlock(self):
        srv = harness.Server(name="shuffle", workers=2).start()
        try:
            ns, tok = srv.create_namespace()
            cats = [unique("sh") for _ in range(6)]
            acks = defaultdict(list)
            lock = threading.Lock()
            errors = []
            before = stats(srv)

            def writer(w):
                rnd = random.Random(w)
                for i in range(60):
                    s = "%s-%d" % (rnd.choice(cats), rnd.randrange(4))
                    try:
                        r = srv.rpc("stream.write", s, msg(i), timeout=30, token=tok)
                    except Exception as e:  # noqa: BLE001
                        errors.append(e)
                        return
                    if r.status != 200:
                        errors.append(r)
                        return
                    with lock:
                        acks[s].append(r.body["position"])

            ts = [threading.Thread(target=writer, args=(w,)) for w in range(24)]
            jam = None
            if not SQLITE:
                # a session that holds one category after another for a moment, so writes pile
                # up behind it and batches span several categories on both workers at once
                jam = harness.pg_cluster().psql_session()
                rnd = random.Random(7)
                for _ in range(150):
                    k = "\"eventodb_%s\".hash_64('%s')" % (ns, rnd.choice(cats))
                    jam.stdin.write("SELECT pg_advisory_lock(%s), pg_sleep(0.02), pg_advisory_unlock(%s);\n" % (k, k))
                jam.stdin.flush()
            t0 = time.monotonic()
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            harness.PgCluster.close_session(jam)
            self.assertEqual(errors, [])
            self.assertLess(time.monotonic() - t0, 60)
            for s, positions in acks.items():
                self.assertEqual(sorted(positions), list(range(len(positions))), s)
                self.assertEqual(srv.call("stream.version", s, token=tok), len(positions) - 1)
            d = delta(before, stats(srv))
            self.assertEqual(d["write_batch_msgs"], 24 * 60, d)
            self.assertGreater(d["write_batch_msgs"] - d["write_batches"], 0, "nothing was batched: %r" % d)
            self.assertEqual(d["write_batch_retries"], 0, "a batch failed (deadlock?): %r" % d)
            if not SQLITE:
                self.assertNotIn("deadlock detected", harness.pg_cluster().log_tail(200000))
        finally:
            srv.stop()

    def test_sigkill_of_a_worker_mid_batch_loses_no_acknowledged_write(self):
        srv = harness.Server(name="kill", workers=2).start()
        try:
            ns, tok = srv.create_namespace()
            cat = unique("kill")
            acks = {}
            lock = threading.Lock()
            stop = threading.Event()

            def writer(w):
                while not stop.is_set():
                    mid = str(uuid.uuid4())
                    s = "%s-%d" % (cat, w % 4)
                    try:
                        r = srv.rpc("stream.write", s, msg(w), {"id": mid}, timeout=20, token=tok)
                    except Exception:  # noqa: BLE001 - the connection died with its worker
                        continue
                    if r.status == 200:
                        with lock:
                            acks[mid] = (s, r.body["position"], r.body["globalPosition"])

            ts = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
            for t in ts:
                t.start()
            try:
                self.assertTrue(harness.wait_until(lambda: len(acks) >= 200, 30), "writes too slow: %d" % len(acks))
                victims = srv.worker_pids()
                self.assertEqual(len(victims), 2)
                os.kill(victims[0], signal.SIGKILL)
                n_at_kill = len(acks)
                self.assertTrue(harness.wait_until(lambda: len(acks) >= n_at_kill + 200, 30),
                                "no writes after the kill")
            finally:
                stop.set()
                for t in ts:
                    t.join(60)
            self.assertTrue(harness.wait_until(lambda: len(srv.worker_pids()) == 2, 10), "worker not respawned")
            stored = {}
            for w in range(4):
                s = "%s-%d" % (cat, w)
                got = srv.call("stream.get", s, {"batchSize": -1}, token=tok)
                self.assertEqual([m[2] for m in got], list(range(len(got))), "a gap in " + s)
                for m in got:
                    stored[m[0]] = (s, m[2], m[3])
            lost = [(k, v) for k, v in acks.items() if stored.get(k) != v]
            self.assertEqual(lost, [], "acknowledged writes missing or different")
            st = stats(srv)
            self.assertGreater(st["write_batch_msgs"] - st["write_batches"], 0, "nothing was batched")
        finally:
            srv.stop()

    def test_subscribers_on_every_worker_see_every_batched_write_once_in_order(self):
        # which worker accepts a connection is the kernel's choice (a shared listening socket),
        # so keep trying for a while rather than a fixed number of times: with more workers than
        # CPUs one worker can go a few hundred connections without winning one
        nworkers = 3
        srv = harness.Server(name="subs", workers=nworkers).start()
        subs = []
        try:
            ns, tok = srv.create_namespace()
            cat = unique("sub")
            streams = ["%s-%d" % (cat, i) for i in range(4)]
            by_worker = defaultdict(list)  # worker -> [(kind, subscriber)]: one of each kind per worker
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                c = subscribe(srv, {"category": cat}, token=tok)
                w = c.headers["x-eventodb-worker"]
                if by_worker[w]:
                    c.close()
                else:
                    by_worker[w].append(("category", c))
                    for params, kind in (({"stream": streams[0]}, "stream"), ({"all": "true"}, "all")):
                        while time.monotonic() < deadline:
                            c2 = subscribe(srv, params, token=tok)
                            if c2.headers["x-eventodb-worker"] == w:
                                by_worker[w].append((kind, c2))
                                break
                            c2.close()
                if len(by_worker) == nworkers:
                    break
            subs = [c for v in by_worker.values() for _, c in v]
            self.assertEqual(len(by_worker), nworkers, "subscribers did not land on every worker")
            for w, entries in by_worker.items():
                self.assertEqual(sorted(k for k, _ in entries), ["all", "category", "stream"], "worker " + w)
            for c in subs:
                self.assertTrue(c.wait_ready(10))
            # streams[0] has six writers at once; each other stream one writer, whose writes are
            # in order (a category subscription is ordered per stream only where the writes are:
            # concurrent writers on different workers reach the ring in any order)
            per = 40
            before = stats(srv)

            def writer(s):
                for i in range(per):
                    r = srv.rpc("stream.write", s, msg(i), token=tok)
                    assert r.status == 200, r

            jobs = [streams[0]] * 6 + streams[1:]
            ts = [threading.Thread(target=writer, args=(s,)) for s in jobs]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            count = {s: per * jobs.count(s) for s in streams}
            d = delta(before, stats(srv))
            self.assertGreater(d["write_batch_msgs"] - d["write_batches"], 0, "nothing was batched: %r" % d)
            want_all = {(s, p) for s in streams for p in range(count[s])}
            for w, entries in by_worker.items():
                for kind, c in entries:
                    want = [(streams[0], p) for p in range(count[streams[0]])] if kind == "stream" else want_all
                    c.wait_pokes(len(want), 20)
                    time.sleep(0.05)
                    got = [(p["stream"], p["position"]) for p in c.pokes]
                    with self.subTest(worker=w, kind=kind):
                        if kind == "stream":
                            self.assertEqual(got, want)  # exact, in order
                        else:
                            self.assertEqual(len(got), len(want), "duplicates or losses")
                            self.assertEqual(set(got), want)
                            for s in streams[1:]:
                                self.assertEqual([p for x, p in got if x == s], list(range(per)), s)
        finally:
            for c in subs:
                c.close()
            srv.stop()


class PgOnly:
    """What only the PostgreSQL store has: the SQL function, a duplicate that cannot be seen up
    front, a second server on the same database, and connections on demand."""

    def test_write_batch_function(self):
        pg = harness.pg_cluster()
        ns, tok = self.ns()
        sch = '"eventodb_%s"' % ns
        a, b = str(uuid.uuid4()), str(uuid.uuid4())
        out = pg.psql(
            "SELECT n, coalesce(\"position\"::text, '-'), coalesce(actual::text, '-'), duplicate FROM %s.write_batch("
            "ARRAY['%s', '%s', '%s', '%s']::uuid[], ARRAY['x-1', 'x-1', 'y-1', 'x-1'],"
            " ARRAY['T', 'T', 'T', 'T'], ARRAY['{\"a\": 1}', '{}', '{}', '{}']::jsonb[],"
            " ARRAY[NULL, '{\"m\": 2}', NULL, NULL]::jsonb[], ARRAY[NULL, 0, 5, NULL]::int8[])" % (sch, a, b, a, b))
        self.assertEqual(out.splitlines(), ["1|0|-1|f", "2|1|0|f", "3|-|-1|f", "4|-|-|t"])
        got = SRV.call("stream.get", "x-1", token=tok)
        self.assertEqual([(m[0], m[2], m[4], m[5]) for m in got], [(a, 0, {"a": 1}, None), (b, 1, {}, {"m": 2})])
        p = pg._run(pg._psql_argv(None), check=False,
                    input="SELECT * FROM %s.write_batch(ARRAY[]::uuid[], ARRAY['x'], ARRAY[]::text[],"
                          " ARRAY[]::jsonb[], ARRAY[]::jsonb[], ARRAY[]::int8[]);\n" % sch)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("differ in length", p.stderr)

    def test_locks_in_key_order_so_crossed_batches_never_deadlock(self):
        """Two batches over the same two categories in opposite arrival orders, both waiting at
        the first lock: taken in arrival order they would deadlock (each holding the other's
        second lock); taken in key order both complete."""
        pg = harness.pg_cluster()
        ns, tok = self.ns()
        sch = '"eventodb_%s"' % ns
        a, b = sorted([unique("ka"), unique("kb")], key=harness.hash_64)  # a locks first

        def batch_sql(streams):
            n = len(streams)
            return ("SELECT count(*) FROM %s.write_batch(ARRAY[%s]::uuid[], ARRAY[%s], array_fill('T'::text, ARRAY[%d]),"
                    " array_fill('{}'::jsonb, ARRAY[%d]), array_fill(NULL::jsonb, ARRAY[%d]),"
                    " array_fill(NULL::int8, ARRAY[%d])) WHERE \"position\" IS NOT NULL;\nSELECT 'done';\n"
                    % (sch, ", ".join("'%s'" % uuid.uuid4() for _ in streams),
                       ", ".join("'%s'" % x for x in streams), n, n, n, n))

        def waiting():
            return int(pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))

        hold = Hold(SRV, ns, a).__enter__()
        s1 = s2 = None
        try:
            s1 = pg.psql_session()
            s1.stdin.write(batch_sql([a + "-1", b + "-1"]))
            s1.stdin.flush()
            self.assertTrue(harness.wait_until(lambda: waiting() == 1, 10))
            s2 = pg.psql_session()
            s2.stdin.write(batch_sql([b + "-2", a + "-2"]))  # b arrives first here
            s2.stdin.flush()
            self.assertTrue(harness.wait_until(lambda: waiting() == 2, 10))
            # in key order, the second batch waits at a without holding b
            held = pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
            self.assertEqual(held, "1", "a waiting batch holds a category lock out of key order")
            hold.release()
            for sess in (s1, s2):
                lines = []
                while True:
                    line = sess.stdout.readline()
                    if line == "":
                        self.fail("psql ended: " + sess.stderr.read())
                    if line.strip() == "done":
                        break
                    lines.append(line.strip())
                self.assertEqual(lines, ["2"])
        finally:
            hold.release()
            harness.PgCluster.close_session(s1)
            harness.PgCluster.close_session(s2)
        self.assertNotIn("deadlock detected", pg.log_tail(200000))
        self.assertEqual(SRV.call("stream.version", a + "-2", token=tok), 0)

    def test_new_namespace_batches_use_the_indexes(self):
        """The batch function's plans are cached per session from its first calls, when a new
        namespace's table is empty: they must still be index look-ups once it has grown."""
        pg = harness.pg_cluster()
        ns, tok = self.ns()
        cat = unique("idx")
        before = stats(SRV)

        def writer(w):
            for i in range(40):
                r = SRV.rpc("stream.write", "%s-%d" % (cat, w % 4), msg(i), token=tok)
                assert r.status == 200, r

        ts = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        d = delta(before, stats(SRV))
        self.assertGreater(d["write_batches"] - d["write_batch_1"], 20, "too few batches to tell: %r" % d)

        def scans():
            out = pg.psql("SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                          " WHERE schemaname = 'eventodb_%s' AND relname = 'messages'" % ns)
            return [int(x) for x in out.split("|")] if out else [0, 0]

        # an idle backend reports its counters within about ten seconds
        n = d["write_batches"] - d["write_batch_1"]
        self.assertTrue(harness.wait_until(lambda: scans()[1] >= n, 20, 0.2), "no statistics: %r" % scans())
        self.assertLess(scans()[0], 5, "batches scan the whole messages table")

    def test_duplicate_not_visible_up_front_is_written_one_by_one(self):
        pg = harness.pg_cluster()
        ns, tok = self.ns()
        cat = unique("late")
        dup = str(uuid.uuid4())
        # another transaction inserts dup and keeps it uncommitted: the batch cannot see it
        other = pg.psql_session()
        try:
            other.stdin.write("BEGIN;\nINSERT INTO \"eventodb_%s\".messages (id, stream_name, type, \"position\")"
                              " VALUES ('%s', 'elsewhere-1', 'T', 0);\nSELECT 'inserted';\n" % (ns, dup))
            other.stdin.flush()
            while other.stdout.readline().strip() != "inserted":
                pass
            before = stats(SRV)
            with Hold(SRV, ns, cat) as hold:
                plug = send_plug(SRV, tok, cat)
                calls = [("stream.write", cat + "-1", msg(0)), ("stream.write", cat + "-1", msg(1), {"id": dup}),
                         ("stream.write", cat + "-1", msg(2))]
                started = []
                for i, args in enumerate(calls):
                    started.append(Call(SRV, *args, token=tok))
                    wait_queued(SRV, i + 1)
                hold.release()
                self.assertEqual(plug.result().status, 200)
                # the batch now waits for the other transaction's id
                self.assertTrue(harness.wait_until(lambda: pg.psql(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted") != "0", 10))
                other.stdin.write("COMMIT;\n")
                other.stdin.flush()
                rs = [c.result() for c in started]
        finally:
            harness.PgCluster.close_session(other)
        d = delta(before, stats(SRV))
        self.assertEqual(d["write_batch_retries"], 1, d)
        self.assertEqual(rs[0].status, 200, rs[0])
        self.assertError(rs[1], 409, "MESSAGE_EXISTS")
        self.assertEqual(rs[2].status, 200, rs[2])
        self.assertEqual([rs[0].body["position"], rs[2].body["position"]], [0, 1])
        self.assertEqual([m[4] for m in SRV.call("stream.get", cat + "-1", token=tok)], [{"i": 0}, {"i": 2}])

    def test_second_server_sees_every_batched_write(self):
        pg = harness.pg_cluster()
        db = "batch" + unique("db")
        pg.create_database(db)
        url = pg.url(db)
        a = harness.Server(db_url=url, name="hostA", workers=2).start()
        b = harness.Server(db_url=url, name="hostB", workers=2).start()
        subs = []
        try:
            cat = unique("two")
            streams = ["%s-%d" % (cat, i) for i in range(3)]
            subs = [subscribe(b, {"category": cat}), subscribe(b, {"stream": streams[0]}),
                    subscribe(b, {"all": "true"})]
            for c in subs:
                self.assertTrue(c.wait_ready(10))
            # B's listener is registered: A notifies from now on
            self.assertTrue(harness.wait_until(lambda: pg.psql(
                "SELECT count(*) FROM eventodb_store.listeners", db=db) == "2", 10))
            per = 30
            before = stats(a)
            ts = [threading.Thread(target=lambda s=s: [a.write(s, data={"i": i}) for i in range(per)])
                  for s in streams for _ in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120)
            d = delta(before, stats(a))
            self.assertGreater(d["write_batch_msgs"] - d["write_batches"], 0, "nothing was batched: %r" % d)
            n = 4 * per
            want = {(s, p) for s in streams for p in range(n)}
            for c, w in ((subs[0], want), (subs[1], [(streams[0], p) for p in range(n)]), (subs[2], want)):
                c.wait_pokes(len(w), 20)
                time.sleep(0.1)
                got = [(p["stream"], p["position"]) for p in c.pokes]
                if isinstance(w, list):
                    self.assertEqual(got, w)
                else:
                    self.assertEqual(len(got), len(w), "duplicates or losses on the second server")
                    self.assertEqual(set(got), w)
        finally:
            for c in subs:
                c.close()
            a.stop()
            b.stop()

    def test_connections_open_on_demand(self):
        pg = harness.pg_cluster()
        db = "conns" + unique("db")
        pg.create_database(db)

        def backends():
            return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
                               " AND application_name = 'eventodb'" % db))

        two = harness.Server(db_url=pg.url(db), name="conns2", workers=2, extra=["--db-pool-size", "4"]).start()
        try:
            self.assertTrue(harness.wait_until(lambda: backends() == 2, 10), "at start: %d" % backends())
            time.sleep(0.5)
            self.assertEqual(backends(), 2, "more than one connection per worker at start")
        finally:
            two.stop()
        srv = harness.Server(db_url=pg.url(db), name="conns", workers=1,
                             extra=["--db-pool-size", "3", "--db-idle-timeout", "1"]).start()
        lock, calls = None, []
        try:
            self.assertTrue(harness.wait_until(lambda: backends() == 1, 10), "at start: %d" % backends())
            # reads of a locked table keep connections busy (each read needs one of its own)
            srv.call("stream.write", "conns-1", msg())
            lock = pg.psql_session(db=db)
            lock.stdin.write("BEGIN;\nLOCK TABLE \"eventodb_default\".messages IN ACCESS EXCLUSIVE MODE;\n"
                             "SELECT 'locked';\n")
            lock.stdin.flush()
            while lock.stdout.readline().strip() != "locked":
                pass
            calls = [Call(srv, "stream.version", "conns-1") for _ in range(5)]
            self.assertTrue(harness.wait_until(lambda: backends() == 3, 10), "under load: %d" % backends())
            wait_queued(srv, 2)
            self.assertEqual(backends(), 3, "beyond --db-pool-size")
            harness.PgCluster.close_session(lock)
            lock = None
            for c in calls:
                self.assertEqual(c.result().status, 200)
                self.assertEqual(c.result().body, 0)
            self.assertTrue(harness.wait_until(lambda: backends() == 1, 10),
                            "idle connections did not close: %d" % backends())
            self.assertEqual(srv.call("stream.version", "conns-1"), 0)
        finally:
            harness.PgCluster.close_session(lock)
            srv.stop()

    def test_help_explains_pool_size_and_max_connections(self):
        out = subprocess.run([harness.BIN, "help"], capture_output=True, text=True).stdout
        text = re.sub(r"\s+", " ", out)
        self.assertIn("--db-pool-size", text)
        self.assertRegex(text, r"opened on demand.*workers x this \+ 1.*max_connections")
        self.assertIn("--write-batch-max", text)
        self.assertIn("--write-batch-bytes", text)


if not SQLITE:
    class TestPgOnly(PgOnly, Base):
        pass


if __name__ == "__main__":
    harness.main()
