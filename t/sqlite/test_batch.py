#!/usr/bin/env python3
"""t/test_batch.py again, on the embedded SQLite store: one shared suite, two stores."""
import os
import runpy

os.environ["EVENTODB_TEST_STORE"] = "sqlite"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test_batch.py"), run_name="__main__")
