"""
Shared helpers for the EventoDB integration tests.

Every test file runs the real binary ($EVENTODB_BIN, default ./src/eventodb)
over real HTTP against a throwaway PostgreSQL cluster that this module
creates (one cluster per test file, so files can run in parallel) and removes
at exit, even on failure.

Python 3 standard library only.
"""

import atexit
import base64
import glob
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.environ.get("EVENTODB_BIN") or os.path.join(REPO, "src", "eventodb")

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# ---------------------------------------------------------------------------
# small utilities
# ---------------------------------------------------------------------------


def b64url(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return base64.urlsafe_b64encode(s).rstrip(b"=").decode("ascii")


def make_token(ns, hexpart=None):
    """A token for namespace ns: ns_<base64url(ns)>_<64 lowercase hex>."""
    return "ns_" + b64url(ns) + "_" + (hexpart if hexpart is not None else secrets.token_hex(32))


def unique(prefix="s"):
    """A unique name without '-' (usable as a category)."""
    return prefix + uuid.uuid4().hex[:16]


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def hash_64(value):
    """Message DB hash_64: first 8 bytes of md5, big-endian, signed."""
    return int.from_bytes(hashlib.md5(value.encode("utf-8")).digest()[:8], "big", signed=True)


def cardinal_id(stream):
    if "-" not in stream:
        return None
    return stream.split("-", 1)[1].split("+", 1)[0]


def category_of(stream):
    return stream.split("-", 1)[0]


def group_member(stream, size):
    """Consumer-group member of stream for a group of size, None if no member."""
    cid = cardinal_id(stream)
    if cid is None:
        return None
    return abs(hash_64(cid)) % size


RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")


def parse_rfc3339(s):
    """Seconds since the epoch (float) of a YYYY-MM-DDTHH:MM:SS[.f]Z string."""
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z$", s)
    if not m:
        raise ValueError("not an RFC 3339 UTC time: %r" % (s,))
    import calendar

    secs = calendar.timegm(tuple(int(m.group(i)) for i in range(1, 7)) + (0, 0, 0))
    frac = float("0" + m.group(7)) if m.group(7) else 0.0
    return secs + frac


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    # state is the field after the ")" of comm
    state = st.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def socket_owner(sock, server_port, pids):
    """The pid (of pids) that holds the server side of the connected TCP socket sock (a client
    socket to 127.0.0.1:server_port): found through /proc/net/tcp and /proc/PID/fd."""
    lport = sock.getsockname()[1]
    want_local = "0100007F:%04X" % server_port
    want_remote = "0100007F:%04X" % lport
    inode = None
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want_local and parts[2] == want_remote:
                inode = parts[9]
                break
    if inode is None:
        return None
    target = "socket:[%s]" % inode
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


def child_pids(pid):
    """Direct children of pid (via /proc/<pid>/task/*/children, else pgrep -P)."""
    kids = set()
    found = False
    for path in glob.glob("/proc/%d/task/*/children" % pid):
        try:
            with open(path) as f:
                kids.update(int(x) for x in f.read().split())
            found = True
        except OSError:
            pass
    if not found:
        try:
            out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
            kids.update(int(x) for x in out.split())
        except OSError:
            pass
    return sorted(k for k in kids if pid_alive(k))


# ---------------------------------------------------------------------------
# cleanup registry (servers first, then clusters, then temp dirs)
# ---------------------------------------------------------------------------

_SERVERS = []  # every Server ever created in this process
_CLUSTERS = []
_TMPDIRS = []
_cleanup_lock = threading.Lock()
_cleaned = False


def cleanup():
    """Stop every server and cluster and remove temp dirs. Idempotent."""
    global _cleaned
    with _cleanup_lock:
        for s in list(_SERVERS):
            try:
                s.stop()
            except Exception as e:  # pragma: no cover
                sys.stderr.write("harness: stopping server failed: %r\n" % (e,))
        for c in list(_CLUSTERS):
            try:
                c.destroy()
            except Exception as e:  # pragma: no cover
                sys.stderr.write("harness: removing cluster failed: %r\n" % (e,))
        for d in list(_TMPDIRS):
            shutil.rmtree(d, ignore_errors=True)
        _TMPDIRS.clear()
        _cleaned = True


atexit.register(cleanup)


def _on_term(signum, frame):
    # turn SIGTERM/SIGHUP into a normal exit so atexit cleanup runs
    sys.exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        signal.signal(_sig, _on_term)
    except (ValueError, OSError):  # not the main thread
        pass

_module_tmp = None


# Sanitizer builds (./configure --enable-sanitizers): every process a test file starts (servers,
# their workers, the CLI) writes its ASan/UBSan/LSan reports to files in a directory of its own
# (log_path), and main() fails the file when any report is there, so a report in a worker that the
# supervisor quietly respawns is not lost.
SANITIZED = os.environ.get("EVENTODB_SANITIZED") == "1"
_SAN_DIR = None


def _sanitizer_setup():
    global _SAN_DIR
    if not SANITIZED or _SAN_DIR is not None:
        return
    _SAN_DIR = tempfile.mkdtemp(prefix="eventodb-san-")
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        opts = [o for o in os.environ.get(var, "").split(":") if o and not o.startswith("log_path=")]
        os.environ[var] = ":".join(opts + ["log_path=" + os.path.join(_SAN_DIR, "report")])


def sanitizer_reports():
    """The text of every sanitizer report written so far, or ''."""
    if _SAN_DIR is None:
        return ""
    out = []
    for path in sorted(glob.glob(os.path.join(_SAN_DIR, "*"))):
        with open(path, errors="replace") as f:
            out.append("==== %s\n%s" % (os.path.basename(path), f.read()))
    return "\n".join(out)


_sanitizer_setup()

# ASan keeps freed memory in a quarantine (256 MiB by default) before reusing it, and pads every
# allocation with redzones, so a process's RSS under ASan says little about what it holds. Tests that
# bound RSS give their servers a small quarantine (rss_env) and scale their bounds (rss_bound_kb).
ASAN_QUARANTINE_MB = 16


def rss_env():
    """Server env for a test that bounds RSS: a small ASan quarantine in sanitizer builds."""
    if not SANITIZED:
        return None
    return {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=%d" % ASAN_QUARANTINE_MB}


def rss_bound_kb(kb):
    """An RSS growth bound of kb, scaled under ASan: twice as much for redzones and shadow memory,
    plus a full quarantine."""
    return kb if not SANITIZED else 2 * kb + ASAN_QUARANTINE_MB * 1024


# Which store the shared suite runs on: "postgres" (default) or "sqlite"
# (t/sqlite/*.py set it before running the same test files).
STORE = os.environ.get("EVENTODB_TEST_STORE", "postgres")


def module_tmp():
    global _module_tmp
    if _module_tmp is None:
        _module_tmp = tempfile.mkdtemp(prefix="eventodb-t-")
        _TMPDIRS.append(_module_tmp)
    return _module_tmp


# ---------------------------------------------------------------------------
# PostgreSQL cluster fixture
# ---------------------------------------------------------------------------


def pg_bindir():
    d = os.environ.get("PG_BINDIR")
    if d and os.path.exists(os.path.join(d, "initdb")):
        return d

    def ver(p):
        m = re.search(r"/postgresql/([0-9.]+)/", p)
        return [int(x) for x in m.group(1).split(".")] if m else [0]

    cands = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(p, "initdb"))]
    if cands:
        return sorted(cands, key=ver)[-1]
    w = shutil.which("initdb")
    if w:
        return os.path.dirname(w)
    raise RuntimeError("PostgreSQL initdb not found: set PG_BINDIR")


class PgCluster:
    """A throwaway PostgreSQL cluster with database `eventodb`."""

    def __init__(self, dbname="eventodb", settings=None):
        """settings: extra server settings ({"max_connections": 20}), over the defaults below."""
        self.bindir = pg_bindir()
        self.settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                         "max_connections": "200"}
        self.settings.update({k: str(v) for k, v in (settings or {}).items()})
        self.dir = tempfile.mkdtemp(prefix="eventodb-pg-")
        self.datadir = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = None
        self.dbname = dbname
        self.running = False
        self.destroyed = False
        _CLUSTERS.append(self)
        if IS_ROOT:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)
        self._initdb()
        self.start()
        self.psql("CREATE DATABASE %s" % dbname, db="postgres")

    # -- commands ----------------------------------------------------------
    def _cmd(self, argv):
        if IS_ROOT:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _run(self, argv, check=True, timeout=120, input=None):
        env = dict(os.environ)
        env.pop("PGDATA", None)
        env["LC_MESSAGES"] = "C"
        p = subprocess.run(self._cmd(argv), cwd=self.dir, env=env, capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
        return p

    def _initdb(self):
        base = [os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "-N"]
        p = self._run(base + ["--locale=C.UTF-8"], check=False)
        if p.returncode != 0:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self._run(base + ["--locale=C"])

    def start(self):
        last = None
        for _ in range(5):
            port = self.port or free_port()
            opts = "-c listen_addresses=127.0.0.1 -p %d -k %s" % (port, self.dir)
            opts += "".join(" -c %s=%s" % kv for kv in sorted(self.settings.items()))
            p = self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-l", self.logfile,
                           "-w", "-t", "60", "-o", opts, "start"], check=False)
            if p.returncode == 0:
                self.port = port
                self.running = True
                return
            last = p
            if self.port:  # restart on a fixed port: retry the same port
                time.sleep(0.5)
        raise RuntimeError("pg_ctl start failed:\n%s\n%s\n%s" % (last.stdout, last.stderr, self.log_tail()))

    def stop(self, mode="immediate"):
        if not self.running:
            return
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "-t", "60", "stop"],
                  check=False)
        self.running = False

    def restart(self):
        self.stop("fast")
        self.start()

    def destroy(self):
        if self.destroyed:
            return
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.destroyed = True

    def log_tail(self, n=8000):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    # -- access ------------------------------------------------------------
    def url(self, db=None):
        return "postgres://postgres@127.0.0.1:%d/%s" % (self.port, db or self.dbname)

    def _psql_argv(self, db):
        return [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db or self.dbname]

    def psql(self, sql, db=None, check=True):
        """Runs sql, returns stdout (unaligned, tuples only) stripped."""
        p = self._run(self._psql_argv(db), check=False, input=sql if sql.endswith("\n") else sql + "\n")
        if check and p.returncode != 0:
            raise RuntimeError("psql failed (%d): %s\n%s" % (p.returncode, sql, p.stderr))
        return p.stdout.strip()

    def psql_session(self, db=None):
        """An interactive psql (stdin open, text mode). Caller must close it."""
        return subprocess.Popen(self._cmd(self._psql_argv(db)), cwd=self.dir, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    @staticmethod
    def close_session(sess):
        """Ends a psql_session: EOF on stdin first (so psql and runuser exit normally), kill if needed."""
        if sess is None:
            return
        try:
            sess.stdin.close()
        except OSError:
            pass
        try:
            sess.wait(5)
        except subprocess.TimeoutExpired:
            sess.kill()
            sess.wait(5)

    def create_database(self, name):
        self.psql("CREATE DATABASE %s" % name, db="postgres")
        return self.url(name)


_cluster = None


def pg_cluster():
    """The module's PostgreSQL cluster (created on first use)."""
    global _cluster
    if _cluster is None or _cluster.destroyed:
        _cluster = PgCluster()
    return _cluster


# ---------------------------------------------------------------------------
# HTTP client helpers
# ---------------------------------------------------------------------------

DEFAULT = object()


class Resp(tuple):
    """(status, headers, body) with .raw (bytes) and .text."""

    def __new__(cls, status, headers, body, raw):
        t = tuple.__new__(cls, (status, headers, body))
        t.status = status
        t.headers = headers
        t.body = body
        t.raw = raw
        return t

    @property
    def text(self):
        return self.raw.decode("utf-8", "replace")

    @property
    def is_json(self):
        try:
            json.loads(self.raw.decode("utf-8"))
            return True
        except Exception:
            return False

    def error(self):
        """The error object of an error body, {} otherwise."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"]
        return {}

    def __repr__(self):
        t = self.text
        if len(t) > 600:
            t = t[:600] + "...(%d bytes)" % len(self.raw)
        return "<HTTP %s %s>" % (self.status, t)


def decode_body(raw):
    try:
        return json.loads(raw.decode("utf-8"))
    except Exception:
        return raw.decode("utf-8", "replace")


def http_request(host, port, method, path, body=None, headers=None, timeout=30, conn=None):
    """One request; a fresh connection unless conn is given. Returns Resp."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        raw = r.read()
        return Resp(r.status, r.headers, decode_body(raw), raw)
    finally:
        if own:
            conn.close()


def read_http_response(f):
    """Reads one HTTP/1.1 response from a binary file object: (status, headers dict lowercased, body)."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    parts = line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, v = line.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    elif "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    return status, headers, body


# ---------------------------------------------------------------------------
# Server fixture
# ---------------------------------------------------------------------------


_ADMIN_TOKENS = {}


def admin_token(db_url):
    """The generated admin (default namespace) token used for a database, one per database URL, so
    every server started on the same database gets the same token (D7 refuses another one)."""
    if db_url not in _ADMIN_TOKENS:
        _ADMIN_TOKENS[db_url] = make_token("default")
    return _ADMIN_TOKENS[db_url]


class ServerStartError(Exception):
    pass


class Server:
    """The real eventodb binary on a free port.

    token=None (default) generates an admin token; with_token=False starts it
    without --token (D7). extra: additional argv.
    """

    def __init__(self, db_url=None, token=None, with_token=True, workers=2, extra=(), env=None,
                 name="server", preexec=None, port=None):
        if db_url is None and STORE == "sqlite":
            # The embedded store: one data directory per test module, so a
            # restarted server finds the same data.
            db_url = "sqlite://metadata.db"
            extra = ["--data-dir", os.path.join(module_tmp(), "sqlite-data")] + list(extra)
        elif db_url is None:
            db_url = pg_cluster().url()
        elif isinstance(db_url, PgCluster):
            db_url = db_url.url()
        self.db_url = db_url
        self.token = token or admin_token(db_url)
        self.with_token = with_token
        self.workers = workers
        self.extra = list(extra)
        self.env = env
        self.preexec = preexec  # runs in the child before exec (e.g. resource limits)
        self.name = name
        self.proc = None
        self.fixed_port = port  # None: a free port at every start
        self.port = None
        self.host = "127.0.0.1"
        self.logpath = None
        self._logf = None
        self.returncode = None
        _SERVERS.append(self)

    # -- lifecycle ---------------------------------------------------------
    def argv(self):
        a = [BIN, "--listen", self.host, "--port", str(self.port), "--db-url", self.db_url]
        if self.workers is not None:
            a += ["--workers", str(self.workers)]
        if self.with_token:
            a += ["--token", self.token]
        a += ["--log-level", "debug"]
        return a + self.extra

    def spawn(self):
        """Starts the process without waiting for readiness."""
        if not os.path.exists(BIN):
            raise ServerStartError("binary not found: %s (set EVENTODB_BIN)" % BIN)
        self.port = self.fixed_port or free_port()
        if self.logpath is None:
            fd, self.logpath = tempfile.mkstemp(prefix="eventodb-%s-" % self.name, suffix=".log", dir=module_tmp())
            os.close(fd)
        self._logf = open(self.logpath, "ab")
        self._logf.write(("==== %s\n" % " ".join(self.argv())).encode())
        self._logf.flush()
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("EVENTODB_") and k != "EVENTODB_BIN":
                del env[k]
        if self.env:
            env.update(self.env)
        self.returncode = None
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True,
                                     preexec_fn=self.preexec)
        return self.proc

    def start(self, timeout=20):
        """Starts the server and waits until GET /health answers 200 and every worker asked for has
        been forked (one worker answering does not mean the others exist yet)."""
        for attempt in range(3):
            self.spawn()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = http_request(self.host, self.port, "GET", "/health", timeout=2)
                    if r.status == 200:
                        if isinstance(self.workers, int):
                            wait_until(lambda: len(self.worker_pids()) >= self.workers,
                                       max(0.0, deadline - time.monotonic()))
                        return self
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.05)
            rc = self.proc.poll()
            log = self.log()
            if rc is not None and attempt < 2 and re.search(r"(?i)address already in use|EADDRINUSE", log):
                self._finish()
                continue
            self.stop()
            raise ServerStartError("server did not become healthy (exit=%s); log:\n%s" % (rc, log[-6000:]))
        raise ServerStartError("could not start server")

    def run_to_exit(self, timeout=20):
        """Starts the process and waits for it to exit (for start-up failures). Returns the exit code;
        kills it and returns None if it is still running after timeout."""
        self.spawn()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        self._finish()
        return rc

    def _finish(self):
        if self.proc is not None:
            self.returncode = self.proc.returncode
        # kill leftovers of the process group (workers) if any
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self._logf:
            self._logf.close()
            self._logf = None
        self.proc = None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """SIGTERM and wait (SIGKILL after timeout). Returns the exit code."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.kill()
                self.proc.wait(10)
        self._finish()
        return self.returncode

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        if not self.logpath:
            return ""
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def output(self):
        """The server's own output (the log without the harness's "==== argv" lines)."""
        return "".join(l for l in self.log().splitlines(True) if not l.startswith("==== "))

    def log_size(self):
        try:
            return os.path.getsize(self.logpath) if self.logpath else 0
        except OSError:
            return 0

    def worker_pids(self):
        return child_pids(self.pid) if self.pid else []

    # -- HTTP --------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=30, conn=None):
        return http_request(self.host, self.port, method, path, body=body, headers=headers, timeout=timeout,
                            conn=conn)

    def get(self, path, headers=None, timeout=30):
        return self.request("GET", path, headers=headers, timeout=timeout)

    def connection(self, timeout=30):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def rpc(self, method, *args, token=DEFAULT, raw_body=None, headers=None, query=None, path="/rpc",
            http_method="POST", timeout=30, conn=None):
        """POST /rpc ["method", *args] with Authorization: Bearer <token>.

        token=None sends no Authorization header. raw_body (str/bytes) replaces
        the JSON body. query (dict) is appended to the path.
        """
        if token is DEFAULT:
            token = self.token
        hdrs = {"Content-Type": "application/json"}
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        if headers:
            hdrs.update(headers)
        if raw_body is not None:
            body = raw_body
        else:
            body = json.dumps([method] + list(args), ensure_ascii=False)
        if query:
            path = path + "?" + urllib.parse.urlencode(query)
        return self.request(http_method, path, body=body, headers=hdrs, timeout=timeout, conn=conn)

    def call(self, method, *args, token=DEFAULT, timeout=30):
        """rpc() that must succeed (200); returns the parsed result."""
        r = self.rpc(method, *args, token=token, timeout=timeout)
        if r.status != 200:
            raise AssertionError("%s%r -> %r" % (method, args, r))
        return r.body

    def write(self, stream, type_="T", data=None, metadata=DEFAULT, token=DEFAULT, **opts):
        msg = {"type": type_, "data": {} if data is None else data}
        if metadata is not DEFAULT:
            msg["metadata"] = metadata
        args = [stream, msg]
        if opts:
            args.append(opts)
        return self.call("stream.write", *args, token=token)

    def create_namespace(self, ns_id=None, **opts):
        """Creates a namespace with the admin token; returns (id, token)."""
        ns_id = ns_id or unique("ns")
        args = [ns_id] + ([opts] if opts else [])
        r = self.call("ns.create", *args)
        return ns_id, r["token"]


# ---------------------------------------------------------------------------
# test case base: prints the server logs of a failing test
# ---------------------------------------------------------------------------



_LOG_PREFIX = re.compile(r"^\S+ \[\d+\] ")


def collapse_repeats(text):
    """A server log with each run of lines that differ only in time and pid cut to its first
    line and a count, so that a failure's log shows what led up to a flood of one error."""
    out, prev, n = [], None, 0
    for line in text.split("\n"):
        key = _LOG_PREFIX.sub("", line)
        if key == prev and key:
            n += 1
            continue
        if n:
            out.append("    (%d more like the line above)" % n)
        out.append(line)
        prev, n = key, 0
    if n:
        out.append("    (%d more like the line above)" % n)
    return "\n".join(out)


class TestCase(unittest.TestCase):
    maxDiff = 4000

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        marks = {id(s): s.log_size() for s in _SERVERS if s.proc is not None}
        known = {id(s) for s in _SERVERS}
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for s in list(_SERVERS):
                if id(s) in marks:
                    start = marks[id(s)]
                elif id(s) not in known:
                    start = 0
                else:
                    continue
                text = collapse_repeats(s.log()[start:]) if s.logpath else ""
                if len(text) > 20000:
                    text = "...\n" + text[-20000:]
                sys.stderr.write("\n----- %s log (%s, port %s) for %s -----\n%s\n----- end of log -----\n"
                                 % (s.name, s.logpath, s.port, self.id(), text))
            sys.stderr.flush()
        return out

    # -- assertions ----------------------------------------------------------
    def assertError(self, r, status, code, message=None, msg_contains=None):
        """r is an error response with this status, JSON error code and (optionally) message."""
        ctx = "response: %r" % (r,)
        self.assertEqual(r.status, status, ctx)
        self.assertIsInstance(r.body, dict, ctx)
        err = r.error()
        self.assertTrue(err, "no error object: " + ctx)
        self.assertEqual(err.get("code"), code, ctx)
        self.assertIsInstance(err.get("message"), str, ctx)
        if message is not None:
            self.assertEqual(err.get("message"), message, ctx)
        if msg_contains is not None:
            self.assertIn(msg_contains, err.get("message"), ctx)
        return err

    def assertOk(self, r):
        self.assertEqual(r.status, 200, "response: %r" % (r,))
        return r.body


# ---------------------------------------------------------------------------
# runner: unittest verbosity 2 on stderr, TAP on stdout, exit status
# ---------------------------------------------------------------------------


class _TapResult(unittest.TextTestResult):
    """Also writes one TAP line per test (subtest failures make the test "not ok")."""

    tap_n = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._cur = None
        self._bad = False
        self._skip = None

    def _tap(self, ok, name, extra=""):
        _TapResult.tap_n += 1
        sys.stdout.write("%s %d - %s%s\n" % ("ok" if ok else "not ok", _TapResult.tap_n, name, extra))
        sys.stdout.flush()

    def startTest(self, test):
        super().startTest(test)
        self._cur, self._bad, self._skip = test, False, None

    def stopTest(self, test):
        super().stopTest(test)
        if self._cur is test:
            if self._skip is not None and not self._bad:
                self._tap(True, test.id(), " # SKIP %s" % self._skip)
            else:
                self._tap(not self._bad, test.id())
        self._cur = None

    def _mark_bad(self, test):
        if self._cur is not None and test is self._cur:
            self._bad = True
        else:  # setUpClass / setUpModule errors arrive outside a test
            self._tap(False, getattr(test, "description", None) or str(test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._mark_bad(test)

    def addError(self, test, err):
        super().addError(test, err)
        self._mark_bad(test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._skip = reason

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._mark_bad(test)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._bad = True
            sys.stdout.write("# failed subtest: %s\n" % (subtest.id(),))


def main():
    """unittest.main(verbosity=2) that also prints TAP on stdout; exits non-zero on failure."""
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=_TapResult)
    prog = unittest.main(module="__main__", testRunner=runner, exit=False, verbosity=2)
    res = prog.result
    ok = res.wasSuccessful() and res.testsRun > 0
    cleanup()  # servers stop first: their workers' leak checks run at exit
    reports = sanitizer_reports()
    if reports:
        _TapResult.tap_n += 1
        sys.stdout.write("not ok %d - sanitizer reports\n" % _TapResult.tap_n)
        sys.stderr.write("\n----- sanitizer reports -----\n%s\n----- end of reports -----\n" % reports)
        ok = False
    if _SAN_DIR is not None:
        shutil.rmtree(_SAN_DIR, ignore_errors=True)
    sys.stdout.write("1..%d\n" % _TapResult.tap_n)
    sys.stdout.flush()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    # self-test of the PostgreSQL fixture
    c = pg_cluster()
    print("cluster up on port", c.port, "url", c.url())
    print(c.psql("SELECT version()"))
    print(c.psql("SELECT current_database()"))
    c.stop("fast")
    c.start()
    print("restarted:", c.psql("SELECT 1"))
    d = c.dir
    cleanup()
    print("dir removed:", not os.path.exists(d))
