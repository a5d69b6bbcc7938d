"""The private Exim receiver itself: it starts from the fetched packages, answers as the
committed recording says (so the exim dialect's sources stay true), and stops by its PID.

Exim is fetched on first use (tests/differential/exim.py `fetch()`: apt-get download and
dpkg -x into ~/.cache/strictmx/exim, or $STRICTMX_EXIM_CACHE); CI runs as root with
Debian's mirrors reachable, as the Postfix tests already need."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from tests.differential import exim as exim_module
from tests.differential.exim import Exim
from tests.differential.record_exim import LINGER, PROBES, RECORDING_PATH, play

_QUEUE_ID = re.compile(r"\bid=[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}\b")
_REFERENCE = re.compile(r"^S: \(the EHLO reply of probe (?P<probe>[a-z0-9-]+)\)$")


@pytest.fixture(scope="module")
def exim() -> Iterator[Exim]:
    if exim_module.UNAVAILABLE is not None:
        raise RuntimeError(f"the private Exim cannot run here: {exim_module.UNAVAILABLE}")
    instance = Exim().start()
    try:
        yield instance
    finally:
        instance.stop()


def _recorded() -> dict[str, list[str]]:
    """Each probe's answer lines as recorded, EHLO references expanded."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in RECORDING_PATH.read_text().splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].split()[0], [])
        elif line.startswith(("S: ", "-- ")):
            current.append(line)
    expanded: dict[str, list[str]] = {}
    for name, lines in sections.items():
        out: list[str] = []
        for line in lines:
            ref = _REFERENCE.match(line)
            if ref:
                source = sections[ref["probe"]]
                start = next(i for i, ln in enumerate(source) if ln.startswith("S: 250-"))
                end = next(i for i in range(start, len(source)) if source[i].startswith("S: 250 "))
                out += source[start : end + 1]
            else:
                out.append(line)
        expanded[name] = out
    return expanded


def _answers(lines: list[str]) -> list[str]:
    return [_QUEUE_ID.sub("id=*", ln) for ln in lines if ln.startswith(("S: ", "-- "))]


def test_exim_answers_as_recorded(exim: Exim) -> None:
    """Every probe of the persona's own configuration, replayed: same replies, same closes."""
    recorded = _recorded()
    probes = [p for p in PROBES if not p.settings and p.breaks is None]
    assert len(probes) > 100
    differ = []
    for probe in probes:
        then = _answers(recorded[probe.name])
        # A close Exim recorded is waited for (reading returns as soon as it comes), so a
        # busy machine does not turn it into "open".
        linger = 10.0 if then[-1] == "-- closed by Exim" else LINGER
        now = _answers(play(exim.port, probe, linger))
        if now != then:
            differ.append(f"{probe.name}:\n  recorded {then}\n  now      {now}")
    assert not differ, "Exim no longer answers as recorded:\n" + "\n".join(differ)


def test_relay_is_denied_and_local_users_accepted(exim: Exim) -> None:
    lines = play(exim.port, next(p for p in PROBES if p.name == "rcpt-relay"))
    assert "S: 550 relay not permitted" in lines
    control = play(exim.port, next(p for p in PROBES if p.name == "rcpt-ok"))
    assert "S: 250 Accepted" in control


def test_stop_ends_the_daemon_it_started() -> None:
    instance = Exim().start()
    process = instance.process
    assert process is not None and process.poll() is None
    # Control: the daemon answers while it runs.
    with socket.create_connection(("127.0.0.1", instance.port), timeout=5) as sock:
        assert sock.recv(512).startswith(b"220 mx.strictmx.test ESMTP Exim 4.96")
    instance.stop()
    assert process.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", instance.port), timeout=5).close()
    assert not instance.root.exists()


def test_a_bad_configuration_is_refused_and_leaves_nothing() -> None:
    """Exim's own check (-bV) names the bad option; no daemon, no directory is left."""
    instance = Exim(settings={"no_such_option": "1"})
    with pytest.raises(RuntimeError, match="no_such_option"):
        instance.start()
    assert instance.process is None
    assert not instance.root.exists()
