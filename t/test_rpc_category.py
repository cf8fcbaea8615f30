#!/usr/bin/env python3
"""category.get (SPEC 4.5, 5.2 hash table, 10.8-10.11, D6 consumer-group rule, D14, D15)."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique, group_member  # noqa: E402

SRV = None
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,5}[1-9])?Z$")


def setUpModule():
    global SRV
    SRV = harness.Server(name="category").start()


def tearDownModule():
    harness.cleanup()


class Base(harness.TestCase):
    def rpc(self, method, *args, **kw):
        return SRV.rpc(method, *args, **kw)

    def ok(self, method, *args, **kw):
        r = SRV.rpc(method, *args, **kw)
        self.assertEqual(r.status, 200, "%s %r -> %r" % (method, args, r))
        return r.body

    def write(self, stream, type_="T", data=None, metadata=None, token=harness.DEFAULT):
        msg = {"type": type_, "data": data if data is not None else {}}
        if metadata is not None:
            msg["metadata"] = metadata
        return self.ok("stream.write", stream, msg, token=token)

    def cat(self, category, opts=None, token=harness.DEFAULT):
        args = [category] + ([opts] if opts is not None else [])
        return self.ok("category.get", *args, token=token)

    def streams_of(self, rows):
        return [r[1] for r in rows]


class TestValidation(Base):
    def test_messages(self):
        c = unique("cv")
        cg = "options.consumerGroup"
        cases = [
            ((), "category.get requires at least 1 argument: categoryName"),
            ((5,), "categoryName must be a string"),
            ((None,), "categoryName must be a string"),
            (([],), "categoryName must be a string"),
            (({},), "categoryName must be a string"),
            ((c, None), "options must be an object"),
            ((c, []), "options must be an object"),
            ((c, "x"), "options must be an object"),
            ((c, {"position": "1"}), "options.position must be a number"),
            ((c, {"globalPosition": "1"}), "options.globalPosition must be a number"),
            ((c, {"batchSize": "5"}), "options.batchSize must be a number"),
            ((c, {"batchSize": 10001}), "options.batchSize must be <= 10000 or -1 for unlimited"),
            ((c, {"batchSize": 1000000}), "~batchSize"),
            ((c, {"batchSize": -2}), "~batchSize"),
            ((c, {"batchSize": 1e300}), None),
            ((c, {"position": 1e300}), None),
            ((c, {"globalPosition": -1e20}), None),
            ((c, {"correlation": 5}), "options.correlation must be a string"),
            ((c, {"correlation": None}), "options.correlation must be a string"),
            ((c, {"consumerGroup": "x"}), cg + " must be an object"),
            ((c, {"consumerGroup": []}), cg + " must be an object"),
            ((c, {"consumerGroup": 1}), cg + " must be an object"),
            ((c, {"consumerGroup": None}), cg + " must be an object"),
            ((c, {"consumerGroup": {"member": 0}}), cg + " requires both member and size"),
            ((c, {"consumerGroup": {"size": 2}}), cg + " requires both member and size"),
            ((c, {"consumerGroup": {"member": -1, "size": 2}}), cg + ".member must be non-negative"),
            ((c, {"consumerGroup": {"member": -1, "size": 0}}), cg + ".member must be non-negative"),
            ((c, {"consumerGroup": {"member": 0, "size": 0}}), cg + ".size must be positive"),
            ((c, {"consumerGroup": {"member": 0, "size": -3}}), cg + ".size must be positive"),
            ((c, {"consumerGroup": {"member": 2, "size": 2}}), cg + ".member must be < size"),
            ((c, {"consumerGroup": {"member": 5, "size": 4}}), cg + ".member must be < size"),
            ((c, {"consumerGroup": {"member": "0", "size": 2}}), cg + ".member must be a number"),
            ((c, {"consumerGroup": {"member": 0, "size": "2"}}), cg + ".size must be a number"),
            ((c, {"consumerGroup": {"member": 0, "size": 1e300}}), None),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.rpc("category.get", *args)
                if message is None:
                    self.assertError(r, 400, "INVALID_REQUEST")
                elif message.startswith("~"):
                    self.assertError(r, 400, "INVALID_REQUEST", msg_contains=message[1:])
                else:
                    self.assertError(r, 400, "INVALID_REQUEST", message)

    def test_category_too_long(self):
        self.assertEqual(self.cat("c" * 1024), [])
        self.assertError(self.rpc("category.get", "c" * 1025), 400, "INVALID_REQUEST")
        self.assertError(self.rpc("category.get", "é" * 513), 400, "INVALID_REQUEST")

    def test_empty_consumer_group_is_no_filter(self):
        c = unique("ce")
        for i in range(3):
            self.write("%s-%d" % (c, i))
        self.write(c)
        self.assertEqual(len(self.cat(c, {"consumerGroup": {}})), 4)
        self.assertEqual(len(self.cat(c)), 4)


class TestBasics(Base):
    @classmethod
    def setUpClass(cls):
        cls.c = unique("cb")
        cls.other = unique("co")
        cls.writes = []  # (stream, type, data, metadata, result)
        plan = [
            (cls.c + "-1", "A", {"n": 0}, None),
            (cls.other + "-1", "X", {"n": 99}, None),
            (cls.c + "-2", "B", {"n": 1}, {"m": 1}),
            (cls.c + "-1", "C", {"n": 2}, None),
            (cls.c + "-with-many-dashes", "D", {"n": 3}, None),
            (cls.c + "-3+retry", "E", {"n": 4}, None),
            (cls.c, "F", {"n": 5}, None),
            (cls.c + "x-1", "G", {"n": 6}, None),  # different category sharing a prefix
            (cls.c.upper() + "-1", "H", {"n": 7}, None),  # different case
        ]
        for stream, t, d, m in plan:
            msg = {"type": t, "data": d}
            if m is not None:
                msg["metadata"] = m
            cls.writes.append((stream, t, d, m, SRV.call("stream.write", stream, msg)))
        cls.mine = [w for w in cls.writes if w[0].split("-", 1)[0] == cls.c]

    def test_rows_and_order(self):
        t0 = time.time()
        rows = self.cat(self.c)
        self.assertEqual(len(rows), len(self.mine))
        for row, (stream, t, d, m, res) in zip(rows, self.mine):
            self.assertEqual(len(row), 8, row)
            mid, sname, typ, pos, gpos, data, meta, tm = row
            self.assertTrue(UUID_RE.match(mid), mid)
            self.assertEqual(sname, stream)
            self.assertEqual(typ, t)
            self.assertEqual(pos, res["position"])
            self.assertEqual(gpos, res["globalPosition"])
            self.assertEqual(data, d)
            self.assertEqual(meta, m)
            self.assertTrue(TIME_RE.match(tm), tm)
            self.assertLess(abs(harness.parse_rfc3339(tm) - t0), 60)
        gps = [r[4] for r in rows]
        self.assertEqual(gps, sorted(gps))
        self.assertEqual(len(set(gps)), len(gps))
        # ids agree with stream.get
        sg = SRV.call("stream.get", self.c + "-1")
        self.assertEqual([m[0] for m in sg], [r[0] for r in rows if r[1] == self.c + "-1"])

    def test_category_is_before_first_dash(self):
        names = self.streams_of(self.cat(self.c))
        self.assertIn(self.c + "-with-many-dashes", names)
        self.assertIn(self.c + "-3+retry", names)
        self.assertIn(self.c, names)  # a bare stream is in its own category
        self.assertNotIn(self.c + "x-1", names)
        self.assertNotIn(self.c.upper() + "-1", names)
        self.assertEqual(self.streams_of(self.cat(self.c + "x")), [self.c + "x-1"])
        self.assertEqual(self.streams_of(self.cat(self.c.upper())), [self.c.upper() + "-1"])

    def test_name_with_dash_matches_nothing(self):
        self.assertEqual(self.cat(self.c + "-1"), [])
        self.assertEqual(self.cat(self.c + "-with"), [])
        self.assertEqual(self.cat(self.c + "-"), [])

    def test_unknown_category(self):
        r = self.rpc("category.get", unique("nothing"))
        self.assertEqual(self.assertOk(r), [])
        self.assertEqual(r.raw, b"[]\n")

    def test_position_and_global_position(self):
        gps = [w[4]["globalPosition"] for w in self.mine]
        all_rows = self.cat(self.c)
        self.assertEqual(self.cat(self.c, {}), all_rows)
        self.assertEqual(self.cat(self.c, {"position": 1}), all_rows)
        self.assertEqual(self.cat(self.c, {"position": 0}), all_rows)
        self.assertEqual(self.cat(self.c, {"position": -5}), all_rows)
        for k in ("position", "globalPosition"):
            with self.subTest(option=k):
                got = [r[4] for r in self.cat(self.c, {k: gps[2]})]
                self.assertEqual(got, gps[2:])
                got = [r[4] for r in self.cat(self.c, {k: gps[2] + 0.9})]
                self.assertEqual(got, gps[2:])
                self.assertEqual(self.cat(self.c, {k: gps[-1] + 1}), [])
        # globalPosition overrides position
        got = [r[4] for r in self.cat(self.c, {"position": 1, "globalPosition": gps[3]})]
        self.assertEqual(got, gps[3:])
        got = [r[4] for r in self.cat(self.c, {"position": gps[-1] + 100, "globalPosition": 1})]
        self.assertEqual(got, gps)

    def test_batch_size(self):
        gps = [w[4]["globalPosition"] for w in self.mine]
        self.assertEqual([r[4] for r in self.cat(self.c, {"batchSize": 2})], gps[:2])
        self.assertEqual([r[4] for r in self.cat(self.c, {"batchSize": 1.9})], gps[:1])
        self.assertEqual([r[4] for r in self.cat(self.c, {"batchSize": -1})], gps)
        self.assertEqual([r[4] for r in self.cat(self.c, {"batchSize": 10000})], gps)
        self.assertEqual(self.cat(self.c, {"batchSize": 0}), [])
        self.assertEqual([r[4] for r in self.cat(self.c, {"batchSize": 2, "position": gps[1]})], gps[1:3])
        # paging by last globalPosition + 1 yields everything exactly once
        seen, pos = [], 1
        for _ in range(20):
            page = self.cat(self.c, {"position": pos, "batchSize": 2})
            if not page:
                break
            self.assertLessEqual(len(page), 2)
            seen += [r[4] for r in page]
            pos = page[-1][4] + 1
        self.assertEqual(seen, gps)


class TestCorrelation(Base):
    def test_correlation(self):
        c, wf = unique("cc"), unique("wf")
        spec = [
            ("m1", {"correlationStreamName": wf + "-123"}),
            ("m2", {"correlationStreamName": wf + "-456"}),
            ("m3", {"correlationStreamName": "process-789"}),
            ("m4", None),
            ("m5", {"other": "x"}),
            ("m6", {"correlationStreamName": wf}),  # bare category: PG semantics match it
            ("m7", {"correlationStreamName": wf + "x-1"}),
            ("m8", {"correlationStreamName": wf.upper() + "-1"}),
            ("m9", {"correlationStreamName": wf + "-789+retry", "x": [1]}),
        ]
        for i, (t, meta) in enumerate(spec):
            self.write("%s-%d" % (c, i), t, {"i": i}, meta)
        got = [r[2] for r in self.cat(c, {"correlation": wf})]
        self.assertEqual(got, ["m1", "m2", "m6", "m9"])
        self.assertEqual([r[2] for r in self.cat(c, {"correlation": "process"})], ["m3"])
        self.assertEqual(self.cat(c, {"correlation": unique("none")}), [])
        self.assertEqual(len(self.cat(c)), len(spec))
        # correlation with paging and consumer group
        rows = self.cat(c, {"correlation": wf, "batchSize": 2})
        self.assertEqual([r[2] for r in rows], ["m1", "m2"])
        rows = self.cat(c, {"correlation": wf, "position": rows[-1][4] + 1})
        self.assertEqual([r[2] for r in rows], ["m6", "m9"])
        for size in (2, 3):
            union = []
            for member in range(size):
                rows = self.cat(c, {"correlation": wf, "consumerGroup": {"member": member, "size": size}})
                for r in rows:
                    self.assertEqual(group_member(r[1], size), member, r[1])
                union += [r[2] for r in rows]
            self.assertEqual(sorted(union), ["m1", "m2", "m6", "m9"])


class TestConsumerGroups(Base):
    @classmethod
    def setUpClass(cls):
        cls.c = unique("cg")
        cls.streams = ["%s-%d" % (cls.c, i) for i in range(1, 25)]
        cls.streams += [cls.c + "-123", cls.c + "-123+retry", cls.c + "-123+other", cls.c + "-abc-def",
                        cls.c + "-x+y+z", cls.c + "-" + "é"]
        for s in cls.streams:
            SRV.call("stream.write", s, {"type": "T", "data": {"s": s}})
        SRV.call("stream.write", cls.c, {"type": "T", "data": {}})  # no '-': no member
        SRV.call("stream.write", cls.c + "-1", {"type": "T", "data": {}})  # second message

    def members(self, size, **extra):
        out = []
        for m in range(size):
            opts = {"consumerGroup": {"member": m, "size": size}}
            opts.update(extra)
            out.append(self.cat(self.c, opts))
        return out

    def test_hash_vectors(self):
        # SPEC 5.2 table
        self.assertEqual(harness.hash_64("123"), 2318431741638412123)
        self.assertEqual(harness.hash_64("account"), -2132379389342958165)
        self.assertEqual(group_member("x-123", 2), 1)
        self.assertEqual(group_member("x-123", 4), 3)
        self.assertEqual(group_member("x-123+retry", 4), 3)

    def test_partition(self):
        with_dash = set(self.streams)
        for size in (1, 2, 3, 4, 7):
            with self.subTest(size=size):
                parts = self.members(size)
                names = [set(self.streams_of(p)) for p in parts]
                for i in range(size):
                    for j in range(i + 1, size):
                        self.assertEqual(names[i] & names[j], set(), "members %d and %d overlap" % (i, j))
                union = set().union(*names)
                self.assertEqual(union, with_dash)
                self.assertNotIn(self.c, union)
                total = sum(len(p) for p in parts)
                self.assertEqual(total, len(self.streams) + 1)  # -1 has two messages
                for m, p in enumerate(parts):
                    gps = [r[4] for r in p]
                    self.assertEqual(gps, sorted(gps))
                    for r in p:
                        self.assertEqual(group_member(r[1], size), m,
                                         "stream %r in member %d of %d" % (r[1], m, size))

    def test_table_values(self):
        for size, expect in ((2, {"123": 1, "1": 0, "2": 1, "3": 0, "4": 1}),
                             (4, {"123": 3, "1": 2, "2": 1, "3": 2, "4": 3})):
            parts = self.members(size)
            for cid, member in expect.items():
                with self.subTest(size=size, id=cid):
                    self.assertIn(self.c + "-" + cid, self.streams_of(parts[member]))
        # compound ids follow the cardinal id
        for size in (2, 4):
            parts = self.members(size)
            m = [i for i, p in enumerate(parts) if self.c + "-123" in self.streams_of(p)]
            self.assertEqual(m, [1 if size == 2 else 3])
            for s in (self.c + "-123+retry", self.c + "-123+other"):
                self.assertIn(s, self.streams_of(parts[m[0]]))

    def test_group_with_position_and_batch(self):
        parts = self.members(2)
        p0 = parts[0]
        self.assertGreaterEqual(len(p0), 3)
        first2 = self.cat(self.c, {"consumerGroup": {"member": 0, "size": 2}, "batchSize": 2})
        self.assertEqual(first2, p0[:2])
        rest = self.cat(self.c, {"consumerGroup": {"member": 0, "size": 2}, "position": p0[1][4] + 1})
        self.assertEqual(rest, p0[2:])
        # truncation of the numbers
        self.assertEqual(self.cat(self.c, {"consumerGroup": {"member": 0.7, "size": 2.2}}), p0)


class TestAllMessages(Base):
    def test_empty_category_is_everything(self):
        ns, tok = SRV.create_namespace()
        plan = [("a-1", "A"), ("b-1", "B"), ("a", "C"), ("c-2+x", "D"), ("a-1", "E")]
        gps = []
        for s, t in plan:
            gps.append(self.write(s, t, {"t": t}, token=tok)["globalPosition"])
        self.assertEqual(gps, list(range(1, len(plan) + 1)))  # fresh namespace sequence starts at 1
        rows = self.cat("", token=tok)
        self.assertEqual([(r[1], r[2], r[4]) for r in rows], [(s, t, g) for (s, t), g in zip(plan, gps)])
        self.assertEqual([r[2] for r in self.cat("", {"position": 3}, token=tok)], ["C", "D", "E"])
        self.assertEqual([r[2] for r in self.cat("", {"batchSize": 2}, token=tok)], ["A", "B"])
        rows = self.cat("", {"consumerGroup": {"member": 0, "size": 1}}, token=tok)
        self.assertEqual([r[2] for r in rows], ["A", "B", "D", "E"])  # bare "a" has no member
        self.assertEqual([r[2] for r in self.cat("a", token=tok)], ["A", "C", "E"])
        # and other namespaces are not included
        self.assertEqual(len(self.cat("", {"batchSize": -1}, token=tok)), len(plan))


if __name__ == "__main__":
    harness.main()
