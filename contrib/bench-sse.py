#!/usr/bin/env python3
"""
Poke latency and memory of live subscriptions (GET /subscribe).

Starts a throwaway PostgreSQL cluster and the server (through t/harness.py),
opens N subscriptions from several client processes (epoll, raw sockets),
and reports:
  - memory per idle subscriber: the workers' RSS growth divided by N;
  - poke latency, from the writer receiving its write acknowledgement to the
    poke arriving at a subscriber (and from sending the write), p50/p99/max:
      fan-out: every subscriber on one category, each write pokes all of them;
      spread:  one stream per subscriber, each write pokes one of them.
Writes are paced (one at a time, --gap ms apart) so every write is measured
on an idle server. The memory figure of the first scenario is the one that
counts: later scenarios reuse what the first one's subscribers left in the
pools and the allocator. The PostgreSQL cluster runs with fsync off (the
test harness's), which does not change when a poke leaves.

  contrib/bench-sse.py [--subscribers 1000] [--workers 2] [--writes 200] [--gap 20]
"""

import argparse
import multiprocessing as mp
import os
import re
import selectors
import socket
import sys
import time
import urllib.parse

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "t"))
os.environ.setdefault("EVENTODB_BIN", os.path.join(TOP, "src", "eventodb"))
import harness  # noqa: E402

GPOS_RE = re.compile(rb'"globalPosition":(\d+)\}\n\n')


def client(host, port, token, paths, ready_q, go, result_q, stop_path):
    """One client process: opens its subscriptions, reports ready, then records
    (global position, arrival time) for every poke until stop_path exists."""
    sel = selectors.DefaultSelector()
    socks = []
    for path in paths:
        s = socket.create_connection((host, port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % (path, token)).encode())
        socks.append(s)
    bufs = {}
    for s in socks:
        b = b""
        while b": ready\n\n" not in b:
            b += s.recv(65536)
        bufs[s] = b.split(b": ready\n\n", 1)[1]
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    ready_q.put(len(socks))
    go.wait()
    samples = []
    stop_at = None
    while True:
        timeout = 0.2 if stop_at is None else max(0, stop_at - time.monotonic())
        events = sel.select(timeout)
        for key, _ in events:
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            now = time.monotonic()
            b = bufs[s] + data
            end = 0
            for m in GPOS_RE.finditer(b):
                samples.append((int(m.group(1)), now))
                end = m.end()
            bufs[s] = b[end:]
        if stop_at is None and os.path.exists(stop_path):
            stop_at = time.monotonic() + 1.0
        if stop_at is not None and time.monotonic() >= stop_at:
            break
    result_q.put(samples)
    for s in socks:
        s.close()


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def worker_rss_kb(srv):
    total = 0
    for pid in srv.worker_pids():
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def worker_cpu_s(srv):
    """User+system CPU seconds of the workers so far."""
    total = 0
    for pid in srv.worker_pids():
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_scenario(srv, name, paths, stream_for, writes, gap, nproc):
    """Opens the subscriptions of paths, writes, returns (latencies ack->poke, send->poke, pokes)."""
    stop_path = os.path.join(harness.module_tmp(), "bench-%s.stop" % name)
    ready_q, result_q = mp.Queue(), mp.Queue()
    go = mp.Event()
    chunks = [paths[i::nproc] for i in range(nproc)]
    rss0 = worker_rss_kb(srv)
    procs = [mp.Process(target=client, args=(srv.host, srv.port, srv.token, c, ready_q, go, result_q, stop_path))
             for c in chunks if c]
    for p in procs:
        p.start()
    opened = sum(ready_q.get(timeout=120) for _ in procs)
    time.sleep(1.0)  # catch-ups done, pools settled
    rss1 = worker_rss_kb(srv)
    go.set()
    cpu0 = worker_cpu_s(srv)
    conn = srv.connection()
    sent = {}
    for i in range(writes):
        t_send = time.monotonic()
        r = srv.rpc("stream.write", stream_for(i), {"type": "Bench", "data": {"i": i}}, conn=conn)
        t_ack = time.monotonic()
        if r.status != 200:
            raise RuntimeError("write failed: %r" % (r,))
        sent[r.body["globalPosition"]] = (t_send, t_ack)
        time.sleep(gap / 1000.0)
    conn.close()
    cpu = worker_cpu_s(srv) - cpu0
    open(stop_path, "w").close()
    samples = []
    for _ in procs:
        samples.extend(result_q.get(timeout=60))
    for p in procs:
        p.join(10)
    ack, snd = [], []
    for g, t in samples:
        if g in sent:
            snd.append((t - sent[g][0]) * 1000.0)
            ack.append((t - sent[g][1]) * 1000.0)
    return opened, rss0, rss1, ack, snd, cpu


def report(name, opened, rss0, rss1, ack, snd, cpu, writes, expect):
    print("%s: %d subscribers, %d writes, %d of %d pokes received" % (name, opened, writes, len(ack), expect))
    print("  memory per idle subscriber: %.2f KiB (workers' RSS %+d KiB)" % ((rss1 - rss0) / max(opened, 1),
                                                                              rss1 - rss0))
    print("  write ack -> poke: p50 %.3f ms  p99 %.3f ms  max %.3f ms" % (percentile(ack, 50), percentile(ack, 99),
                                                                          max(ack) if ack else float("nan")))
    print("  write sent -> poke: p50 %.3f ms  p99 %.3f ms" % (percentile(snd, 50), percentile(snd, 99)))
    print("  workers' CPU: %.1f us per write, %.2f us per poke" % (cpu * 1e6 / writes, cpu * 1e6 / max(len(ack), 1)))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--writes", type=int, default=200, help="fan-out writes (spread uses 5x as many)")
    ap.add_argument("--gap", type=float, default=20, help="ms between writes")
    ap.add_argument("--clients", type=int, default=min(8, os.cpu_count() or 2), help="client processes")
    ap.add_argument("--scenario", choices=["fanout", "spread", "both"], default="both")
    a = ap.parse_args()
    srv = harness.Server(name="bench-sse", workers=a.workers,
                         extra=["--log-level", "warn", "--max-subscriptions", str(a.subscribers * 2)]).start()
    try:
        print("eventodb %s (%s), %d workers, %d client processes, %d CPUs" % (
            harness.BIN, srv.call("sys.version"), a.workers, a.clients, os.cpu_count()))
        for i in range(50):  # warm the workers (pools, prepared statements)
            srv.write("warm-%d" % (i % 5))
        if a.scenario in ("fanout", "both"):
            cat = harness.unique("fan")
            paths = ["/subscribe?" + urllib.parse.urlencode({"category": cat})] * a.subscribers
            r = run_scenario(srv, "fanout", paths, lambda i: "%s-%d" % (cat, i % 10), a.writes, a.gap, a.clients)
            report("fan-out (all on one category)", *r, a.writes, a.writes * r[0])
        if a.scenario in ("spread", "both"):
            base = harness.unique("spr")
            n = a.subscribers
            paths = ["/subscribe?" + urllib.parse.urlencode({"stream": "%s%d-1" % (base, i)}) for i in range(n)]
            writes = a.writes * 5
            r = run_scenario(srv, "spread", paths, lambda i: "%s%d-1" % (base, i % n), writes, a.gap / 4, a.clients)
            report("spread (one stream each)", *r, writes, writes)
    finally:
        srv.stop()
        harness.cleanup()


if __name__ == "__main__":
    main()
