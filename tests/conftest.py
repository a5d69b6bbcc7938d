"""The project's tests use its own pytest plugin (strictmx.receiver.pytest_plugin).

Installed, the plugin is loaded through its `pytest11` entry point (as `strictmx`) before
any conftest is imported; from a bare checkout (PYTHONPATH) it is loaded here. Loading it
both ways would make pytest register one module under two names, which it refuses, so
it is named here only when nothing has imported it yet.
"""

from __future__ import annotations

import sys

pytest_plugins = ["pytester"]
if "strictmx.receiver.pytest_plugin" not in sys.modules:
    pytest_plugins.append("strictmx.receiver.pytest_plugin")
