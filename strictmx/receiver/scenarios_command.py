"""`strictmx scenarios`: list the bundled scenarios, print one as shipped, or copy one to
start a scenario of one's own from.

Only bundled names are taken (a path is the user's file already); an unknown name is one
line naming the bundled ones, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import scenario as scenarios
from .scenario import ScenarioError

EXIT_BAD_INPUT = 2
HELP = "list bundled scenarios, print one (show) or copy one to start from (init)"


class UsageError(Exception):
    """Bad input from the command line: one line on stderr, exit 2."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "scenarios",
        help=HELP,
        description="The scenarios shipped with strictmx (serve --scenario NAME takes them)."
        " Without a subcommand: list them.",
    )
    actions = parser.add_subparsers(dest="action", metavar="{list,show,init}")
    actions.add_parser("list", help="each bundled scenario's name and description (default)")
    show = actions.add_parser("show", help="print a bundled scenario's YAML exactly as shipped")
    show.add_argument("name", metavar="NAME", help="a bundled scenario's name")
    init = actions.add_parser(
        "init", help="copy a bundled scenario to a file, to edit and serve with --scenario FILE"
    )
    init.add_argument("name", metavar="NAME", help="a bundled scenario's name")
    init.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it (default: NAME.yaml in the current directory)",
    )
    init.add_argument(
        "--force", action="store_true", help="overwrite FILE if it exists (default: refuse)"
    )


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "show":
            return cmd_show(args.name)
        if args.action == "init":
            return cmd_init(args.name, args.output, force=args.force)
        return cmd_list()
    except UsageError as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_list() -> int:
    for name in scenarios.bundled_names():
        try:
            description = scenarios.load(name).description
        except ScenarioError as exc:
            description = f"(invalid: {exc})"
        print(f"{name:20} {description}")
    return 0


def bundled(name: str) -> Path:
    """The bundled scenario file called `name`; UsageError naming them all if none is."""
    names = scenarios.bundled_names()
    if name not in names:
        raise UsageError(
            f"no bundled scenario named {name!r}; bundled scenarios: {', '.join(names)}"
        )
    return scenarios.bundled_dir() / f"{name}.yaml"


def cmd_show(name: str) -> int:
    data = bundled(name).read_bytes()
    sys.stdout.flush()
    sys.stdout.buffer.write(data)  # the very bytes shipped, whatever the locale
    sys.stdout.buffer.flush()
    return 0


def cmd_init(name: str, output: str | None, *, force: bool) -> int:
    data = bundled(name).read_bytes()
    target = Path(output if output is not None else f"{name}.yaml")
    if target.is_dir():
        raise UsageError(f"{str(target)!r} is a directory; give a file with -o FILE")
    try:
        # "x": the check for an existing file and the creation are one step.
        with target.open("wb" if force else "xb") as out:
            out.write(data)
    except FileExistsError:
        raise UsageError(
            f"{str(target)!r} exists; give another file with -o FILE, or --force to overwrite it"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    print(
        f"strictmx: wrote {target} (bundled scenario {name}); serve it with"
        f" `strictmx serve --scenario {target}`",
        file=sys.stderr,
    )
    return 0
