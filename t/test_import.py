#!/usr/bin/env python3
"""Bulk import and export (SPEC 7 with D8, D17; SPEC 10.23): POST /import streaming in constant memory,
its events and errors, the store side (explicit global positions, the sequence only moving forward,
?force=true), and the `eventodb export` / `eventodb import` commands, round trips included (also from
one store to the other)."""

import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

SRV = None    # the store under test, 2 workers
SMALL = None  # the same store, 1 worker, --max-body 64KiB, keepalive comments every second
T0 = "2025-01-15T10:00:00Z"


def setUpModule():
    global SRV, SMALL
    SRV = harness.Server(name="import").start()
    SMALL = harness.Server(name="small", workers=1, extra=["--max-body", "64KiB", "--sse-keepalive", "1"]).start()


def tearDownModule():
    harness.cleanup()


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def rec(gpos, stream="acct-1", pos=None, type_="T", data=None, meta=None, time_=T0, id_=None):
    return {"id": id_ or str(uuid.uuid4()), "stream": stream, "type": type_,
            "pos": gpos if pos is None else pos, "gpos": gpos,
            "data": {"n": gpos} if data is None else data, "meta": meta, "time": time_}


def ndjson(records):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def parse_events(raw):
    """The JSON of every "data: " line of an SSE body."""
    out = []
    for line in raw.decode("utf-8").split("\n"):
        if line.startswith("data: "):
            out.append(json.loads(line[6:]))
    return out


def do_import(srv, body, token, query="", headers=None, timeout=60):
    """POST /import with a Content-Length body; (Resp, events)."""
    hdrs = {"Content-Type": "application/x-ndjson"}
    if token is not None:
        hdrs["Authorization"] = "Bearer " + token
    hdrs.update(headers or {})
    r = srv.request("POST", "/import" + query, body=body, headers=hdrs, timeout=timeout)
    return r, (parse_events(r.raw) if r.status == 200 else None)


def category(srv, token, cat, position=0):
    return srv.call("category.get", cat, {"position": position, "batchSize": -1}, token=token)


def worker_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class ImportStream:
    """POST /import with a chunked body sent piece by piece, events read as they arrive."""

    def __init__(self, srv, token, query="", expect=False):
        self.sock = socket.create_connection((srv.host, srv.port), timeout=30)
        head = "POST /import%s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n" % query
        if token is not None:
            head += "Authorization: Bearer %s\r\n" % token
        if expect:
            head += "Expect: 100-continue\r\n"
        self.sock.sendall((head + "\r\n").encode())
        self.raw = b""
        self.status = None
        self.body = b""
        self.ended = False
        self.events = []
        self.comments = 0
        self.eof = False

    def send(self, data):
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def end(self):
        self.sock.sendall(b"0\r\n\r\n")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _parse(self):
        while True:
            if self.status is None or self.status == 100:
                i = self.raw.find(b"\r\n\r\n")
                if i < 0:
                    return
                head, self.raw = self.raw[:i], self.raw[i + 4:]
                self.status = int(head.split(b" ")[1])
                continue
            if self.ended:
                return
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            n = int(self.raw[:i], 16)
            if n == 0:
                self.ended = True
                return
            if len(self.raw) < i + 2 + n + 2:
                return
            self.body += self.raw[i + 2:i + 2 + n]
            self.raw = self.raw[i + 2 + n + 2:]
            while b"\n\n" in self.body:
                ev, self.body = self.body.split(b"\n\n", 1)
                if ev.startswith(b"data: "):
                    self.events.append(json.loads(ev[6:]))
                elif ev.startswith(b":"):
                    self.comments += 1

    def read(self, until, timeout=30):
        """Reads until until(self) is true; returns it."""
        deadline = time.monotonic() + timeout
        while not until(self) and not self.eof and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                self.eof = True
                break
            self.raw += data
            self._parse()
        return until(self)


class _PgBlocker:
    """Holds locks in a namespace's schema from a psql session, to put a server's statements in a
    known order: they wait, we see them waiting (pg_locks), then we let them go."""

    fifo = True  # a waiting statement goes before those that queue behind it

    def __init__(self, ns):
        self.pg = harness.pg_cluster()
        self.ns = ns
        self.schema = '"eventodb_%s"' % ns
        self.sess = None
        self.n = 0

    def run(self, sql):
        """Runs sql in the session and waits until it has finished."""
        self.n += 1
        mark = "__done_%d" % self.n
        self.sess.stdin.write(sql + "\n\\echo " + mark + "\n")
        self.sess.stdin.flush()
        while True:
            line = self.sess.stdout.readline()
            if not line:
                raise AssertionError("psql ended: " + self.sess.stderr.read())
            if line.strip() == mark:
                return

    def __enter__(self):
        self.sess = self.pg.psql_session()
        return self

    def __exit__(self, *exc):
        self.pg.close_session(self.sess)

    def hold(self, gpos):
        """An uncommitted row at global position gpos (and the table lock a writer takes)."""
        self.run("BEGIN; INSERT INTO %s.messages (stream_name, type, \"position\", global_position, data)"
                 " VALUES ('blocker-1', 'T', 0, %d, '{}');" % (self.schema, gpos))

    def hold_table(self):
        """A read lock on the messages table (what a reader takes; TRUNCATE waits for it)."""
        self.run("BEGIN; LOCK TABLE %s.messages IN ACCESS SHARE MODE;" % self.schema)

    def waiting(self):
        return int(self.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                " AND application_name = 'eventodb' AND wait_event_type = 'Lock'"))

    def wait_waiting(self, n):
        ok = harness.wait_until(lambda: self.waiting() >= n, 15)
        assert ok, "fewer than %d statements of the server wait for the lock" % n

    def release(self):
        self.run("ROLLBACK;")

    def delete_namespace(self):
        """Deletes the namespace in the session that holds the lock, so it is gone when the waiting
        statement goes on."""
        self.run("SELECT eventodb_store.drop_namespace('%s'); COMMIT;" % self.ns)


class _SqliteBlocker:
    """The same on the embedded store: the namespace database's write lock, taken with Python's
    sqlite3 while the server's busy timeout (5 s) keeps its statements waiting. Nothing shows
    that they wait, so this only gives them time to get there."""

    fifo = False  # waiters retry on their own timers: any may win

    def __init__(self, ns):
        self.dir = os.path.join(harness.module_tmp(), "sqlite-data")
        self.ns = ns
        self.con = None

    def __enter__(self):
        import sqlite3
        self.con = sqlite3.connect(os.path.join(self.dir, self.ns + ".db"), isolation_level=None, timeout=10)
        return self

    def __exit__(self, *exc):
        self.con.close()

    def hold(self, gpos):
        self.con.execute("BEGIN IMMEDIATE")

    def hold_table(self):
        self.con.execute("BEGIN IMMEDIATE")

    def wait_waiting(self, n):
        time.sleep(0.5)

    def release(self):
        self.con.execute("ROLLBACK")

    def delete_namespace(self):
        import sqlite3
        reg = sqlite3.connect(os.path.join(self.dir, "metadata.db"), isolation_level=None, timeout=10)
        reg.execute("DELETE FROM namespaces WHERE id = ?", (self.ns,))
        reg.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(os.path.join(self.dir, self.ns + ".db" + suffix))
            except FileNotFoundError:
                pass
        self.con.execute("ROLLBACK")


def store_blocker(ns):
    return _SqliteBlocker(ns) if harness.STORE == "sqlite" else _PgBlocker(ns)


def terminal(s):
    return any("done" in e or "error" in e for e in s.events)


class Base(harness.TestCase):
    def ns(self, srv=None):
        return (srv or SRV).create_namespace()

    def assertDone(self, events, n):
        self.assertTrue(events, "no events")
        self.assertEqual(set(events[-1]), {"done", "imported", "elapsed"}, events)
        self.assertIs(events[-1]["done"], True)
        self.assertEqual(events[-1]["imported"], n, events)
        self.assertRegex(events[-1]["elapsed"], r"^\d+\.\ds$")

    def assertErrorEvent(self, events, code, line=None, message=None, msg_prefix=None):
        self.assertTrue(events, "no events")
        e = events[-1]
        self.assertEqual(e.get("error"), code, events)
        if line is None:
            self.assertNotIn("line", e)
        else:
            self.assertEqual(e.get("line"), line, events)
        if message is not None:
            self.assertEqual(e["message"], message)
        if msg_prefix is not None:
            self.assertTrue(e["message"].startswith(msg_prefix), e)
        return e


# ---------------------------------------------------------------------------
# POST /import
# ---------------------------------------------------------------------------


class TestImport(Base):
    def test_gaps_preserved_and_writes_continue_after(self):
        _, tok = self.ns()
        r, ev = do_import(SRV, ndjson([rec(47, pos=0), rec(52, pos=1)]), tok)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["Content-Type"], "text/event-stream")
        self.assertEqual(r.headers["Cache-Control"], "no-cache")
        self.assertEqual(r.headers["X-Accel-Buffering"], "no")
        self.assertEqual(ev, [{"done": True, "imported": 2, "elapsed": ev[0]["elapsed"]}])
        msgs = category(SRV, tok, "acct")
        self.assertEqual([(m[3], m[4]) for m in msgs], [(0, 47), (1, 52)])
        w = SRV.write("acct-1", token=tok)
        self.assertEqual(w, {"globalPosition": 53, "position": 2})
        # an import below existing data does not move the sequence back
        r, ev = do_import(SRV, ndjson([rec(10, stream="low-1", pos=0)]), tok)
        self.assertDone(ev, 1)
        self.assertEqual(SRV.write("acct-1", token=tok)["globalPosition"], 54)

    def test_fields_stored_as_given(self):
        _, tok = self.ns()
        data = {"nested": {"a": [1, "two", {"three": 3}, None, True]}, "s": "Hello 世界 🌍", "f": -1.25,
                "empty": ""}
        r1 = rec(5, stream="fid-x+1", pos=3, type_="Typ", data=data, meta={"correlationStreamName": "w-1"},
                 time_="2024-02-29T23:59:59.123456Z", id_="{0190A4E0-0000-7000-8000-0000000000AB}")
        r, ev = do_import(SRV, ndjson([r1]), tok)
        self.assertDone(ev, 1)
        m = SRV.call("stream.get", "fid-x+1", {"position": 0}, token=tok)[0]
        self.assertEqual(m[0], "0190a4e0-0000-7000-8000-0000000000ab")
        self.assertEqual(m[1:5], ["Typ", 3, 5, data])
        self.assertEqual(m[5], {"correlationStreamName": "w-1"})
        self.assertEqual(m[6], "2024-02-29T23:59:59.123456Z")
        # the offset form of RFC 3339, and meta left out
        r2 = rec(6, stream="fid-x+1", pos=4, time_="2024-03-01T01:00:00+01:00")
        del r2["meta"]
        r, ev = do_import(SRV, ndjson([r2]), tok)
        self.assertDone(ev, 1)
        m = SRV.call("stream.last", "fid-x+1", token=tok)
        self.assertEqual((m[5], m[6]), (None, "2024-03-01T00:00:00Z"))

    def test_empty_body_and_blank_lines(self):
        _, tok = self.ns()
        r, ev = do_import(SRV, b"", tok)
        self.assertEqual(r.status, 200)
        self.assertEqual(ev, [{"done": True, "imported": 0, "elapsed": "0.0s"}])
        r, ev = do_import(SRV, b"\n  \n\t\r\n", tok)
        self.assertDone(ev, 0)
        # the last line may lack its newline
        r, ev = do_import(SRV, b"\n" + ndjson([rec(1)]).rstrip(b"\n"), tok)
        self.assertDone(ev, 1)

    def test_progress_after_each_batch_of_1000(self):
        _, tok = self.ns()
        recs = [rec(100 + i, pos=i) for i in range(2500)]
        r, ev = do_import(SRV, ndjson(recs), tok)
        self.assertEqual(ev[:2], [{"imported": 1000, "gpos": 1099}, {"imported": 2000, "gpos": 2099}])
        self.assertEqual(list(ev[0]), ["imported", "gpos"])
        self.assertDone(ev[2:], 2500)
        self.assertEqual(len(ev), 3)
        self.assertEqual(len(category(SRV, tok, "acct")), 2500)

    def test_duplicate_position_rolls_back_the_batch(self):
        _, tok = self.ns()
        r, ev = do_import(SRV, ndjson([rec(5, pos=0)]), tok)
        self.assertDone(ev, 1)
        # batch 1 (1000 records) commits; batch 2 holds gpos 5 again at its 300th record
        recs = [rec(1000 + i, stream="dup-1", pos=i) for i in range(1000)]
        recs += [rec(3000 + i, stream="dup-2", pos=i) for i in range(500)]
        recs[1299] = rec(5, stream="dup-2", pos=299)
        r, ev = do_import(SRV, ndjson(recs), tok)
        self.assertEqual(r.status, 200)
        self.assertEqual(ev[0], {"imported": 1000, "gpos": 1999})
        self.assertErrorEvent(ev, "POSITION_EXISTS", line=1500, message="global position already exists: 5")
        self.assertEqual(len(ev), 2)
        self.assertEqual(len(category(SRV, tok, "dup")), 1000)
        self.assertEqual(SRV.call("stream.version", "dup-2", token=tok), None)

    def test_duplicate_id_or_stream_position(self):
        _, tok = self.ns()
        first = rec(1, pos=0)
        do_import(SRV, ndjson([first]), tok)
        r, ev = do_import(SRV, ndjson([rec(2, pos=1), rec(3, pos=2, id_=first["id"])]), tok)
        self.assertErrorEvent(ev, "POSITION_EXISTS", line=2, message="global position already exists: 3")
        r, ev = do_import(SRV, ndjson([rec(4, pos=0)]), tok)
        self.assertErrorEvent(ev, "POSITION_EXISTS", line=1, message="global position already exists: 4")
        self.assertEqual(len(category(SRV, tok, "acct")), 1)

    def test_malformed_lines(self):
        _, tok = self.ns()
        good = json.dumps(rec(1)).encode()
        cases = [
            (good + b"\n\n{not json\n", "INVALID_JSON", 3, "malformed JSON at line 3: "),
            (b"[1,2]\n", "INVALID_JSON", 1, "malformed JSON at line 1: "),
            (good[:-1] + b"} x\n", "INVALID_JSON", 1, "malformed JSON at line 1: "),
        ]
        bad_fields = [
            ({"time": "yesterday"}, "invalid record at line 2: invalid time format: "),
            ({"time": 5}, "invalid record at line 2: invalid time format: "),
            ({"id": "not-a-uuid"}, "invalid record at line 2: id must be a UUID"),
            ({"id": None}, "invalid record at line 2: id must be a UUID"),
            ({"pos": -1}, "invalid record at line 2: pos must be a non-negative integer"),
            ({"pos": 1.5}, "invalid record at line 2: pos must be a non-negative integer"),
            ({"gpos": 0}, "invalid record at line 2: gpos must be "),
            ({"gpos": "7"}, "invalid record at line 2: gpos must be "),
            ({"stream": ""}, "invalid record at line 2: stream must be "),
            ({"stream": "x" * 1025}, "invalid record at line 2: stream must be "),
            ({"type": ""}, "invalid record at line 2: type must be "),
            ({"data": [1]}, "invalid record at line 2: data must be an object"),
            ({"data": None}, "invalid record at line 2: data must be an object"),
            ({"meta": "m"}, "invalid record at line 2: meta must be an object or null"),
        ]
        for change, prefix in bad_fields:
            r = rec(9, stream="bad-1")
            r.update(change)
            cases.append((good + b"\n" + json.dumps(r).encode() + b"\n", "INVALID_RECORD", 2, prefix))
        missing = rec(9, stream="bad-1")
        del missing["id"]
        cases.append((good + b"\n" + json.dumps(missing).encode() + b"\n", "INVALID_RECORD", 2,
                      "invalid record at line 2: id must be a UUID"))
        cases.append((good + b"\n" + b'{"s":"\\u0000"}\n', "INVALID_RECORD", 2, "invalid record at line 2: "))
        cases.append((good + b"\n" + b'{"s":"\xff"}\n', "INVALID_RECORD", 2, "invalid record at line 2: "))
        for body, code, line, prefix in cases:
            with self.subTest(body=body[-80:]):
                r, ev = do_import(SRV, body, tok)
                self.assertEqual(r.status, 200)
                self.assertErrorEvent(ev, code, line=line, msg_prefix=prefix)
                self.assertEqual(len(ev), 1, ev)
        # nothing of the partial batch before a bad line was stored
        self.assertEqual(category(SRV, tok, "acct"), [])

    def test_bad_time_message_cut_on_a_character_boundary(self):
        """The bad time is quoted up to 64 bytes; the cut never splits a UTF-8 character, so the error
        event is valid UTF-8 and valid JSON (parse_events decodes strictly)."""
        _, tok = self.ns()
        for pad in ("", "a", "ab", "abc"):
            with self.subTest(pad=pad):
                bad = pad + "\U0001f30d" * 40
                r = rec(1, time_=bad)
                resp, ev = do_import(SRV, ndjson([r]), tok)
                self.assertEqual(resp.status, 200)
                quoted = bad.encode()[:64].decode("utf-8", "ignore")
                self.assertErrorEvent(ev, "INVALID_RECORD", line=1, message='invalid record at line 1: invalid time '
                                      'format: parsing time "%s" as RFC 3339 failed' % quoted)
                self.assertGreater(len(quoted.encode()), 60)

    def test_line_over_1mib_is_read_error(self):
        _, tok = self.ns()
        big = json.dumps(rec(2, data={"pad": "x" * (1024 * 1024)})).encode()
        body = ndjson([rec(1)]) + b"\n" + big + b"\n"
        r, ev = do_import(SRV, body, tok)
        self.assertErrorEvent(ev, "READ_ERROR", line=2,
                              message="error reading input: bufio.Scanner: token too long")
        # just under the limit is fine
        r2 = rec(3, data={"pad": ""})
        base = len(json.dumps(r2).encode())
        r2["data"]["pad"] = "y" * (1024 * 1024 - 1 - base)
        r, ev = do_import(SMALL, ndjson([r2]), SMALL.create_namespace()[1])
        self.assertDone(ev, 1)

    def test_force_clears_first(self):
        _, tok = self.ns()
        do_import(SRV, ndjson([rec(i, stream="f-1", pos=i - 1) for i in range(1, 11)]), tok)
        for _ in range(3):
            SRV.write("f-1", token=tok)
        self.assertEqual(SRV.call("stream.version", "f-1", token=tok), 12)
        r, ev = do_import(SRV, ndjson([rec(1, stream="f-1", pos=0), rec(2, stream="g-1", pos=0)]), tok,
                          query="?force=true")
        self.assertDone(ev, 2)
        self.assertEqual([m[4] for m in category(SRV, tok, "")], [1, 2])
        # the sequence restarted: the next write continues after the new maximum, and
        # what the server knew of f-1's version went with the old messages
        w = SRV.write("f-1", token=tok, expectedVersion=0)
        self.assertEqual(w, {"globalPosition": 3, "position": 1})
        # without force nothing is cleared
        r, ev = do_import(SRV, ndjson([rec(9, stream="h-1", pos=0)]), tok, query="?force=false")
        self.assertDone(ev, 1)
        self.assertEqual(len(category(SRV, tok, "")), 4)

    def test_writes_racing_an_import_all_succeed(self):
        """An import batch takes positions just above the sequence while writes go on: the import
        must never hand a write a position it is about to insert (PostgreSQL: a write drew such a
        position and got 500 duplicate key messages_pkey), and writes made while or after it runs
        continue after the highest imported position."""
        ns, tok = self.ns()
        for _ in range(3):
            SRV.write("pre-1", token=tok)
        base, nwrites = 3, 30
        results, errors = [], []
        with store_blocker(ns) as blocker:
            # PostgreSQL serves the waiting import before the writes that queue behind it, so the
            # batch starts right at the sequence; SQLite lets waiters race for its lock, so the
            # batch leaves room for writes that win
            first = base + 1 if blocker.fifo else base + 1 + nwrites
            last = first + 999
            recs = [rec(first + i, stream="imp-1", pos=i) for i in range(1000)]
            # the batch's last position is held (PostgreSQL: an uncommitted row; SQLite: the write
            # lock), so the import is under way but not committed while the writes arrive
            blocker.hold(last)
            imp = {}
            t_imp = threading.Thread(target=lambda: imp.update(zip(("r", "ev"), do_import(SRV, ndjson(recs), tok))))
            t_imp.start()
            blocker.wait_waiting(1)

            def writer(k):
                for j in range(5):
                    try:
                        r = SRV.rpc("stream.write", "w%d-%d" % (k, j), {"type": "T", "data": {}}, token=tok)
                        results.append(r)
                    except Exception as e:  # noqa: BLE001
                        errors.append(e)

            ts = [threading.Thread(target=writer, args=(k,)) for k in range(nwrites // 5)]
            for t in ts:
                t.start()
            blocker.wait_waiting(3)
            blocker.release()
            for t in ts:
                t.join(60)
            t_imp.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), nwrites)
        for r in results:
            self.assertEqual(r.status, 200, r)
        self.assertTrue(imp.get("ev"), imp)
        self.assertDone(imp["ev"], 1000)
        gpos = [m[4] for m in category(SRV, tok, "")]
        self.assertEqual(len(gpos), len(set(gpos)), "a global position was given twice")
        self.assertEqual(len(gpos), base + 1000 + nwrites)
        written = sorted(r.body["globalPosition"] for r in results)
        self.assertEqual([g for g in written if first <= g <= last], [], "a write got an imported position")
        if blocker.fifo:
            self.assertGreater(written[0], last)
        self.assertGreater(SRV.write("after-1", token=tok)["globalPosition"], max(gpos))

    def test_force_into_a_namespace_deleted_meanwhile_is_404(self):
        """?force=true clears the namespace before reading the body; a namespace deleted between the
        authentication and the clear is NAMESPACE_NOT_FOUND (404), not a 500."""
        ns, tok = self.ns()
        SRV.write("gone-1", token=tok)
        with store_blocker(ns) as blocker:
            blocker.hold_table()
            out = {}
            t = threading.Thread(target=lambda: out.update(
                zip(("r", "ev"), do_import(SRV, ndjson([rec(1, pos=0)]), tok, query="?force=true"))))
            t.start()
            blocker.wait_waiting(1)
            blocker.delete_namespace()
            t.join(30)
        r = out["r"]
        self.assertError(r, 404, "NAMESPACE_NOT_FOUND")
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"), r.headers)

    def test_auth_errors_are_json(self):
        ns_id, tok = self.ns()
        body = ndjson([rec(1)])
        r, _ = do_import(SRV, body, None)
        self.assertError(r, 401, "AUTH_REQUIRED", "Authorization header required")
        self.assertEqual(r.headers["Content-Type"], "application/json")
        r, _ = do_import(SRV, body, "garbage")
        self.assertError(r, 401, "AUTH_INVALID_TOKEN", "Invalid token format")
        r, _ = do_import(SRV, body, harness.make_token(ns_id))
        self.assertError(r, 403, "AUTH_UNAUTHORIZED", "Token not authorized for namespace")
        r, _ = do_import(SRV, body, None, query="?token=" + tok)
        self.assertEqual(r.status, 200)
        self.assertDone(parse_events(r.raw), 1)

    def test_rejected_body_is_skipped_on_keepalive(self):
        _, tok = self.ns()
        conn = SRV.connection()
        try:
            body = ndjson([rec(i) for i in range(1, 200)])
            r = SRV.request("POST", "/import", body=body, headers={"Authorization": "Bearer x"}, conn=conn)
            self.assertError(r, 401, "AUTH_INVALID_TOKEN")
            r = SRV.rpc("sys.version", token=tok, conn=conn)
            self.assertEqual(r.status, 200)
            r = SRV.request("POST", "/import", body=body, headers={"Authorization": "Bearer " + tok}, conn=conn)
            self.assertDone(parse_events(r.raw), 199)
            r = SRV.rpc("stream.version", "acct-1", token=tok, conn=conn)
            self.assertEqual(r.body, 199)
        finally:
            conn.close()

    def test_import_goes_to_the_tokens_namespace(self):
        _, tok_a = self.ns()
        _, tok_b = self.ns()
        r, ev = do_import(SRV, ndjson([rec(1)]), tok_b)
        self.assertDone(ev, 1)
        self.assertEqual(category(SRV, tok_a, ""), [])
        self.assertEqual(len(category(SRV, tok_b, "")), 1)

    def test_keepalive_pipelining_chunked_and_expect(self):
        _, tok = self.ns()
        rpc = b'["sys.version"]'
        one = b"POST /rpc HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (
            tok.encode(), len(rpc), rpc)
        body = ndjson([rec(10 + i, pos=i) for i in range(1200)])
        imp = b"POST /import HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s" % (
            tok.encode(), len(body), body)
        s = socket.create_connection((SRV.host, SRV.port), timeout=30)
        try:
            s.sendall(one + imp + one)
            f = s.makefile("rb")
            st, _, b = harness.read_http_response(f)
            self.assertEqual((st, b), (200, b'"0.7.0"\n'))
            st, h, b = harness.read_http_response(f)
            self.assertEqual(st, 200)
            ev = parse_events(b)
            self.assertEqual(ev[0], {"imported": 1000, "gpos": 1009})
            self.assertDone(ev, 1200)
            st, _, b = harness.read_http_response(f)
            self.assertEqual((st, b), (200, b'"0.7.0"\n'))
            # chunked, with Expect: 100-continue, on the same connection
            s.sendall(b"POST /import HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                      b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n" % tok.encode())
            self.assertEqual(f.readline(), b"HTTP/1.1 100 Continue\r\n")
            self.assertEqual(f.readline(), b"\r\n")
            data = ndjson([rec(2000 + i, stream="ch-1", pos=i) for i in range(30)])
            for i in range(0, len(data), 777):
                piece = data[i:i + 777]
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            s.sendall(b"0\r\n\r\n" + one)
            st, _, b = harness.read_http_response(f)
            self.assertDone(parse_events(b), 30)
            st, _, b = harness.read_http_response(f)
            self.assertEqual((st, b), (200, b'"0.7.0"\n'))
        finally:
            s.close()

    def test_progress_arrives_before_the_body_ends(self):
        _, tok = self.ns()
        imp = ImportStream(SRV, tok)
        try:
            recs = [rec(1 + i, pos=i) for i in range(2500)]
            data = ndjson(recs[:2100])
            imp.send(data)
            # the body is not finished: both batches are reported anyway
            self.assertTrue(imp.read(lambda s: len(s.events) >= 2, timeout=20), imp.events)
            self.assertEqual(imp.status, 200)
            self.assertEqual(imp.events, [{"imported": 1000, "gpos": 1000}, {"imported": 2000, "gpos": 2000}])
            self.assertEqual(SRV.call("stream.version", "acct-1", token=tok), 1999)
            imp.send(ndjson(recs[2100:]))
            imp.end()
            self.assertTrue(imp.read(terminal, timeout=20), imp.events)
            self.assertDone(imp.events, 2500)
        finally:
            imp.close()

    def test_other_requests_go_on_during_an_import(self):
        # one worker: the import and the reads share its event loop
        _, tok = SMALL.create_namespace()
        SMALL.write("other-1", token=tok)
        imp = ImportStream(SMALL, tok)
        try:
            imp.send(ndjson([rec(100 + i, pos=i) for i in range(1500)]))
            self.assertTrue(imp.read(lambda s: s.events, timeout=20))
            for _ in range(20):
                t = time.monotonic()
                self.assertEqual(SMALL.call("stream.version", "other-1", token=tok), 0)
                self.assertLess(time.monotonic() - t, 1.0)
            imp.end()
            self.assertTrue(imp.read(terminal, timeout=20))
            self.assertDone(imp.events, 1500)
        finally:
            imp.close()

    def test_keepalive_comments_while_the_client_is_slow(self):
        _, tok = SMALL.create_namespace()
        imp = ImportStream(SMALL, tok)
        try:
            imp.send(ndjson([rec(1)]))
            self.assertTrue(imp.read(lambda s: s.comments >= 2, timeout=10), imp.raw)
            self.assertEqual(imp.events, [])
            imp.end()
            self.assertTrue(imp.read(terminal, timeout=10))
            self.assertDone(imp.events, 1)
        finally:
            imp.close()

    def test_body_larger_than_the_body_limit(self):
        _, tok = SMALL.create_namespace()
        body = ndjson([rec(1 + i, pos=i, data={"pad": "p" * 200}) for i in range(3000)])
        self.assertGreater(len(body), 10 * 64 * 1024)
        r = SMALL.rpc("sys.version", token=tok, raw_body=b" " * (65 * 1024) + b'["sys.version"]')
        self.assertEqual(r.status, 413)
        r, ev = do_import(SMALL, body, tok)
        self.assertDone(ev, 3000)
        self.assertEqual(SMALL.call("stream.version", "acct-1", token=tok), 2999)

    def test_client_leaving_midway(self):
        _, tok = self.ns()
        imp = ImportStream(SRV, tok)
        imp.send(ndjson([rec(1 + i, pos=i) for i in range(1500)]))
        imp.read(lambda s: s.events, timeout=20)
        imp.close()
        # the server goes on serving; the committed batch stays
        self.assertTrue(harness.wait_until(lambda: SRV.call("stream.version", "acct-1", token=tok) == 999, 10))
        r, ev = do_import(SRV, ndjson([rec(5000, pos=1000)]), tok)
        self.assertDone(ev, 1)

    def test_worker_memory_stays_flat(self):
        """A multi-hundred-MB import through one worker: its RSS must not follow the body."""
        # sanitizer builds: a small ASan quarantine and a scaled bound (harness.rss_bound_kb)
        srv = harness.Server(name="rss", workers=1, env=harness.rss_env()).start()
        try:
            _, tok = srv.create_namespace()
            pids = srv.worker_pids()
            self.assertEqual(len(pids), 1)
            pid = pids[0]
            pad = "r" * 1900
            tmpl = ('{"id":"00000000-0000-4000-8000-%%012x","stream":"big-%%d","type":"Big","pos":%%d,'
                    '"gpos":%%d,"data":{"i":%%d,"pad":"%s"},"meta":null,"time":"2025-01-01T00:00:00Z"}\n' % pad)
            # warm up: one import, so the baseline includes what any import needs
            w = ImportStream(srv, tok)
            w.send("".join(tmpl % (i, i % 100, i // 100, i, i) for i in range(1, 3001)).encode())
            w.end()
            self.assertTrue(w.read(terminal, 30))
            w.close()
            base = worker_rss_kb(pid)
            total_mb = int(os.environ.get("EVENTODB_IMPORT_RSS_MB", "256"))
            n = total_mb * 1024 * 1024 // len(tmpl % (0, 0, 0, 0, 0))
            first = 3001
            peak = [base]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    try:
                        peak[0] = max(peak[0], worker_rss_kb(pid))
                    except OSError:
                        return
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            imp = ImportStream(srv, tok)
            t0 = time.monotonic()
            sent = 0
            i = first
            while i < first + n:
                j = min(i + 512, first + n)
                piece = "".join(tmpl % (k, k % 100, k // 100, k, k) for k in range(i, j)).encode()
                imp.send(piece)
                sent += len(piece)
                i = j
            imp.end()
            self.assertTrue(imp.read(terminal, 120), imp.events[-3:])
            secs = time.monotonic() - t0
            stop.set()
            sampler.join(5)
            self.assertDone(imp.events, n)
            imp.close()
            growth = peak[0] - base
            sys.stderr.write("# import of %.0f MB (%d records) on %s in %.1f s: %.0f records/s, %.1f MB/s; worker "
                             "RSS baseline %.1f MB, peak %.1f MB (+%.1f MB)\n"
                             % (sent / 1e6, n, harness.STORE, secs, n / secs, sent / 1e6 / secs, base / 1024.0,
                                peak[0] / 1024.0, growth / 1024.0))
            self.assertLess(growth, harness.rss_bound_kb(48 * 1024), "worker RSS grew by %d kB during the import" % growth)
        finally:
            srv.stop()


class TestLogForging(Base):
    """Issue 9: an import record's time is quoted in the error, and the error is logged; a newline in
    it must not start a log line of its own, in either log format."""

    FORGED = "\n2026-01-01 [1] ERROR forged"

    def test_record_time_cannot_forge_a_log_line(self):
        for fmt in ("console", "json"):
            with self.subTest(format=fmt):
                srv = harness.Server(name="forge-" + fmt, workers=1, extra=["--log-format", fmt]).start()
                try:
                    _, tok = srv.create_namespace()
                    r, ev = do_import(srv, ndjson([rec(1, time_=self.FORGED)]), tok)
                    self.assertErrorEvent(ev, "INVALID_RECORD", line=1)
                    self.assertIn(self.FORGED, ev[-1]["message"])
                    self.assertTrue(harness.wait_until(lambda: "import failed" in srv.output(), 5), srv.output())
                finally:
                    srv.stop()
                lines = srv.output().splitlines()
                self.assertFalse([l for l in lines if "forged" in l and "import failed" not in l], lines)
                failed = [l for l in lines if "import failed" in l]
                self.assertEqual(len(failed), 1, lines)
                if fmt == "json":
                    for l in lines:
                        json.loads(l)  # every line is one JSON object
                    self.assertIn('parsing time "%s"' % self.FORGED, json.loads(failed[0])["message"])
                else:
                    self.assertIn('parsing time "\\n2026-01-01 [1] ERROR forged"', failed[0])


# ---------------------------------------------------------------------------
# eventodb export / eventodb import
# ---------------------------------------------------------------------------


def cli(*args, input=None, timeout=120):
    return subprocess.run([harness.BIN] + list(args), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


def url(srv):
    return "http://%s:%d" % (srv.host, srv.port)


def populate(srv, tok):
    """A namespace with a bit of everything: written and imported messages, several categories,
    metadata, nested and unicode data, numbers of every kind, gaps in the global positions."""
    values = [
        {"nested": {"a": [1, "two", {"three": 3}, None, True]}, "s": "Hello 世界 🌍 émojis <&>"},
        {"int": 12345678901234567890, "neg": -17, "f": 1.50, "tiny": 1.5e-7, "big": 2.5e21, "zero": 0},
        {"empty": "", "esc": "line\nbreak \"q\" \\ \u2028", "b": False},
        {},
    ]
    for i, v in enumerate(values):
        srv.write("acct-%d" % i, type_="Opened", data=v, token=tok)
        srv.write("order-%d" % i, type_="Placed", data=v, metadata={"correlationStreamName": "acct-%d" % i},
                  token=tok)
    recs = [rec(1000 + 7 * i, stream="hist-%d" % (i % 3), pos=i // 3, data={"i": i, "k": "v"},
                meta=None if i % 2 else {"m": i}, time_="2023-0%d-01T00:00:00.5Z" % (1 + i % 9))
            for i in range(2100)]
    r, ev = do_import(srv, ndjson(recs), tok)
    assert ev and ev[-1].get("done"), ev
    srv.write("acct-0", type_="After", data={"x": 1}, token=tok)


class TestCommands(Base):
    def tmp(self, name):
        return os.path.join(harness.module_tmp(), unique(name))

    def export(self, srv, tok, path, *extra):
        p = cli("export", "--url", url(srv), "--token", tok, "--output", path, *extra)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr.decode(), r"Exported: \d+ events? total\n$")
        return p

    def import_(self, srv, tok, path, *extra, input=None):
        p = cli("import", "--url", url(srv), "--token", tok, "--input", path, *extra, input=input)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stderr.decode(), r"Imported: \d+ events? in \d+\.\ds\n$")
        return p

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_export_format(self):
        _, tok = self.ns()
        SRV.write("fmt-1", type_="T", data={"b": 2, "a": {"d": 1, "c": [1.0, "<"]}}, token=tok)
        do_import(SRV, ndjson([rec(77, stream="fmt-2", pos=0, meta={"z": 1, "y": None},
                                   time_="2024-05-06T07:08:09.987654Z", id_="0190a4e0-0000-7000-8000-000000000001")]),
                  tok)
        path = self.tmp("fmt")
        p = self.export(SRV, tok, path)
        self.assertIn(b"\rExported: 2 events...", p.stderr)
        lines = self.read(path).decode().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual(list(first), ["id", "stream", "type", "pos", "gpos", "data", "meta", "time"])
        self.assertEqual(first["meta"], None)
        # D22: the stored precision, microseconds with trailing zeros trimmed
        self.assertRegex(first["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,5}[1-9])?Z$")
        self.assertEqual(first["time"], SRV.call("stream.get", "fmt-1", token=tok)[0][6])
        self.assertIn('"data":{"a":{"c":[1,"\\u003c"],"d":1},"b":2}', lines[0])
        self.assertEqual(lines[1], '{"id":"0190a4e0-0000-7000-8000-000000000001","stream":"fmt-2","type":"T",'
                                   '"pos":0,"gpos":77,"data":{"n":77},"meta":{"y":null,"z":1},'
                                   '"time":"2024-05-06T07:08:09.987654Z"}')

    def test_round_trip_identical(self):
        _, tok_a = self.ns()
        populate(SRV, tok_a)
        one, two = self.tmp("one"), self.tmp("two")
        self.export(SRV, tok_a, one)
        _, tok_b = self.ns()
        self.import_(SRV, tok_b, one)
        self.export(SRV, tok_b, two)
        self.assertEqual(self.read(one), self.read(two))
        self.assertEqual(len(self.read(one).splitlines()), 2109)
        # and through gzip on both sides
        gz, three = self.tmp("gz") + ".gz", self.tmp("three")
        self.export(SRV, tok_b, gz, "--gzip")
        self.assertEqual(gzip.decompress(self.read(gz)), self.read(one))
        _, tok_c = self.ns()
        self.import_(SRV, tok_c, gz, "--gzip")
        self.export(SRV, tok_c, three)
        self.assertEqual(self.read(one), self.read(three))
        # writes continue after the highest imported position
        top = max(json.loads(l)["gpos"] for l in self.read(one).splitlines())
        self.assertEqual(SRV.write("acct-9", token=tok_c)["globalPosition"], top + 1)

    def test_counts_say_event_or_events(self):
        _, tok = self.ns()
        path = self.tmp("count")
        p = self.export(SRV, tok, path)
        self.assertEqual(p.stderr, b"\rExported: 0 events total\n")
        SRV.write("one-1", token=tok)
        p = self.export(SRV, tok, path)
        self.assertEqual(p.stderr, b"\rExported: 1 event...\rExported: 1 event total\n")
        _, tok_b = self.ns()
        p = self.import_(SRV, tok_b, path)
        self.assertRegex(p.stderr, rb"^\rImported: 1 event in \d+\.\ds\n$")
        SRV.write("one-1", token=tok)
        p = self.export(SRV, tok, path)
        self.assertEqual(p.stderr, b"\rExported: 2 events...\rExported: 2 events total\n")
        _, tok_c = self.ns()
        p = self.import_(SRV, tok_c, path)
        self.assertRegex(p.stderr, rb"^\rImported: 2 events in \d+\.\ds\n$")

    def test_round_trip_keeps_time_fraction(self):
        """D22: export -> import -> export keeps every time exactly; whole-second files still import."""
        _, tok_a = self.ns()
        times = ["2024-05-06T07:08:09.987654Z", "2024-05-06T07:08:09.5Z", "2024-05-06T07:08:10.000001Z",
                 "2024-05-06T07:08:11Z", "1999-12-31T23:59:59.999999Z"]
        do_import(SRV, ndjson([rec(i + 1, pos=i, time_=t) for i, t in enumerate(times)]), tok_a)
        SRV.write("live-1", data={"now": True}, token=tok_a)  # a time the server took itself
        stored = [m[7] for m in category(SRV, tok_a, "")]
        self.assertEqual(stored[:5], times)
        one, two = self.tmp("frac1"), self.tmp("frac2")
        self.export(SRV, tok_a, one)
        self.assertEqual([json.loads(l)["time"] for l in self.read(one).splitlines()], stored)
        _, tok_b = self.ns()
        self.import_(SRV, tok_b, one)
        self.assertEqual([m[7] for m in category(SRV, tok_b, "")], stored)
        self.export(SRV, tok_b, two)
        self.assertEqual(self.read(one), self.read(two))
        # a file of the reference server's kind, whole seconds
        old = self.tmp("whole")
        with open(old, "wb") as f:
            f.write(ndjson([rec(1, pos=0, time_="2025-01-15T10:00:00Z"), rec(2, pos=1, time_="2025-01-15T10:00:01Z")]))
        _, tok_c = self.ns()
        self.import_(SRV, tok_c, old)
        self.assertEqual([m[7] for m in category(SRV, tok_c, "")], ["2025-01-15T10:00:00Z", "2025-01-15T10:00:01Z"])

    def test_cross_store_migration(self):
        """This store -> the other store -> this store, byte-identical exports all the way."""
        if harness.STORE == "sqlite":
            other = harness.Server(name="other-pg", db_url=harness.pg_cluster())
        else:
            other = harness.Server(name="other-sqlite", db_url="sqlite://metadata.db",
                                   extra=["--data-dir", os.path.join(harness.module_tmp(), "other-sqlite")])
        other.start()
        try:
            _, tok_a = self.ns()
            populate(SRV, tok_a)
            one, two, three = self.tmp("x1"), self.tmp("x2"), self.tmp("x3")
            self.export(SRV, tok_a, one)
            _, tok_o = other.create_namespace()
            self.import_(other, tok_o, one)
            self.export(other, tok_o, two)
            self.assertEqual(self.read(one), self.read(two))
            _, tok_back = self.ns()
            self.import_(SRV, tok_back, two)
            self.export(SRV, tok_back, three)
            self.assertEqual(self.read(one), self.read(three))
            top = max(json.loads(l)["gpos"] for l in self.read(one).splitlines())
            self.assertEqual(other.write("acct-9", token=tok_o)["globalPosition"], top + 1)
        finally:
            other.stop()

    def test_export_filters(self):
        _, tok = self.ns()
        recs = [rec(1, stream="a-1", time_="2025-01-01T00:00:00Z"), rec(2, stream="b-1", time_="2025-01-02T00:00:00Z"),
                rec(3, stream="c-1", time_="2025-01-03T12:00:00Z"), rec(4, stream="a-2", time_="2025-01-04T00:00:00Z")]
        do_import(SRV, ndjson(recs), tok)
        path = self.tmp("filt")

        def gposes(*extra):
            self.export(SRV, tok, path, *extra)
            return [json.loads(l)["gpos"] for l in self.read(path).splitlines()]

        self.assertEqual(gposes(), [1, 2, 3, 4])
        self.assertEqual(gposes("--categories", " c , a"), [3, 1, 4])
        self.assertEqual(gposes("--since", "2025-01-02"), [2, 3, 4])
        self.assertEqual(gposes("--until", "2025-01-03T12:00:00Z"), [1, 2])
        self.assertEqual(gposes("-since=2025-01-02T00:00:01Z", "-until", "2025-01-04"), [3])

    def test_errors_and_help(self):
        _, tok = self.ns()
        for cmd in ("export", "import"):
            p = cli(cmd, "--help")
            self.assertEqual(p.returncode, 0)
            self.assertIn(b"Usage: eventodb %s [OPTIONS]" % cmd.encode(), p.stdout)
            self.assertIn(b"--token", p.stdout)
            p = cli(cmd, "--token", tok)
            self.assertEqual((p.returncode, p.stderr), (1, b"Error: --url is required\n"))
            p = cli(cmd, "--url", url(SRV))
            self.assertEqual((p.returncode, p.stderr), (1, b"Error: --token is required\n"))
            p = cli(cmd, "--bogus")
            self.assertEqual(p.returncode, 2)
            self.assertIn(b"flag provided but not defined: -bogus", p.stderr)
        p = cli("export", "--url", url(SRV), "--token", "nope", "--output", self.tmp("e"))
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith(b"Error: failed to fetch messages: HTTP 401: {\"error\":"), p.stderr)
        p = cli("export", "--url", url(SRV), "--token", tok, "--since", "soon")
        self.assertEqual((p.returncode, p.stderr),
                         (1, b"Error: invalid --since: expected YYYY-MM-DD or RFC3339 format\n"))
        path = self.tmp("in")
        with open(path, "wb") as f:
            f.write(ndjson([rec(1), rec(2)]) + b"{broken\n")
        p = cli("import", "--url", url(SRV), "--token", tok, "--input", path)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith(b"Error: INVALID_JSON: malformed JSON at line 3: "), p.stderr)
        self.assertTrue(p.stderr.endswith(b" (line 3)\n"), p.stderr)
        with open(path, "wb") as f:
            f.write(ndjson([rec(1)]))
        p = cli("import", "--url", url(SRV), "--token", "nope", "--input", path)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith(b"Error: server error (HTTP 401): {\"error\":"), p.stderr)
        p = cli("import", "--url", url(SRV), "--token", tok, "--input", path + ".missing")
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith(b"Error: failed to open input file: "), p.stderr)
        p = cli("import", "--url", url(SRV), "--token", tok, "--gzip", "--input", path)
        self.assertEqual((p.returncode, p.stderr), (1, b"Error: failed to create gzip reader: gzip: invalid header\n"))
        self.assertEqual(category(SRV, tok, ""), [])
        p = cli("import", "--url", "http://127.0.0.1:1", "--token", tok, "--input", path)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.startswith(b"Error: failed to send request: cannot connect"), p.stderr)

    def test_import_from_stdin_and_force_prompt(self):
        _, tok = self.ns()
        p = cli("import", "--url", url(SRV), "--token", tok, input=ndjson([rec(i, pos=i - 1) for i in range(1, 2001)]))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"\rImported: 1000 events (gpos: 1000)...", p.stderr)
        self.assertIn(b"\rImported: 2000 events in ", p.stderr)
        path = self.tmp("force")
        with open(path, "wb") as f:
            f.write(ndjson([rec(1, stream="new-1", pos=0)]))
        p = cli("import", "--url", url(SRV), "--token", tok, "--force", "--input", path, input=b"n\n")
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"Are you sure you want to continue? [y/N]: ", p.stderr)
        self.assertTrue(p.stderr.endswith(b"Import cancelled.\n"), p.stderr)
        self.assertEqual(len(category(SRV, tok, "")), 2000)
        p = cli("import", "--url", url(SRV), "--token", tok, "--force", "--input", path, input=b"YES\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([m[1] for m in category(SRV, tok, "")], ["new-1"])
        # the answer comes first on stdin, the data after it
        p = cli("import", "--url", url(SRV), "--token", tok, "--force",
                input=b"y\n" + ndjson([rec(5, stream="piped-1", pos=0)]))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([m[1] for m in category(SRV, tok, "")], ["piped-1"])


if __name__ == "__main__":
    harness.main()
