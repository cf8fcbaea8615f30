#!/usr/bin/env python3
"""t/test_faults.py again, on the embedded SQLite store: the supervisor killed under load and the soak
(the PostgreSQL faults are not defined there)."""
import os
import runpy

os.environ["EVENTODB_TEST_STORE"] = "sqlite"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test_faults.py"), run_name="__main__")
