#!/usr/bin/env python3
"""The HTTP front end (src/conn.c, src/httpp.c, src/http.c) over raw sockets: every rejection is
JSON with the right status and reaches the client before the connection closes (SPEC D20); the
tolerant query-string parser; no request smuggling through /import; bounded input on
subscriptions; the descriptor limit; --max-connections; timeouts; the access log."""

import json
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402
from sse_client import SSEClient, subscribe  # noqa: E402

SRV = None


def setUpModule():
    global SRV
    if harness.STORE != "sqlite":
        harness.pg_cluster()
    SRV = harness.Server(name="layer", workers=2, extra=["--max-body", "64KiB", "--read-timeout", "2"]).start()


def tearDownModule():
    harness.cleanup()


def raw(srv, data, read_timeout=10, shut=False):
    """Sends data on a fresh connection; returns everything read until the server closes or
    read_timeout passes without data."""
    s = socket.create_connection((srv.host, srv.port), timeout=read_timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def responses(data):
    """Splits raw bytes into (status, headers, body) responses (Content-Length or chunked)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError("truncated response: %r" % data[:200])
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        if status == 100:
            data = rest
            continue
        if hdrs.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                n = int(size_line.split(b";")[0], 16)
                if n == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body += rest[:n]
                rest = rest[n + 2:]
        else:
            n = int(hdrs.get("content-length", "0"))
            body, rest = rest[:n], rest[n:]
        out.append((status, hdrs, body))
        data = rest
    return out


def req(method, target, body=b"", headers=None, version="HTTP/1.1"):
    h = {"Host": "t"}
    h.update(headers or {})
    if body and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    return ("%s %s %s\r\n" % (method, target, version)).encode() + b"".join(
        ("%s: %s\r\n" % kv).encode() for kv in h.items()) + b"\r\n" + body


def rpc_req(srv, method, *args, token=None, target="/rpc"):
    body = json.dumps([method] + list(args)).encode()
    hdrs = {"Authorization": "Bearer " + (token or srv.token)} if token is not False else {}
    return req("POST", target, body, hdrs)


class JsonErrors(harness.TestCase):
    def assertJsonError(self, resp, status, code):
        st, hdrs, body = resp
        self.assertEqual(st, status, (st, hdrs, body))
        self.assertTrue(hdrs.get("content-type", "").startswith("application/json"), hdrs)
        self.assertTrue(body.endswith(b"\n"), body)
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], code, body)
        self.assertIsInstance(err["message"], str)
        self.assertTrue(hdrs.get("server", "").startswith("EventoDB/"), hdrs)
        return err

    def only_response(self, data):
        rs = responses(data)
        self.assertEqual(len(rs), 1, rs)
        return rs[0]


class TestRejections(JsonErrors):
    def test_body_over_the_limit_is_json_413_and_read_before_close(self):
        # the client sends the whole body; it still reads the answer (no broken pipe)
        body = b'["stream.write","big-1",{"type":"T","data":{"p":"' + b"x" * (20 * 1024 * 1024) + b'"}}]'
        s = socket.create_connection((SRV.host, SRV.port), timeout=20)
        got = []

        def reader():
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            got.append(data)

        t = threading.Thread(target=reader)
        t.start()
        try:
            s.sendall(req("POST", "/rpc", body, {"Authorization": "Bearer " + SRV.token}))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading after its answer: fine, the answer is what counts
        t.join(30)
        s.close()
        r = self.only_response(got[0])
        self.assertJsonError(r, 413, "BODY_TOO_LARGE")
        self.assertEqual(r[1].get("connection"), "close")
        # chunked, over the limit in the middle of the body
        chunk = b"x" * 30000
        data = req("POST", "/rpc", b"", {"Authorization": "Bearer " + SRV.token, "Transfer-Encoding": "chunked"})
        data += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 4 + b"0\r\n\r\n"
        self.assertJsonError(self.only_response(raw(SRV, data)), 413, "BODY_TOO_LARGE")
        self.assertIsNone(SRV.call("stream.version", "big-1"))

    def test_unknown_methods_are_json_405_with_allow(self):
        for line in (b"FOO /rpc HTTP/1.1", b"post /rpc HTTP/1.1", b"TRACE /rpc HTTP/1.1",
                     b"CONNECT example.com:443 HTTP/1.1", b"PROPFIND /rpc HTTP/1.1"):
            with self.subTest(line=line):
                r = self.only_response(raw(SRV, line + b"\r\nHost: t\r\nContent-Length: 0\r\n\r\n"))
                self.assertJsonError(r, 405, "INVALID_REQUEST")
                self.assertIn("POST", r[1].get("allow", ""))
        # a known method on /rpc other than POST: 405 after auth, Allow: POST
        r = self.only_response(raw(SRV, req("GET", "/rpc", headers={"Authorization": "Bearer " + SRV.token,
                                                                     "Connection": "close"})))
        self.assertJsonError(r, 405, "INVALID_REQUEST")
        self.assertEqual(r[1].get("allow"), "POST")

    def test_malformed_request_lines_and_headers_are_json_400(self):
        for data in (b"GET\r\n\r\n", b"GET /rpc HTTP/1.1 extra\r\n\r\n", b"GET /rpc HTTP/1.1\r\nNo-Colon\r\n\r\n",
                     b"GET /rpc HTTP/1.1\r\nBad Name: x\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                     b"POST /rpc HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                     b"POST /rpc HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                     b"POST /rpc HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                     b"POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"):
            with self.subTest(data=data):
                r = self.only_response(raw(SRV, data))
                self.assertIn(r[0], (400, 405), r)
                self.assertJsonError(r, r[0], "INVALID_REQUEST")

    def test_oversized_head_is_json_431_and_read_before_close(self):
        big = b"X-Big: " + b"b" * 70000 + b"\r\n"
        data = b"POST /rpc HTTP/1.1\r\nHost: t\r\n" + big + b"Content-Length: 2\r\n\r\n[]" + b"z" * 200000
        self.assertJsonError(self.only_response(raw(SRV, data)), 431, "HEADERS_TOO_LARGE")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
        data = b"GET /health HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n"
        self.assertJsonError(self.only_response(raw(SRV, data)), 431, "HEADERS_TOO_LARGE")

    def test_uri_too_long_is_json_414(self):
        data = b"GET /health?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        self.assertJsonError(self.only_response(raw(SRV, data)), 414, "URI_TOO_LONG")

    def test_length_required_version_and_codings(self):
        data = b"POST /rpc HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + SRV.token.encode() + b"\r\n\r\n"
        self.assertJsonError(self.only_response(raw(SRV, data)), 411, "LENGTH_REQUIRED")
        for v in (b"HTTP/2.0", b"HTTP/1.2", b"HTTP/0.9"):
            with self.subTest(version=v):
                r = self.only_response(raw(SRV, b"GET /health " + v + b"\r\nHost: t\r\n\r\n"))
                self.assertJsonError(r, 505, "HTTP_VERSION_NOT_SUPPORTED")
        for te in (b"gzip", b"gzip, chunked", b"identity"):
            with self.subTest(te=te):
                data = b"POST /rpc HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n"
                self.assertJsonError(self.only_response(raw(SRV, data)), 501, "NOT_IMPLEMENTED")

    def test_slow_head_gets_json_408(self):
        # --read-timeout 2: a head trickled slower than that is answered and closed
        s = socket.create_connection((SRV.host, SRV.port), timeout=10)
        try:
            t0 = time.monotonic()
            s.sendall(b"GET /health HTTP/1.1\r\n")
            data = b""
            for _ in range(8):  # one header byte a second keeps the socket busy, not the head done
                time.sleep(0.5)
                try:
                    s.sendall(b"X")
                except OSError:
                    break
                r, _, _ = select.select([s], [], [], 0)
                if r:
                    break
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.assertLess(time.monotonic() - t0, 6)
            self.assertJsonError(self.only_response(data), 408, "REQUEST_TIMEOUT")
        finally:
            s.close()

    def test_errors_keep_the_connection_when_framing_is_intact(self):
        # a 404 and an RPC error do not cost the connection; the next request works
        data = req("POST", "/nope", b"[]") + rpc_req(SRV, "no.such") + rpc_req(SRV, "sys.version")
        rs = responses(raw(SRV, data + req("GET", "/health", headers={"Connection": "close"})))
        self.assertEqual([r[0] for r in rs], [404, 404, 200, 200])


class TestQueryStrings(JsonErrors):
    def test_empty_and_valueless_parameters_are_ignored(self):
        for q in ("?&token=%s", "?token=%s&&", "?a&token=%s&b=", "?=x&token=%s", "?token=&token=%s"):
            with self.subTest(q=q):
                r = SRV.request("POST", "/rpc" + (q % SRV.token), body='["sys.version"]')
                self.assertEqual(r.status, 200, r)
        s = unique("q") + "-1"
        c = SSEClient(SRV.host, SRV.port, path="/subscribe?&stream=%s&&token=%s" % (s, SRV.token))
        try:
            self.assertEqual(c.status, 200, c.body)
            self.assertTrue(c.wait_ready(5))
        finally:
            c.close()

    def test_plus_and_escapes_are_decoded(self):
        s = unique("sp") + "-a b"
        SRV.write(s)
        c = SSEClient(SRV.host, SRV.port, path="/subscribe?stream=%s&token=%s" % (s.replace(" ", "+"), SRV.token))
        try:
            self.assertEqual([p["stream"] for p in c.wait_pokes(1, 5)], [s])
        finally:
            c.close()

    def test_bad_escapes_and_nul_are_json_400(self):
        for q in ("stream=%zz", "stream=%4", "stream=a%", "token=%00", "stream=a%00b", "x=%G1"):
            for path in ("/rpc", "/subscribe", "/import", "/health"):
                with self.subTest(q=q, path=path):
                    data = req("POST", path + "?" + q, b'["sys.version"]',
                               {"Authorization": "Bearer " + SRV.token})
                    r = self.only_response(raw(SRV, data))
                    self.assertJsonError(r, 400, "INVALID_REQUEST")


class TestSmuggling(JsonErrors):
    def smuggled_write(self, stream):
        body = json.dumps(["stream.write", stream, {"type": "Smuggled", "data": {}}]).encode()
        return req("POST", "/rpc", body, {"Authorization": "Bearer " + SRV.token})

    def check_one_answer_and_closed(self, data, stream):
        s = socket.create_connection((SRV.host, SRV.port), timeout=15)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break  # closed by the server
                out += chunk
        finally:
            s.close()
        rs = responses(out)
        self.assertEqual(len(rs), 1, [r[:2] for r in rs])
        time.sleep(0.2)
        self.assertIsNone(SRV.call("stream.version", stream), "the smuggled write was stored")
        return rs[0]

    def test_long_chunk_size_line_in_an_import_is_not_a_second_request(self):
        for ext in (b";" + b"e" * 1100, b";x=" + b"v" * 5000):
            with self.subTest(ext=len(ext)):
                stream = unique("smug") + "-1"
                inner = self.smuggled_write(stream)
                body = b"%x" % len(inner) + ext + b"\r\n" + inner + b"\r\n0\r\n\r\n"
                # a valid (if odd) chunk: the request inside it is body data, an NDJSON line
                # that fails to parse, never a request of its own
                data = req("POST", "/import", body, {"Authorization": "Bearer " + SRV.token,
                                                     "Transfer-Encoding": "chunked", "Connection": "close"})
                st, _, b = self.check_one_answer_and_closed(data, stream)
                self.assertEqual(st, 200)
                self.assertIn(b'"error":"INVALID_JSON"', b)

    def test_broken_chunk_framing_ends_the_import_and_the_connection(self):
        for bad in (b"f" * 1100 + b"\r\n", b"zz\r\n", b"5\r\nabcdeXX"):
            with self.subTest(bad=bad[:20]):
                stream = unique("smug") + "-1"
                data = req("POST", "/import", b"", {"Authorization": "Bearer " + SRV.token,
                                                    "Transfer-Encoding": "chunked"})
                data += bad + self.smuggled_write(stream)
                st, _, b = self.check_one_answer_and_closed(data, stream)
                self.assertEqual(st, 200)
                self.assertIn(b'"error":"READ_ERROR"', b)

    def test_long_trailer_line_is_framing_not_a_request(self):
        stream = unique("smug") + "-1"
        data = req("POST", "/import", b"", {"Authorization": "Bearer " + SRV.token, "Transfer-Encoding": "chunked"})
        data += b"0\r\nX-Trailer: " + b"t" * 2000 + b"\r\n\r\n" + self.smuggled_write(stream)
        rs = responses(raw(SRV, data + req("GET", "/health", headers={"Connection": "close"})))
        # the trailer ends the import cleanly; the next request is a real one, the write included
        self.assertEqual([r[0] for r in rs], [200, 200, 200], rs)
        self.assertIn(b'"done":true', rs[0][2])
        self.assertEqual(SRV.call("stream.version", stream), 0)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TestBounds(JsonErrors):
    def test_input_on_a_subscription_is_bounded(self):
        srv = harness.Server(name="sseflood", workers=1).start()
        try:
            pid = srv.worker_pids()[0]
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            s.sendall(req("GET", "/subscribe?stream=flood-1", headers={"Authorization": "Bearer " + srv.token}))
            head = b""
            while b": ready" not in head:
                head += s.recv(4096)
            before = rss_kb(pid)
            sent = 0
            chunk = b"z" * (1024 * 1024)
            closed = False
            t0 = time.monotonic()
            try:
                while sent < 200 * 1024 * 1024 and time.monotonic() - t0 < 30:
                    s.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            grew = rss_kb(pid) - before
            s.close()
            self.assertLess(grew, 5 * 1024, "worker RSS grew by %d KiB while %d MiB arrived" % (grew, sent >> 20))
            self.assertTrue(closed, "the server kept reading %d MiB of input on a subscription" % (sent >> 20))
            self.assertEqual(srv.rpc("sys.version").status, 200)
        finally:
            srv.stop()

    def test_max_connections_holds(self):
        srv = harness.Server(name="maxconn", workers=1, extra=["--max-connections", "5"]).start()
        held = []
        try:
            for _ in range(5):
                s = socket.create_connection((srv.host, srv.port), timeout=5)
                s.sendall(req("GET", "/health"))
                self.assertIn(b" 200 ", s.recv(4096))
                held.append(s)
            for _ in range(3):
                r = self.only_response(raw(srv, req("GET", "/health")))
                self.assertJsonError(r, 503, "TOO_MANY_CONNECTIONS")
            held.pop().close()
            ok = harness.wait_until(lambda: responses(raw(srv, req("GET", "/health", headers={
                "Connection": "close"})))[0][0] == 200, 3)
            self.assertTrue(ok, "a connection slot did not free up")
        finally:
            for s in held:
                s.close()
            srv.stop()

    def test_descriptor_limit_pauses_accepting_and_recovers(self):
        want = 1100
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

        srv = harness.Server(name="emfile", workers=1, preexec=limit).start()
        socks = []
        try:
            lines_before = srv.output().count("\n")
            for _ in range(1000):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect((srv.host, srv.port))
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                socks.append(s)
            time.sleep(2)
            grew = srv.output().count("\n") - lines_before
            self.assertLess(grew, 100, "the log grew by %d lines at the descriptor limit" % grew)
            for s in socks:
                s.close()
            socks = []
            t0 = time.monotonic()
            ok = harness.wait_until(lambda: self._health(srv), 5, interval=0.05)
            self.assertTrue(ok, "service did not resume after descriptors freed")
            self.assertLess(time.monotonic() - t0, 1.5)
        finally:
            for s in socks:
                s.close()
            srv.stop()

    @staticmethod
    def _health(srv):
        try:
            return srv.get("/health", timeout=1).status == 200
        except OSError:
            return False

    def test_subscriber_send_buffer_is_capped(self):
        c = subscribe(SRV, {"stream": unique("buf") + "-1"})
        try:
            self.assertTrue(c.wait_ready(5))
            lport = c.sock.getsockname()[1]
            out = subprocess.run(["ss", "-tmn", "state", "established", "( dport = :%d )" % lport],
                                 capture_output=True, text=True).stdout
            m = re.search(r"tb(\d+)", out)
            self.assertIsNotNone(m, out)
            self.assertLessEqual(int(m.group(1)), 128 * 1024, out)
        finally:
            c.close()


class TestAcceptBalance(harness.TestCase):
    """Every worker waits on the one listening socket; a burst of connects (a client opening its
    pool) must spread over the workers instead of landing whole on the first one to wake, and a
    worker that stops taking connections must not hold any up."""

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Server(name="balance", workers=2).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def burst(self, n):
        """Opens n connections at once, then asks each which worker holds it (the SSE head carries
        X-EventoDB-Worker); returns {worker slot: connections}."""
        srv = self.srv
        socks = [socket.create_connection((srv.host, srv.port), timeout=10) for _ in range(n)]
        counts = {}
        try:
            for s in socks:
                s.sendall(("GET /subscribe?all=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                           % srv.token).encode())
            for s in socks:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, "connection closed before the head: %r" % head)
                    head += chunk
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:200])
                m = re.search(rb"(?im)^X-EventoDB-Worker:\s*(\d+)", head)
                self.assertIsNotNone(m, head[:300])
                counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + 1
        finally:
            for s in socks:
                s.close()
        return counts

    def test_a_burst_of_connections_spreads_over_the_workers(self):
        rounds = []
        for _ in range(10):
            rounds.append(self.burst(16))
            time.sleep(0.3)  # the closes reach both workers before the next burst
        balanced = [r for r in rounds if len(r) == 2 and min(r.values()) >= 4]
        # one worker taking all 16 was the rule before; a round lost to scheduling is tolerated
        self.assertGreaterEqual(len(balanced), 7, rounds)

    def test_a_stopped_worker_holds_no_connection_up(self):
        pids = self.srv.worker_pids()
        self.assertEqual(len(pids), 2)
        os.kill(pids[1], signal.SIGSTOP)
        try:
            socks = []
            start = time.time()
            for _ in range(64):
                s = socket.create_connection((self.srv.host, self.srv.port), timeout=5)
                socks.append(s)
                s.sendall(b'POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + self.srv.token.encode() +
                          b'\r\nContent-Length: 15\r\n\r\n["sys.version"]')
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk)
                    data += chunk
                self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
            elapsed = time.time() - start
            for s in socks:
                s.close()
            # every connection answered by the running worker; leaving each to the stopped one
            # for long would show as seconds here
            self.assertLess(elapsed, 5.0)
        finally:
            os.kill(pids[1], signal.SIGCONT)


class TestAccessLog(harness.TestCase):
    def test_one_line_per_request_tokens_hidden_streams_at_their_end(self):
        path = os.path.join(harness.module_tmp(), "access-%s.log" % unique("a"))
        srv = harness.Server(name="access", workers=1, extra=["--access-log", path]).start()
        try:
            answer = srv.rpc("sys.version", headers={"User-Agent": "tester/1.0"})
            srv.request("GET", "/health?token=%s&x=1" % srv.token)
            c = subscribe(srv, {"stream": unique("al") + "-1"})
            self.assertTrue(c.wait_ready(5))
            time.sleep(1.2)
            c.close()
            self.assertTrue(harness.wait_until(lambda: os.path.exists(path) and "/subscribe" in open(path).read(), 5))
            text = open(path).read()
            self.assertNotIn(srv.token, text, "a token reached the access log")
            lines = text.splitlines()
            rx = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(\S+) (\S+) HTTP/1\.1" '
                            r'(\d{3}) (\d+) "(.*?)" "(.*?)" (\d+\.\d{3})$')
            parsed = [rx.match(line) for line in lines]
            self.assertTrue(all(parsed), lines)
            rpc = [m for m in parsed if m.group(2) == "/rpc"][0]
            self.assertEqual((rpc.group(1), rpc.group(3), rpc.group(6)), ("POST", "200", "tester/1.0"))
            self.assertEqual(int(rpc.group(4)), len(answer.raw), "body bytes")
            health = [m for m in parsed if m.group(2).startswith("/health?")][0]
            self.assertIn("token=-", health.group(2))
            sub = [m for m in parsed if m.group(2).startswith("/subscribe")][0]
            self.assertGreaterEqual(float(sub.group(7)), 1.0, "a subscription is logged at its end")
            # nothing in the server's own log about requests
            self.assertNotIn("HTTP request", srv.output())
        finally:
            srv.stop()


if __name__ == "__main__":
    harness.main()
