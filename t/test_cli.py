#!/usr/bin/env python3
"""What the command line and the log say (issue 13, "CLI and logs"): help texts, one-line flag
errors, option validation shared by start-up, --check-config and reload, database errors, worker
lifecycle lines, the start-up banner, version --full, the plural of "event", install-deps.sh."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import unique  # noqa: E402


def setUpModule():
    harness.pg_cluster()


def tearDownModule():
    harness.cleanup()


def run(argv, env=None, **kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_") or k == "EVENTODB_BIN"}
    e.update(env or {})
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60, env=e, **kw)


class TestBanner(harness.TestCase):
    def test_given_token_is_never_printed(self):
        """A token given with --token is the operator's secret: start-up does not print it back (into
        the journal); only a token the server generated is shown, once."""
        for store in ("postgres", "sqlite"):
            with self.subTest(store=store):
                if store == "postgres":
                    url, extra = harness.pg_cluster().create_database(unique("banner")), []
                else:
                    url = "sqlite://metadata.db"
                    extra = ["--data-dir", os.path.join(harness.module_tmp(), unique("banner"))]
                tok = harness.make_token("default")
                srv = harness.Server(db_url=url, token=tok, name="banner", workers=1, extra=extra).start()
                srv.stop()
                out = srv.output()
                self.assertNotIn(tok, out)
                self.assertNotIn(tok[-64:], out)
                self.assertNotIn("DEFAULT NAMESPACE TOKEN", out)
                self.assertIn("default namespace created with the token given by --token", out)
                self.assertEqual(srv.start().rpc("sys.version", token=tok).status, 200)
                srv.stop()
                self.assertNotIn(tok[-64:], srv.output())
                self.assertIn("default namespace already exists; --token matches", srv.output())


def help_entry(text, flag):
    """The help line of --flag (and its env line)."""
    m = re.search(r"^  --%s\b.*\n.*\n" % re.escape(flag), text, re.M)
    return m.group(0) if m else ""


class TestHelp(harness.TestCase):
    def test_help_names_both_stores(self):
        p = run([harness.BIN, "help"])
        self.assertEqual(p.returncode, 0)
        first = p.stdout.splitlines()[0]
        self.assertIn("PostgreSQL", first)
        self.assertIn("SQLite", first)
        url = help_entry(p.stdout, "db-url")
        self.assertIn("postgres://", url)
        self.assertIn("sqlite://", url)
        dbtype = help_entry(p.stdout, "db-type")
        self.assertNotIn("only plain PostgreSQL", dbtype)
        self.assertIn("ignored", dbtype)
        self.assertIn("sqlite://", dbtype)
        test = help_entry(p.stdout, "test-mode")
        self.assertIn("embedded store", test)
        self.assertIn("127.0.0.1", test)
        self.assertIn("sqlite://", help_entry(p.stdout, "data-dir"))

    def test_bad_flag_is_one_line_and_a_pointer(self):
        for argv, rc, err in (
                (["--bogus"], 2, "eventodb: flag provided but not defined: --bogus\nsee 'eventodb help'\n"),
                (["serve", "--port"], 2, "eventodb: flag needs an argument: --port\nsee 'eventodb help'\n"),
                (["--check-config", "--bogus"], 1, "eventodb: flag provided but not defined: --bogus\n"
                                                   "see 'eventodb help'\n"),
                (["--workers", "many"], 2, "eventodb: --workers: invalid value \"many\" for workers: not an integer\n"
                                           "see 'eventodb help'\n"),
                (["export", "--bogus"], 2, "flag provided but not defined: -bogus\nsee 'eventodb export --help'\n"),
                (["import", "--url"], 2, "flag needs an argument: -url\nsee 'eventodb import --help'\n")):
            with self.subTest(argv=argv):
                p = run([harness.BIN] + argv)
                self.assertEqual((p.returncode, p.stderr, p.stdout), (rc, err, ""))


class TestValidation(harness.TestCase):
    """--check-config runs exactly the validation start-up runs (issue 13)."""

    def both(self, argv, env=None):
        """(check-config rc, its stderr, start-up rc, the server's output)."""
        check = run([harness.BIN, "--check-config"] + argv, env=env)
        start = run([harness.BIN, "--port", str(harness.free_port()), "--workers", "1"] + argv, env=env)
        return check.returncode, check.stderr, start.returncode, start.stderr + start.stdout

    def test_rejected_both_ways(self):
        d = tempfile.mkdtemp(dir=harness.module_tmp())
        cases = [
            (["--db-url", "sqlite://x.db"], "--data-dir is required for SQLite"),
            (["--db-url", "sqlite://sub/x.db", "--data-dir", d], "sqlite://sub/x.db: give a plain file name"),
            (["--db-url", "foo"], "invalid --db-url: not a URL; expected postgres://user:pass@host:port/db or "
                                  "sqlite://FILE"),
            (["--db-url", "mysql://u:secret@h/db"], "unsupported database scheme mysql:// in --db-url "
                                                     "(use postgres:// or sqlite://)"),
            (["--db-url", "postgres://h/db?bogus=1"], 'invalid --db-url: invalid URI query parameter: "bogus"'),
            ([], "--db-url is required"),
            (["--test-mode", "--token", "nope"], "--token: invalid token format"),
            (["--test-mode", "--listen", "not-an-ip"], "--listen not-an-ip: "),
            (["--test-mode", "--group", "root"], "--group needs --user"),
            (["--test-mode", "--log-file", os.path.join(d, "no", "such", "dir.log")], "--log-file "),
        ]
        for argv, msg in cases:
            with self.subTest(argv=argv):
                crc, cerr, src, sout = self.both(argv)
                self.assertEqual(crc, 1, cerr)
                self.assertIn("eventodb: " + msg, cerr)
                self.assertNotIn("configuration ok", cerr)
                self.assertEqual(src, 1, sout)
                if "--log-file" in argv:  # no log to write to: stderr, as --check-config
                    self.assertIn("eventodb: " + msg, sout)
                else:
                    self.assertRegex(sout, r"(?m)^\S+ \[\d+\] ERROR %s" % re.escape(msg))
                self.assertNotIn("secret", cerr + sout)
        # "foo" is no scheme
        self.assertNotIn("scheme", self.both(["--db-url", "foo"])[1])

    def test_bad_log_values_rejected_everywhere(self):
        conf = os.path.join(harness.module_tmp(), unique("bad") + ".conf")
        for name, value, opt, choices in (("log-level", "loud", "log-level", "debug, info, warn, error"),
                                          ("log-format", "xml", "log-format", "console, json")):
            want = 'invalid value "%s" for %s: must be one of %s' % (value, opt, choices)
            with self.subTest(option=name, source="flag"):
                crc, cerr, src, sout = self.both(["--test-mode", "--" + name, value])
                self.assertEqual((crc, src), (1, 2), cerr + sout)
                self.assertIn("--%s: %s" % (name, want), cerr)
                self.assertIn("--%s: %s" % (name, want), sout)
            with self.subTest(option=name, source="environment"):
                env = {"EVENTODB_" + name.upper().replace("-", "_"): value}
                crc, cerr, src, sout = self.both(["--test-mode"], env=env)
                self.assertEqual((crc, src), (1, 2), cerr + sout)
                self.assertIn(want, cerr)
                self.assertIn(want, sout)
            with self.subTest(option=name, source="file"):
                with open(conf, "w") as f:
                    f.write("%s = %s\n" % (name, value))
                crc, cerr, src, sout = self.both(["--test-mode", "--config", conf])
                self.assertEqual((crc, src), (1, 2), cerr + sout)
                self.assertIn("%s:1: %s" % (conf, want), cerr)
                self.assertIn("%s:1: %s" % (conf, want), sout)
        with open(conf, "w") as f:
            f.write("log-level = WARN\nlog-format = json\n")
        p = run([harness.BIN, "--check-config", "--test-mode", "--config", conf])
        self.assertEqual((p.returncode, p.stdout), (0, "configuration ok: %s\n" % conf), p.stderr)

    def test_reload_with_a_bad_value_keeps_the_old_settings(self):
        conf = os.path.join(harness.module_tmp(), unique("reload") + ".conf")
        with open(conf, "w") as f:
            f.write("log-level = info\n")
        srv = harness.Server(name="reload-bad", workers=1, extra=["--config", conf])
        srv.argv = lambda: [a for a in harness.Server.argv(srv) if a not in ("--log-level", "debug")]
        srv.start()
        try:
            with open(conf, "w") as f:
                f.write("log-format = json\nlog-level = loud\n")
            os.kill(srv.pid, signal.SIGHUP)
            self.assertTrue(harness.wait_until(lambda: "reload failed" in srv.output(), 5), srv.output())
            line = [l for l in srv.output().splitlines() if "reload failed" in l][0]
            self.assertRegex(line, r"^\S+ \[\d+\] ERROR reload failed, keeping the old settings: .*:2: "
                                   r'invalid value "loud" for log-level: must be one of debug, info, warn, error$')
            self.assertNotIn("configuration reloaded", srv.output())
            # still console format (line 1 was not taken) and still info
            srv.rpc("sys.version")
            with open(conf, "w") as f:
                f.write("log-level = warn\n")
            os.kill(srv.pid, signal.SIGHUP)
            self.assertTrue(harness.wait_until(lambda: "configuration reloaded" in srv.output(), 5), srv.output())
            self.assertRegex(srv.output(), r"(?m)^\S+ \[\d+\] INFO configuration reloaded: log-level warn, "
                                           r"log-format console$")
        finally:
            srv.stop()


class TestLifecycleLines(harness.TestCase):
    LINE = r"(?m)^\S+ \[%d\] %s %s$"

    def test_worker_named_the_same_at_start_and_exit(self):
        srv = harness.Server(name="lines", workers=2).start()
        sup = srv.pid
        try:
            self.assertTrue(harness.wait_until(lambda: "all 2 workers ready" in srv.output(), 5), srv.output())
            out = srv.output()
            started = dict((int(n), int(p)) for n, p in re.findall(r"INFO worker (\d) \(pid (\d+)\) started$", out, re.M))
            self.assertEqual(sorted(started), [1, 2], out)
            self.assertRegex(out, r"(?m)INFO eventodb \S+ starting on 127\.0\.0\.1:%d \(store \w+, 2 workers\)$" % srv.port)
            os.kill(started[2], signal.SIGKILL)
            want = r"worker 2 \(pid %d\) exited on signal 9 \(SIGKILL\)" % started[2]
            self.assertTrue(harness.wait_until(lambda: re.search(want, srv.output()), 5), srv.output())
            self.assertRegex(srv.output(), self.LINE % (sup, "ERROR", want))
            self.assertTrue(harness.wait_until(lambda: re.search(r"INFO worker 2 \(pid \d+\) restarted$", srv.output(),
                                                                 re.M), 10), srv.output())
        finally:
            srv.stop(signal.SIGINT)
        out = srv.output()
        self.assertRegex(out, self.LINE % (sup, "INFO", "received SIGINT: shutdown, stopping now"))
        self.assertRegex(out, r"(?m)INFO worker 1 stopping on SIGINT$")
        self.assertRegex(out, r"(?m)INFO worker 1 \(pid %d\) exited with code 0$" % started[1])
        self.assertRegex(out, self.LINE % (sup, "INFO", "server stopped"))
        self.assertNotRegex(out, r"exited on signal \d+(?! \()", "a signal without its name")

    def test_one_worker_grammar_and_lowercase(self):
        srv = harness.Server(name="one", workers=1).start()
        try:
            self.assertTrue(harness.wait_until(lambda: "1 worker ready" in srv.output(), 5), srv.output())
        finally:
            srv.stop()
        out = srv.output()
        self.assertNotIn("all 1 workers", out)
        self.assertIn("(store %s, 1 worker)" % ("sqlite" if harness.STORE == "sqlite" else "postgres"), out)
        self.assertRegex(out, r"(?m)INFO received SIGTERM: graceful shutdown, draining for at most 10 s$")
        # every message of the supervisor and the workers starts in lower case
        for l in out.splitlines():
            m = re.match(r"^\S+ \[\d+\] [A-Z]+ (.)", l)
            self.assertTrue(m, l)
            self.assertFalse(m.group(1).isupper(), l)


class TestVersion(harness.TestCase):
    def test_full_names_the_commit_built(self):
        p = run([harness.BIN, "version", "--full"])
        self.assertEqual(p.returncode, 0, p.stderr)
        m = re.search(r"^Commit: (.+)$", p.stdout, re.M)
        self.assertTrue(m, p.stdout)
        commit = m.group(1)
        self.assertRegex(p.stdout, r"(?m)^Version: \S+$")
        src = harness.REPO
        top = subprocess.run(["git", "-C", src, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        stamp = os.path.join(src, ".tarball-commit")
        if top.returncode == 0 and os.path.realpath(top.stdout.strip()) == os.path.realpath(src):
            head = subprocess.run(["git", "-C", src, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                  text=True).stdout.strip()
            self.assertIn(commit, (head, head + "-dirty"))
        elif os.path.exists(stamp):  # a release tarball (make distcheck runs the suite from one)
            with open(stamp) as f:
                self.assertEqual(commit, f.read().strip() + " (release tarball)")
            self.assertRegex(commit, r"^[0-9a-f]{12}(-dirty)? \(release tarball\)$")
        else:
            self.assertEqual(commit, "unknown")


class TestInstallDeps(harness.TestCase):
    def test_apt_waits_for_the_lock(self):
        """Every apt-get call of contrib/install-deps.sh asks apt to wait for a held lock (a fake apt-get
        on PATH records the calls; the real one is not run)."""
        d = tempfile.mkdtemp(dir=harness.module_tmp())
        calls = os.path.join(d, "calls")
        with open(os.path.join(d, "apt-get"), "w") as f:
            f.write('#!/bin/sh\necho "$*" >> %s\n' % calls)
        os.chmod(os.path.join(d, "apt-get"), 0o755)
        script = os.path.join(harness.REPO, "contrib", "install-deps.sh")
        for env, timeout in (({}, "600"), ({"APT_LOCK_TIMEOUT": "30"}, "30")):
            if os.path.exists(calls):
                os.unlink(calls)
            p = run(["sh", script], env=dict({"PATH": d + ":" + os.environ["PATH"]}, **env))
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(calls) as f:
                lines = f.read().splitlines()
            self.assertEqual([l.split()[2] for l in lines], ["update", "install"], lines)
            for l in lines:
                self.assertTrue(l.startswith("-o DPkg::Lock::Timeout=%s " % timeout), l)


if __name__ == "__main__":
    harness.main()
