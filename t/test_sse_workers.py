#!/usr/bin/env python3
"""Live subscriptions across workers and servers (issue: SSE across workers and hosts): every
subscriber on every worker gets every matching poke, a worker overrun by a tiny write ring
recovers from the database, the catch-up/live boundary under concurrent writes, two servers on
one PostgreSQL database, and a stalled client that must not grow the server's memory."""

import os
import signal
import sys
import threading
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402
from sse_client import subscribe  # noqa: E402

MSG = {"type": "T", "data": {"x": 1}}


def setUpModule():
    if harness.STORE != "sqlite":
        harness.pg_cluster()


def tearDownModule():
    harness.cleanup()


def worker_pid(srv, slot):
    """pid of worker slot (1-based, as in X-EventoDB-Worker)."""
    for pid in srv.worker_pids():
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "eventodb w%d" % slot:
                    return pid
        except OSError:
            pass
    return None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stats(srv):
    r = srv.get("/debug/stats", headers={"Authorization": "Bearer " + srv.token})
    assert r.status == 200, r
    return r.body["stats"]


def writer_threads(jobs):
    """Runs each job (a callable) in its own thread; re-raises the first error."""
    errors = []

    def run(job):
        try:
            job()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    if errors:
        raise errors[0]


def pairs(sub):
    return [(p["stream"], p["position"]) for p in sub.pokes]


class TestAcrossWorkers(harness.TestCase):
    def assertPerStreamOrder(self, sub, skip=()):
        last = {}
        for s, pos in pairs(sub):
            if s in skip:
                continue
            self.assertGreater(pos, last.get(s, -1), "stream %s out of order: %r" % (s, pairs(sub)[:50]))
            last[s] = pos

    def test_every_subscriber_gets_every_poke(self):
        srv = harness.Server(name="fanout", workers=4).start()
        subs = []
        try:
            ns, tok = srv.create_namespace()
            cat = unique("fan")
            streams = ["%s-%d" % (cat, i) for i in range(8)]
            hot = unique("hot") + "-1"  # written by several connections at once
            per_stream, hot_writers, hot_each = 40, 4, 30
            plan = []
            for i in range(16):
                plan.append(("stream", {"stream": streams[i % 8]}))
            for i in range(6):
                plan.append(("category", {"category": cat}))
            for m in range(2):
                plan.append(("group%d" % m, {"category": cat, "consumer": str(m), "size": "2"}))
            plan.append(("hot", {"stream": hot}))
            plan.append(("hot", {"stream": hot}))
            for i in range(4):
                plan.append(("all", {"all": "true"}))
            for kind, params in plan:
                c = subscribe(srv, params, token=tok)
                self.assertEqual(c.status, 200)
                subs.append((kind, params, c))
            for _, _, c in subs:
                self.assertTrue(c.wait_ready(10))
            workers = {c.headers["x-eventodb-worker"] for _, _, c in subs}
            self.assertGreaterEqual(len(workers), 2, "all 32 subscribers landed on one worker")

            def stream_writer(s):
                return lambda: [srv.call("stream.write", s, MSG, token=tok) for _ in range(per_stream)]

            def hot_writer():
                for _ in range(hot_each):
                    srv.call("stream.write", hot, MSG, token=tok)

            writer_threads([stream_writer(s) for s in streams] + [hot_writer] * hot_writers)
            n_hot = hot_writers * hot_each
            want_cat = {(s, p) for s in streams for p in range(per_stream)}
            for kind, params, c in subs:
                if kind == "stream":
                    want = [(params["stream"], p) for p in range(per_stream)]
                elif kind == "hot":
                    want = [(hot, p) for p in range(n_hot)]
                elif kind == "category":
                    want = want_cat
                elif kind.startswith("group"):
                    m = int(kind[5:])
                    want = {(s, p) for s, p in want_cat if harness.group_member(s, 2) == m}
                else:
                    want = want_cat | {(hot, p) for p in range(n_hot)}
                c.wait_pokes(len(want), 20)
                time.sleep(0.05)
                got = pairs(c)
                with self.subTest(kind=kind, worker=c.headers["x-eventodb-worker"]):
                    if kind in ("stream", "hot"):
                        self.assertEqual(got, want)  # exact, in order
                    else:
                        self.assertEqual(len(got), len(want), "duplicates or losses")
                        self.assertEqual(set(got), set(want))
                        self.assertPerStreamOrder(c, skip=(hot,))
            # the pokes of the two consumer-group members are disjoint and cover the category
            g = [set(pairs(c)) for kind, _, c in subs if kind.startswith("group")]
            self.assertEqual(g[0] & g[1], set())
            self.assertEqual(g[0] | g[1], want_cat)
        finally:
            for _, _, c in subs:
                c.close()
            srv.stop()

    def test_no_lost_wakeup_when_writes_come_from_other_workers(self):
        """Regression for a lost wake-up in the ring's eventfd protocol: a worker whose
        subscribers are fed only by other workers' writes must never stop being woken. For each
        worker in turn, writes go only through connections held by the other workers (found from
        the socket's owner), several at once, for hundreds of rounds; every round's pokes must
        reach every subscriber on that worker."""
        nworkers, rounds_per_worker = 4, 150
        srv = harness.Server(name="wakeup", workers=nworkers).start()
        subs, conns = [], []
        try:
            ns, tok = srv.create_namespace()
            self.assertTrue(harness.wait_until(lambda: srv.call("sys.health")["workers"] == nworkers, 10))
            by_slot = defaultdict(list)
            for _ in range(400):  # the kernel spreads accepts unevenly: keep one or two per worker
                c = subscribe(srv, {"all": "true"}, token=tok)
                self.assertEqual(c.status, 200)
                slot = int(c.headers["x-eventodb-worker"])
                if len(by_slot[slot]) >= 2:
                    c.close()
                    continue
                subs.append(c)
                by_slot[slot].append(c)
                if len(by_slot) == nworkers:
                    break
            for c in subs:
                self.assertTrue(c.wait_ready(10))
            self.assertEqual(len(by_slot), nworkers, "subscribers did not land on every worker")
            pids = {worker_pid(srv, k): k for k in range(1, nworkers + 1)}
            conn_slot = defaultdict(list)
            for _ in range(400):
                hc = srv.connection()
                hc.connect()
                conns.append(hc)
                r = srv.rpc("sys.version", token=tok, conn=hc)
                self.assertEqual(r.status, 200)
                owner = harness.socket_owner(hc.sock, srv.port, list(pids))
                if owner in pids and not conn_slot[pids[owner]]:
                    conn_slot[pids[owner]].append(hc)
                else:
                    hc.close()
                if len(conn_slot) == nworkers:
                    break
            self.assertEqual(len(conn_slot), nworkers, "writer connections did not land on every worker")
            missed = []
            sent = defaultdict(int)  # per subscriber slot: pokes every subscriber must have
            for target in range(1, nworkers + 1):
                writers = [(k, conn_slot[k][0]) for k in conn_slot if k != target]
                barrier = threading.Barrier(len(writers) + 1)
                stop = threading.Event()
                errors = []

                def write_rounds(k, hc):
                    s = "%s-%d" % (unique("wk"), k)
                    try:
                        while True:
                            barrier.wait()
                            if stop.is_set():
                                return
                            r = srv.rpc("stream.write", s, MSG, token=tok, conn=hc)
                            if r.status != 200:
                                errors.append(r)
                            barrier.wait()
                    except threading.BrokenBarrierError:
                        pass

                ts = [threading.Thread(target=write_rounds, args=w) for w in writers]
                for t in ts:
                    t.start()
                try:
                    for rnd in range(rounds_per_worker):
                        barrier.wait(30)  # go
                        barrier.wait(30)  # every write of the round answered
                        for slot in by_slot:
                            sent[slot] += len(writers)
                        deadline = time.monotonic() + 2
                        for c in by_slot[target]:
                            left = max(deadline - time.monotonic(), 0.01)
                            if not c.wait(lambda c=c: len(c.pokes) >= sent[target], left):
                                missed.append((target, rnd, len(c.pokes), sent[target]))
                        if len(missed) > 10:
                            break
                    stop.set()
                    barrier.wait(30)
                finally:
                    barrier.abort()
                    for t in ts:
                        t.join(30)
                self.assertEqual(errors, [])
            self.assertEqual(missed, [], "subscribers missed pokes: (worker, round, got, want)")
            # nothing was delivered twice either
            for slot, cs in by_slot.items():
                for c in cs:
                    c.wait(lambda c=c: len(c.pokes) >= sent[slot], 5)
                    got = [(p["stream"], p["position"]) for p in c.pokes]
                    self.assertEqual(len(got), len(set(got)), "duplicate pokes on worker %d" % slot)
                    self.assertEqual(len(got), sent[slot])
        finally:
            for c in subs:
                c.close()
            for hc in conns:
                hc.close()
            srv.stop()

    def test_poke_from_a_stopped_worker_s_peer(self):
        """Deterministic cross-worker delivery: the subscriber's worker is stopped while another
        worker takes the writes; once it runs again the pokes arrive."""
        srv = harness.Server(name="peer", workers=2).start()
        s = unique("peer") + "-1"
        c = subscribe(srv, {"stream": s})
        pid = None
        try:
            self.assertTrue(c.wait_ready(5))
            pid = worker_pid(srv, int(c.headers["x-eventodb-worker"]))
            self.assertIsNotNone(pid)
            os.kill(pid, signal.SIGSTOP)
            for _ in range(3):
                srv.write(s)  # a fresh connection each: only the running worker accepts
            os.kill(pid, signal.SIGCONT)
            pid = None
            self.assertEqual([p["position"] for p in c.wait_pokes(3, 5)], [0, 1, 2])
        finally:
            if pid:
                os.kill(pid, signal.SIGCONT)
            c.close()
            srv.stop()

    def test_ring_overrun_recovers_from_the_database(self):
        srv = harness.Server(name="overrun", workers=2, extra=["--write-ring-size", "4096"]).start()
        cat = unique("ovr")
        streams = ["%s-%d" % (cat, i) for i in range(5)]
        subs = [subscribe(srv, {"stream": s}) for s in streams] + [subscribe(srv, {"category": cat})]
        pid = None
        try:
            for c in subs:
                self.assertTrue(c.wait_ready(5))
            by_worker = defaultdict(list)
            for c in subs:
                by_worker[c.headers["x-eventodb-worker"]].append(c)
            slot = max(by_worker, key=lambda k: len(by_worker[k]))
            pid = worker_pid(srv, int(slot))
            os.kill(pid, signal.SIGSTOP)
            per = 60  # 300 entries of ~70 bytes: the 4 KiB ring wraps several times
            writer_threads([(lambda s=s: [srv.write(s) for _ in range(per)]) for s in streams])
            os.kill(pid, signal.SIGCONT)
            pid = None
            for s, c in zip(streams, subs):
                c.wait_pokes(per, 10)
                time.sleep(0.05)
                self.assertEqual(pairs(c), [(s, p) for p in range(per)])
            cat_sub = subs[-1]
            cat_sub.wait_pokes(per * len(streams), 10)
            time.sleep(0.05)
            self.assertEqual(sorted(pairs(cat_sub)), sorted((s, p) for s in streams for p in range(per)))
            # An overrun, or a resync that raced it, made the stopped worker catch up from the
            # database (either way the counter moves; which log line appeared does not matter).
            self.assertGreaterEqual(stats(srv)["sse_resyncs"], 1, "the stopped worker was not overrun")
        finally:
            if pid:
                os.kill(pid, signal.SIGCONT)
            for c in subs:
                c.close()
            srv.stop()

    def test_catch_up_boundary_under_writes(self):
        srv = harness.Server(name="boundary", workers=4).start()
        cat = unique("bnd")
        s = cat + "-1"
        subs = []
        try:
            writer_threads([(lambda: [srv.write(s) for _ in range(625)])] * 4)  # 2,500 existing
            stop = threading.Event()
            extra = []

            def keep_writing():
                while not stop.is_set() and len(extra) < 1500:
                    extra.append(srv.write(s))

            t = threading.Thread(target=keep_writing)
            t.start()
            try:
                time.sleep(0.05)
                subs = [subscribe(srv, {"stream": s}), subscribe(srv, {"category": cat}),
                        subscribe(srv, {"stream": s, "position": "1000"})]
                time.sleep(1.0)
            finally:
                stop.set()
                t.join(60)
            total = 2500 + len(extra)
            self.assertGreater(len(extra), 10, "writes did not continue during the catch-up")
            for i, c in enumerate(subs):
                start = 1000 if i == 2 else 0
                c.wait_pokes(total - start, 20)
                time.sleep(0.1)
                self.assertEqual([p["position"] for p in c.pokes], list(range(start, total)),
                                 "subscriber %d: every position exactly once, in order" % i)
        finally:
            for c in subs:
                c.close()
            srv.stop()

    def test_stalled_client_memory_is_bounded(self):
        # sanitizer builds: a small ASan quarantine and a scaled bound (harness.rss_bound_kb)
        srv = harness.Server(name="stall", workers=1, env=harness.rss_env()).start()
        cat = unique("stall")
        # ~1 KiB per poke; each stream written by one connection, in order
        streams = ["%s-%d%s" % (cat, i, "x" * 980) for i in range(8)]
        per = 1500
        c = None
        try:
            # the same write load first, so buffers and libraries are warm
            warm = unique("warm")
            w = subscribe(srv, {"category": warm})
            writer_threads([(lambda i=i: [srv.write("%s-%d%s" % (warm, i, "x" * 980)) for _ in range(300)])
                            for i in range(8)])
            w.wait_pokes(2400, 10)
            w.close()
            pid = worker_pid(srv, 1)
            c = subscribe(srv, {"category": cat}, rcvbuf=4096)
            self.assertEqual(c.status, 200)
            srv.write(streams[0])
            self.assertEqual([p["position"] for p in c.wait_pokes(1, 5)], [0])
            time.sleep(0.3)  # caught up: the subscription is live
            c.pause()  # and now the client stops reading
            before = rss_kb(pid)
            # ~12 MiB of pokes if they were all buffered
            writer_threads([(lambda s=s: [srv.write(s) for _ in range(per)]) for s in streams])
            grew = rss_kb(pid) - before
            self.assertLess(grew, harness.rss_bound_kb(4096), "worker RSS grew by %d KiB for a stalled subscriber" % grew)
            self.assertGreater(stats(srv)["sse_coalesced"], 0)
            # once the client reads, the newest position of every stream arrives
            c.resume()
            final = {s: per - 1 for s in streams}
            final[streams[0]] = per
            done = c.wait(lambda: all(any(p["stream"] == s and p["position"] == v for p in c.pokes)
                                      for s, v in final.items()), 30)
            self.assertTrue(done, "the final position of some stream never reached the client")
            last = {}
            for p in c.pokes:
                self.assertGreater(p["position"], last.get(p["stream"], -1), "pokes repeated or went backwards")
                last[p["stream"]] = p["position"]
            self.assertLess(len(c.pokes), len(streams) * per, "nothing was coalesced")
        finally:
            if c is not None:
                c.close()
            srv.stop()


class TwoServers:
    """Cross-host delivery through PostgreSQL LISTEN/NOTIFY. It does not apply to the embedded
    store (one host by construction), so the SQLite run does not define this test at all."""

    def test_write_on_one_poke_on_the_other(self):
        pg = harness.pg_cluster()
        db = "two" + unique("db")
        pg.create_database(db)
        url = pg.url(db)
        a = harness.Server(db_url=url, name="hostA", workers=2).start()
        b = harness.Server(db_url=url, name="hostB", workers=2).start()
        subs = []
        try:
            s = unique("x") + "-1"
            cat = unique("xc")
            on_b = subscribe(b, {"stream": s})
            on_a = subscribe(a, {"category": cat})
            own = subscribe(a, {"stream": s})
            subs = [on_b, on_a, own]
            for c in subs:
                self.assertTrue(c.wait_ready(5))
            t0 = time.monotonic()
            r = a.write(s)
            p = on_b.wait_poke(lambda p: True, 1.0)
            self.assertIsNotNone(p, "no poke on B within 1 s of a write on A")
            self.assertLess(time.monotonic() - t0, 1.0)
            self.assertEqual(p, {"stream": s, "position": 0, "globalPosition": r["globalPosition"]})
            r2 = b.write(cat + "-9")
            p = on_a.wait_poke(lambda p: True, 1.0)
            self.assertEqual(p, {"stream": cat + "-9", "position": 0, "globalPosition": r2["globalPosition"]})
            # A's own write reaches A's subscriber once, not again as an echo
            time.sleep(0.3)
            self.assertEqual(len(own.pokes), 1, own.pokes)
            # a namespace made on A authenticates on B at once; deleted on A, it stops on B
            ns, tok = a.create_namespace()
            ok = harness.wait_until(lambda: b.rpc("stream.version", "q-1", token=tok).status == 200, 2)
            self.assertTrue(ok, "a namespace created on A is unknown on B")
            c = subscribe(b, {"stream": "q-1"}, token=tok)
            self.assertEqual(c.status, 200)
            a.write("q-1", token=tok)
            self.assertEqual([x["position"] for x in c.wait_pokes(1, 2)], [0])
            c.close()
            a.call("ns.delete", ns)
            gone = harness.wait_until(lambda: b.rpc("stream.version", "q-1", token=tok).status == 403, 2)
            self.assertTrue(gone, "a namespace deleted on A still works on B")
        finally:
            for c in subs:
                c.close()
            a.stop()
            b.stop()

    def test_pokes_resume_within_2s_of_the_database_being_back(self):
        """B's listener loses its connection and cannot open a new one for 7 s while both servers'
        existing store connections go on serving writes (the database refuses new connections
        only). A listener that backs off towards 10 s was still waiting 5 s after the database took
        connections again; a write on A must reach B within 2 s of that moment."""
        pg = harness.pg_cluster()
        db = "out" + unique("db")
        pg.create_database(db)
        url = pg.url(db)
        a = harness.Server(db_url=url, name="hostA", workers=1).start()
        b = harness.Server(db_url=url, name="hostB", workers=1).start()
        sub = None
        try:
            s = unique("o") + "-1"
            sub = subscribe(b, {"stream": s})
            self.assertTrue(sub.wait_ready(5))
            a.write(s)
            self.assertEqual(len(sub.wait_pokes(1, 2)), 1, "no cross-host poke before the outage")
            listeners = ("FROM pg_stat_activity WHERE datname = '%s' AND application_name = 'eventodb-listener'"
                         % db)
            up = harness.wait_until(lambda: pg.psql("SELECT count(*) " + listeners, db="postgres") == "2", 10)
            self.assertTrue(up, "expected one listener per server")
            pg.psql("ALTER DATABASE %s ALLOW_CONNECTIONS false" % db, db="postgres")
            try:
                killed = pg.psql("SELECT count(pg_terminate_backend(pid)) " + listeners, db="postgres")
                self.assertEqual(killed, "2")
                t_out = time.monotonic()
                while time.monotonic() - t_out < 7:
                    # writes go on through the connections the stores already have
                    a.write(s)
                    time.sleep(0.5)
            finally:
                pg.psql("ALTER DATABASE %s ALLOW_CONNECTIONS true" % db, db="postgres")
            t_back = time.monotonic()
            r = a.write(s)
            p = sub.wait_poke(lambda p: p["globalPosition"] == r["globalPosition"], 5)
            took = time.monotonic() - t_back
            self.assertIsNotNone(p, "the write on A never reached B")
            self.assertLess(took, 2.0, "the write on A reached B %.1f s after the database was back" % took)
            # and nothing written during the outage was lost on the way
            self.assertEqual([x["position"] for x in sub.pokes], list(range(r["position"] + 1)))
        finally:
            if sub is not None:
                sub.close()
            a.stop()
            b.stop()


if harness.STORE != "sqlite":
    class TestTwoServers(TwoServers, harness.TestCase):
        pass


if __name__ == "__main__":
    harness.main()
