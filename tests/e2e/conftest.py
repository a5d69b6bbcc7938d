"""Real receivers on loopback for end-to-end tests, driven by real clients.

`serve` is the project's pytest plugin (strictmx.receiver.pytest_plugin) with a journal file per
receiver, for tests that open the SQLite file themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver

Running = StrictmxReceiver
Factory = Callable[..., Running]


@pytest.fixture
def serve(strictmx: StrictmxFactory, tmp_path: Path) -> Factory:
    """`serve("default")`, `serve(path)` or `serve({...scenario dict...}, proxy_protocol=True)`."""

    def start(spec: str | Mapping[str, Any] = "default", **options: Any) -> Running:
        options.setdefault("db", str(tmp_path / f"j{len(strictmx.started)}.db"))
        if isinstance(spec, Mapping):
            return strictmx(scenarios.from_dict(spec, source="<test>"), **options)
        return strictmx(spec, **options)

    return start
