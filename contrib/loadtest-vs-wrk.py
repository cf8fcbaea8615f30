#!/usr/bin/env python3
"""How much the load tester itself costs: eventodb-loadtest and wrk, in turns, against the same
server (test mode, embedded store) with the same request on the same number of connections.
For each run: requests per second and the client's own CPU per request (user + system, from
wait4). Prints every run, the medians, and the median of the per-round ratios.

    contrib/loadtest-vs-wrk.py [--rounds 5] [--seconds 5] [--connections 10] [--workers 2]

Both clients run one thread (wrk -t1; eventodb-loadtest is one event loop). Standard library only.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("EVENTODB_BIN") or os.path.join(TOP, "src", "eventodb")
LT = os.environ.get("EVENTODB_LOADTEST_BIN") or os.path.join(TOP, "src", "eventodb-loadtest")
TOKEN = "ns_ZGVmYXVsdA_" + os.urandom(32).hex()
# the bodies eventodb-loadtest sends for these mixes with --streams 1 --batch-size 10
BODIES = {"sys.version": '["sys.version"]',
          "stream.get": '["stream.get","test-stream-0",{"batchSize":10}]'}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(argv, env=None):
    """Runs argv; returns (stdout, cpu seconds of the child)."""
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if p.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (argv[0], p.returncode, text))
    return text, ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    tmp = tempfile.mkdtemp(prefix="lt-vs-wrk-")
    srv = subprocess.Popen([BIN, "--test-mode", "--port", str(port), "--token", TOKEN, "--workers",
                            str(a.workers), "--log-level", "warn"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        for i in range(10):
            req = urllib.request.Request(url + "/rpc", data=json.dumps(
                ["stream.write", "test-stream-0", {"type": "Fill", "data": {"i": i}}]).encode(),
                headers={"Authorization": "Bearer " + TOKEN})
            urllib.request.urlopen(req, timeout=10).read()
        env = dict(os.environ, EVENTODB_TOKEN=TOKEN)
        print("server: test mode, %d workers; clients: %d connections, %d s per run, %d rounds, one thread each"
              % (a.workers, a.connections, a.seconds, a.rounds))
        for method, body in BODIES.items():
            script = os.path.join(tmp, "req.lua")
            with open(script, "w") as f:
                f.write('wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Authorization"] = "Bearer %s"\n'
                        'wrk.headers["Content-Type"] = "application/json"\nwrk.path = "/rpc"\n'
                        % (json.dumps(body), TOKEN))
            res = {"wrk": [], "lt": []}
            ratios = []
            for r in range(a.rounds):
                got = {}
                order = ("wrk", "lt") if r % 2 == 0 else ("lt", "wrk")
                for who in order:
                    if who == "wrk":
                        text, cpu = run(["wrk", "-t1", "-c%d" % a.connections, "-d%ds" % a.seconds, "-s", script,
                                         url])
                        reqs = int(text.split(" requests in ")[0].split()[-1])
                        rps = float(text.split("Requests/sec:")[1].split()[0])
                        if "Non-2xx" in text or "Socket errors" in text:
                            sys.exit("wrk saw errors:\n" + text)
                    else:
                        out = os.path.join(tmp, "lt.json")
                        text, cpu = run([LT, "--url", url, "--mix", method, "--connections", str(a.connections),
                                         "--duration", str(a.seconds), "--streams", "1", "--prefill", "0",
                                         "--quiet", "--output", out], env=env)
                        with open(out) as f:
                            j = json.load(f)
                        if j["errors"]:
                            sys.exit("eventodb-loadtest saw errors: %s" % j["first_error"])
                        reqs, rps = j["total_ops"], j["ops_per_sec"]
                    got[who] = (rps, cpu * 1e6 / reqs)
                    res[who].append(got[who])
                ratios.append(got["lt"][0] / got["wrk"][0])
                print("  %-12s round %d: wrk %9.1f req/s %6.2f us CPU/req | eventodb-loadtest %9.1f req/s %6.2f us "
                      "CPU/req" % (method, r + 1, got["wrk"][0], got["wrk"][1], got["lt"][0], got["lt"][1]))
            med = {w: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for w, v in res.items()}
            print("  %-12s median : wrk %9.1f req/s %6.2f us CPU/req | eventodb-loadtest %9.1f req/s %6.2f us "
                  "CPU/req | loadtest/wrk req/s %.2f (median of rounds)"
                  % (method, med["wrk"][0], med["wrk"][1], med["lt"][0], med["lt"][1], statistics.median(ratios)))
    finally:
        srv.terminate()
        srv.wait(20)


if __name__ == "__main__":
    main()
