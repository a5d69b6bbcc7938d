"""The `strictmx` command line: one subcommand per module, imported only when chosen.

Each subcommand's module is imported through `COMMANDS`, by name, once argv says which
one runs: importing them all (the server, the API, the registry and every policy, the
scenarios) took about a second, which `strictmx explain` paid before reading its input.
The other subcommands appear in the parser as stubs carrying their help line only, so
`strictmx --help` lists them all and costs no import either.

The import graph that tests/unit/test_layers.py reads with `ast` cannot see these imports;
tests/unit/test_cli_lazy.py adds them to it as edges of this module and checks the layer
and cycle rules on that, and that each stub's help is its module's own.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Command:
    """A subcommand: the module that has it, that module's functions adding its parser and
    running it (`run(args) -> exit status`), and its help line for `strictmx --help`."""

    module: str
    add_parser: str
    run: str
    help: str


#: The subcommands, in `strictmx --help` order.
COMMANDS: dict[str, Command] = {
    "serve": Command(
        "strictmx.receiver.serve_command", "add_parser", "main", "serve a scenario over SMTP"
    ),
    "policies": Command(
        "strictmx.receiver.serve_command",
        "add_policies_parser",
        "main",
        "list policies, their outcomes, replies and options",
    ),
    "scenarios": Command(
        "strictmx.receiver.scenarios_command",
        "add_parser",
        "main",
        "list bundled scenarios, print one (show) or copy one to start from (init)",
    ),
    "run": Command(
        "strictmx.receiver.runner",
        "add_parser",
        "main",
        "play a scenario's expect: cases over SMTP; exit 1 when one does not hold",
    ),
    "check": Command(
        "strictmx.receiver.check",
        "add_parser",
        "main",
        "evaluate one envelope and message against a scenario, offline, listing every "
        "objection with its reply and fix",
    ),
    "explain": Command(
        "strictmx.receiver.explain.command",
        "add_parser",
        "main",
        "explain a bounce (reply, DSN or log line), or a folder, mbox or Maildir of them "
        "(--batch): cause, fix, and how to reproduce it",
    ),
    "reproduce": Command(
        "strictmx.receiver.reproduce",
        "add_parser",
        "main",
        "write a scenario whose receiver refuses like the bounce says, and the swaks "
        "command that shows it",
    ),
}


def chosen(argv: Sequence[str]) -> str | None:
    """The subcommand argv names: its first word that is no option (the top-level options,
    -v and -h, take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser, complete for the subcommand argv chooses; the others are stubs."""
    parser = argparse.ArgumentParser(
        prog="strictmx", description="An SMTP server that behaves like the strictest receivers."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    name = chosen(argv)
    for command, spec in COMMANDS.items():
        if command == name:
            getattr(importlib.import_module(spec.module), spec.add_parser)(sub)
        else:
            sub.add_parser(command, help=spec.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verbose < 2:
        # aiosmtpd logs every line at INFO; our journal already has the transcript.
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # unknown commands: WARNING
    spec = COMMANDS[args.command]
    run: Any = getattr(importlib.import_module(spec.module), spec.run)
    try:
        return int(run(args))
    except BrokenPipeError:
        # The reader went away (`strictmx policies | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
