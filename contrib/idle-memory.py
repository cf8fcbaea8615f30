#!/usr/bin/env python3
"""
Memory of idle connections: starts BINARY in test mode (one worker, the
embedded store, a fresh data directory), opens N connections that each either
made one keep-alive request (sys.version) or started a subscription, keeps
them open, and prints the worker's RSS growth divided by N.

  contrib/idle-memory.py BINARY PORT N keepalive|subscribe

RSS counts what the worker's allocator took from the kernel for them (not
the kernel's socket buffers). Runs repeat to 0.01 KiB on a quiet machine.
"""

import os
import resource
import shutil
import socket
import subprocess
import sys
import time


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the server closed a connection")
        buf += chunk
    return buf.split(b"\r\n\r\n", 1)


def request(s, body):
    s.sendall(("POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    head, rest = read_head(s)
    n = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(rest) < n:
        rest += s.recv(65536)


def main():
    if len(sys.argv) != 5 or sys.argv[4] not in ("keepalive", "subscribe"):
        sys.exit("usage: idle-memory.py BINARY PORT N keepalive|subscribe")
    binary, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))
    data = "/tmp/eventodb-idle-memory-%d" % port
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    srv = subprocess.Popen([binary, "--test-mode", "--port", str(port), "--workers", "1", "--data-dir", data,
                            "--log-level", "warn"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(0.5)
        with open("/proc/%d/task/%d/children" % (srv.pid, srv.pid)) as f:
            worker = int(f.read().split()[0])

        def rss():
            with open("/proc/%d/smaps_rollup" % worker) as f:
                return [int(l.split()[1]) for l in f if l.startswith("Rss:")][0]

        first = socket.create_connection(("127.0.0.1", port))
        request(first, '["stream.write","idle-1",{"type":"Idle","data":{}}]')
        time.sleep(1)
        before = rss()
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            if mode == "keepalive":
                request(s, '["sys.version"]')
            else:
                s.sendall(b"GET /subscribe?stream=idle-1&position=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                read_head(s)
            socks.append(s)
        time.sleep(2)
        after = rss()
        print("%s %s: worker RSS %d -> %d KiB, %.2f KiB per connection (N=%d)"
              % (binary, mode, before, after, (after - before) / n, n))
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
