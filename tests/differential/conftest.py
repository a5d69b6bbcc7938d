"""The differential suite's two servers, each started once per pytest run.

The reference Postfix (one instance per configuration in sessions.yaml) plays every
session once, at the first test that asks, and is stopped at once: its replies are all
the tests need. strictmx serves postfix-strict for
the whole run (one receiver per configuration); each test plays its own session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.postfix import UNAVAILABLE

from . import suite
from .player import Played

# Missing Postfix is a failure, not a skip: scripts/test installs it (Debian's postfix).
assert UNAVAILABLE is None, f"the differential suite cannot run: {UNAVAILABLE}"


@pytest.fixture(scope="session")
def postfix_replies() -> dict[str, Played]:
    """What the reference Postfix answered to every session in sessions.yaml, by name."""
    return suite.record_reference(suite.load_sessions())


@pytest.fixture(scope="session")
def strictmx_receivers() -> Iterator[suite.Receivers]:
    """strictmx serving postfix-strict, one receiver per configuration the tests use."""
    receivers = suite.Receivers(suite.load_configs())
    try:
        yield receivers
    finally:
        receivers.close()
