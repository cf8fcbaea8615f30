#!/usr/bin/env python3
"""ns.* and sys.* methods (SPEC 4.6-4.12, 10.17-10.20, D1, D3, D11, D17, D18)."""

import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique, make_token  # noqa: E402

SRV = None
MSG = {"type": "T", "data": {}}
# D12: every time is the stored one, microseconds, trailing zeros trimmed
US_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,5}[1-9])?Z$")
TOKEN_RE = re.compile(r"^ns_[A-Za-z0-9_-]+_[0-9a-f]{64}$")


def setUpModule():
    global SRV
    SRV = harness.Server(name="ns").start()


def tearDownModule():
    harness.cleanup()


class Base(harness.TestCase):
    def rpc(self, method, *args, **kw):
        return SRV.rpc(method, *args, **kw)

    def ok(self, method, *args, **kw):
        r = SRV.rpc(method, *args, **kw)
        self.assertEqual(r.status, 200, "%s %r -> %r" % (method, args, r))
        return r.body

    def create(self, ns_id=None, **opts):
        ns_id = ns_id or unique("ns")
        args = [ns_id] + ([opts] if opts else [])
        return ns_id, self.ok("ns.create", *args)

    def write(self, token, stream, n=1):
        out = None
        for _ in range(n):
            out = self.ok("stream.write", stream, MSG, token=token)
        return out

    def unauthorized(self, r, ns=None):
        err = self.assertError(r, 403, "AUTH_UNAUTHORIZED")
        return err


class TestCreate(Base):
    def test_create_generates_token(self):
        t0 = time.time()
        ns_id, r = self.create()
        self.assertEqual(set(r), {"createdAt", "namespace", "token"})
        self.assertEqual(r["namespace"], ns_id)
        tok = r["token"]
        self.assertTrue(TOKEN_RE.match(tok), tok)
        self.assertTrue(tok.startswith("ns_" + harness.b64url(ns_id) + "_"), tok)
        self.assertTrue(US_TIME_RE.match(r["createdAt"]), r["createdAt"])
        self.assertLess(abs(harness.parse_rfc3339(r["createdAt"]) - t0), 30)
        # the token works, and is bound to the new namespace
        self.assertEqual(self.write(tok, "a-1")["globalPosition"], 1)
        self.assertEqual(self.ok("stream.version", "a-1", token=tok), 0)
        self.assertIsInstance(self.ok("sys.version", token=tok), str)

    def test_create_with_token_option(self):
        ns_id = unique("nt")
        tok = make_token(ns_id)
        _, r = self.create(ns_id, token=tok, description="with token")
        self.assertEqual(r["token"], tok)
        self.assertEqual(r["namespace"], ns_id)
        self.write(tok, "x-1")
        info = self.ok("ns.info", ns_id, token=tok)
        self.assertEqual(info["description"], "with token")
        # uppercase hex is accepted by the parser; the exact string is the token
        ns2 = unique("nu")
        tok2 = "ns_" + harness.b64url(ns2) + "_" + harness.secrets.token_hex(32).upper()
        _, r = self.create(ns2, token=tok2)
        self.assertEqual(r["token"], tok2)
        self.write(tok2, "x-1")
        self.unauthorized(self.rpc("stream.version", "x-1", token=tok2[:-64] + tok2[-64:].lower()))

    def test_token_option_errors(self):
        ns_id = unique("ne")
        other = unique("other")
        r = self.rpc("ns.create", ns_id, {"token": make_token(other)})
        self.assertError(r, 400, "INVALID_REQUEST", "Token is for namespace '%s', not '%s'" % (other, ns_id))
        for bad in ("garbage", "", "ns_" + harness.b64url(ns_id) + "_abc",
                    "xx_" + harness.b64url(ns_id) + "_" + "0" * 64,
                    "ns_" + harness.b64url(ns_id) + "_" + "g" * 64):
            with self.subTest(token=bad):
                r = self.rpc("ns.create", ns_id, {"token": bad})
                self.assertError(r, 400, "INVALID_REQUEST")
                self.assertTrue(r.error()["message"].startswith("Invalid token format"), r)
        r = self.rpc("ns.create", ns_id, {"token": 5})
        self.assertError(r, 400, "INVALID_REQUEST", "options.token must be a string")
        # none of them created the namespace
        self.assertError(self.rpc("ns.info", ns_id), 404, "NAMESPACE_NOT_FOUND")

    def test_validation(self):
        nid = unique("nv")
        cases = [
            ((), "ns.create requires at least 1 argument: namespace ID"),
            (("",), "namespace ID must be a non-empty string"),
            ((5,), "namespace ID must be a non-empty string"),
            ((None,), "namespace ID must be a non-empty string"),
            ((nid, None), "options must be an object"),
            ((nid, "x"), "options must be an object"),
            ((nid, {"description": 5}), "options.description must be a string"),
            ((nid, {"metadata": "x"}), "options.metadata must be an object"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                self.assertError(self.rpc("ns.create", *args), 400, "INVALID_REQUEST", message)
        self.assertError(self.rpc("ns.info", nid), 404, "NAMESPACE_NOT_FOUND")

    def test_d11_id_rules(self):
        bad = ["../etc", "a b", "-abc", "_abc", "a.b", "a/b", "é", "a" * 55, "ab?", "a\\b", "a'b",
               "a\"b", "a;b", "x" * 200, " a", "a\n"]
        for nid in bad:
            with self.subTest(id=nid):
                self.assertError(self.rpc("ns.create", nid), 400, "INVALID_REQUEST")
        good = ["a" * 54, "Z", "9lives", "A-b_C9", "x" + "-" * 53, "y" + "_" * 53]
        for nid in good:
            with self.subTest(id=nid):
                _, r = self.create(nid)
                self.assertEqual(r["namespace"], nid)
                self.write(r["token"], "s-1")
                self.assertEqual(self.ok("ns.info", nid)["messageCount"], 1)

    def test_dash_and_underscore_are_distinct(self):
        h = unique("")
        _, a = self.create("tn-" + h)
        _, b = self.create("tn_" + h)
        self.write(a["token"], "s-1", 2)
        self.write(b["token"], "s-1", 1)
        self.assertEqual(self.ok("stream.version", "s-1", token=a["token"]), 1)
        self.assertEqual(self.ok("stream.version", "s-1", token=b["token"]), 0)

    def test_duplicate(self):
        ns_id, r = self.create()
        r2 = self.rpc("ns.create", ns_id)
        self.assertError(r2, 409, "NAMESPACE_EXISTS", "Namespace '%s' already exists" % ns_id)
        r3 = self.rpc("ns.create", ns_id, {"token": make_token(ns_id)})
        self.assertError(r3, 409, "NAMESPACE_EXISTS")
        self.assertError(self.rpc("ns.create", "default"), 409, "NAMESPACE_EXISTS")
        # the original token still works
        self.write(r["token"], "a-1")

    def test_concurrent_create_one_wins(self):
        ns_id = unique("nc")
        res = [None] * 8
        barrier = threading.Barrier(8)

        def go(i):
            barrier.wait(10)
            res[i] = SRV.rpc("ns.create", ns_id)

        ts = [threading.Thread(target=go, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        oks = [r for r in res if r.status == 200]
        self.assertEqual(len(oks), 1, res)
        for r in res:
            if r.status != 200:
                self.assertError(r, 409, "NAMESPACE_EXISTS")
        self.write(oks[0].body["token"], "a-1")


class TestPropagation(Base):
    def test_new_token_works_on_every_worker_at_once(self):
        # fresh connections spread over the workers: the new namespace is known everywhere at once,
        # and a deleted one is refused everywhere at once
        for _ in range(3):
            ns_id, r = self.create()
            tok = r["token"]
            for i in range(12):
                self.assertEqual(SRV.rpc("stream.version", "p-1", token=tok).status, 200)
            self.ok("ns.delete", ns_id)
            for i in range(12):
                self.unauthorized(SRV.rpc("stream.version", "p-1", token=tok))

    def test_key_order(self):
        # map-shaped results have their keys sorted (Go encoding/json)
        ns_id, r = self.create()
        tok = r["token"]
        self.write(tok, "k-1")
        bodies = [r, self.ok("ns.info", ns_id), self.ok("sys.health"),
                  self.ok("stream.write", "k-1", MSG, token=tok)]
        bodies += self.ok("ns.list") + self.ok("ns.streams", token=tok) + self.ok("ns.categories", token=tok)
        bodies.append(self.ok("ns.delete", ns_id))
        for b in bodies:
            self.assertEqual(list(b), sorted(b), b)


class TestAdminRights(Base):
    def test_tenant_cannot_admin(self):
        a, ra = self.create()
        b, rb = self.create()
        ta = ra["token"]
        self.unauthorized(self.rpc("ns.create", unique("x"), token=ta))
        self.unauthorized(self.rpc("ns.list", token=ta))
        # own namespace: allowed
        info = self.ok("ns.info", a, token=ta)
        self.assertEqual(info["namespace"], a)
        # another namespace, existing or not: 403 (existence is not leaked)
        self.unauthorized(self.rpc("ns.info", b, token=ta))
        self.unauthorized(self.rpc("ns.info", unique("missing"), token=ta))
        self.unauthorized(self.rpc("ns.info", "default", token=ta))
        self.unauthorized(self.rpc("ns.delete", b, token=ta))
        self.unauthorized(self.rpc("ns.delete", unique("missing"), token=ta))
        self.unauthorized(self.rpc("ns.delete", "default", token=ta))
        # b and default are untouched
        self.assertEqual(self.ok("ns.info", b)["namespace"], b)
        self.write(rb["token"], "b-1")
        self.assertEqual(self.ok("ns.info", "default")["namespace"], "default")
        # tenant may use data and sys methods
        self.write(ta, "a-1")
        self.assertIsInstance(self.ok("sys.version", token=ta), str)
        self.assertEqual(self.ok("sys.health", token=ta)["status"], "ok")
        # own delete is allowed; afterwards the token is refused
        d = self.ok("ns.delete", a, token=ta)
        self.assertEqual(d["namespace"], a)
        self.assertEqual(d["messagesDeleted"], 1)
        self.unauthorized(self.rpc("stream.get", "a-1", token=ta))
        self.assertError(self.rpc("ns.info", a), 404, "NAMESPACE_NOT_FOUND")

    def test_admin_not_found(self):
        m = unique("missing")
        self.assertError(self.rpc("ns.info", m), 404, "NAMESPACE_NOT_FOUND", "Namespace '%s' not found" % m)
        self.assertError(self.rpc("ns.delete", m), 404, "NAMESPACE_NOT_FOUND", "Namespace '%s' not found" % m)

    def test_info_delete_validation(self):
        for method, msg in (("ns.info", "ns.info requires 1 argument: namespace ID"),
                            ("ns.delete", "ns.delete requires 1 argument: namespace ID")):
            with self.subTest(method=method):
                self.assertError(self.rpc(method), 400, "INVALID_REQUEST", msg)
                self.assertError(self.rpc(method, ""), 400, "INVALID_REQUEST",
                                 "namespace ID must be a non-empty string")
                self.assertError(self.rpc(method, 5), 400, "INVALID_REQUEST",
                                 "namespace ID must be a non-empty string")


class TestDelete(Base):
    def test_delete_counts_and_revokes(self):
        ns_id, r = self.create()
        tok = r["token"]
        self.write(tok, "acc-1", 3)
        self.write(tok, "acc-2", 2)
        t0 = time.time()
        d = self.ok("ns.delete", ns_id)
        self.assertEqual(set(d), {"deletedAt", "messagesDeleted", "namespace"})
        self.assertEqual(d["namespace"], ns_id)
        self.assertEqual(d["messagesDeleted"], 5)
        self.assertTrue(US_TIME_RE.match(d["deletedAt"]), d)
        self.assertLess(abs(harness.parse_rfc3339(d["deletedAt"]) - t0), 30)
        # old token refused everywhere
        for method, args in (("stream.get", ("acc-1",)), ("stream.write", ("acc-1", MSG)),
                             ("sys.version", ()), ("ns.info", (ns_id,))):
            with self.subTest(method=method):
                self.unauthorized(self.rpc(method, *args, token=tok))
        self.assertError(self.rpc("ns.info", ns_id), 404, "NAMESPACE_NOT_FOUND")
        self.assertError(self.rpc("ns.delete", ns_id), 404, "NAMESPACE_NOT_FOUND")
        self.assertNotIn(ns_id, [n["namespace"] for n in self.ok("ns.list")])
        # re-create the same id: empty and only the new token works
        _, r2 = self.create(ns_id)
        self.assertIsNone(self.ok("stream.version", "acc-1", token=r2["token"]))
        self.assertEqual(self.ok("ns.info", ns_id)["messageCount"], 0)
        self.unauthorized(self.rpc("stream.get", "acc-1", token=tok))
        # no stale stream versions survive the re-creation (on any worker)
        r = self.ok("stream.write", "acc-1", MSG, {"expectedVersion": -1}, token=r2["token"])
        self.assertEqual(r, {"globalPosition": 1, "position": 0})
        for _ in range(6):
            self.assertEqual(self.ok("stream.version", "acc-1", token=r2["token"]), 0)
            self.assertEqual(self.ok("stream.version", "acc-2", token=r2["token"]), None)
        self.assertEqual(self.ok("stream.write", "acc-2", MSG, {"expectedVersion": -1}, token=r2["token"])["position"], 0)

    def test_delete_empty(self):
        ns_id, _ = self.create()
        self.assertEqual(self.ok("ns.delete", ns_id)["messagesDeleted"], 0)


class TestListInfo(Base):
    def test_list(self):
        a, ra = self.create(description="first one")
        time.sleep(1.1)
        b, rb = self.create()
        self.write(rb["token"], "x-1", 2)
        self.write(rb["token"], "y-1", 1)
        lst = self.ok("ns.list")
        self.assertIsInstance(lst, list)
        ids = [n["namespace"] for n in lst]
        self.assertIn("default", ids)
        self.assertLess(ids.index(b), ids.index(a), "created_at DESC: %r" % ids)
        for n in lst:
            self.assertEqual(set(n), {"createdAt", "description", "messageCount", "namespace"}, n)
            self.assertTrue(US_TIME_RE.match(n["createdAt"]), n)
            self.assertIsInstance(n["messageCount"], int)
        # created_at ordering is non-increasing
        times = [harness.parse_rfc3339(n["createdAt"]) for n in lst]
        self.assertEqual(times, sorted(times, reverse=True))
        by = {n["namespace"]: n for n in lst}
        self.assertEqual(by[b]["messageCount"], 3)
        self.assertEqual(by[a]["messageCount"], 0)
        self.assertEqual(by[a]["description"], "first one")
        self.assertEqual(by[b]["description"], "")
        self.assertEqual(by["default"]["description"], "Default namespace")
        self.assertNotIn(ra["token"], self.rpc("ns.list").text)
        # arguments are ignored
        self.assertEqual(len(self.ok("ns.list", {"limit": 1}, 5)), len(self.ok("ns.list")))

    def test_info(self):
        ns_id, r = self.create(description="info test")
        tok = r["token"]
        info = self.ok("ns.info", ns_id)
        self.assertEqual(set(info), {"createdAt", "description", "lastActivity", "messageCount", "namespace",
                                     "streamCount"})
        self.assertEqual(info["namespace"], ns_id)
        self.assertEqual(info["description"], "info test")
        self.assertEqual(info["messageCount"], 0)
        self.assertEqual(info["streamCount"], 0)
        self.assertIsNone(info["lastActivity"])
        self.assertTrue(US_TIME_RE.match(info["createdAt"]), info)
        t0 = time.time()
        self.write(tok, "acc-1", 2)
        self.write(tok, "acc-2", 1)
        self.write(tok, "other", 1)
        info = self.ok("ns.info", ns_id)
        self.assertEqual(info["messageCount"], 4)
        self.assertEqual(info["streamCount"], 3)
        self.assertIsInstance(info["lastActivity"], str)
        self.assertTrue(harness.RFC3339_RE.match(info["lastActivity"]), info)
        self.assertLess(abs(harness.parse_rfc3339(info["lastActivity"]) - t0), 10)
        # the tenant sees the same
        self.assertEqual(self.ok("ns.info", ns_id, token=tok), info)


class TestTimePrecision(Base):
    """D12: one precision, the stored one (microseconds), from every method on both stores."""

    def test_create_info_list_agree(self):
        fractions = 0
        for _ in range(3):
            ns_id, r = self.create()
            created = r["createdAt"]
            self.assertTrue(US_TIME_RE.match(created), created)
            fractions += "." in created
            self.assertEqual(self.ok("ns.info", ns_id)["createdAt"], created)
            by = {n["namespace"]: n for n in self.ok("ns.list")}
            self.assertEqual(by[ns_id]["createdAt"], created)
        # a whole second three times in a row is a one in 10^18 chance
        self.assertGreater(fractions, 0, "no fraction in three creation times")

    def test_activity_is_the_message_time(self):
        ns_id, r = self.create()
        tok = r["token"]
        for st in ("a-1", "b-1", "a-1"):
            self.write(tok, st)
        last_a = self.ok("stream.last", "a-1", token=tok)[6]
        last_b = self.ok("stream.last", "b-1", token=tok)[6]
        rows = {x["stream"]: x["lastActivity"] for x in self.ok("ns.streams", token=tok)}
        self.assertEqual(rows, {"a-1": last_a, "b-1": last_b})
        # the newest message is the last one written, on a-1
        newest = self.ok("category.get", "", token=tok)[-1][7]
        self.assertEqual(newest, last_a)
        self.assertEqual(self.ok("ns.info", ns_id)["lastActivity"], newest)
        d = self.ok("ns.delete", ns_id)
        self.assertTrue(US_TIME_RE.match(d["deletedAt"]), d)


class TestRegistryUpgrade(harness.TestCase):
    """A registry written before creation times had microseconds: the migration gives existing rows
    their whole-second value, and a row an older server writes later still reads."""

    OLD = 1700000000  # 2023-11-14T22:13:20Z

    def test_upgrade_keeps_old_creation_times(self):
        token_hash = "ab" * 32
        if harness.STORE == "sqlite":
            import sqlite3

            d = os.path.join(harness.module_tmp(), unique("oldreg"))
            os.makedirs(d)
            db = sqlite3.connect(os.path.join(d, "metadata.db"))
            db.executescript(
                "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL);"
                "INSERT INTO schema_migrations VALUES ('001_namespace_registry.sql', 1);"
                "CREATE TABLE namespaces (id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,"
                " db_path TEXT NOT NULL UNIQUE, description TEXT, created_at INTEGER, metadata TEXT DEFAULT '{}');"
                "INSERT INTO namespaces VALUES ('old', '%s', 'old.db', 'from before', %d, '{}');"
                % (token_hash, self.OLD))
            db.commit()
            db.close()
            srv = harness.Server(db_url="sqlite://metadata.db", extra=["--data-dir", d], name="upgrade")
            srv.start()
            srv.stop()
            db = sqlite3.connect(os.path.join(d, "metadata.db"))
            self.assertEqual(db.execute("SELECT created_at_us FROM namespaces WHERE id = 'old'").fetchone()[0],
                             self.OLD * 1000000)
            # a row as an older server writes it (no created_at_us)
            db.execute("INSERT INTO namespaces (id, token_hash, db_path, description, created_at) VALUES"
                       " ('older', '%s', 'older.db', '', %d)" % ("cd" * 32, self.OLD + 1))
            db.commit()
            db.close()
        else:
            pg = harness.pg_cluster()
            url = pg.create_database(unique("oldreg"))
            db = url.rsplit("/", 1)[1]
            srv = harness.Server(db_url=url, name="upgrade")
            srv.start()
            srv.stop()
            # back to the registry as it was before migration 003, with a namespace in it
            pg.psql("ALTER TABLE eventodb_store.namespaces DROP COLUMN created_at_us;"
                    "DELETE FROM eventodb_store.schema_migrations WHERE version = '003_namespace_created_us.sql';"
                    "INSERT INTO eventodb_store.namespaces (id, token_hash, schema_name, description, created_at)"
                    " VALUES ('old', '%s', 'eventodb_old', 'from before', %d)" % (token_hash, self.OLD), db=db)
            srv.start()
            srv.stop()
            self.assertEqual(pg.psql("SELECT created_at_us FROM eventodb_store.namespaces WHERE id = 'old'", db=db),
                             str(self.OLD * 1000000))
            pg.psql("INSERT INTO eventodb_store.namespaces (id, token_hash, schema_name, description, created_at)"
                    " VALUES ('older', '%s', 'eventodb_older', '', %d)" % ("cd" * 32, self.OLD + 1), db=db)
        srv.start()
        try:
            self.assertIn("applied registry migration", srv.log())
            info = srv.call("ns.info", "old")
            self.assertEqual(info["createdAt"], "2023-11-14T22:13:20Z")
            self.assertEqual(info["description"], "from before")
            self.assertEqual(srv.call("ns.info", "older")["createdAt"], "2023-11-14T22:13:21Z")
            by = {n["namespace"]: n["createdAt"] for n in srv.call("ns.list")}
            self.assertEqual(by["old"], "2023-11-14T22:13:20Z")
            self.assertEqual(list(by)[-2:], ["older", "old"], "ns.list: newest first")
        finally:
            srv.stop()


class TestStreams(Base):
    @classmethod
    def setUpClass(cls):
        cls.ns, cls.tok = SRV.create_namespace()
        cls.names = ["acc-1", "acc-2", "acc%x", "acc_y", "accZ-1", "Acc-1", "b-1", "ac-1", "acc", "é-1",
                     "acc-10", "a\\b-1", "a\\\\b-2"]
        for n in cls.names:
            SRV.call("stream.write", n, MSG, token=cls.tok)
        SRV.call("stream.write", "acc-1", MSG, token=cls.tok)
        SRV.call("stream.write", "acc-1", MSG, token=cls.tok)

    def streams(self, opts=None):
        args = [opts] if opts is not None else []
        return self.ok("ns.streams", *args, token=self.tok)

    def names_of(self, rows):
        return [r["stream"] for r in rows]

    def bytesort(self, names):
        return sorted(names, key=lambda s: s.encode("utf-8"))

    def test_all_byte_order(self):
        t0 = time.time()
        rows = self.streams()
        self.assertEqual(self.names_of(rows), self.bytesort(self.names))
        for r in rows:
            self.assertEqual(set(r), {"lastActivity", "stream", "version"}, r)
            self.assertTrue(US_TIME_RE.match(r["lastActivity"]), r)
            self.assertLess(abs(harness.parse_rfc3339(r["lastActivity"]) - t0), 60)
        by = {r["stream"]: r for r in rows}
        self.assertEqual(by["acc-1"]["version"], 2)
        self.assertEqual(by["acc-2"]["version"], 0)
        self.assertEqual(self.names_of(self.streams({})), self.names_of(rows))

    def test_prefix_literal_case_sensitive(self):
        self.assertEqual(self.names_of(self.streams({"prefix": "acc"})),
                         ["acc", "acc%x", "acc-1", "acc-10", "acc-2", "accZ-1", "acc_y"])
        self.assertEqual(self.names_of(self.streams({"prefix": "acc%"})), ["acc%x"])
        self.assertEqual(self.names_of(self.streams({"prefix": "acc_"})), ["acc_y"])
        self.assertEqual(self.names_of(self.streams({"prefix": "%"})), [])
        self.assertEqual(self.names_of(self.streams({"prefix": "_"})), [])
        self.assertEqual(self.names_of(self.streams({"prefix": "Acc"})), ["Acc-1"])
        self.assertEqual(self.names_of(self.streams({"prefix": "ACC"})), [])
        self.assertEqual(self.names_of(self.streams({"prefix": "acc-1"})), ["acc-1", "acc-10"])
        self.assertEqual(self.names_of(self.streams({"prefix": "é"})), ["é-1"])
        self.assertEqual(self.names_of(self.streams({"prefix": "zzz"})), [])
        self.assertEqual(self.names_of(self.streams({"prefix": "a\\"})), ["a\\\\b-2", "a\\b-1"])
        self.assertEqual(self.names_of(self.streams({"prefix": "a\\b"})), ["a\\b-1"])
        self.assertEqual(self.names_of(self.streams({"prefix": ""})), self.bytesort(self.names))

    def test_cursor_pagination(self):
        full = self.names_of(self.streams())
        self.assertEqual(self.names_of(self.streams({"cursor": "acc-1"})),
                         [n for n in full if n.encode() > b"acc-1"])
        for limit in (1, 2, 3, 4):
            with self.subTest(limit=limit):
                got, cursor = [], ""
                for _ in range(50):
                    page = self.names_of(self.streams({"limit": limit, "cursor": cursor}))
                    self.assertLessEqual(len(page), limit)
                    if not page:
                        break
                    got += page
                    cursor = page[-1]
                self.assertEqual(got, full)
                self.assertEqual(len(set(got)), len(got))
        # with a prefix
        got, cursor = [], ""
        while True:
            page = self.names_of(self.streams({"prefix": "acc", "limit": 2, "cursor": cursor}))
            if not page:
                break
            got += page
            cursor = page[-1]
        self.assertEqual(got, ["acc", "acc%x", "acc-1", "acc-10", "acc-2", "accZ-1", "acc_y"])

    def test_validation(self):
        cases = [
            ({"limit": 0}, "limit must be between 1 and 1000"),
            ({"limit": 1001}, "limit must be between 1 and 1000"),
            ({"limit": -1}, "limit must be between 1 and 1000"),
            ({"limit": "5"}, "limit must be a number"),
            ({"limit": None}, "limit must be a number"),
            ({"prefix": 5}, "prefix must be a string"),
            ({"prefix": None}, "prefix must be a string"),
            ({"cursor": 5}, "cursor must be a string"),
            ({"cursor": []}, "cursor must be a string"),
        ]
        for opts, message in cases:
            with self.subTest(opts=opts):
                r = SRV.rpc("ns.streams", opts, token=self.tok)
                self.assertError(r, 400, "INVALID_REQUEST", message)
        for opts in (None, "x", 5):
            with self.subTest(opts=opts):
                r = SRV.rpc("ns.streams", opts, token=self.tok)
                self.assertError(r, 400, "INVALID_REQUEST", "options must be an object")
        self.assertEqual(len(self.streams({"limit": 1})), 1)
        self.assertEqual(len(self.streams({"limit": 1000})), len(self.names))
        self.assertEqual(len(self.streams({"limit": 1.5})), 1)

    def test_default_limit_and_empty(self):
        ns, tok = SRV.create_namespace()
        self.assertEqual(self.ok("ns.streams", token=tok), [])
        self.assertEqual(self.ok("ns.categories", token=tok), [])
        errors = []

        def w(k):
            conn = SRV.connection()
            try:
                for i in range(k, 105, 5):
                    r = SRV.rpc("stream.write", "s-%03d" % i, MSG, token=tok, conn=conn)
                    if r.status != 200:
                        errors.append(r)
            finally:
                conn.close()

        ts = [threading.Thread(target=w, args=(k,)) for k in range(5)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(errors, [])
        rows = self.ok("ns.streams", token=tok)
        self.assertEqual(self.names_of(rows), ["s-%03d" % i for i in range(100)])
        rows = self.ok("ns.streams", {"cursor": "s-099"}, token=tok)
        self.assertEqual(self.names_of(rows), ["s-%03d" % i for i in range(100, 105)])

    def test_isolated_from_other_namespaces(self):
        admin_names = self.names_of(self.ok("ns.streams", {"limit": 1000}))
        self.assertNotIn("acc%x", admin_names)


class TestCategories(Base):
    def test_counts(self):
        ns, tok = SRV.create_namespace()
        for s, n in (("account", 1), ("account-1", 2), ("user-1", 1), ("user-2", 1), ("Zed-1", 1),
                     ("account-2+x", 1)):
            for _ in range(n):
                self.ok("stream.write", s, MSG, token=tok)
        cats = self.ok("ns.categories", token=tok)
        self.assertEqual(cats, [
            {"category": "Zed", "messageCount": 1, "streamCount": 1},
            {"category": "account", "messageCount": 4, "streamCount": 3},
            {"category": "user", "messageCount": 2, "streamCount": 2},
        ])
        # args ignored
        self.assertEqual(self.ok("ns.categories", {"x": 1}, token=tok), cats)


class TestIsolation(Base):
    def test_same_stream_two_namespaces(self):
        a, ta = SRV.create_namespace()
        b, tb = SRV.create_namespace()
        ra = [self.ok("stream.write", "iso-1", {"type": "A", "data": {"ns": "a", "i": i}}, token=ta)
              for i in range(2)]
        rb = self.ok("stream.write", "iso-1", {"type": "B", "data": {"ns": "b"}}, token=tb)
        self.assertEqual([r["position"] for r in ra], [0, 1])
        self.assertEqual(rb["position"], 0)
        self.assertEqual(rb["globalPosition"], 1)  # own sequence
        self.assertEqual(ra[0]["globalPosition"], 1)
        self.assertEqual(self.ok("stream.version", "iso-1", token=ta), 1)
        self.assertEqual(self.ok("stream.version", "iso-1", token=tb), 0)
        self.assertEqual([m[4]["ns"] for m in self.ok("stream.get", "iso-1", token=tb)], ["b"])
        self.assertEqual([m[4]["ns"] for m in self.ok("stream.get", "iso-1", token=ta)], ["a", "a"])
        self.assertEqual([m[2] for m in self.ok("category.get", "iso", token=tb)], ["B"])
        self.assertEqual(self.ok("stream.last", "iso-1", token=tb)[1], "B")
        self.assertIsNone(self.ok("stream.version", "iso-1"))  # default namespace untouched
        # expectedVersion is per namespace
        self.ok("stream.write", "iso-1", MSG, {"expectedVersion": 0}, token=tb)
        self.ok("stream.write", "iso-1", MSG, {"expectedVersion": 1}, token=ta)
        self.assertEqual(self.ok("ns.info", a)["messageCount"], 3)
        self.assertEqual(self.ok("ns.info", b)["messageCount"], 2)
        # deleting one leaves the other
        self.ok("ns.delete", b)
        self.assertEqual(self.ok("stream.version", "iso-1", token=ta), 2)


class TestSys(Base):
    def test_version(self):
        r = self.rpc("sys.version")
        v = self.assertOk(r)
        self.assertIsInstance(v, str)
        self.assertRegex(v, r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")
        self.assertEqual(r.raw, ('"%s"\n' % v).encode())
        self.assertEqual(SRV.get("/version").body, {"version": v})

    def test_health(self):
        h = self.ok("sys.health")
        self.assertIsInstance(h, dict)
        self.assertEqual(h.get("status"), "ok", h)
        self.assertEqual(h.get("backend"), harness.STORE, h)
        self.assertIsInstance(h.get("connections"), int, h)
        self.assertGreater(h["connections"], 0, h)
        self.assertEqual(h.get("workers"), 2, h)

    def test_requires_auth(self):
        self.assertError(self.rpc("sys.version", token=None), 401, "AUTH_REQUIRED")
        self.assertError(self.rpc("sys.health", token=None), 401, "AUTH_REQUIRED")


def fresh_store(name):
    """(db_url, extra argv) of an empty store of its own for a server."""
    if harness.STORE == "sqlite":
        return "sqlite://metadata.db", ["--data-dir", os.path.join(harness.module_tmp(), name + "-data")]
    pg = harness.pg_cluster()
    db = name + unique("db")
    return pg.create_database(db), []


class TestNamespaceLimit(Base):
    """--max-namespaces: the shared namespace table holds that many (default included). Past it,
    ns.create answers 507 NAMESPACE_LIMIT before anything is stored; a deleted namespace's slot
    is used again; a registry bigger than the table refuses to start."""

    LIMIT = 8

    def server(self, name, limit=LIMIT, workers=2, url=None, extra=()):
        if url is None:
            url, more = fresh_store(name)
            extra = more + list(extra)
        return harness.Server(db_url=url, name=name, workers=workers,
                              extra=list(extra) + ["--max-namespaces", str(limit)])

    def assertWorks(self, srv, tokens, conns=None):
        """Every token authenticates, through every connection given (or a new one)."""
        for ns_id, tok in tokens.items():
            for hc in (conns or [None]):
                r = srv.rpc("stream.version", "lim-1", token=tok, conn=hc)
                self.assertEqual(r.status, 200, "%s: %r" % (ns_id, r))

    def test_full_table_answers_507_and_stores_nothing(self):
        srv = self.server("lim").start()
        conns = {}
        try:
            conns = conns_on_every_worker(srv, 2)
            tokens = {"default": srv.token}
            for _ in range(self.LIMIT - 1):
                ns_id, tok = srv.create_namespace()
                tokens[ns_id] = tok
            over = unique("over")
            r = srv.rpc("ns.create", over)
            err = self.assertError(r, 507, "NAMESPACE_LIMIT")
            self.assertIn("--max-namespaces", err["message"])
            self.assertIn(str(self.LIMIT), err["message"])
            self.assertError(srv.rpc("ns.info", over), 404, "NAMESPACE_NOT_FOUND")
            self.assertEqual(sorted(n["namespace"] for n in srv.call("ns.list")), sorted(tokens))
            # a token of its own does not get around it either
            self.assertError(srv.rpc("ns.create", over, {"token": make_token(over)}), 507, "NAMESPACE_LIMIT")
            self.assertWorks(srv, tokens, list(conns.values()))
            # deleting frees a slot, again and again; nothing else is disturbed
            for i in range(40):
                victim = sorted(k for k in tokens if k != "default")[i % (self.LIMIT - 1)]
                srv.call("ns.delete", victim)
                old = tokens.pop(victim)
                ns_id, tok = srv.create_namespace()
                tokens[ns_id] = tok
                self.assertError(srv.rpc("ns.create", unique("over")), 507, "NAMESPACE_LIMIT")
                self.assertError(srv.rpc("stream.version", "lim-1", token=old), 403, "AUTH_UNAUTHORIZED")
                self.assertWorks(srv, tokens, list(conns.values()))
            # the same id again: deleted and created in the freed slot
            victim = sorted(k for k in tokens if k != "default")[0]
            srv.call("ns.delete", victim)
            del tokens[victim]
            _, tok = srv.create_namespace(victim)
            tokens[victim] = tok
            self.assertWorks(srv, tokens, list(conns.values()))
            self.assertEqual(len(srv.call("ns.list")), self.LIMIT)
        finally:
            for hc in conns.values():
                hc.close()
            srv.stop()

    def test_concurrent_creates_never_pass_the_limit(self):
        srv = self.server("limc", workers=3).start()
        try:
            results = []
            lock = threading.Lock()
            barrier = threading.Barrier(20)

            def create(i):
                hc = srv.connection()
                barrier.wait(10)
                r = srv.rpc("ns.create", "race%d" % i, conn=hc)
                hc.close()
                with lock:
                    results.append(r)

            ts = [threading.Thread(target=create, args=(i,)) for i in range(20)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            ok = [r for r in results if r.status == 200]
            self.assertEqual(len(ok), self.LIMIT - 1, results)
            for r in results:
                if r.status != 200:
                    self.assertError(r, 507, "NAMESPACE_LIMIT")
            self.assertEqual(len(srv.call("ns.list")), self.LIMIT)
            self.assertWorks(srv, {r.body["namespace"]: r.body["token"] for r in ok})
        finally:
            srv.stop()

    def test_registry_bigger_than_the_table_refuses_to_start(self):
        srv = self.server("limr")
        url, extra = srv.db_url, srv.extra[:-2]
        srv.start()
        tokens = {"default": srv.token}
        for _ in range(self.LIMIT - 1):
            ns_id, tok = srv.create_namespace()
            tokens[ns_id] = tok
        srv.stop()
        small = self.server("limr-small", limit=self.LIMIT - 3, url=url, extra=extra)
        rc = small.run_to_exit(20)
        self.assertEqual(rc, 1, small.output()[-3000:])
        out = small.output()
        self.assertRegex(out, r"registry holds %d namespaces.*--max-namespaces is %d"
                         % (self.LIMIT, self.LIMIT - 3))
        # at the old size it starts again, and every namespace, default included, authenticates
        again = self.server("limr-again", url=url, extra=extra).start()
        try:
            self.assertWorks(again, tokens)
            self.assertError(again.rpc("ns.create", unique("over")), 507, "NAMESPACE_LIMIT")
        finally:
            again.stop()

    def test_option_is_documented_and_checked(self):
        p = subprocess.run([harness.BIN, "--help"], capture_output=True, text=True, timeout=10)
        self.assertIn("--max-namespaces", p.stdout + p.stderr)
        p = subprocess.run([harness.BIN, "--max-namespaces", "0", "--check-config", "--db-url", "postgres://x/y"],
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("max-namespaces", p.stdout + p.stderr)


def conns_on_every_worker(srv, nworkers):
    """One keep-alive connection held by each worker process: {pid: HTTPConnection}."""
    got = {}
    deadline = time.monotonic() + 20  # a worker may still be starting
    while len(got) < nworkers and time.monotonic() < deadline:
        pids = srv.worker_pids()
        hc = srv.connection()
        hc.connect()
        r = srv.rpc("sys.version", conn=hc)
        assert r.status == 200, r
        owner = harness.socket_owner(hc.sock, srv.port, pids)
        if owner is not None and owner not in got:
            got[owner] = hc
        else:
            hc.close()
            time.sleep(0.01)
    assert len(got) == nworkers, "connections did not land on every worker"
    return got


def open_files(pid, under):
    """Targets of pid's descriptors that name files below directory under (" (deleted)" kept)."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith(under + "/"):
            out.append(t)
    return out


class DeletedNamespaceFiles:
    """Embedded store: ns.delete removes <ns>.db, -wal and -shm; a worker that had the namespace
    open must close them too, or every deleted namespace leaks descriptors (and disk space) in
    every worker that ever used it."""

    def test_no_worker_keeps_deleted_namespace_files_open(self):
        nworkers = 3
        data = os.path.join(harness.module_tmp(), "fd-data")
        srv = harness.Server(db_url="sqlite://metadata.db", name="fds", workers=nworkers,
                             extra=["--data-dir", data]).start()
        conns = {}
        try:
            conns = conns_on_every_worker(srv, nworkers)
            total_before = {pid: len(os.listdir("/proc/%d/fd" % pid)) for pid in conns}
            for i in range(40):
                ns_id, tok = srv.create_namespace()
                for hc in conns.values():
                    # each worker writes, reads and lists (which opens every namespace)
                    self.assertEqual(srv.rpc("stream.write", "c-%d" % i, MSG, token=tok, conn=hc).status, 200)
                    self.assertEqual(srv.rpc("stream.get", "c-%d" % i, token=tok, conn=hc).status, 200)
                    self.assertEqual(srv.rpc("ns.list", conn=hc).status, 200)
                hc = list(conns.values())[i % nworkers]
                self.assertEqual(srv.rpc("ns.delete", ns_id, conn=hc).status, 200)

            def leaks():
                return {pid: [t for t in open_files(pid, data) if t.endswith(" (deleted)")] for pid in conns}

            harness.wait_until(lambda: not any(leaks().values()), 5)
            self.assertEqual(leaks(), {pid: [] for pid in conns})
            for pid in conns:
                with self.subTest(pid=pid):
                    # the registry and the default namespace (.db, -wal, -shm each) at most
                    self.assertLessEqual(len(open_files(pid, data)), 6, open_files(pid, data))
                    self.assertLessEqual(len(os.listdir("/proc/%d/fd" % pid)), total_before[pid] + 3)
        finally:
            for hc in conns.values():
                hc.close()
            srv.stop()


if harness.STORE == "sqlite":
    class TestDeletedNamespaceFiles(DeletedNamespaceFiles, harness.TestCase):
        pass


if __name__ == "__main__":
    harness.main()
