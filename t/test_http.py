#!/usr/bin/env python3
"""HTTP surface: envelope (SPEC 2), auth (3.2), /health, /version, 404, headers, D10/D14 body limit,
D16 input checks, keep-alive, pipelining and concurrency."""

import http.client
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import make_token, unique  # noqa: E402

SRV = None
VERSION = None


def setUpModule():
    global SRV, VERSION
    SRV = harness.Server(name="http").start()
    VERSION = SRV.get("/version").body["version"]


def tearDownModule():
    harness.cleanup()


def post(body, token=harness.DEFAULT, headers=None, path="/rpc"):
    if isinstance(body, (list, dict)):
        body = json.dumps(body)
    return SRV.rpc(None, raw_body=body, token=token, headers=headers, path=path)


class TestEnvelope(harness.TestCase):
    def malformed(self, r):
        err = self.assertError(r, 400, "INVALID_REQUEST", "Malformed JSON request")
        self.assertIsInstance(err.get("details"), dict, r)
        self.assertIsInstance(err["details"].get("error"), str, r)
        self.assertTrue(err["details"]["error"], r)

    def test_malformed(self):
        for body in ("{", "", "   ", "[", '["sys.version"', '{"a":1}', '"str"', "42", "true",
                     '["sys.version"] x', '["sys.version"][]', "[1,]", "['sys.version']", "nul",
                     '{"method":"sys.version"}'):
            with self.subTest(body=body):
                self.malformed(post(body))

    def test_missing_method(self):
        for body in ("null", "[]", " [ ] ", "\n null \n"):
            with self.subTest(body=body):
                self.assertError(post(body), 400, "INVALID_REQUEST", "Missing method name")

    def test_method_not_string(self):
        for body in ("[5]", "[null]", '[["sys.version"]]', '[{"m":1}]', "[true]", '[5, "sys.version"]'):
            with self.subTest(body=body):
                self.assertError(post(body), 400, "INVALID_REQUEST", "Method name must be a string")

    def test_unknown_method(self):
        for m in ("no.such", "", "stream.writeBatch", "ns.update", "STREAM.GET", "stream.get "):
            with self.subTest(method=m):
                r = post([m, "x"])
                self.assertError(r, 404, "METHOD_NOT_FOUND", "Unknown method: %s" % m)

    def test_long_message_cut_on_a_character_boundary(self):
        """A message cut to its budget (2 KiB) never splits a UTF-8 character: the body stays valid
        UTF-8 and valid JSON. "Unknown method: " is 16 bytes, so a cut at 2047 bytes falls in the
        middle of a two-byte character, and for the three- and four-byte ones at some offset."""
        for pad, ch in (("", "\u00e9"), ("", "\u20ac"), ("x", "\u20ac"), ("", "\U0001f30d"), ("xy", "\U0001f30d"),
                        ("xyz", "\U0001f30d")):
            with self.subTest(pad=pad, ch=ch):
                name = pad + ch * 1500
                r = post([name, "x"])
                self.assertEqual(r.status, 404, r)
                text = r.raw.decode("utf-8")  # strict: raises on a split character
                msg = json.loads(text)["error"]["message"]
                self.assertTrue(msg.startswith("Unknown method: " + pad + ch), msg[:40])
                self.assertTrue(("Unknown method: " + name).startswith(msg))
                self.assertGreater(len(msg.encode()), 2040)
                self.assertLessEqual(len(msg.encode()), 2047)

    def test_only_post(self):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                r = SRV.request(method, "/rpc", body=None if method == "GET" else '["sys.version"]',
                                headers={"Authorization": "Bearer " + SRV.token})
                self.assertError(r, 405, "INVALID_REQUEST", "Only POST method allowed")
        # auth comes first
        r = SRV.request("GET", "/rpc")
        self.assertError(r, 401, "AUTH_REQUIRED")
        r = SRV.request("OPTIONS", "/rpc")
        self.assertError(r, 401, "AUTH_REQUIRED")

    def test_content_type_not_checked(self):
        for ct in ("text/plain", "application/x-www-form-urlencoded", None):
            with self.subTest(ct=ct):
                hdrs = {"Content-Type": ct} if ct else {"Content-Type": ""}
                r = SRV.rpc("sys.version", headers=hdrs)
                self.assertEqual(r.status, 200, r)

    def test_extra_args_and_whitespace(self):
        r = post(' \n\t["stream.version", "%s-1", "extra", {"x": 1}]\n ' % unique("ws"))
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.body)

    def test_duplicate_keys_last_wins(self):
        s = unique("dk") + "-1"
        body = '["stream.write", "%s", {"type": "T", "data": {"a": 1, "a": 2}, "type": "U"}]' % s
        r = post(body)
        self.assertEqual(r.status, 200, r)
        m = SRV.call("stream.get", s)[0]
        self.assertEqual(m[1], "U")
        self.assertEqual(m[4], {"a": 2})


class TestAuth(harness.TestCase):
    def test_missing(self):
        r = SRV.rpc("sys.version", token=None)
        self.assertError(r, 401, "AUTH_REQUIRED", "Authorization header required")
        # an empty ?token= does not count
        r = SRV.rpc("sys.version", token=None, query={"token": ""})
        self.assertError(r, 401, "AUTH_REQUIRED", "Authorization header required")

    def test_not_bearer(self):
        for h in ("Basic dXNlcjpwYXNz", "bearer " + SRV.token, "BEARER " + SRV.token, "Token " + SRV.token,
                  SRV.token, "Bearertoken", " "):
            with self.subTest(header=h[:20]):
                r = SRV.rpc("sys.version", token=None, headers={"Authorization": h})
                self.assertError(r, 401, "AUTH_REQUIRED", "Authorization header must use Bearer scheme")

    def test_empty_bearer(self):
        # SPEC 3.2: "Bearer " followed by an empty string. (On the wire trailing spaces are optional
        # whitespace, so the server may see just "Bearer"; the answer must still be "Token required".)
        r = SRV.rpc("sys.version", token=None, headers={"Authorization": "Bearer "})
        self.assertError(r, 401, "AUTH_REQUIRED", "Token required")

    def test_unparseable(self):
        hexpart = "0123456789abcdef" * 4
        bad = {
            "garbage": "garbage",
            "no prefix": "xx_ZGVmYXVsdA_" + hexpart,
            "short hex": "ns_ZGVmYXVsdA_" + hexpart[:63],
            "long hex": "ns_ZGVmYXVsdA_" + hexpart + "0",
            "non-hex": "ns_ZGVmYXVsdA_" + "g" * 64,
            "empty ns": "ns__" + hexpart,
            "bad b64": "ns_!!!_" + hexpart,
            "no parts": "ns_",
            "padding": "ns_ZGVmYXVsdA==_" + hexpart,
        }
        for name, tok in bad.items():
            with self.subTest(case=name):
                for via in ("header", "query"):
                    if via == "header":
                        r = SRV.rpc("sys.version", token=tok)
                    else:
                        r = SRV.rpc("sys.version", token=None, query={"token": tok})
                    err = self.assertError(r, 401, "AUTH_INVALID_TOKEN", "Invalid token format")
                    self.assertIsInstance(err.get("details"), dict, r)
                    self.assertTrue(str(err["details"].get("error", "")).startswith("invalid token format"), r)
        r = SRV.rpc("sys.version", token="xx_ZGVmYXVsdA_" + hexpart)
        self.assertEqual(r.error()["details"]["error"], "invalid token format: missing 'ns_' prefix")

    def test_unknown_namespace(self):
        r = SRV.rpc("sys.version", token=make_token("nosuchns"))
        err = self.assertError(r, 403, "AUTH_UNAUTHORIZED", "Token not authorized for namespace")
        self.assertEqual(err.get("details"), {"namespace": "nosuchns"})

    def test_wrong_hash(self):
        r = SRV.rpc("sys.version", token=make_token("default"))
        err = self.assertError(r, 403, "AUTH_UNAUTHORIZED", "Token not authorized for namespace")
        self.assertEqual(err.get("details"), {"namespace": "default"})
        # same token with uppercase hex: parses, but it is a different string
        up = SRV.token[:-64] + SRV.token[-64:].upper()
        self.assertError(SRV.rpc("sys.version", token=up), 403, "AUTH_UNAUTHORIZED")
        # deterministic test-vector token is not valid here
        tv = "ns_ZGVmYXVsdA_9e209a53612574dc6f2c3a019e99cf8e5893924d83a0866eb359f386653a406e"
        self.assertError(SRV.rpc("sys.version", token=tv), 403, "AUTH_UNAUTHORIZED")

    def test_d11_underscore_in_base64(self):
        # namespace "ab?" encodes as YWI_; D11 parsing takes the last 64 hex chars
        tok = "ns_YWI__" + "0" * 64
        self.assertEqual(harness.b64url("ab?"), "YWI_")
        r = SRV.rpc("sys.version", token=tok)
        err = self.assertError(r, 403, "AUTH_UNAUTHORIZED")
        self.assertEqual(err.get("details"), {"namespace": "ab?"})

    def test_query_and_header(self):
        good, bad = SRV.token, "garbage"
        r = SRV.rpc("sys.version", token=None, query={"token": good})
        self.assertEqual(r.status, 200, r)
        r = SRV.rpc("sys.version", token=good)
        self.assertEqual(r.status, 200, r)
        # the query parameter wins over the header
        r = SRV.rpc("sys.version", token=bad, query={"token": good})
        self.assertEqual(r.status, 200, r)
        r = SRV.rpc("sys.version", token=good, query={"token": bad})
        self.assertError(r, 401, "AUTH_INVALID_TOKEN")
        r = SRV.rpc("sys.version", token=None, headers={"Authorization": "Basic x"}, query={"token": good})
        self.assertEqual(r.status, 200, r)
        # other query parameters are fine
        r = SRV.rpc("sys.version", token=None, query={"a": "1", "token": good, "b": ""})
        self.assertEqual(r.status, 200, r)

    def test_errors_before_method_checks(self):
        # auth is checked before the body is looked at
        r = post("{", token=None)
        self.assertError(r, 401, "AUTH_REQUIRED")
        r = post('["no.such"]', token="garbage")
        self.assertError(r, 401, "AUTH_INVALID_TOKEN")


class TestPaths(harness.TestCase):
    def test_health(self):
        for method in ("GET", "POST", "HEAD"):
            with self.subTest(method=method):
                r = SRV.request(method, "/health", headers={"Authorization": "Bearer garbage"})
                self.assertEqual(r.status, 200)
                self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"), r.headers)
                if method != "HEAD":
                    self.assertEqual(r.raw, b'{"status":"ok"}')
        r = SRV.get("/health?token=garbage")
        self.assertEqual(r.raw, b'{"status":"ok"}')

    def test_version(self):
        r = SRV.get("/version")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        self.assertEqual(set(r.body), {"version"})
        self.assertIsInstance(r.body["version"], str)
        self.assertTrue(r.body["version"])
        self.assertEqual(SRV.call("sys.version"), r.body["version"])

    def test_not_found(self):
        for path in ("/nope", "/rpc/", "/rpcx", "/RPC", "/health/x", "/", "/subscribex", "/v1/rpc"):
            with self.subTest(path=path):
                for method in ("GET", "POST"):
                    r = SRV.request(method, path, body="[]" if method == "POST" else None)
                    self.assertEqual(r.status, 404, r)
                    self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
                    self.assertEqual(r.body, {"error": {"code": "NOT_FOUND", "message": "Endpoint not found"}})

    def test_server_header(self):
        for r in (SRV.get("/health"), SRV.get("/version"), SRV.get("/nope"), SRV.rpc("sys.version"),
                  SRV.rpc("sys.version", token=None), post("{")):
            with self.subTest(r=r):
                self.assertEqual(r.headers.get("Server"), "EventoDB/" + VERSION)

    def test_rpc_bodies_end_with_newline(self):
        s = unique("nl") + "-1"
        resps = {
            "write": SRV.rpc("stream.write", s, {"type": "T", "data": {"a": "<&>"}}),
            "get": SRV.rpc("stream.get", s),
            "get empty": SRV.rpc("stream.get", s + "x"),
            "version null": SRV.rpc("stream.version", s + "x"),
            "version": SRV.rpc("stream.version", s),
            "last": SRV.rpc("stream.last", s),
            "sys.version": SRV.rpc("sys.version"),
            "sys.health": SRV.rpc("sys.health"),
            "ns.list": SRV.rpc("ns.list"),
            "400": SRV.rpc("stream.get", ""),
            "400 malformed": post("{"),
            "401": SRV.rpc("sys.version", token=None),
            "401 invalid": SRV.rpc("sys.version", token="x"),
            "403": SRV.rpc("sys.version", token=make_token("default")),
            "404 method": SRV.rpc("no.such"),
            "404 ns": SRV.rpc("ns.info", unique("none")),
            "405": SRV.request("GET", "/rpc", headers={"Authorization": "Bearer " + SRV.token}),
            "409": SRV.rpc("stream.write", s, {"type": "T", "data": {}}, {"expectedVersion": 7}),
        }
        for name, r in resps.items():
            with self.subTest(case=name):
                self.assertTrue(r.raw.endswith(b"\n"), r)
                self.assertFalse(r.raw.endswith(b"\n\n"), r)
                self.assertTrue(r.is_json, r)
                self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"), r.headers)
                if r.status != 200:
                    self.assertEqual(set(r.body), {"error"}, r)
                    self.assertLessEqual(set(r.body["error"]), {"code", "message", "details"}, r)


class TestDebugEndpoints(harness.TestCase):
    def test_d9_profiling_needs_admin(self):
        ns, tok = SRV.create_namespace()
        for path in ("/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof/goroutine",
                     "/debug/stats", "/debug/pprof/profile?seconds=1"):
            for who, hdrs in (("nobody", {}), ("tenant", {"Authorization": "Bearer " + tok}),
                              ("bad token", {"Authorization": "Bearer garbage"})):
                with self.subTest(path=path, who=who):
                    r = SRV.get(path, headers=hdrs)
                    self.assertIn(r.status, (401, 403, 404), r)
                    self.assertTrue(r.is_json, r)
                    self.assertIn(r.error().get("code"), ("AUTH_REQUIRED", "AUTH_INVALID_TOKEN", "AUTH_UNAUTHORIZED",
                                                          "NOT_FOUND"), r)


class TestInputChecks(harness.TestCase):
    def write_raw(self, s, data_json, meta_json=None):
        body = '["stream.write", %s, {"type": "T", "data": %s%s}]' % (
            json.dumps(s), data_json, (', "metadata": ' + meta_json) if meta_json else "")
        return body

    def test_invalid_utf8(self):
        s = unique("u8") + "-1"
        bodies = {
            "ff in data": self.write_raw(s, '{"a": "X"}').encode().replace(b"X", b"\xff"),
            "overlong": self.write_raw(s, '{"a": "X"}').encode().replace(b"X", b"\xc0\xaf"),
            "surrogate": self.write_raw(s, '{"a": "X"}').encode().replace(b"X", b"\xed\xa0\x80"),
            "truncated": self.write_raw(s, '{"a": "X"}').encode().replace(b"X", b"\xe4\xb8"),
            "in key": self.write_raw(s, '{"X": 1}').encode().replace(b"X", b"\x80"),
            "in stream name": self.write_raw(s + "X", "{}").encode().replace(b"X", b"\xfe"),
            "outside strings": b'["stream.version", "' + s.encode() + b'"]\xff',
            "too big": self.write_raw(s, '{"a": "X"}').encode().replace(b"X", b"\xf4\x90\x80\x80"),
        }
        for name, body in bodies.items():
            with self.subTest(case=name):
                r = post(body)
                err = self.assertError(r, 400, "INVALID_REQUEST")
                if name != "outside strings":
                    self.assertIn("utf", err["message"].lower(), r)
        self.assertIsNone(SRV.call("stream.version", s))
        # valid multi-byte UTF-8 is fine
        r = post(self.write_raw(s, '{"a": "X"}').encode().replace(b"X", "é世🌍".encode()))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(SRV.call("stream.get", s)[0][4], {"a": "é世🌍"})

    def test_nul(self):
        s = unique("nul") + "-1"
        bodies = {
            "in data string": self.write_raw(s, '{"a": "x\\u0000y"}'),
            "in data key": self.write_raw(s, '{"k\\u0000": 1}'),
            "nested": self.write_raw(s, '{"a": [{"b": "\\u0000"}]}'),
            "in metadata": self.write_raw(s, "{}", '{"m": "\\u0000"}'),
            "in stream name": self.write_raw(s + "\u0000", "{}").replace("\u0000", "\\u0000"),
            "in type": '["stream.write", %s, {"type": "T\\u0000", "data": {}}]' % json.dumps(s),
        }
        for name, body in bodies.items():
            with self.subTest(case=name):
                r = post(body)
                err = self.assertError(r, 400, "INVALID_REQUEST")
                m = err["message"]
                self.assertTrue("\\u0000" in m or "nul" in m.lower() or "u0000" in m, r)
        self.assertIsNone(SRV.call("stream.version", s))
        self.assertEqual(SRV.call("stream.get", s), [])
        # other escapes are fine
        r = post(self.write_raw(s, '{"a": "\\u0001\\u001f\\ud83c\\udf0d"}'))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(SRV.call("stream.get", s)[0][4], {"a": "\u0001\u001f\U0001F30D"})

    def nested_body(self, s, depth):
        """A stream.write body whose total nesting depth (outer array = 1) is depth."""
        inner = depth - 3  # outer array, message object, data object
        value = "1"
        for i in range(inner):
            value = "[" + value + "]" if i % 2 else '{"k":' + value + "}"
        data = '{"d":' + value + "}"
        return '["stream.write", %s, {"type": "T", "data": %s}]' % (json.dumps(s), data)

    def test_depth(self):
        s = unique("deep") + "-1"
        for depth in (65, 66, 100, 1000, 100000):
            with self.subTest(depth=depth):
                r = post(self.nested_body(s, depth))
                err = self.assertError(r, 400, "INVALID_REQUEST")
                m = err["message"].lower()
                self.assertTrue("deep" in m or "depth" in m or "nest" in m, r)
        self.assertIsNone(SRV.call("stream.version", s))
        r = post(self.nested_body(s, 64))
        self.assertEqual(r.status, 200, r)
        r = post(self.nested_body(s, 40))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(SRV.call("stream.version", s), 1)
        # deep arrays in a non-write call
        r = post('["stream.get", "x-1", {"position": ' + "[" * 70 + "]" * 70 + "}]")
        self.assertError(r, 400, "INVALID_REQUEST")

    def test_nested_body_helper(self):
        def depth(v):
            if isinstance(v, dict):
                return 1 + max([depth(x) for x in v.values()] or [0])
            if isinstance(v, list):
                return 1 + max([depth(x) for x in v] or [0])
            return 0

        for d in (10, 64, 65):
            self.assertEqual(depth(json.loads(self.nested_body("x", d))), d)


class TestBodyLimit(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.small = harness.Server(name="maxbody", extra=["--max-body", "1024"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.small.stop()

    def check_413(self, r):
        self.assertEqual(r.status, 413, r)
        if r.is_json:
            self.assertError(r, 413, "BODY_TOO_LARGE")

    def body_of(self, n, s="bl-1"):
        base = '["stream.write", "%s", {"type": "T", "data": {"p": ""}}]' % s
        pad = n - len(base)
        return base.replace('"p": ""', '"p": "%s"' % ("x" * pad))

    def test_limit(self):
        b = self.body_of(2000)
        self.assertEqual(len(b), 2000)
        r = self.small.rpc(None, raw_body=b)
        self.check_413(r)
        self.assertIsNone(self.small.call("stream.version", "bl-1"))
        # under the limit works
        r = self.small.rpc(None, raw_body=self.body_of(900))
        self.assertEqual(r.status, 200, r)
        # a much bigger body: a 413, or (if the server stops reading early) at worst a closed
        # connection -- never a hang
        try:
            r = self.small.rpc(None, raw_body=self.body_of(200000), timeout=15)
            self.check_413(r)
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            pass
        # the server is fine afterwards
        self.assertEqual(self.small.call("stream.version", "bl-1"), 0)

    def chunked(self, body, pieces):
        """POST /rpc with a chunked body, sent in one write on a raw socket; returns Resp."""
        step = (len(body) + pieces - 1) // pieces
        out = b""
        for i in range(0, len(body), step):
            part = body[i:i + step]
            out += b"%x\r\n" % len(part) + part + b"\r\n"
        out += b"0\r\n\r\n"
        req = (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + self.small.token.encode() +
               b"\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n" + out)
        sock = socket.create_connection((self.small.host, self.small.port), timeout=15)
        try:
            sock.sendall(req)
            status, headers, raw = harness.read_http_response(sock.makefile("rb"))
        finally:
            sock.close()
        msg = http.client.HTTPMessage()
        for k, v in headers.items():
            msg[k] = v
        return harness.Resp(status, msg, harness.decode_body(raw), raw)

    def test_limit_chunked(self):
        r = self.chunked(self.body_of(2000).encode(), 3)
        self.check_413(r)
        r = self.chunked(self.body_of(900, "blc-1").encode(), 2)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["position"], 0)


class TestConnections(harness.TestCase):
    def test_keep_alive_100(self):
        conn = SRV.connection()
        try:
            first_sock = None
            s = unique("ka") + "-1"
            for i in range(100):
                if i % 2:
                    r = SRV.rpc("stream.write", s, {"type": "T", "data": {"i": i}}, conn=conn)
                else:
                    r = SRV.rpc("sys.version", conn=conn)
                self.assertEqual(r.status, 200, r)
                if first_sock is None:
                    first_sock = conn.sock
                self.assertIsNotNone(conn.sock, "server closed the connection after request %d" % i)
                self.assertIs(conn.sock, first_sock, "connection was re-opened at request %d" % i)
                self.assertNotEqual(r.headers.get("Connection", "").lower(), "close")
            # errors keep the connection too
            r = SRV.rpc("stream.get", "", conn=conn)
            self.assertEqual(r.status, 400)
            r = SRV.rpc("no.such", conn=conn)
            self.assertEqual(r.status, 404)
            r = SRV.rpc("sys.version", conn=conn)
            self.assertEqual(r.status, 200)
            self.assertIs(conn.sock, first_sock)
        finally:
            conn.close()
        self.assertEqual(SRV.call("stream.version", s), 49)

    def test_pipelined(self):
        n = 20
        reqs = b""
        for i in range(n):
            if i % 2:
                body = json.dumps(["no.such.%d" % i]).encode()
            else:
                body = json.dumps(["sys.version"]).encode()
            reqs += (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + SRV.token.encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\n\r\n" + body)
        sock = socket.create_connection((SRV.host, SRV.port), timeout=30)
        try:
            sock.sendall(reqs)
            f = sock.makefile("rb")
            for i in range(n):
                status, headers, body = harness.read_http_response(f)
                if i % 2:
                    self.assertEqual(status, 404, (i, body))
                    self.assertEqual(json.loads(body)["error"]["message"], "Unknown method: no.such.%d" % i)
                else:
                    self.assertEqual(status, 200, (i, body))
                    self.assertEqual(json.loads(body), VERSION)
        finally:
            sock.close()

    def test_concurrent_clients(self):
        threads, per = 50, 20
        prefix = unique("cc")
        failures = []
        lock = threading.Lock()

        def client(t):
            conn = SRV.connection(timeout=60)
            try:
                for i in range(per):
                    if i % 4 == 3:
                        r = SRV.rpc("stream.get", "%s-%d" % (prefix, t), conn=conn)
                    else:
                        r = SRV.rpc("stream.write", "%s-%d" % (prefix, t), {"type": "T", "data": {"i": i}},
                                    conn=conn)
                    if r.status != 200:
                        with lock:
                            failures.append((t, i, r))
            except Exception as e:  # noqa: BLE001
                with lock:
                    failures.append((t, "exception", repr(e)))
            finally:
                conn.close()

        t0 = time.monotonic()
        ts = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(failures[:5], [])
        writes = len([i for i in range(per) if i % 4 != 3])
        for t in range(threads):
            self.assertEqual(SRV.call("stream.version", "%s-%d" % (prefix, t)), writes - 1)
        rows = SRV.call("category.get", prefix, {"batchSize": -1})
        self.assertEqual(len(rows), threads * writes)
        self.assertLess(time.monotonic() - t0, 60)

    def test_concurrent_fresh_connections(self):
        failures = []

        def client(t):
            for _ in range(10):
                try:
                    r = SRV.rpc("sys.version")
                    if r.status != 200:
                        failures.append(r)
                except Exception as e:  # noqa: BLE001
                    failures.append(repr(e))

        ts = [threading.Thread(target=client, args=(t,)) for t in range(50)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(failures[:5], [])

    def test_expect_100_continue(self):
        body = json.dumps(["stream.write", unique("ex") + "-1", {"type": "T", "data": {"x": "y" * 3000}}]).encode()
        sock = socket.create_connection((SRV.host, SRV.port), timeout=15)
        try:
            sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SRV.token.encode() +
                         b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            f = sock.makefile("rb")
            line = f.readline()
            self.assertIn(b" 100 ", line)
            self.assertIn(f.readline(), (b"\r\n", b"\n"))
            sock.sendall(body)
            status, headers, raw = harness.read_http_response(f)
            self.assertEqual(status, 200, raw)
            self.assertEqual(json.loads(raw)["position"], 0)
        finally:
            sock.close()

    def test_http10_and_connection_close(self):
        sock = socket.create_connection((SRV.host, SRV.port), timeout=30)
        try:
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1."), data)
            self.assertIn(b" 200 ", data.split(b"\r\n")[0])
            self.assertTrue(data.endswith(b'{"status":"ok"}'), data)
        finally:
            sock.close()
        r = SRV.request("POST", "/rpc", body='["sys.version"]',
                        headers={"Authorization": "Bearer " + SRV.token, "Connection": "close"})
        self.assertEqual(r.status, 200)

    def test_client_disconnect_mid_request(self):
        # a client that sends half a body and goes away must not hurt the server
        for _ in range(5):
            sock = socket.create_connection((SRV.host, SRV.port), timeout=10)
            sock.sendall(b"POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SRV.token.encode() +
                         b"\r\nContent-Length: 100\r\n\r\n[\"sys.ver")
            sock.close()
        r = SRV.rpc("sys.version")
        self.assertEqual(r.status, 200)


if __name__ == "__main__":
    harness.main()
