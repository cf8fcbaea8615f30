"""
A small Server-Sent Events client for the integration tests and
contrib/bench-sse.py: a raw HTTP/1.1 GET over a socket (so a test controls
exactly what is sent and when it reads), chunked decoding, and event parsing
in a background thread. Python 3 standard library only.
"""

import json
import socket
import threading
import time
import urllib.parse


class SSEClient:
    """GET /subscribe?params. token goes into the Authorization header unless
    query_token is set (then ?token=). read=False reads only the response head,
    for a client that stalls; start_reading() begins consuming later."""

    def __init__(self, host, port, params=None, token=None, query_token=None, headers=None, rcvbuf=None,
                 read=True, timeout=10, path="/subscribe"):
        params = dict(params or {})
        if query_token is not None:
            params["token"] = query_token
        self.raw_query = urllib.parse.urlencode(params)
        self.events = []      # ("comment", text) or ("poke", dict)
        self.pokes = []       # poke payloads (dicts), in arrival order
        self.poke_raw = []    # exact bytes of each poke event
        self.poke_times = []  # time.monotonic() at arrival
        self.comments = []
        self.ended = False    # the final chunk arrived (the server ended the stream cleanly)
        self.closed = False   # the connection closed
        self.cond = threading.Condition()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        lines = ["GET %s%s HTTP/1.1" % (path, "?" + self.raw_query if self.raw_query else ""),
                 "Host: %s:%d" % (host, port), "Accept: text/event-stream"]
        if token is not None:
            lines.append("Authorization: Bearer " + token)
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        self._buf = b""
        self._body = b""
        self._read_head()
        self.body = b""
        self._thread = None
        self._go = threading.Event()  # cleared: the reader stops reading (a stalled client)
        self._go.set()
        if self.status != 200:
            self._read_plain_body()
        elif read:
            self.start_reading()

    # -- response head ------------------------------------------------------
    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        return data

    def _read_head(self):
        while b"\r\n\r\n" not in self._buf:
            self._buf += self._recv()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split(" ", 2)[1])
        self.headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()

    def _read_plain_body(self):
        n = int(self.headers.get("content-length", "0"))
        while len(self._buf) < n:
            self._buf += self._recv()
        self.body = self._buf[:n]
        self.sock.close()
        self.closed = True

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    # -- streaming ------------------------------------------------------------
    def start_reading(self):
        self.sock.settimeout(None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            self._feed(b"")
            while not self.ended:
                self._go.wait()
                data = self.sock.recv(65536)
                if not data:
                    break
                self._feed(data)
        except OSError:
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _feed(self, data):
        """Chunked decoding into _body, then event parsing."""
        self._buf += data
        while True:
            if b"\r\n" not in self._buf:
                break
            size_line, rest = self._buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if len(rest) < size + 2:
                break
            self._buf = rest[size + 2:]
            if size == 0:
                with self.cond:
                    self.ended = True
                    self.cond.notify_all()
                break
            self._body += rest[:size]
        self._parse_events()

    def _parse_events(self):
        now = time.monotonic()
        new = False
        while b"\n\n" in self._body:
            block, self._body = self._body.split(b"\n\n", 1)
            text = block.decode("utf-8")
            kind, data = None, None
            for line in text.split("\n"):
                if line.startswith(":"):
                    c = line[1:].strip()
                    self.comments.append(c)
                    self.events.append(("comment", c))
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
            if kind == "poke" and data is not None:
                p = json.loads(data)
                self.pokes.append(p)
                self.poke_raw.append(block + b"\n\n")
                self.poke_times.append(now)
                self.events.append(("poke", p))
            new = True
        if new:
            with self.cond:
                self.cond.notify_all()

    def pause(self):
        """Stops reading (after the read in progress): the client stalls."""
        self._go.clear()

    def resume(self):
        self._go.set()

    # -- waiting ------------------------------------------------------------------
    def wait(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or (self.closed and not pred()):
                    return pred()
                self.cond.wait(min(left, 0.2))
            return True

    def wait_ready(self, timeout=10):
        return self.wait(lambda: "ready" in self.comments, timeout)

    def wait_pokes(self, n, timeout=10):
        self.wait(lambda: len(self.pokes) >= n, timeout)
        return list(self.pokes)

    def wait_poke(self, pred, timeout=10):
        """Waits until a poke satisfying pred arrived; returns it or None."""
        found = []

        def check():
            for p in self.pokes:
                if pred(p):
                    found.append(p)
                    return True
            return False

        self.wait(check, timeout)
        return found[0] if found else None

    def wait_end(self, timeout=10):
        return self.wait(lambda: self.ended or self.closed, timeout)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)


def subscribe(srv, params, token="default", **kw):
    """SSEClient against a harness.Server; token "default" means srv.token."""
    if token == "default":
        token = srv.token
    return SSEClient(srv.host, srv.port, params, token=token, **kw)
