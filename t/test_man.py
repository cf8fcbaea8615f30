#!/usr/bin/env python3
"""The generated man pages and sample config, rendered the way man(1) shows them: every option of the
binary's table appears with its argument name after it (separated), every command of `eventodb help`
has an entry under COMMANDS, the export/import flags are described, groff has nothing to warn about."""

import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BUILDDIR = os.environ.get("EVENTODB_BUILDDIR") or os.path.dirname(os.path.dirname(os.path.abspath(harness.BIN)))
PAGES = ("man/eventodb.8", "man/eventodb.conf.5")


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60, **kw)


def options():
    """(name, argument) for every option of `eventodb help`; argument None for a boolean."""
    out = run([harness.BIN, "help"]).stdout
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^  --([a-z0-9-]+)(?: ([A-Z]+))?\s", out, re.M)]


def render(path):
    """The page as plain text (groff from groff-base, as man -l runs it), with groff's warnings. The
    lines are wider than a terminal's: FILES holds the build's install paths, which in a deep build
    directory (make distcheck) are longer than 78 columns and cannot be broken."""
    if shutil.which("groff") is None:
        raise AssertionError("groff is not installed (Debian package groff-base)")
    p = run(["groff", "-ww", "-man", "-rLL=200n", "-Tutf8", "-P-c", "-P-b", "-P-u", path])
    return p.stdout, p.stderr


def section(text, name):
    """The body of one section of a rendered page (from its heading to the next heading)."""
    m = re.search(r"^%s\n(.*?)(?=^[A-Z][A-Z ]+\n)" % re.escape(name), text, re.M | re.S)
    assert m, "no %s section" % name
    return m.group(1)


class TestManPages(harness.TestCase):
    def test_pages_render_without_warnings(self):
        for page in PAGES:
            text, err = render(os.path.join(BUILDDIR, page))
            self.assertEqual(err, "", "%s: groff warnings" % page)
            self.assertGreater(len(text.splitlines()), 100, page)
            self.assertNotIn("@", re.sub(r"\S+@\S+", "", text), "%s: a placeholder left unsubstituted" % page)

    def test_every_option_followed_by_its_argument(self):
        opts = options()
        self.assertGreater(len(opts), 15)
        self.assertIn(("data-dir", "STRING"), opts)
        self.assertIn(("port", "N"), opts)
        self.assertIn(("max-body", "SIZE"), opts)
        text, _ = render(os.path.join(BUILDDIR, "man/eventodb.8"))
        body = section(text, "OPTIONS")
        for name, arg in opts:
            if arg is None:
                want = r"^ {7}--%s\[=bool\]$" % re.escape(name)
            else:
                want = r"^ {7}--%s %s$" % (re.escape(name), arg.lower())
            self.assertRegex(body, re.compile(want, re.M), "eventodb(8): --%s not followed by its argument" % name)
        conf, _ = render(os.path.join(BUILDDIR, "man/eventodb.conf.5"))
        body = section(conf, "OPTIONS")
        for name, arg in opts:
            if name == "config":
                continue
            want = r"^ {7}%s = %s$" % (re.escape(name), (arg or "bool").lower())
            self.assertRegex(body, re.compile(want, re.M), "eventodb.conf(5): %s not shown as a file line" % name)
        # each entry names its environment variable unbroken (no hyphenation inside it)
        for name, _ in opts:
            env = "EVENTODB_" + name.upper().replace("-", "_")
            self.assertIn(env, text.replace("\n", " "), "eventodb(8): %s" % env)

    def test_commands_section_covers_the_usage(self):
        usage = run([harness.BIN, "help"]).stdout
        commands = re.findall(r"^  eventodb (\[?[a-z-]+)", usage, re.M)
        commands = [c.strip("[") for c in commands]
        self.assertIn("--check-config", commands)
        self.assertIn("options-conf", commands)
        text, _ = render(os.path.join(BUILDDIR, "man/eventodb.8"))
        body = section(text, "COMMANDS")
        for c in commands:
            self.assertRegex(body, re.compile(r"^ {7}%s\b" % re.escape(c), re.M), "COMMANDS misses %s" % c)
        # the flags of export and import, each with its argument
        for cmd in ("export", "import"):
            out = run([harness.BIN, cmd, "--help"])
            flags = re.findall(r"^  --([a-z-]+)( string)?$", out.stdout + out.stderr, re.M)
            self.assertGreater(len(flags), 3, cmd)
            part = body[body.index("\n       %s " % cmd):]
            for flag, arg in flags:
                want = r"^ {14}--%s%s" % (flag, r" \w" if arg else r"\b")
                self.assertRegex(part, re.compile(want, re.M), "COMMANDS %s misses --%s" % (cmd, flag))

    def test_stores_signals_files_described(self):
        text, _ = render(os.path.join(BUILDDIR, "man/eventodb.8"))
        desc = section(text, "DESCRIPTION")
        self.assertIn("sqlite://", desc)
        self.assertIn("postgres://", desc)
        self.assertIn("embedded store", desc.replace("\n", " "))
        sig = section(text, "SIGNALS")
        for s in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1"):
            self.assertIn(s, sig)
        out = run(["make", "-s", "--no-print-directory", "-C", BUILDDIR, "print-install-dirs"]).stdout
        dirs = dict(w.split("=", 1) for w in out.split() if "=" in w)
        files = section(text, "FILES")
        self.assertIn(dirs["sysconfdir"] + "/eventodb/eventodb.conf", files)
        self.assertIn(dirs["systemdsystemunitdir"] + "/eventodb.service", files)
        env = section(text, "ENVIRONMENT")
        self.assertIn("EVENTODB_CONFIG", env)

    def test_operations_guide_lists_every_option(self):
        # doc/operations.md has a table row per option of the binary's table, with its default
        src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(src, "doc", "operations.md")) as f:
            doc = f.read()
        part = doc[doc.index("## Every option"):]
        part = part[:part.index("\n## ")]
        rows = [r for r in part.splitlines() if r.startswith("| `--")]
        help_text = run([harness.BIN, "help"]).stdout
        for name, _ in options():
            row = [r for r in rows if re.search(r"`--%s[` ]" % re.escape(name), r.split("|")[1])]
            self.assertEqual(len(row), 1, "doc/operations.md: no row for --%s" % name)
            m = re.search(r"^  --%s .*\n.*?, default ([^,\n]+)" % re.escape(name), help_text, re.M)
            if m is not None:
                self.assertEqual(row[0].split("|")[2].strip(), m.group(1),
                                 "doc/operations.md: default of --%s" % name)

    def test_sample_config_lists_every_option(self):
        with open(os.path.join(BUILDDIR, "etc/eventodb.conf")) as f:
            conf = f.read()
        for name, _ in options():
            if name != "config":
                self.assertIn("\n#%s = " % name, conf)
        # and the binary accepts it as it is installed
        p = run([harness.BIN, "--check-config", "--config", os.path.join(BUILDDIR, "etc/eventodb.conf")])
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    harness.main()
