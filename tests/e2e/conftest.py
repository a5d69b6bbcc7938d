"""Real receivers on loopback for end-to-end tests, driven by real clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from receiver import scenario as scenarios
from receiver.scenario import Scenario
from receiver.server import Receiver, ReceiverThread, ServerOptions


class Running:
    """A receiver in a background thread, with journal reads for assertions."""

    def __init__(self, thread: ReceiverThread) -> None:
        self.thread = thread
        self.receiver = thread.receiver
        self.host = "127.0.0.1"
        self.port = thread.port

    def settle(self) -> None:
        self.thread.call(self.receiver.settle())

    def sessions(self, **filters: Any) -> list[dict[str, Any]]:
        self.settle()
        result: list[dict[str, Any]] = self.thread.call(self.receiver.journal.sessions(**filters))
        return result

    def last(self) -> dict[str, Any]:
        """The newest session with its transcript."""
        newest = self.sessions(limit=1)
        assert newest, "no session was journaled"
        full: dict[str, Any] = self.thread.call(self.receiver.journal.session(newest[0]["id"]))
        return full

    def message(self, session_id: str, n: int) -> bytes | None:
        raw: bytes | None = self.thread.call(self.receiver.journal.message_raw(session_id, n))
        return raw


Factory = Callable[..., Running]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Factory]:
    """`serve("default")`, `serve(path)` or `serve({...scenario dict...}, proxy_protocol=True)`."""
    started: list[ReceiverThread] = []

    def start(spec: str | Mapping[str, Any] = "default", **options: Any) -> Running:
        scenario: Scenario
        if isinstance(spec, str):
            scenario = scenarios.load(spec)
        else:
            scenario = scenarios.from_dict(spec, source="<test>")
        opts = ServerOptions(host="127.0.0.1", port=0, db=str(tmp_path / f"j{len(started)}.db"))
        for key, value in options.items():
            setattr(opts, key, value)
        thread = ReceiverThread(Receiver(scenario, opts)).start()
        started.append(thread)
        return Running(thread)

    yield start
    for thread in started:
        thread.stop()
