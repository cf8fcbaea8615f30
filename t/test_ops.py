#!/usr/bin/env python3
"""Operating the daemon (issue: systemd, init script, man pages, config file, signals, install):
sd_notify through a fake NOTIFY_SOCKET, SIGHUP reload, SIGUSR1 log reopen, pid files,
--check-config, process titles, a second SIGTERM, make install (the man pages: test_man.py)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sse_client  # noqa: E402
from harness import unique  # noqa: E402

BUILDDIR = os.environ.get("EVENTODB_BUILDDIR") or os.path.dirname(os.path.dirname(os.path.abspath(harness.BIN)))


def setUpModule():
    harness.pg_cluster()


def tearDownModule():
    harness.cleanup()


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, **kw)


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.path = os.path.join(harness.module_tmp(), "notify-%s.sock" % unique("n"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            with self.lock:
                self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, text, timeout=15, after=0):
        def found():
            with self.lock:
                return [m for m in self.messages[after:] if text in m[1]]
        return harness.wait_until(found, timeout)

    def close(self):
        self.sock.close()


class TestSystemdNotify(harness.TestCase):
    def test_ready_after_all_workers_then_reload_and_stopping(self):
        ns = NotifySocket()
        srv = harness.Server(name="notify", workers=3, env={"NOTIFY_SOCKET": ns.path})
        srv.spawn()
        try:
            got = ns.wait_for("READY=1", 20)
            self.assertTrue(got, "no READY=1; messages %r; log:\n%s" % (ns.messages, srv.log()))
            # when READY=1 arrives, every worker is serving
            h = srv.call("sys.health")
            self.assertEqual(h["workers"], 3)
            self.assertEqual(len(srv.worker_pids()), 3)
            self.assertTrue(ns.wait_for("STATUS=3/3 workers", 5), ns.messages)
            n = len(ns.messages)
            os.kill(srv.pid, signal.SIGHUP)
            self.assertTrue(ns.wait_for("RELOADING=1", 10, after=n), ns.messages)
            self.assertTrue(ns.wait_for("READY=1", 10, after=n), ns.messages)
            n = len(ns.messages)
            srv.stop()
            self.assertEqual(srv.returncode, 0)
            self.assertTrue(ns.wait_for("STOPPING=1", 5, after=n), ns.messages)
        finally:
            srv.stop()
            ns.close()


class TestSignals(harness.TestCase):
    def test_sighup_reloads_log_level_keeping_connections(self):
        conf = os.path.join(harness.module_tmp(), "reload.conf")
        with open(conf, "w") as f:
            f.write("log-level = info\n")
        srv = harness.Server(name="reload", workers=2, extra=["--config", conf])
        # the harness passes --log-level debug as a flag, which would win over the file
        srv.argv = lambda: [a for a in harness.Server.argv(srv) if a not in ("--log-level", "debug")]
        srv.start()
        try:
            conn = srv.connection()
            self.assertOk(srv.rpc("sys.version", conn=conn))
            # a worker's info line (requests go to the access log, not here)
            srv.create_namespace()
            self.assertTrue(harness.wait_until(lambda: "namespace created" in srv.log(), 5))
            stream = unique("hup") + "-1"
            sub = sse_client.subscribe(srv, {"stream": stream})
            self.assertTrue(sub.wait_ready(), "SSE subscription not ready")
            with open(conf, "w") as f:
                f.write("log-level = warn\ndb-pool-size = 2\n")
            os.kill(srv.pid, signal.SIGHUP)
            # at warn level the info lines stop and the ignored change is reported
            self.assertTrue(harness.wait_until(lambda: re.search(r"db-pool-size changed .*ignored", srv.log()), 5), srv.log())
            time.sleep(0.5)  # workers handle their SIGHUP
            size = srv.log_size()
            # the keep-alive connection and the SSE stream survive the reload
            for _ in range(5):
                self.assertOk(srv.rpc("sys.version", conn=conn))
            srv.write(stream, data={"after": "reload"})
            self.assertIsNotNone(sub.wait_poke(lambda p: p["stream"] == stream and p["position"] == 0, 10),
                                 "no poke on the SSE stream opened before SIGHUP")
            self.assertFalse(sub.closed)
            sub.close()
            srv.create_namespace()
            time.sleep(0.3)
            self.assertNotIn("namespace created", srv.log()[size:], "info lines after switching to warn level")
            conn.close()
        finally:
            srv.stop()

    def test_sighup_switches_the_access_log(self):
        # access-log is reloadable: a new destination in the file applies on SIGHUP, and off stops it
        conf = os.path.join(harness.module_tmp(), "alog.conf")
        path = os.path.join(harness.module_tmp(), "access-%s.log" % unique("a"))
        with open(conf, "w") as f:
            f.write("access-log = off\n")
        srv = harness.Server(name="alog", workers=2, extra=["--config", conf]).start()
        try:
            self.assertOk(srv.rpc("sys.version"))
            self.assertFalse(os.path.exists(path))
            with open(conf, "w") as f:
                f.write("access-log = %s\n" % path)
            os.kill(srv.pid, signal.SIGHUP)

            def logged(n):
                # each request's line is flushed within a second (or at shutdown)
                self.assertOk(srv.rpc("sys.version"))
                return os.path.exists(path) and open(path).read().count("POST /rpc") >= n

            self.assertTrue(harness.wait_until(lambda: logged(1), 10), "no access log after SIGHUP")
            with open(conf, "w") as f:
                f.write("access-log = off\n")
            os.kill(srv.pid, signal.SIGHUP)
            time.sleep(1.5)  # both workers handle it and flush what they had
            size = os.path.getsize(path)
            for _ in range(5):
                self.assertOk(srv.rpc("sys.version"))
            time.sleep(1.5)
            self.assertEqual(os.path.getsize(path), size, "lines after switching the access log off")
        finally:
            srv.stop()

    def test_sigusr1_reopens_log_file(self):
        logfile = os.path.join(harness.module_tmp(), "eventodb-%s.log" % unique("l"))
        access = logfile + ".access"
        srv = harness.Server(name="usr1", workers=2, extra=["--log-file", logfile, "--access-log", access])
        srv.argv = lambda: [a for a in harness.Server.argv(srv) if a not in ("--log-level", "debug")] + \
            ["--log-level", "info"]
        srv.start()
        try:
            self.assertOk(srv.rpc("sys.version"))
            self.assertTrue(harness.wait_until(lambda: os.path.getsize(logfile) > 0, 5))
            # the access log is written once a second
            self.assertTrue(harness.wait_until(lambda: os.path.exists(access) and os.path.getsize(access) > 0, 5))
            os.rename(logfile, logfile + ".1")
            os.rename(access, access + ".1")
            os.kill(srv.pid, signal.SIGUSR1)
            self.assertTrue(harness.wait_until(lambda: os.path.exists(logfile), 5), "log file not reopened")
            time.sleep(0.3)
            for _ in range(3):
                self.assertOk(srv.rpc("sys.version"))
            srv.create_namespace()  # a worker's info line
            self.assertTrue(harness.wait_until(lambda: "namespace created" in open(logfile).read(), 5))
            with open(logfile) as f:
                text = f.read()
            self.assertRegex(text, r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[\d+\] INFO ", "console format <time> [pid] LEVEL")
            self.assertTrue(harness.wait_until(lambda: os.path.exists(access) and "POST /rpc" in open(access).read(),
                                               5), "access log not reopened")
        finally:
            srv.stop()

    def test_second_sigterm_exits_at_once(self):
        pg = harness.pg_cluster()
        srv = harness.Server(name="term2", workers=1, extra=["--shutdown-timeout", "60"]).start()
        sess = pg.psql_session()
        try:
            sess.stdin.write("SELECT pg_advisory_lock(\"eventodb_default\".hash_64('stuck'));\n")
            sess.stdin.flush()
            time.sleep(0.5)
            t = threading.Thread(target=lambda: harness.http_request(
                srv.host, srv.port, "POST", "/rpc", '["stream.write","stuck-1",{"type":"T","data":{}}]',
                {"Authorization": "Bearer " + srv.token}, timeout=70), daemon=True)
            t.start()
            time.sleep(0.5)
            os.kill(srv.pid, signal.SIGTERM)
            time.sleep(1.0)
            self.assertIsNone(srv.proc.poll(), "first SIGTERM must wait for the stuck request")
            t0 = time.monotonic()
            os.kill(srv.pid, signal.SIGTERM)
            srv.proc.wait(10)
            self.assertLess(time.monotonic() - t0, 5)
        finally:
            harness.PgCluster.close_session(sess)
            srv.stop()

    def test_process_titles(self):
        srv = harness.Server(name="titles", workers=2).start()
        try:
            with open("/proc/%d/cmdline" % srv.pid, "rb") as f:
                self.assertTrue(f.read().startswith(b"eventodb: supervisor"))
            def titles():
                return sorted(open("/proc/%d/cmdline" % p, "rb").read().split(b"\0")[0] for p in srv.worker_pids())
            want = [b"eventodb: worker 1", b"eventodb: worker 2"]
            # a just-forked worker wears the supervisor's title for a moment
            self.assertTrue(harness.wait_until(lambda: titles() == want, 5), titles())
        finally:
            srv.stop()


class TestPidfile(harness.TestCase):
    def test_stale_and_live_pidfile(self):
        pidfile = os.path.join(harness.module_tmp(), "eventodb.pid")
        with open(pidfile, "w") as f:
            f.write("999999\n")  # no such process: stale
        a = harness.Server(name="pid-a", workers=1, extra=["--pidfile", pidfile]).start()
        try:
            with open(pidfile) as f:
                self.assertEqual(int(f.read()), a.pid)
            b = harness.Server(name="pid-b", workers=1, extra=["--pidfile", pidfile])
            rc = b.run_to_exit(20)
            self.assertEqual(rc, 1, b.log())
            self.assertIn("already running", b.log())
            with open(pidfile) as f:
                self.assertEqual(int(f.read()), a.pid, "a refused start must not touch the pid file")
        finally:
            a.stop()
        self.assertFalse(os.path.exists(pidfile), "pid file removed at exit")


class TestCheckConfig(harness.TestCase):
    def test_errors_name_file_and_line(self):
        conf = os.path.join(harness.module_tmp(), "check.conf")
        cases = [("port = 8080\nbogus = 1\n", r"check\.conf:2: unknown option \"bogus\""),
                 ("workers = many\n", r"check\.conf:1: invalid value \"many\" for workers"),
                 ("db-url = mysql://x\n", r"unsupported database scheme"),
                 ("db-url = postgres://x/y\ntoken = nope\n", r"--token: invalid token format")]
        for text, pattern in cases:
            with open(conf, "w") as f:
                f.write(text)
            p = run([harness.BIN, "--check-config", "--config", conf])
            self.assertEqual(p.returncode, 1, (text, p.stdout, p.stderr))
            self.assertRegex(p.stderr, pattern)
        with open(conf, "w") as f:
            f.write("# ok\ndb-url = postgres://eventodb@localhost/eventodb\nworkers = 2\nlog_level = \"warn\"\n")
        p = run([harness.BIN, "--check-config", "--config", conf])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration ok", p.stdout)


    def test_max_body_capped_where_json_c_takes_an_int(self):
        """Request bodies go to json-c with an int length: sizes from 2 GiB on (once accepted up to 4 GiB)
        are refused at start, with the range in the message; 1 GiB is the largest accepted."""
        for flag in ("--max-body", "--max-message"):
            for size in ("4GiB", "2GiB", "1073741825"):
                p = run([harness.BIN, "--check-config", "--db-url", "postgres://x@localhost/y", flag, size])
                self.assertEqual(p.returncode, 1, (flag, size, p.stdout, p.stderr))
                self.assertIn('invalid value "%s" for %s: must be between' % (size, flag[2:]), p.stderr)
                self.assertIn("and 1073741824", p.stderr)
            p = run([harness.BIN, "--check-config", "--db-url", "postgres://x@localhost/y", flag, "1GiB"])
            self.assertEqual(p.returncode, 0, (flag, p.stderr))
        srv = harness.Server(name="bigbody", extra=["--max-body", "4GiB"])
        rc = srv.run_to_exit(20)
        self.assertNotEqual(rc, 0, "a server with --max-body 4GiB must refuse to start")
        self.assertIn('invalid value "4GiB" for max-body', srv.output())


class TestPostgresLog(harness.TestCase):
    """libpq's text in our log: one line, through the logger (issue 9, issue 13)."""

    def test_refused_connection_is_one_line(self):
        port = harness.free_port()
        srv = harness.Server(db_url="postgres://postgres@127.0.0.1:%d/eventodb" % port, name="refused", workers=1)
        self.assertEqual(srv.run_to_exit(20), 1, srv.log())
        out = srv.output()
        self.assertRegex(out, r"(?m)^\S+ \[\d+\] ERROR cannot connect to the database at 127\.0\.0\.1:%d: "
                              r"Connection refused\. Is the server running on that host and accepting TCP/IP "
                              r"connections\?$" % port)
        self.assertNotIn("database migration failed", out)
        for line in out.splitlines():
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[\d+\] [A-Z]+ ", out)

    def test_lost_database_reconnects_say_where_on_one_line(self):
        """At run time too: a worker that cannot reconnect logs where and why, on one line."""
        pg = harness.PgCluster()
        srv = harness.Server(db_url=pg, name="lost", workers=1, extra=["--pg-notify=false"]).start()
        try:
            self.assertOk(srv.rpc("stream.version", "x-1"))
            pg.stop("fast")
            want = ("cannot connect to the database at 127.0.0.1:%d: Connection refused. Is the server running on "
                    "that host and accepting TCP/IP connections?" % pg.port)
            r = srv.rpc("stream.version", "x-1", timeout=20)
            self.assertEqual(r.status, 503, r)
            self.assertTrue(harness.wait_until(lambda: want in srv.output(), 10), srv.output())
            # (at warn the first time; while PostgreSQL was still shutting down that may have been
            # another reason, and repeats are at debug)
            self.assertRegex(srv.output(), r"(?m)^\S+ \[\d+\] (WARN|DEBUG) database connection \d+: %s$"
                             % re.escape(want))
            self.assertNotIn("unexpectedly This", srv.output())
        finally:
            srv.stop()
            pg.destroy()

    def test_notices_go_through_the_logger(self):
        """A NOTICE and a WARNING raised on the write listener's connection (a trigger on its heartbeat
        table), and the migrations' routine NOTICEs, arrive as JSON log lines at debug and warn."""
        pg = harness.pg_cluster()
        url = pg.create_database(unique("notice"))
        db = url.rsplit("/", 1)[1]
        srv = harness.Server(db_url=url, name="notice", workers=1, extra=["--log-format", "json"]).start()
        srv.stop()
        pg.psql("CREATE FUNCTION eventodb_store.t_notice() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN RAISE NOTICE 'listener row %', NEW.host; RAISE WARNING 'careful: %', NEW.host;"
                " RETURN NEW; END $$;"
                "CREATE TRIGGER t_notice BEFORE INSERT OR UPDATE ON eventodb_store.listeners"
                " FOR EACH ROW EXECUTE FUNCTION eventodb_store.t_notice()", db=db)
        srv.start()
        try:
            self.assertTrue(harness.wait_until(lambda: "careful: " in srv.output(), 10), srv.output())
        finally:
            srv.stop()
        lines = [json.loads(l) for l in srv.output().splitlines()]  # every line is JSON
        by = {}
        for l in lines:
            self.assertEqual(set(l), {"level", "time", "pid", "message"}, l)
            by.setdefault(l["message"].split(" ")[1] if l["message"].startswith("postgres ") else "", []).append(l)
        notice = [l for l in lines if l["message"].startswith("postgres NOTICE: listener row ")]
        warning = [l for l in lines if l["message"].startswith("postgres WARNING: careful: ")]
        self.assertTrue(notice, lines)
        self.assertTrue(warning, lines)
        self.assertEqual({l["level"] for l in notice}, {"debug"})
        self.assertEqual({l["level"] for l in warning}, {"warn"})
        # the migrations' NOTICEs on the second start ("... already exists, skipping")
        self.assertTrue([l for l in lines if l["level"] == "debug" and l["message"].startswith("postgres NOTICE: ")
                         and "already exists, skipping" in l["message"]], lines)


class TestDocsAndInstall(harness.TestCase):
    def test_make_install_into_destdir(self):
        dest = tempfile.mkdtemp(prefix="eventodb-destdir-", dir=harness.module_tmp())
        out = run(["make", "-s", "--no-print-directory", "-C", BUILDDIR, "print-install-dirs"]).stdout
        dirs = dict(w.split("=", 1) for w in out.split() if "=" in w)
        p = run(["make", "-C", BUILDDIR, "install", "DESTDIR=" + dest])
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        files = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
        rel = {k: v.lstrip("/") for k, v in dirs.items()}
        self.assertEqual(files, sorted([
            rel["sysconfdir"] + "/default/eventodb", rel["sysconfdir"] + "/eventodb/eventodb.conf",
            rel["sysconfdir"] + "/init.d/eventodb", rel["sysconfdir"] + "/logrotate.d/eventodb",
            rel["systemdsystemunitdir"] + "/eventodb.service", rel["sbindir"] + "/eventodb",
            rel["mandir"] + "/man5/eventodb.conf.5", rel["mandir"] + "/man8/eventodb.8",
            rel["docdir"] + "/README.md", rel["docdir"] + "/protocol.md", rel["docdir"] + "/operations.md",
            rel["bindir"] + "/eventodb-loadtest", rel["mandir"] + "/man1/eventodb-loadtest.1"]))
        unit = open(os.path.join(dest, rel["systemdsystemunitdir"], "eventodb.service")).read()
        self.assertIn("ExecStart=%s/eventodb --config %s/eventodb/eventodb.conf" % (dirs["sbindir"], dirs["sysconfdir"]),
                      unit)
        self.assertIn("Type=notify", unit)
        self.assertIn("KillMode=mixed", unit)
        initd = os.path.join(dest, rel["sysconfdir"], "init.d/eventodb")
        init = open(initd).read()
        self.assertIn("DAEMON=%s/eventodb" % dirs["sbindir"], init)
        self.assertTrue(os.access(initd, os.X_OK))
        p = run(["sh", "-n", initd])
        self.assertEqual(p.returncode, 0, p.stderr)
        # the installed sample config is valid
        sbin = os.path.join(dest, rel["sbindir"], "eventodb")
        p = run([sbin, "--check-config", "--config", os.path.join(dest, rel["sysconfdir"], "eventodb/eventodb.conf")])
        self.assertEqual(p.returncode, 0, p.stderr)
        if shutil.which("systemd-analyze"):
            u = os.path.join(dest, "eventodb.service")
            with open(u, "w") as f:
                f.write(unit.replace(dirs["sbindir"] + "/eventodb", sbin)
                        .replace("User=eventodb", "User=root").replace("Group=eventodb", "Group=root"))
            p = run(["systemd-analyze", "verify", "--man=no", u])
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    harness.main()
