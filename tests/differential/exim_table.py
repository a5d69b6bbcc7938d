"""`python -m tests.differential.exim_table`: strictmx's exim-strict against a live Exim 4.96
(tests/differential/exim.py), over the differential suite's sessions.

It reuses the Postfix suite's parts (sessions.yaml, player.py, suite.py's comparison and
table) and plays every session that runs on the reference configuration (the per-case
configurations are Postfix settings) against both: Exim from the same client address as
the Postfix reference, strictmx serving exim-strict with the `exim` dialect. It prints the
agreement table (code, code + enhanced code, full text) and each session that differs.

    python -m tests.differential.exim_table               # table and differences
    python -m tests.differential.exim_table --only NAME   # just these sessions

The client's address, which Exim's HELO reply quotes, is normalised like the host name
(strictmx sees the world's address for 127.0.0.10). Not a pass/fail test yet: exim-strict
keeps DNS-based checks the private Exim leaves out (HELO verification, reverse DNS, DNSBL,
sender routing) and accepts every local part at strictmx.test where the Exim knows four,
so some differences are the persona's, not the dialect's. Exit status 0 when every reply
agrees, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.server import Receiver, ReceiverThread, ServerOptions

from . import reference, suite
from .exim import HOSTNAME, Exim
from .player import Played, play

SCENARIO = "exim-strict"


def exim_strict() -> scenarios.Scenario:
    """exim-strict as bundled, speaking the exim dialect if it does not name one yet."""
    path = scenarios.resolve(SCENARIO)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("receiver", {}).setdefault("dialect", "exim")
    return scenarios.from_dict(data, source=str(path), default_name=SCENARIO)


@contextmanager
def strictmx_exim_strict() -> Iterator[ReceiverThread]:
    # No trusted peers: XCLIENT would otherwise be offered to the loopback client.
    options = ServerOptions(host="127.0.0.1", port=0, db=":memory:", trusted=())
    thread = ReceiverThread(Receiver(exim_strict(), options)).start()
    try:
        yield thread
    finally:
        thread.stop()


def as_client(played: Played, address: str) -> Played:
    """`played` with the client's address as the server saw it ([127.0.0.10] to Exim, the
    world's [203.0.113.10] to exim-strict) written [CLIENT]: Exim's HELO reply quotes it."""
    mark = f"[{address}]"

    def lines(reply: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if reply is None else tuple(x.replace(mark, "[CLIENT]") for x in reply)

    turns = [dataclasses.replace(t, reply=lines(t.reply)) for t in played.turns]
    return dataclasses.replace(played, turns=turns, trailing=lines(played.trailing) or ())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.differential.exim_table")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="play only these sessions")
    args = parser.parse_args(argv)

    sessions = [s for s in suite.load_sessions() if s.config == suite.REFERENCE.name]
    if args.only:
        unknown = set(args.only) - {s.name for s in sessions}
        if unknown:
            parser.error(f"no such session on the reference configuration: {sorted(unknown)}")
        sessions = [s for s in sessions if s.name in args.only]

    started = time.monotonic()
    exim = Exim().start()
    try:
        theirs: dict[str, Played] = {
            s.name: play("127.0.0.1", exim.port, s.steps, source=reference.CLIENT) for s in sessions
        }
        version = exim.version
    finally:
        exim.stop()
    outcomes = []
    with strictmx_exim_strict() as thread:
        for s in sessions:
            ours = play("127.0.0.1", thread.port, s.steps, source=reference.CLIENT)
            seen_as = thread.receiver.persona.world.clients.lookup(reference.CLIENT).address
            outcomes.append(
                suite.compare(
                    s,
                    as_client(theirs[s.name], reference.CLIENT),
                    as_client(ours, seen_as),
                    [],
                    postfix_hostname=HOSTNAME,
                    strictmx_hostname=thread.receiver.scenario.receiver.hostname,
                )
            )
    elapsed = time.monotonic() - started

    print(suite.table(outcomes, f"{SCENARIO} vs {version} (private, tests/differential/exim.py)"))
    print(f"both sides played in {elapsed:.1f} s (in the lines below, 'Postfix' is Exim)\n")
    return suite.print_differences(outcomes)


if __name__ == "__main__":
    sys.exit(main())
