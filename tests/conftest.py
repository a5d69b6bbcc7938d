"""The project's tests use its own pytest plugin (strictmx.receiver.pytest_plugin).

Installed, the plugin is loaded through its `pytest11` entry point (as `strictmx`) before
any conftest is imported; from a bare checkout (PYTHONPATH) it is loaded here. Loading it
both ways would make pytest register one module under two names, which it refuses, so
it is named here only when nothing has imported it yet.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

pytest_plugins = ["pytester"]
if "strictmx.receiver.pytest_plugin" not in sys.modules:
    pytest_plugins.append("strictmx.receiver.pytest_plugin")

# explain's cache (strictmx/receiver/explain/cache.py) goes to a folder of this run's own,
# inherited by the processes the tests start: a test run must not write into the user's
# ~/.cache, and runs on several Pythons side by side must not take turns rewriting one file.
if "STRICTMX_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="strictmx-test-cache-")
    os.environ["STRICTMX_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
