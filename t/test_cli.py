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


if __name__ == "__main__":
    harness.main()
