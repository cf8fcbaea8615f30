#!/usr/bin/env python3
"""GET /subscribe (SPEC 6, 10.21, 10.22; D6, D10, D13, D17): validation, auth, headers, ": ready",
catch-up then live, position semantics, categories, consumer groups, all=true, keepalive, the
subscription limit, graceful shutdown, and the stream index's conflict answers."""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import make_token, unique  # noqa: E402
from sse_client import SSEClient, subscribe  # noqa: E402

SRV = None
MSG = {"type": "T", "data": {"x": 1}}


def setUpModule():
    global SRV
    SRV = harness.Server(name="sse", workers=2).start()


def tearDownModule():
    harness.cleanup()


def write(stream, srv=None, **opts):
    return (srv or SRV).write(stream, "T", {"x": 1}, **opts)


def positions(pokes):
    return [p["position"] for p in pokes]


class TestValidation(harness.TestCase):
    CASES = [
        ({}, "Either 'stream', 'category', or 'all=true' parameter required"),
        ({"stream": ""}, "Either 'stream', 'category', or 'all=true' parameter required"),
        ({"all": "false"}, "Either 'stream', 'category', or 'all=true' parameter required"),
        ({"all": "TRUE"}, "Either 'stream', 'category', or 'all=true' parameter required"),
        ({"all": "true", "stream": "a-1"}, "Cannot combine 'all' with 'stream' or 'category'"),
        ({"all": "true", "category": "a"}, "Cannot combine 'all' with 'stream' or 'category'"),
        ({"stream": "a-1", "category": "a"}, "Cannot specify both 'stream' and 'category'"),
        ({"stream": "a-1", "position": "abc"}, "Invalid position parameter"),
        ({"stream": "a-1", "position": "1.5"}, "Invalid position parameter"),
        ({"stream": "a-1", "position": "99999999999999999999"}, "Invalid position parameter"),
        ({"category": "a", "consumer": "x", "size": "2"}, "Invalid consumer parameter"),
        ({"category": "a", "consumer": "0", "size": "two"}, "Invalid size parameter"),
        ({"category": "a", "consumer": "2", "size": "2"}, "Invalid consumer group: member must be < size"),
        ({"category": "a", "consumer": "1"}, "Invalid consumer group: member must be < size"),
        ({"category": "a", "consumer": "1", "size": "0"}, "Invalid consumer group: member must be < size"),
        ({"stream": "x" * 1025}, "Invalid stream parameter"),
        ({"category": "c" * 1025}, "Invalid category parameter"),
    ]

    def test_plain_text_400s(self):
        for params, text in self.CASES:
            with self.subTest(params=params):
                c = subscribe(SRV, params)
                self.assertEqual(c.status, 400, c.body)
                self.assertEqual(c.body.decode(), text + "\n")
                self.assertTrue(c.headers["content-type"].startswith("text/plain"), c.headers)

    def test_accepted_oddities(self):
        # consumer/size are only read for categories; a negative member matches nothing
        for params in ({"stream": unique("v") + "-1", "consumer": "abc"},
                       {"category": unique("v"), "consumer": "-1", "size": "2"},
                       {"category": unique("v"), "size": "-1"},
                       {"stream": unique("v") + "-1", "position": "-5"},
                       {"all": "true", "position": "+3"}):
            with self.subTest(params=params):
                c = subscribe(SRV, params)
                try:
                    self.assertEqual(c.status, 200)
                    self.assertTrue(c.wait_ready(5))
                finally:
                    c.close()


class TestAuth(harness.TestCase):
    def test_auth_errors_are_json(self):
        c = subscribe(SRV, {"stream": "a-1"}, token=None)
        self.assertEqual(c.status, 401)
        self.assertEqual(c.json()["error"]["code"], "AUTH_REQUIRED")
        self.assertEqual(c.headers["content-type"], "application/json")
        c = subscribe(SRV, {"stream": "a-1"}, token="nonsense")
        self.assertEqual(c.status, 401)
        self.assertEqual(c.json()["error"]["code"], "AUTH_INVALID_TOKEN")
        c = subscribe(SRV, {"stream": "a-1"}, token=make_token("default"))
        self.assertEqual(c.status, 403)
        self.assertEqual(c.json()["error"]["code"], "AUTH_UNAUTHORIZED")
        # auth comes before parameter validation
        c = subscribe(SRV, {}, token=None)
        self.assertEqual(c.status, 401)

    def test_token_in_query_or_header(self):
        s = unique("auth") + "-1"
        write(s)
        a = SSEClient(SRV.host, SRV.port, {"stream": s}, query_token=SRV.token)
        b = subscribe(SRV, {"stream": s})
        try:
            for c in (a, b):
                self.assertEqual(c.status, 200)
                self.assertEqual(positions(c.wait_pokes(1, 5)), [0])
        finally:
            a.close()
            b.close()

    def test_namespace_isolation(self):
        ns, tok = SRV.create_namespace()
        s = unique("iso") + "-1"
        c = subscribe(SRV, {"stream": s}, token=tok)
        try:
            self.assertTrue(c.wait_ready(5))
            write(s)  # same name, default namespace
            time.sleep(0.3)
            self.assertEqual(c.pokes, [])
            SRV.write(s, token=tok)
            self.assertEqual(positions(c.wait_pokes(1, 5)), [0])
        finally:
            c.close()


class TestStream(harness.TestCase):
    def test_headers_ready_and_exact_bytes(self):
        s = unique("hd") + "-1"
        c = subscribe(SRV, {"stream": s})
        try:
            self.assertEqual(c.status, 200)
            h = c.headers
            self.assertEqual(h["content-type"], "text/event-stream")
            self.assertEqual(h["cache-control"], "no-cache")
            self.assertEqual(h["connection"], "keep-alive")
            self.assertEqual(h["access-control-allow-origin"], "*")
            self.assertEqual(h["transfer-encoding"], "chunked")
            self.assertTrue(c.wait_ready(5))
            self.assertEqual(c.events[0], ("comment", "ready"))
            r = write(s)
            c.wait_pokes(1, 5)
            self.assertEqual(c.poke_raw[0], ('event: poke\ndata: {"stream":"%s","position":0,"globalPosition":%d}\n\n'
                                             % (s, r["globalPosition"])).encode())
        finally:
            c.close()

    def test_position_semantics(self):
        # SPEC 10.21: position=3 on a 5-message stream pokes 3 and 4 at once, then live
        s = unique("pos") + "-1"
        gp = [write(s)["globalPosition"] for _ in range(5)]
        c = subscribe(SRV, {"stream": s, "position": "3"})
        try:
            self.assertEqual(positions(c.wait_pokes(2, 5)), [3, 4])
            self.assertEqual([p["globalPosition"] for p in c.pokes], gp[3:])
            r = write(s)
            pk = c.wait_pokes(3, 5)
            self.assertEqual(pk[2], {"stream": s, "position": 5, "globalPosition": r["globalPosition"]})
            self.assertEqual(list(pk[2].keys()), ["stream", "position", "globalPosition"])
        finally:
            c.close()
        # reconnecting from last+1 resumes without duplicates
        c = subscribe(SRV, {"stream": s, "position": "6"})
        try:
            self.assertTrue(c.wait_ready(5))
            time.sleep(0.3)
            self.assertEqual(c.pokes, [])
            write(s)
            self.assertEqual(positions(c.wait_pokes(1, 5)), [6])
            time.sleep(0.2)
            self.assertEqual(positions(c.pokes), [6])
        finally:
            c.close()

    def test_catch_up_is_paged_past_1000(self):
        s = unique("pg") + "-1"
        for i in range(1205):
            write(s)
        c = subscribe(SRV, {"stream": s})
        try:
            got = c.wait_pokes(1205, 20)
            self.assertEqual(positions(got), list(range(1205)))
        finally:
            c.close()

    def test_concurrent_subscriptions_are_independent(self):
        s = unique("ind") + "-1"
        write(s)
        a = subscribe(SRV, {"stream": s})
        b = subscribe(SRV, {"stream": s, "position": "1"})
        try:
            self.assertEqual(positions(a.wait_pokes(1, 5)), [0])
            self.assertTrue(b.wait_ready(5))
            write(s)
            self.assertEqual(positions(a.wait_pokes(2, 5)), [0, 1])
            self.assertEqual(positions(b.wait_pokes(1, 5)), [1])
            a.close()
            write(s)
            self.assertEqual(positions(b.wait_pokes(2, 5)), [1, 2])
        finally:
            a.close()
            b.close()

    def test_names_are_escaped_like_go(self):
        s = unique("esc") + "-<a>&\u00e9 \u4e16"
        c = subscribe(SRV, {"stream": s})
        try:
            self.assertTrue(c.wait_ready(5))
            write(s)
            c.wait_pokes(1, 5)
            self.assertEqual(c.pokes[0]["stream"], s)
            self.assertIn(b"\\u003ca\\u003e\\u0026", c.poke_raw[0])
        finally:
            c.close()


class TestCategoryAndAll(harness.TestCase):
    def test_category_pokes_name_the_stream(self):
        cat = unique("cat")
        other = unique("oth")
        write(cat + "-1")
        c = subscribe(SRV, {"category": cat})
        try:
            self.assertEqual([p["stream"] for p in c.wait_pokes(1, 5)], [cat + "-1"])
            write(cat + "-2")
            write(other + "-1")
            write(cat + "+x")  # category(cat+x) is "cat+x"
            write(cat)         # a bare stream belongs to its own category
            got = c.wait_pokes(3, 5)
            time.sleep(0.3)
            self.assertEqual([p["stream"] for p in c.pokes], [cat + "-1", cat + "-2", cat])
            gps = [p["globalPosition"] for p in got]
            self.assertEqual(gps, sorted(gps))
        finally:
            c.close()

    def test_category_position_is_global(self):
        cat = unique("cgp")
        r = [write("%s-%d" % (cat, i)) for i in range(4)]
        c = subscribe(SRV, {"category": cat, "position": str(r[2]["globalPosition"])})
        try:
            got = c.wait_pokes(2, 5)
            self.assertEqual([p["globalPosition"] for p in got], [r[2]["globalPosition"], r[3]["globalPosition"]])
        finally:
            c.close()

    def test_category_with_dash_matches_nothing(self):
        cat = unique("dash")
        c = subscribe(SRV, {"category": cat + "-1"})
        try:
            self.assertTrue(c.wait_ready(5))
            write(cat + "-1")
            time.sleep(0.3)
            self.assertEqual(c.pokes, [])
        finally:
            c.close()

    def test_all_is_live_only_from_position(self):
        ns, tok = SRV.create_namespace()
        first = [SRV.write(unique("a%d" % i) + "-1", token=tok) for i in range(3)]
        p = first[0]["globalPosition"] + 1
        c = subscribe(SRV, {"all": "true", "position": str(p)}, token=tok)
        plain = subscribe(SRV, {"all": "true"}, token=tok)
        try:
            self.assertTrue(c.wait_ready(5))
            self.assertTrue(plain.wait_ready(5))
            time.sleep(0.3)
            self.assertEqual(c.pokes, [])  # no catch-up for all=true
            self.assertEqual(plain.pokes, [])
            s = unique("new") + "-1"
            r = SRV.write(s, token=tok)
            pk = c.wait_pokes(1, 5)
            self.assertEqual(pk[0], {"stream": s, "position": 0, "globalPosition": r["globalPosition"]})
            self.assertEqual(plain.wait_pokes(1, 5)[0]["stream"], s)
        finally:
            c.close()
            plain.close()
        # a start position in the future filters live writes below it
        c = subscribe(SRV, {"all": "true", "position": str(r["globalPosition"] + 2)}, token=tok)
        try:
            self.assertTrue(c.wait_ready(5))
            SRV.write(s, token=tok)
            r3 = SRV.write(s, token=tok)
            self.assertEqual([x["globalPosition"] for x in c.wait_pokes(1, 5)], [r3["globalPosition"]])
        finally:
            c.close()

    def test_consumer_groups_match_category_get(self):
        cat = unique("grp")
        streams = ["%s-%d" % (cat, i) for i in range(24)] + ["%s-7+retry" % cat, cat]
        for s in streams[:13]:
            write(s)
        size = 3
        subs = [subscribe(SRV, {"category": cat, "consumer": str(m), "size": str(size)}) for m in range(size)]
        try:
            for s in streams[13:]:
                write(s)
            for m, c in enumerate(subs):
                want = SRV.call("category.get", cat, {"consumerGroup": {"member": m, "size": size}})
                got = c.wait_pokes(len(want), 10)
                time.sleep(0.2)
                self.assertEqual([(p["stream"], p["globalPosition"]) for p in c.pokes],
                                 [(x[1], x[4]) for x in want])
                for p in got:
                    self.assertEqual(harness.group_member(p["stream"], size), m)
            seen = [p["stream"] for c in subs for p in c.pokes]
            self.assertEqual(sorted(seen), sorted(s for s in streams if "-" in s))  # disjoint and covering
        finally:
            for c in subs:
                c.close()


class TestKeepaliveLimitShutdown(harness.TestCase):
    def test_keepalive_comments(self):
        srv = harness.Server(name="sse-ka", workers=1, extra=["--sse-keepalive", "1"]).start()
        try:
            c = subscribe(srv, {"stream": unique("ka") + "-1"})
            self.assertTrue(c.wait(lambda: c.comments.count("keepalive") >= 2, 5), c.comments)
            c.close()
        finally:
            srv.stop()

    def test_subscription_limit(self):
        srv = harness.Server(name="sse-limit", workers=2, extra=["--max-subscriptions", "3"]).start()
        subs = []
        try:
            for i in range(3):
                subs.append(subscribe(srv, {"stream": unique("lim") + "-1"}))
                self.assertEqual(subs[-1].status, 200)
                self.assertTrue(subs[-1].wait_ready(5))
            c = subscribe(srv, {"all": "true"})
            self.assertEqual(c.status, 429)
            err = c.json()["error"]
            self.assertEqual(err["code"], "TOO_MANY_SUBSCRIPTIONS")
            self.assertIn("3", err["message"])
            # the limit is per namespace
            ns, tok = srv.create_namespace()
            other = subscribe(srv, {"all": "true"}, token=tok)
            self.assertEqual(other.status, 200)
            other.close()
            subs.pop().close()
            ok = harness.wait_until(lambda: _try_subscribe(srv), 5)
            self.assertTrue(ok, "no place freed after a subscriber left")
            stats = srv.call("sys.health")
            self.assertEqual(stats["status"], "ok")
        finally:
            for c in subs:
                c.close()
            srv.stop()

    def test_sigterm_ends_streams_cleanly(self):
        srv = harness.Server(name="sse-term", workers=2, extra=["--shutdown-timeout", "20"]).start()
        subs = [subscribe(srv, {"stream": unique("term") + "-1"}) for _ in range(6)]
        for c in subs:
            self.assertTrue(c.wait_ready(5))
        t0 = time.monotonic()
        rc = srv.stop(signal.SIGTERM, timeout=15)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertLess(took, 5, "SIGTERM waited for subscriptions to end on their own")
        for c in subs:
            self.assertTrue(c.wait_end(5))
            self.assertTrue(c.ended, "stream was cut, not ended with the final chunk")
            c.close()
        self.assertIn("ending", srv.output())


class TestTestMode(harness.TestCase):
    def test_optional_token_and_namespace_creation(self):
        srv = harness.Server(name="sse-testmode", workers=2, extra=["--test-mode"]).start()
        subs = []
        try:
            s = unique("tm") + "-1"
            anon = subscribe(srv, {"stream": s}, token=None)  # no token: the default namespace
            subs.append(anon)
            self.assertEqual(anon.status, 200)
            srv.write(s)
            self.assertEqual([p["position"] for p in anon.wait_pokes(1, 5)], [0])
            ns = unique("tmns")
            tok = make_token(ns)
            c = subscribe(srv, {"stream": s}, token=tok)  # an unknown namespace is created
            subs.append(c)
            self.assertEqual(c.status, 200)
            self.assertEqual(c.headers.get("x-eventodb-token"), tok)
            self.assertTrue(c.wait_ready(5))
            r = srv.rpc("stream.write", s, MSG, token=tok)
            self.assertEqual(r.status, 200, r)
            self.assertEqual([p["position"] for p in c.wait_pokes(1, 5)], [0])
            self.assertEqual(len(anon.pokes), 1)  # namespaces stay apart
        finally:
            for c in subs:
                c.close()
            srv.stop()


def _try_subscribe(srv):
    c = subscribe(srv, {"all": "true"})
    ok = c.status == 200
    c.close()
    return ok


class TestStreamIndex(harness.TestCase):
    def stats(self):
        r = SRV.get("/debug/stats", headers={"Authorization": "Bearer " + SRV.token})
        self.assertEqual(r.status, 200, r)
        return r.body["stats"]

    def test_conflicts_from_the_index_and_the_database(self):
        s = unique("ix") + "-1"
        for _ in range(3):
            write(s)
        before = self.stats()["index_conflicts"]
        for expected in (-1, 0, 1):
            r = SRV.rpc("stream.write", s, MSG, {"expectedVersion": expected})
            err = self.assertError(r, 409, "STREAM_VERSION_CONFLICT")
            self.assertEqual(err["details"], {"expected": expected, "actual": 2})
        # answered without a database round trip, whichever worker took them
        self.assertEqual(self.stats()["index_conflicts"] - before, 3)
        r = SRV.rpc("stream.write", s, MSG, {"expectedVersion": 2})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["position"], 3)
        r = SRV.rpc("stream.write", s, MSG, {"expectedVersion": 7})
        err = self.assertError(r, 409, "STREAM_VERSION_CONFLICT")
        self.assertEqual(err["details"], {"expected": 7, "actual": 3})

    def test_namespace_delete_invalidates_cached_versions(self):
        ns, tok = SRV.create_namespace()
        s = unique("nsd") + "-1"
        for _ in range(3):
            SRV.write(s, token=tok)
        SRV.call("ns.delete", ns)
        r = SRV.call("ns.create", ns)
        tok2 = r["token"]
        # on every worker: a stale cached version would answer 409
        for _ in range(4):
            r = SRV.rpc("stream.write", unique("w") + "-1", MSG, token=tok2)
            self.assertEqual(r.status, 200, r)
        r = SRV.rpc("stream.write", s, MSG, {"expectedVersion": -1}, token=tok2)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["position"], 0)

    def test_stats_show_subscribers_and_ring(self):
        c = subscribe(SRV, {"stream": unique("st") + "-1"})
        try:
            self.assertTrue(c.wait_ready(5))
            r = SRV.get("/debug/stats", headers={"Authorization": "Bearer " + SRV.token})
            self.assertEqual(r.status, 200, r)
            self.assertGreaterEqual(r.body["stats"]["sse_subscribers"], 1)
            self.assertIn("seq", r.body["ring"])
            self.assertIn("sse_sub", [p["name"] for p in r.body["pools"]])
        finally:
            c.close()


if __name__ == "__main__":
    harness.main()
