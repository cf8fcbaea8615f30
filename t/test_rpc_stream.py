#!/usr/bin/env python3
"""stream.write / stream.get / stream.last / stream.version (SPEC 4.1-4.4, 10, D4, D5, D10, D14, D15, D19)."""

import json
import os
import re
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402

SRV = None
MSG = {"type": "T", "data": {"a": 1}}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,5}[1-9])?Z$")


def setUpModule():
    global SRV
    SRV = harness.Server(name="stream").start()


def tearDownModule():
    harness.cleanup()


def json_str(s):
    return json.dumps(s, ensure_ascii=False)


def stream(prefix="st"):
    return unique(prefix) + "-1"


def run_threads(n, fn):
    """Runs fn(i) in n threads started together; returns results by index."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def body(i):
        try:
            barrier.wait(10)
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001
            results[i] = e

    ts = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return results


class Base(harness.TestCase):
    def rpc(self, method, *args, **kw):
        return SRV.rpc(method, *args, **kw)

    def ok(self, method, *args, **kw):
        r = SRV.rpc(method, *args, **kw)
        self.assertEqual(r.status, 200, "%s %r -> %r" % (method, args, r))
        return r.body

    def write(self, name, msg=None, opts=None):
        args = [name, msg if msg is not None else MSG]
        if opts is not None:
            args.append(opts)
        return self.ok("stream.write", *args)

    def check_invalid(self, method, cases):
        for args, message in cases:
            with self.subTest(args=args):
                r = self.rpc(method, *args)
                if message is None:
                    self.assertError(r, 400, "INVALID_REQUEST")
                elif message.startswith("~"):
                    self.assertError(r, 400, "INVALID_REQUEST", msg_contains=message[1:])
                else:
                    self.assertError(r, 400, "INVALID_REQUEST", message)


class TestWriteValidation(Base):
    def test_validation_messages(self):
        s = stream("val")
        two = "stream.write requires at least 2 arguments: streamName and message"
        sn = "streamName must be a non-empty string"
        mo = "message must be an object"
        mt = "message.type must be a non-empty string"
        md = "message.data must be an object"
        mm = "message.metadata must be an object"
        oo = "options must be an object"
        oi = "options.id must be a string"
        ev = "options.expectedVersion must be a number"
        cases = [
            ((), two),
            ((s,), two),
            ((123, MSG), sn),
            (("", MSG), sn),
            ((None, MSG), sn),
            (([], MSG), sn),
            (({}, MSG), sn),
            ((True, MSG), sn),
            ((s, "x"), mo),
            ((s, None), mo),
            ((s, []), mo),
            ((s, 5), mo),
            ((s, {"data": {}}), mt),
            ((s, {"type": 5, "data": {}}), mt),
            ((s, {"type": "", "data": {}}), mt),
            ((s, {"type": None, "data": {}}), mt),
            ((s, {"type": ["T"], "data": {}}), mt),
            ((s, {"type": "T"}), md),
            ((s, {"type": "T", "data": None}), md),
            ((s, {"type": "T", "data": []}), md),
            ((s, {"type": "T", "data": "x"}), md),
            ((s, {"type": "T", "data": 5}), md),
            ((s, {"type": "T", "data": True}), md),
            ((s, {"type": "T", "data": {}, "metadata": None}), mm),
            ((s, {"type": "T", "data": {}, "metadata": []}), mm),
            ((s, {"type": "T", "data": {}, "metadata": "x"}), mm),
            ((s, {"type": "T", "data": {}, "metadata": 1}), mm),
            ((s, MSG, None), oo),
            ((s, MSG, []), oo),
            ((s, MSG, "x"), oo),
            ((s, MSG, 5), oo),
            ((s, MSG, {"id": 5}), oi),
            ((s, MSG, {"id": None}), oi),
            ((s, MSG, {"id": {}}), oi),
            ((s, MSG, {"expectedVersion": "1"}), ev),
            ((s, MSG, {"expectedVersion": None}), ev),
            ((s, MSG, {"expectedVersion": []}), ev),
            ((s, MSG, {"expectedVersion": True}), ev),
            # validation order
            (("", "x"), sn),
            ((5, None, None), sn),
            ((s, "x", None), mo),
            ((s, {"type": "", "data": None}), mt),
            ((s, {"type": "T", "data": None, "metadata": None}), md),
            ((s, {"type": "T", "data": {}, "metadata": None}, None), mm),
            ((s, MSG, {"id": 5, "expectedVersion": "x"}), oi),
        ]
        self.check_invalid("stream.write", cases)
        # nothing was written by any of them
        self.assertIsNone(self.ok("stream.version", s))
        self.assertEqual(self.ok("stream.get", s), [])

    def test_expected_version_out_of_range(self):
        s = stream("evr")
        for v in (1e300, -1e300, 1e19, -1e19):
            with self.subTest(v=v):
                r = self.rpc("stream.write", s, MSG, {"expectedVersion": v})
                self.assertError(r, 400, "INVALID_REQUEST")
        self.assertIsNone(self.ok("stream.version", s))

    def test_other_keys_ignored(self):
        s = stream("ign")
        r = self.write(s, {"type": "T", "data": {"x": 1}, "extra": [1, 2], "position": 99},
                       {"foo": "bar", "position": 7})
        self.assertEqual(r["position"], 0)
        # extra positional arguments are ignored as well
        r = self.ok("stream.write", s, MSG, {}, "extra", 5)
        self.assertEqual(r["position"], 1)

    def test_write_response_shape(self):
        s = stream("shape")
        r = self.rpc("stream.write", s, MSG)
        body = self.assertOk(r)
        self.assertEqual(set(body), {"globalPosition", "position"})
        self.assertEqual(body["position"], 0)
        self.assertIsInstance(body["globalPosition"], int)
        self.assertGreaterEqual(body["globalPosition"], 1)
        self.assertEqual(r.raw, b'{"globalPosition":%d,"position":0}\n' % body["globalPosition"])
        self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        r2 = self.write(s)
        self.assertEqual(r2["position"], 1)
        self.assertGreater(r2["globalPosition"], body["globalPosition"])


class TestReadValidation(Base):
    def test_get_validation(self):
        s = stream("gv")
        oo = "options must be an object"
        cases = [
            ((), "stream.get requires at least 1 argument: streamName"),
            ((5,), "streamName must be a non-empty string"),
            (("",), "streamName must be a non-empty string"),
            ((None,), "streamName must be a non-empty string"),
            ((s, None), oo),
            ((s, []), oo),
            ((s, "x"), oo),
            ((s, 3), oo),
            ((s, {"position": "0"}), "options.position must be a number"),
            ((s, {"position": None}), "options.position must be a number"),
            ((s, {"globalPosition": "1"}), "options.globalPosition must be a number"),
            ((s, {"globalPosition": [1]}), "options.globalPosition must be a number"),
            ((s, {"batchSize": "5"}), "options.batchSize must be a number"),
            ((s, {"batchSize": None}), "options.batchSize must be a number"),
            ((s, {"batchSize": 10001}), "options.batchSize must be <= 10000 or -1 for unlimited"),
            ((s, {"batchSize": 1000000}), "~batchSize"),
            ((s, {"batchSize": -2}), "~batchSize"),
            ((s, {"batchSize": -100}), "~batchSize"),
            ((s, {"batchSize": 1e300}), None),
            ((s, {"batchSize": -1e300}), None),
            ((s, {"position": 1e300}), None),
            ((s, {"position": -1e300}), None),
            ((s, {"position": 1e19}), None),
            ((s, {"globalPosition": 1e300}), None),
            ((s, {"globalPosition": -1e19}), None),
        ]
        self.check_invalid("stream.get", cases)

    def test_last_validation(self):
        s = stream("lv")
        cases = [
            ((), "stream.last requires at least 1 argument: streamName"),
            ((5,), "streamName must be a non-empty string"),
            (("",), "streamName must be a non-empty string"),
            ((s, None), "options must be an object"),
            ((s, "x"), "options must be an object"),
            ((s, {"type": 5}), "options.type must be a string"),
            ((s, {"type": None}), "options.type must be a string"),
        ]
        self.check_invalid("stream.last", cases)

    def test_version_validation(self):
        cases = [
            ((), "stream.version requires 1 argument: streamName"),
            ((5,), "streamName must be a non-empty string"),
            (("",), "streamName must be a non-empty string"),
            ((None,), "streamName must be a non-empty string"),
        ]
        self.check_invalid("stream.version", cases)


class TestExpectedVersion(Base):
    def conflict(self, r, expected, actual):
        self.assertError(r, 409, "STREAM_VERSION_CONFLICT",
                         "Expected version %d, stream is at version %d" % (expected, actual))
        self.assertEqual(r.body["error"].get("details"), {"expected": expected, "actual": actual}, r)
        self.assertEqual(list(r.body["error"]), ["code", "message", "details"], r)
        self.assertEqual(list(r.body["error"]["details"]), ["actual", "expected"], r)

    def test_minus_one_on_new_stream(self):
        s = stream("ev")
        r = self.write(s, opts={"expectedVersion": -1})
        self.assertEqual(r["position"], 0)
        self.conflict(self.rpc("stream.write", s, MSG, {"expectedVersion": -1}), -1, 0)
        self.assertEqual(self.ok("stream.version", s), 0)

    def test_zero_on_new_stream_conflicts(self):
        s = stream("ev")
        self.conflict(self.rpc("stream.write", s, MSG, {"expectedVersion": 0}), 0, -1)
        self.assertIsNone(self.ok("stream.version", s))
        self.assertEqual(self.ok("stream.get", s), [])

    def test_sequence_and_mismatch(self):
        s = stream("ev")
        self.assertEqual(self.write(s, opts={"expectedVersion": -1})["position"], 0)
        self.assertEqual(self.write(s, opts={"expectedVersion": 0})["position"], 1)
        self.conflict(self.rpc("stream.write", s, MSG, {"expectedVersion": 5}), 5, 1)
        self.conflict(self.rpc("stream.write", s, MSG, {"expectedVersion": 0}), 0, 1)
        self.conflict(self.rpc("stream.write", s, MSG, {"expectedVersion": -1}), -1, 1)
        # truncation toward zero: 1.9 -> 1
        self.assertEqual(self.write(s, opts={"expectedVersion": 1.9})["position"], 2)
        self.assertEqual(self.ok("stream.version", s), 2)
        self.assertEqual([m[2] for m in self.ok("stream.get", s)], [0, 1, 2])
        # without expectedVersion: appends
        self.assertEqual(self.write(s)["position"], 3)

    def test_conflict_does_not_consume_global_position(self):
        s = stream("ev")
        g1 = self.write(s)["globalPosition"]
        self.conflict(self.rpc("stream.write", s, MSG, {"expectedVersion": 7}), 7, 0)
        self.assertEqual(len(self.ok("stream.get", s)), 1)
        g2 = self.write(s)["globalPosition"]
        self.assertGreater(g2, g1)


class TestConcurrency(Base):
    def test_concurrent_writers_gapless(self):
        s = stream("conc")

        def w(i):
            return SRV.rpc("stream.write", s, {"type": "T", "data": {"i": i}})

        res = run_threads(10, w)
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
            self.assertEqual(r.status, 200, r)
        positions = sorted(r.body["position"] for r in res)
        self.assertEqual(positions, list(range(10)))
        gps = [r.body["globalPosition"] for r in res]
        self.assertEqual(len(set(gps)), 10)
        msgs = self.ok("stream.get", s)
        self.assertEqual([m[2] for m in msgs], list(range(10)))
        self.assertEqual(sorted(m[4]["i"] for m in msgs), list(range(10)))
        # global positions increase with the stream position
        self.assertEqual([m[3] for m in msgs], sorted(m[3] for m in msgs))
        self.assertEqual(self.ok("stream.version", s), 9)

    def _race(self, s, expected, n=10):
        def w(i):
            return SRV.rpc("stream.write", s, {"type": "T", "data": {"i": i}}, {"expectedVersion": expected})

        res = run_threads(n, w)
        for r in res:
            self.assertNotIsInstance(r, Exception, r)
        wins = [r for r in res if r.status == 200]
        losses = [r for r in res if r.status != 200]
        self.assertEqual(len(wins), 1, res)
        self.assertEqual(wins[0].body["position"], expected + 1)
        for r in losses:
            self.assertError(r, 409, "STREAM_VERSION_CONFLICT",
                             "Expected version %d, stream is at version %d" % (expected, expected + 1))
            self.assertEqual(r.body["error"]["details"], {"expected": expected, "actual": expected + 1})
        self.assertEqual(self.ok("stream.version", s), expected + 1)

    def test_d19_same_expected_version_one_wins(self):
        s = stream("race")
        for _ in range(3):
            self.write(s)
        self._race(s, 2)

    def test_d19_new_stream_one_wins(self):
        self._race(stream("race"), -1)


class TestIds(Base):
    def first(self, s):
        msgs = self.ok("stream.get", s)
        self.assertEqual(len(msgs), 1, msgs)
        return msgs[0]

    def test_custom_uuid_forms(self):
        forms = {
            "upper": lambda u: u.upper(),
            "braces": lambda u: "{" + u + "}",
            "braces_upper": lambda u: "{" + u.upper() + "}",
            "urn": lambda u: "urn:uuid:" + u,
            "hex32": lambda u: u.replace("-", ""),
            "canonical": lambda u: u,
        }
        for name, form in forms.items():
            with self.subTest(form=name):
                uid = str(uuid.uuid4())
                s = stream("id")
                self.write(s, opts={"id": form(uid)})
                m = self.first(s)
                self.assertEqual(m[0], uid)
                self.assertEqual(self.ok("stream.last", s)[0], uid)
                cat = self.ok("category.get", s.split("-")[0])
                self.assertEqual(cat[0][0], uid)

    def test_mixed_case_lowercased(self):
        uid = "A1B2C3D4-E5F6-4789-9ABC-DEF012345678"
        s = stream("id")
        self.write(s, opts={"id": uid})
        self.assertEqual(self.first(s)[0], uid.lower())

    def test_bad_ids(self):
        s = stream("badid")
        for bad in ("not-a-uuid", "12345678-1234-1234-1234-12345678901", "g2345678-1234-1234-1234-123456789012",
                    "12345678-1234-1234-1234-1234567890123", "1234", " " + str(uuid.uuid4()),
                    str(uuid.uuid4()) + "x", "{" + str(uuid.uuid4()), "urn:uuid:xyz"):
            with self.subTest(id=bad):
                r = self.rpc("stream.write", s, MSG, {"id": bad})
                self.assertError(r, 400, "INVALID_REQUEST", "options.id must be a UUID")
        self.assertIsNone(self.ok("stream.version", s))

    def test_empty_id_generates(self):
        s = stream("id")
        self.write(s, opts={"id": ""})
        self.assertTrue(UUID_RE.match(self.first(s)[0]))

    def test_duplicate_id(self):
        uid = str(uuid.uuid4())
        s1, s2 = stream("dup"), stream("dup")
        self.write(s1, opts={"id": uid})
        r = self.rpc("stream.write", s1, MSG, {"id": uid})
        self.assertError(r, 409, "MESSAGE_EXISTS")
        r = self.rpc("stream.write", s2, MSG, {"id": uid})
        self.assertError(r, 409, "MESSAGE_EXISTS")
        r = self.rpc("stream.write", s2, MSG, {"id": uid.upper()})
        self.assertError(r, 409, "MESSAGE_EXISTS")
        r = self.rpc("stream.write", s2, MSG, {"id": uid, "expectedVersion": -1})
        self.assertError(r, 409, "MESSAGE_EXISTS")
        self.assertEqual(self.ok("stream.version", s1), 0)
        self.assertIsNone(self.ok("stream.version", s2))
        # the streams still work
        self.assertEqual(self.write(s1)["position"], 1)
        self.assertEqual(self.write(s2)["position"], 0)

    def test_generated_ids_are_uuid_v7(self):
        s = stream("v7")
        before = int(time.time() * 1000)
        for _ in range(5):
            self.write(s)
        after = int(time.time() * 1000)
        ids = [m[0] for m in self.ok("stream.get", s)]
        self.assertEqual(len(set(ids)), 5)
        for i in ids:
            self.assertTrue(UUID_RE.match(i), i)
            self.assertEqual(i[14], "7", "version nibble of %s" % i)
            self.assertIn(i[19], "89ab", "variant of %s" % i)
            ms = int(i.replace("-", "")[:12], 16)
            self.assertTrue(before - 5000 <= ms <= after + 5000, "timestamp of %s: %d not in [%d,%d]"
                            % (i, ms, before, after))


class TestDataFidelity(Base):
    CASES = {
        "nested": {"user": {"profile": {"name": "John", "settings": {"theme": "dark", "tags": ["a", "b"]}}},
                   "deep": {"a": {"b": {"c": {"d": {"e": 1}}}}}},
        "mixed_array": {"items": [1, "two", {"three": 3}, None, True, False, [], {}, [1, [2, [3]]]]},
        "booleans": {"t": True, "f": False},
        "nulls": {"n": None, "o": {"n": None}},
        "empty_strings": {"e": "", "o": {"e": ""}, "a": [""]},
        "numbers": {"int": 42, "neg": -17, "zero": 0, "float": 3.14159, "negf": -2.5, "big": 9007199254740991,
                    "small": 1e-7, "exp": 1.5e10, "million": 1000000},
        "unicode": {"s": "Hello 世界 🌍 émojis", "t": "测试 🎉", "ключ": "значение", "emoji🔑": "✓"},
        "escapes": {"q": 'say "hi"', "b": "back\\slash", "nl": "a\nb\tc\r", "ctl": "\u0001\u001f",
                    "html": "<script>&</script>", "ls": "\u2028\u2029", "slash": "/"},
        "empty": {},
        "keys": {"": 1, " ": 2, "a.b": 3, "$x": 4},
    }

    def test_round_trip(self):
        for name, data in self.CASES.items():
            with self.subTest(case=name):
                s = stream("fid")
                meta = {"m": data, "correlationStreamName": "x-1"}
                self.write(s, {"type": "T", "data": data, "metadata": meta})
                self.write(s, {"type": "U", "data": data})
                msgs = self.ok("stream.get", s)
                self.assertEqual(msgs[0][4], data)
                self.assertEqual(msgs[0][5], meta)
                self.assertEqual(msgs[1][4], data)
                self.assertIsNone(msgs[1][5])
                last = self.ok("stream.last", s, {"type": "T"})
                self.assertEqual(last[4], data)
                self.assertEqual(last[5], meta)
                cat = self.ok("category.get", s.split("-")[0])
                self.assertEqual(cat[0][5], data)
                self.assertEqual(cat[0][6], meta)

    def test_integers_beyond_64_bits_are_kept_exactly(self):
        # json-c reads such literals as the nearest 64-bit value; the stored data is the client's text
        big = 123456789012345678901234567890
        raw = ('["stream.write", "%s", {"type": "T", "data": {"big": %d, "neg": -%d, "u64": 18446744073709551616,'
               ' "exact": 9007199254740993, "nested": [%d]}, "metadata": {"m": %d}}]')
        for name, body_fmt in (("compact", raw), ("spaced", raw.replace(", ", " ,\n\t "))):
            with self.subTest(case=name):
                s = stream("bigint")
                r = self.rpc(None, raw_body=body_fmt % (s, big, big * 7, big, big * 3))
                self.assertEqual(r.status, 200, r)
                for got in (self.ok("stream.get", s)[0], self.ok("stream.last", s)):
                    self.assertEqual(got[4], {"big": big, "neg": -big * 7, "u64": 18446744073709551616,
                                              "exact": 9007199254740993, "nested": [big]})
                    self.assertEqual(got[5], {"m": big * 3})
                cat = self.ok("category.get", s.split("-")[0])
                self.assertEqual(cat[0][5]["big"], big)

    def test_unpaired_surrogate_escapes_are_refused(self):
        s = stream("sur")
        for text in (r'"\ud800"', r'"a\udc00b"', r'"\ud800\u0041"'):
            with self.subTest(text=text):
                body = '["stream.write", "%s", {"type": "T", "data": {"s": %s}}]' % (s, text)
                self.assertError(self.rpc(None, raw_body=body), 400, "INVALID_REQUEST")
        ok = '["stream.write", "%s", {"type": "T", "data": {"s": "\\ud83c\\udf89"}}]' % s
        self.assertEqual(self.rpc(None, raw_body=ok).status, 200)
        self.assertEqual(self.ok("stream.get", s)[0][4], {"s": "\U0001f389"})
        self.assertEqual(self.ok("stream.version", s), 0)

    def test_unicode_type(self):
        s = stream("fid")
        self.write(s, {"type": "Событие 🎉 with space", "data": {}})
        self.assertEqual(self.ok("stream.get", s)[0][1], "Событие 🎉 with space")
        self.assertEqual(self.ok("stream.last", s, {"type": "Событие 🎉 with space"})[2], 0)

    def test_metadata_omitted_is_null_and_empty_data(self):
        s = stream("meta")
        self.write(s, {"type": "T", "data": {}})
        self.write(s, {"type": "T", "data": {}, "metadata": {}})
        msgs = self.ok("stream.get", s)
        self.assertEqual(msgs[0][4], {})
        self.assertIsNone(msgs[0][5])
        self.assertEqual(msgs[1][5], {})
        self.assertIn(b"null", self.rpc("stream.get", s).raw)

    def test_metadata_null_rejected(self):
        s = stream("meta")
        r = self.rpc("stream.write", s, {"type": "T", "data": {}, "metadata": None})
        self.assertError(r, 400, "INVALID_REQUEST", "message.metadata must be an object")

    def test_large_payload_100k(self):
        s = stream("big")
        data = {"blob": "x" * 100000, "arr": list(range(1000)), "nested": {"s": "y" * 5000}}
        self.write(s, {"type": "T", "data": data, "metadata": {"k": "z" * 1000}})
        m = self.ok("stream.get", s)[0]
        self.assertEqual(m[4], data)
        self.assertEqual(m[5], {"k": "z" * 1000})

    def test_message_too_large(self):
        s = stream("huge")
        cases = {
            "data": ({"blob": "x" * (1024 * 1024 + 100)}, None),
            "data+metadata": ({"blob": "x" * 600000}, {"blob": "y" * 600000}),
        }
        for name, (data, meta) in cases.items():
            with self.subTest(case=name):
                msg = {"type": "T", "data": data}
                if meta is not None:
                    msg["metadata"] = meta
                r = self.rpc("stream.write", s, msg)
                self.assertError(r, 413, "MESSAGE_TOO_LARGE")
                self.assertTrue(r.headers.get("Content-Type", "").startswith("application/json"))
        self.assertIsNone(self.ok("stream.version", s))
        # just under the limit is fine
        self.write(s, {"type": "T", "data": {"blob": "x" * 900000}})
        self.assertEqual(self.ok("stream.version", s), 0)


class TestBytes(Base):
    """SPEC D21: data and metadata come back as compact JSON, the same bytes from both stores.
    Keys here are written in jsonb's own order (fewer bytes first, then byte-wise), which the embedded
    store keeps because it keeps the client's order; TestKeyOrder shows where the two differ."""

    # (data as sent, exactly; data as expected back, exactly)
    DATA = [
        ('{"a": 1, "b": [1, 2, {"c": null}], "nested": {"x": {"y": {"z": [true, false]}}}}',
         '{"a":1,"b":[1,2,{"c":null}],"nested":{"x":{"y":{"z":[true,false]}}}}'),
        ('{"s": "a , b : c { } [ ]", "sp": "  two  spaces  ", "k y": "v"}',
         '{"s":"a , b : c { } [ ]","sp":"  two  spaces  ","k y":"v"}'),
        ('{"q": "say \\"hi\\", \\"x\\": 1", "bs": "c:\\\\dir\\\\", "end": "\\\\"}',
         '{"q":"say \\"hi\\", \\"x\\": 1","bs":"c:\\\\dir\\\\","end":"\\\\"}'),
        ('{"u": "Hello \u4e16\u754c \U0001f30d", "\u043a": "\u0437", "ctl": "a\\nb\\tc\\u0001"}',
         '{"u":"Hello \u4e16\u754c \U0001f30d","\u043a":"\u0437","ctl":"a\\nb\\tc\\u0001"}'),
        ('{"f": 3.5, "i": 42, "n": -17, "z": 0, "big": 9007199254740993, "neg": -2.25}',
         '{"f":3.5,"i":42,"n":-17,"z":0,"big":9007199254740993,"neg":-2.25}'),
        ('{ }', '{}'),
        ('{"a": [ ], "e": "", "o": { }}', '{"a":[],"e":"","o":{}}'),
    ]
    META = ('{"x": "y : z", "correlationStreamName": "c-1"}', '{"x":"y : z","correlationStreamName":"c-1"}')

    def write_raw(self, s, data, meta=None):
        mid = str(uuid.uuid4())
        msg = '{"type":"T","data":%s%s}' % (data, ',"metadata":%s' % meta if meta is not None else "")
        r = self.rpc(None, raw_body='["stream.write",%s,%s,{"id":"%s"}]' % (json_str(s), msg, mid))
        self.assertEqual(r.status, 200, r)
        return mid, r.body["globalPosition"]

    def test_compact_bytes_on_every_read(self):
        for i, (sent, want) in enumerate(self.DATA):
            with self.subTest(case=i, data=sent):
                s = stream("bytes")
                mid, g = self.write_raw(s, sent, self.META[0])
                mid2, g2 = self.write_raw(s, sent)
                r = self.rpc("stream.get", s)
                t1, t2 = r.body[0][6], r.body[1][6]
                row1 = '["%s","T",0,%d,%s,%s,"%s"]' % (mid, g, want, self.META[1], t1)
                row2 = '["%s","T",1,%d,%s,null,"%s"]' % (mid2, g2, want, t2)
                self.assertEqual(r.raw.decode(), "[%s,%s]\n" % (row1, row2))
                r = self.rpc("stream.last", s)
                self.assertEqual(r.raw.decode(), row2 + "\n")
                r = self.rpc("category.get", s.split("-")[0])
                self.assertEqual(r.raw.decode(), '[["%s",%s,"T",0,%d,%s,%s,"%s"],["%s",%s,"T",1,%d,%s,null,"%s"]]\n'
                                 % (mid, json_str(s), g, want, self.META[1], t1, mid2, json_str(s), g2, want, t2))


class TestKeyOrder(Base):
    """The key order each store keeps (README, "Stores"): PostgreSQL's jsonb its own normalized
    order (keys of fewer bytes first, then byte-wise; of duplicate keys the last wins), the embedded store
    the order the client sent."""

    def test_key_order_per_store(self):
        s = stream("order")
        r = self.rpc(None, raw_body='["stream.write",%s,{"type":"T","data":{"bb": 1, "b": 2, "a": 3, "a": 4}}]'
                     % json_str(s))
        self.assertEqual(r.status, 200, r)
        raw = self.rpc("stream.last", s).raw.decode()
        want = '{"a":4,"b":2,"bb":1}' if harness.STORE == "postgres" else '{"bb":1,"b":2,"a":4}'
        self.assertIn("," + want + ",", raw)


class TestGet(Base):
    @classmethod
    def setUpClass(cls):
        cls.s = stream("get")
        cls.res = [SRV.call("stream.write", cls.s, {"type": "T%d" % i, "data": {"i": i}}) for i in range(12)]

    def positions(self, *opts):
        return [m[2] for m in self.ok("stream.get", self.s, *opts)]

    def test_message_array_shape(self):
        msgs = self.ok("stream.get", self.s)
        self.assertEqual(len(msgs), 12)
        for i, m in enumerate(msgs):
            self.assertIsInstance(m, list)
            self.assertEqual(len(m), 7, m)
            mid, typ, pos, gpos, data, meta, tm = m
            self.assertTrue(UUID_RE.match(mid), mid)
            self.assertEqual(typ, "T%d" % i)
            self.assertEqual(pos, i)
            self.assertEqual(gpos, self.res[i]["globalPosition"])
            self.assertEqual(data, {"i": i})
            self.assertIsNone(meta)
            self.assertIsInstance(tm, str)

    def test_time_format(self):
        s = stream("time")
        t0 = time.time()
        self.write(s)
        t1 = time.time()
        for m in (self.ok("stream.get", s)[0], self.ok("stream.last", s)):
            tm = m[6]
            self.assertTrue(tm.endswith("Z"), tm)
            self.assertTrue(TIME_RE.match(tm), "bad time format (<=6 digits, trimmed): %r" % tm)
            ts = harness.parse_rfc3339(tm)
            self.assertTrue(t0 - 5 <= ts <= t1 + 5, "time %s not within seconds of now" % tm)

    def test_defaults_and_position(self):
        self.assertEqual(self.positions(), list(range(12)))
        self.assertEqual(self.positions({}), list(range(12)))
        self.assertEqual(self.positions({"position": 5}), list(range(5, 12)))
        self.assertEqual(self.positions({"position": 11}), [11])
        self.assertEqual(self.positions({"position": 12}), [])
        self.assertEqual(self.positions({"position": 100}), [])
        self.assertEqual(self.positions({"position": -1}), list(range(12)))
        self.assertEqual(self.positions({"position": -100}), list(range(12)))
        self.assertEqual(self.positions({"position": 2.7}), list(range(2, 12)))
        self.assertEqual(self.positions({"position": 2, "batchSize": 3}), [2, 3, 4])

    def test_batch_size(self):
        self.assertEqual(self.positions({"batchSize": 5}), list(range(5)))
        self.assertEqual(self.positions({"batchSize": -1}), list(range(12)))
        self.assertEqual(self.positions({"batchSize": 10000}), list(range(12)))
        self.assertEqual(self.positions({"batchSize": 0}), [])
        self.assertEqual(self.positions({"batchSize": 1.9}), [0])
        self.assertEqual(self.positions({"batchSize": -0.5}), [])
        self.assertEqual(self.positions({"batchSize": 1}), [0])
        self.assertEqual(self.positions({"batchSize": 0, "globalPosition": 1}), [])
        self.assertEqual(self.positions({"batchSize": 2, "globalPosition": 1}), [0, 1])
        self.assertEqual(self.positions({"batchSize": -1, "globalPosition": 1}), list(range(12)))
        r = self.rpc("stream.get", self.s, {"batchSize": "5"})
        self.assertError(r, 400, "INVALID_REQUEST", "options.batchSize must be a number")
        r = self.rpc("stream.get", self.s, {"batchSize": 10001})
        self.assertError(r, 400, "INVALID_REQUEST", msg_contains="batchSize")
        r = self.rpc("stream.get", self.s, {"batchSize": -2})
        self.assertError(r, 400, "INVALID_REQUEST", msg_contains="batchSize")
        r = self.rpc("stream.get", self.s, {"batchSize": 1e300})
        self.assertError(r, 400, "INVALID_REQUEST")

    def test_global_position_filter(self):
        g = [r["globalPosition"] for r in self.res]
        self.assertEqual(self.positions({"globalPosition": g[4]}), list(range(4, 12)))
        self.assertEqual(self.positions({"globalPosition": g[4] + 0.5}), list(range(4, 12)))
        self.assertEqual(self.positions({"globalPosition": g[11] + 1}), [])
        self.assertEqual(self.positions({"globalPosition": 0}), list(range(12)))
        # globalPosition replaces the position filter
        self.assertEqual(self.positions({"position": 0, "globalPosition": g[9]}), [9, 10, 11])
        self.assertEqual(self.positions({"position": 100, "globalPosition": 1}), list(range(12)))
        self.assertEqual(self.positions({"globalPosition": g[3], "batchSize": 2}), [3, 4])

    def test_global_position_interleaved_streams(self):
        a, b = stream("ia"), stream("ib")
        ga = []
        for i in range(4):
            ga.append(self.write(a, {"type": "A", "data": {"i": i}})["globalPosition"])
            self.write(b, {"type": "B", "data": {"i": i}})
        msgs = self.ok("stream.get", a, {"globalPosition": ga[1]})
        self.assertEqual([m[2] for m in msgs], [1, 2, 3])
        self.assertEqual([m[3] for m in msgs], ga[1:])
        self.assertTrue(all(m[1] == "A" for m in msgs))
        msgs = self.ok("stream.get", a, {"globalPosition": ga[1] + 1})
        self.assertEqual([m[2] for m in msgs], [2, 3])

    def test_nonexistent_stream(self):
        s = stream("none")
        r = self.rpc("stream.get", s)
        self.assertEqual(self.assertOk(r), [])
        self.assertEqual(r.raw, b"[]\n")
        self.assertIsNone(self.ok("stream.version", s))
        r = self.rpc("stream.version", s)
        self.assertEqual(r.raw, b"null\n")
        self.assertIsNone(self.ok("stream.last", s))
        self.assertIsNone(self.ok("stream.last", s, {"type": "T"}))


class TestDefaultBatch(Base):
    def test_default_batch_size_is_1000(self):
        s = stream("many")
        n = 1005

        def w(i):
            conn = SRV.connection()
            try:
                for _ in range(i, n, 5):
                    r = SRV.rpc("stream.write", s, MSG, conn=conn)
                    if r.status != 200:
                        return r
            finally:
                conn.close()
            return None

        errs = [e for e in run_threads(5, w) if e is not None]
        self.assertEqual(errs, [])
        self.assertEqual(self.ok("stream.version", s), n - 1)
        self.assertEqual(len(self.ok("stream.get", s)), 1000)
        self.assertEqual(len(self.ok("stream.get", s, {"batchSize": -1})), n)
        self.assertEqual(len(self.ok("stream.get", s, {"batchSize": 10000})), n)
        tail = self.ok("stream.get", s, {"position": 1000})
        self.assertEqual([m[2] for m in tail], list(range(1000, n)))
        # every time value has the trimmed format (trailing zeros are common enough to show up here)
        bad = [m[6] for m in self.ok("stream.get", s, {"batchSize": -1}) if not TIME_RE.match(m[6])]
        self.assertEqual(bad, [])


class TestLastAndVersion(Base):
    def test_last_with_type(self):
        s = stream("last")
        for t in ["A", "B", "A", "B", "A"]:
            self.write(s, {"type": t, "data": {"t": t}})
        last = self.ok("stream.last", s)
        self.assertEqual(len(last), 7)
        self.assertEqual(last[1], "A")
        self.assertEqual(last[2], 4)
        b = self.ok("stream.last", s, {"type": "B"})
        self.assertEqual(b[1], "B")
        self.assertEqual(b[2], 3)
        self.assertEqual(b[4], {"t": "B"})
        self.assertEqual(self.ok("stream.last", s, {"type": "A"})[2], 4)
        self.assertIsNone(self.ok("stream.last", s, {"type": "C"}))
        self.assertIsNone(self.ok("stream.last", s, {"type": "a"}))
        self.assertEqual(self.ok("stream.last", s, {})[2], 4)
        # PG semantics: type "" is a filter that matches nothing
        self.assertIsNone(self.ok("stream.last", s, {"type": ""}))
        # extra args ignored
        self.assertEqual(self.ok("stream.last", s, {"type": "B"}, "x")[2], 3)

    def test_last_matches_get(self):
        s = stream("last")
        for i in range(3):
            self.write(s, {"type": "T", "data": {"i": i}, "metadata": {"m": i}})
        self.assertEqual(self.ok("stream.last", s), self.ok("stream.get", s)[-1])

    def test_version(self):
        s = stream("ver")
        self.assertIsNone(self.ok("stream.version", s))
        for i in range(3):
            self.write(s)
            self.assertEqual(self.ok("stream.version", s), i)
        r = self.rpc("stream.version", s, "extra")
        self.assertEqual(self.assertOk(r), 2)
        self.assertEqual(r.raw, b"2\n")


class TestStreamNames(Base):
    def round_trip(self, name):
        r1 = self.write(name, {"type": "T", "data": {"n": name}})
        r2 = self.write(name, {"type": "U", "data": {"n": name}})
        self.assertEqual(r2["position"], r1["position"] + 1)
        msgs = self.ok("stream.get", name)
        self.assertEqual([m[2] for m in msgs], [r1["position"], r2["position"]])
        self.assertTrue(all(m[4] == {"n": name} for m in msgs))
        self.assertEqual(self.ok("stream.version", name), r2["position"])
        self.assertEqual(self.ok("stream.last", name)[1], "U")
        cat = name.split("-", 1)[0]
        rows = [m for m in self.ok("category.get", cat, {"batchSize": -1}) if m[1] == name]
        if "-" in cat:  # cannot happen; category is before the first '-'
            self.fail()
        self.assertEqual(len(rows), 2, "category.get(%r) rows for %r" % (cat, name))
        return msgs

    def test_special_names(self):
        u = harness.uuid.uuid4().hex[:8]
        names = [
            "流" + u + "-测试 🌍",
            "'; DROP TABLE x;--" + u,
            "x" + u + "-'; DROP TABLE messages;--",
            "a%b_c" + u,
            "pct" + u + "-a%b_c",
            "test" + u + "-stream_123.abc",
            "sp ace" + u + "-with space",
            "many" + u + "-dashes-in-the-name",
            "acct" + u + "-123+retry",
            "back\\slash" + u + "-\"quoted\"",
            "UPPER" + u + "-Case",
        ]
        for n in names:
            with self.subTest(name=n):
                self.round_trip(n)
        # the database is still fine
        self.round_trip(stream("after"))

    def test_like_metacharacters_are_literal(self):
        u = harness.uuid.uuid4().hex[:8]
        self.write("a%b_c" + u + "-1")
        self.write("aXbYc" + u + "-1")
        self.write("aXbYc" + u + "-1")
        self.assertEqual(len(self.ok("stream.get", "a%b_c" + u + "-1")), 1)
        self.assertEqual(self.ok("stream.version", "a%b_c" + u + "-1"), 0)
        self.assertEqual(len(self.ok("category.get", "a%b_c" + u)), 1)

    def test_case_sensitive(self):
        u = harness.uuid.uuid4().hex[:8]
        self.write("Case" + u + "-1")
        self.assertIsNone(self.ok("stream.version", "case" + u + "-1"))
        self.assertEqual(self.ok("stream.get", "CASE" + u + "-1"), [])

    def test_name_length_limits(self):
        ok_name = "n" + "x" * 1023  # 1024 bytes
        self.assertEqual(self.write(ok_name)["position"], 0)
        self.assertEqual(self.ok("stream.version", ok_name), 0)
        mb_ok = "é" * 512  # 1024 bytes
        self.assertEqual(self.write(mb_ok)["position"], 0)
        too_long = ["n" + "x" * 1024, "é" * 513, "y" * 5000]
        for name in too_long:
            with self.subTest(len=len(name.encode())):
                self.assertError(self.rpc("stream.write", name, MSG), 400, "INVALID_REQUEST")
                self.assertError(self.rpc("stream.get", name), 400, "INVALID_REQUEST")
                self.assertError(self.rpc("stream.last", name), 400, "INVALID_REQUEST")
                self.assertError(self.rpc("stream.version", name), 400, "INVALID_REQUEST")

    def test_type_length_limit(self):
        s = stream("tl")
        self.assertEqual(self.write(s, {"type": "t" * 1024, "data": {}})["position"], 0)
        r = self.rpc("stream.write", s, {"type": "t" * 1025, "data": {}})
        self.assertError(r, 400, "INVALID_REQUEST")
        self.assertEqual(self.ok("stream.version", s), 0)


if __name__ == "__main__":
    harness.main()
