#!/usr/bin/env python3
"""Installs the built Debian package ($EVENTODB_DEB) on this machine and checks it as an operator would:
the files where Debian puts them, conffiles, the eventodb system user, nothing enabled or started, the
installed binary checks the installed config, serves as that user, the man pages render, then remove
keeps config and data and purge deletes them.

Needs root on a Debian system and the .deb; without them it fails (it is not part of make check:
.ci/run builds the package and runs it). It refuses to touch an eventodb package already installed."""

import grp
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DEB = os.environ.get("EVENTODB_DEB", "")
SBIN = "/usr/sbin/eventodb"
CONF = "/etc/eventodb/eventodb.conf"
STATE = "/var/lib/eventodb"
ETC_FILES = ["/etc/default/eventodb", CONF, "/etc/init.d/eventodb", "/etc/logrotate.d/eventodb"]
FILES = ETC_FILES + [SBIN, "/lib/systemd/system/eventodb.service", "/usr/share/man/man8/eventodb.8.gz",
                     "/usr/share/man/man5/eventodb.conf.5.gz", "/usr/share/doc/eventodb/copyright",
                     "/usr/share/doc/eventodb/README.Debian", "/usr/share/doc/eventodb/protocol.md.gz",
                     "/usr/share/doc/eventodb/operations.md.gz"]


def run(argv, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def status():
    """dpkg's status of the package: 'installed', 'config-files' or 'not-installed'."""
    p = run(["dpkg-query", "-W", "-f=${db:Status-Status}", "eventodb"])
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else "not-installed"


def package_files():
    return [f for f in run(["dpkg", "-L", "eventodb"]).stdout.splitlines() if os.path.isfile(f)]


def deb_field(name):
    return run(["dpkg-deb", "-f", DEB, name]).stdout.strip()


def running_installed_binary():
    """Pids of processes running the installed server."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % d) == SBIN:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def setUpModule():
    why = []
    if not DEB or not os.path.isfile(DEB):
        why.append("EVENTODB_DEB does not name a built .deb (%r)" % DEB)
    if os.geteuid() != 0:
        why.append("not root")
    if not os.path.exists("/var/lib/dpkg/status"):
        why.append("not a Debian system")
    if why:
        raise RuntimeError("package test not run: " + "; ".join(why))
    if status() != "not-installed":
        raise RuntimeError("an eventodb package is already installed (%s); purge it first" % status())


def tearDownModule():
    # whatever happened, leave the machine as it was
    if status() != "not-installed":
        run(["dpkg", "--purge", "eventodb"])


class TestPackage(harness.TestCase):
    def test_1_installs_files_and_conffiles(self):
        p = run(["dpkg", "-i", DEB], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(status(), "installed")
        self.assertEqual(deb_field("Package"), "eventodb")
        files = package_files()
        for f in FILES:
            self.assertIn(f, files)
            self.assertTrue(os.path.isfile(f), f)
        self.assertTrue(os.access(SBIN, os.X_OK))
        self.assertTrue(os.access("/etc/init.d/eventodb", os.X_OK))
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "eventodb"]).stdout
        listed = sorted(line.split()[0] for line in conffiles.splitlines() if line.strip())
        self.assertEqual(listed, sorted(ETC_FILES))
        unit = open("/lib/systemd/system/eventodb.service").read()
        self.assertIn("ExecStart=/usr/sbin/eventodb --config /etc/eventodb/eventodb.conf", unit)
        self.assertIn("User=eventodb", unit)
        init = open("/etc/init.d/eventodb").read()
        self.assertIn("DAEMON=/usr/sbin/eventodb", init)
        self.assertIn("CONFIG=/etc/eventodb/eventodb.conf", init)
        self.assertEqual(run(["sh", "-n", "/etc/init.d/eventodb"]).returncode, 0)
        # everything make install installs is in the package: nothing left in /usr/local
        self.assertFalse([f for f in files if f.startswith("/usr/local")], files)

    def test_2_system_user_and_private_config(self):
        pw = pwd.getpwnam("eventodb")
        gr = grp.getgrnam("eventodb")
        self.assertLess(pw.pw_uid, 1000, "a system user")
        self.assertEqual(pw.pw_gid, gr.gr_gid)
        self.assertEqual(pw.pw_dir, STATE)
        self.assertIn(pw.pw_shell, ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"))
        for d in (STATE, "/var/log/eventodb"):
            st = os.stat(d)
            self.assertEqual((st.st_uid, st.st_gid), (pw.pw_uid, gr.gr_gid), d)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o750, d)
        st = os.stat(CONF)
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, gr.gr_gid, 0o640),
                         "the config may hold the admin token")

    def test_3_neither_enabled_nor_started(self):
        self.assertFalse(os.path.exists("/etc/systemd/system/multi-user.target.wants/eventodb.service"))
        for rl in "2345":
            links = os.listdir("/etc/rc%s.d" % rl) if os.path.isdir("/etc/rc%s.d" % rl) else []
            self.assertFalse([x for x in links if re.match(r"S\d\deventodb$", x)], "enabled in runlevel " + rl)
        self.assertEqual(running_installed_binary(), [])

    def test_4_installed_binary_checks_installed_config(self):
        p = run([SBIN, "--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), deb_field("Version").split("-")[0])
        p = run([SBIN, "version", "--full"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Version: " + deb_field("Version").split("-")[0], p.stdout)
        for user in (None, "eventodb"):  # as root, and as the service user (group read)
            argv = [SBIN, "--check-config", "--config", CONF]
            if user:
                argv = ["runuser", "-u", user, "--"] + argv
            p = run(argv)
            self.assertEqual(p.returncode, 0, (user, p.stdout, p.stderr))
            self.assertIn("configuration ok", p.stdout)
        # nobody else may read it (it may hold the admin token), and that is said clearly
        p = run(["runuser", "-u", "nobody", "--", SBIN, "--check-config", "--config", CONF])
        self.assertEqual(p.returncode, 1, "others cannot read the config: " + p.stdout + p.stderr)
        self.assertIn(CONF, p.stderr)
        loadtest = [f for f in package_files() if os.path.basename(f) == "eventodb-loadtest"]
        if loadtest:  # shipped once the tool exists; then its --help must work
            p = run([loadtest[0], "--help"])
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("eventodb-loadtest", p.stdout + p.stderr)

    def test_5_serves_as_the_service_user(self):
        port = harness.free_port()
        token = harness.make_token("default")
        # the installed config, on the embedded store in the package's state directory, started by root
        # and dropping to the service user as the init script has it do (--user)
        argv = [SBIN, "--config", CONF, "--db-url", "sqlite://metadata.db", "--user", "eventodb",
                "--data-dir", STATE, "--listen", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--token", token]
        proc = subprocess.Popen(argv, cwd=STATE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            def up():
                try:
                    return harness.http_request("127.0.0.1", port, "GET", "/health", timeout=2).status == 200
                except OSError:
                    return False
            self.assertTrue(harness.wait_until(up, 20), "no /health answer")
            auth = {"Authorization": "Bearer " + token}
            r = harness.http_request("127.0.0.1", port, "POST", "/rpc",
                                     '["stream.write","pkg-1",{"type":"Installed","data":{"ok":true}}]', auth)
            self.assertEqual(r.status, 200, r)
            r = harness.http_request("127.0.0.1", port, "POST", "/rpc", '["stream.get","pkg-1"]', auth)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body[0][1], "Installed")
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0]
        self.assertEqual(proc.returncode, 0, out)
        self.assertTrue(os.path.isfile(os.path.join(STATE, "metadata.db")), os.listdir(STATE))
        self.assertEqual(os.stat(os.path.join(STATE, "metadata.db")).st_uid, pwd.getpwnam("eventodb").pw_uid)

    def test_6_man_pages_render(self):
        pages = [f for f in package_files() if f.startswith("/usr/share/man/")]
        self.assertIn("/usr/share/man/man8/eventodb.8.gz", pages)
        for page in pages:
            p = run(["man", "--warnings", "-l", page], env=dict(os.environ, MANWIDTH="80", MAN_DISABLE_SECCOMP="1"))
            self.assertEqual(p.returncode, 0, page + p.stderr)
            self.assertEqual(p.stderr, "", page)
            self.assertIn("NAME", p.stdout, page)
        p = run(["man", "-w", "eventodb"])
        self.assertEqual(p.stdout.strip(), "/usr/share/man/man8/eventodb.8.gz", p.stderr)

    def test_7_reinstall_keeps_local_config(self):
        with open(CONF, "a") as f:
            f.write("# local change\n")
        os.chmod(CONF, 0o600)
        p = run(["dpkg", "-i", DEB], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(open(CONF).read().endswith("# local change\n"))
        self.assertEqual(stat.S_IMODE(os.stat(CONF).st_mode), 0o600, "an upgrade keeps the local mode")
        self.assertEqual(running_installed_binary(), [], "an upgrade does not start a stopped server")

    def test_8_remove_keeps_config_and_data(self):
        p = run(["dpkg", "-r", "eventodb"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(status(), "config-files")
        self.assertFalse(os.path.exists(SBIN))
        self.assertFalse(os.path.exists("/lib/systemd/system/eventodb.service"))
        self.assertTrue(os.path.isfile(CONF))
        self.assertTrue(os.path.isfile(os.path.join(STATE, "metadata.db")))

    def test_9_purge_removes_config_and_data(self):
        p = run(["dpkg", "--purge", "eventodb"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(status(), "not-installed")
        for path in ("/etc/eventodb", "/etc/default/eventodb", "/etc/init.d/eventodb", STATE, "/var/log/eventodb"):
            self.assertFalse(os.path.exists(path), path)
        self.assertFalse([x for x in os.listdir("/etc/rc2.d") if x.endswith("eventodb")]
                         if os.path.isdir("/etc/rc2.d") else [])
        # the user stays (see README.Debian): files elsewhere may still belong to it
        self.assertEqual(pwd.getpwnam("eventodb").pw_dir, STATE)


if __name__ == "__main__":
    # the steps build on each other (unittest runs them in name order): stop at the first failure
    sys.argv.insert(1, "--failfast")
    harness.main()
