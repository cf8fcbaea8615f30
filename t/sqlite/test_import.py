#!/usr/bin/env python3
"""t/test_import.py again, on the embedded SQLite store (the cross-store test goes the other way)."""
import os
import runpy

os.environ["EVENTODB_TEST_STORE"] = "sqlite"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test_import.py"), run_name="__main__")
