#!/usr/bin/env python3
"""t/test_http_layer.py again, on the embedded SQLite store."""
import os
import runpy

os.environ["EVENTODB_TEST_STORE"] = "sqlite"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test_http_layer.py"), run_name="__main__")
