#!/usr/bin/env python3
"""t/test_sse.py again, on the embedded SQLite store: subscriptions through the write ring alone."""
import os
import runpy

os.environ["EVENTODB_TEST_STORE"] = "sqlite"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test_sse.py"), run_name="__main__")
