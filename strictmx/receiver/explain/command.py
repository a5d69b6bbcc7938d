"""`strictmx explain` on the command line: input from TEXT, a FILE or standard input, or
a folder, an mbox or a Maildir of bounces (`--batch PATH`, see batch.py)."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from . import batch
from .explainer import default_explainer
from .explanation import all_recognised, json_all, render_all
from .extract import CODE, MAX_INPUT, ExplainError, decode

EXIT_NOT_RECOGNISED = 1
EXIT_BAD_INPUT = 2
#: As a shell reports a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def read_input(given: str | None) -> bytes:
    """TEXT, a FILE's contents, or standard input for '-' (or nothing, when piped)."""
    if given is None or given == "-":
        if given is None and sys.stdin.isatty():
            raise ExplainError("give the bounce as TEXT, a FILE, or '-' to read standard input")
        return sys.stdin.buffer.read(MAX_INPUT + 1)
    if "\n" not in given and len(given) < 4096 and os.path.isfile(given):
        try:
            with open(given, "rb") as handle:
                return handle.read(MAX_INPUT + 1)
        except OSError as exc:
            raise ExplainError(f"cannot read {given}: {exc.strerror or exc}") from None
    if given and not any(ch.isspace() for ch in given) and not re.match(CODE, given):
        # One word that is no reply: a file name with a typo, not a bounce.
        raise ExplainError(f"{given}: no such file (give the bounce text, a file, or '-')")
    return given.encode("utf-8", "surrogateescape")


def add_input_argument(parser: Any) -> None:
    parser.add_argument(
        "input",
        nargs="?",
        metavar="TEXT|FILE|-",
        help="a reply line, a bounce e-mail, a Postfix/Exim/Sendmail/Microsoft log, or an SMTP "
        "transcript (swaks, S:/C:): as text, in a file, or on standard input ('-')",
    )


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "explain",
        help="explain a bounce (reply, DSN or log line), or a folder, mbox or Maildir of them "
        "(--batch): cause, fix, and how to reproduce it",
    )
    add_input_argument(parser)
    parser.add_argument(
        "--batch",
        metavar="PATH",
        help="explain every bounce in PATH (a folder of files, an mbox or a Maildir): a summary "
        "by class and receiver (rows are recipients), or with --format json one JSON line per "
        "bounce",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")


def main(args: Any) -> int:
    """`strictmx explain`: exit 0 when recognised (every failed recipient of a bounce),
    1 when not, 2 on unusable input. With --batch: 0 when every bounce was read, 1 when
    some were not, 2 for an unusable PATH."""
    if args.batch is not None:
        return _batch(args)
    try:
        explanations = default_explainer().explain_all(decode(read_input(args.input)))
    except ExplainError as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    given = args.input if args.input not in (None, "-") else None
    if args.format == "json":
        print(json.dumps(json_all(explanations, given or "-"), indent=2))
    else:
        print(render_all(explanations, given or "-"))
    return 0 if all_recognised(explanations) else EXIT_NOT_RECOGNISED


def _batch(args: Any) -> int:
    if args.input is not None:
        print("strictmx: give either a bounce or --batch PATH, not both", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return batch.run(args.batch, default_explainer(), args.format)
    except ExplainError as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # Ctrl-C on a long batch: what was printed stands
        print("\nstrictmx: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
