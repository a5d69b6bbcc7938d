#!/usr/bin/env python3
"""Print the figures of strictmx's import graph: modules, import cycles, imports inside
functions, TYPE_CHECKING imports, modules over 600 lines.

    python3 scripts/layers.py            # figures, then the cycles and imports behind them
    python3 scripts/layers.py --brief    # figures only

The source is read with `ast` (nothing of strictmx is imported), by the same reader that
tests/unit/test_layers.py asserts on (tests/import_graph.py). Exit 0 always: this reports,
the test judges.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import import_graph

LONG = 600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brief", action="store_true", help="figures only")
    args = parser.parse_args()

    graph = import_graph.read()
    cycles = graph.cycles()
    in_function = graph.in_function()
    type_checking = graph.type_checking()
    lines = graph.line_counts()
    long = sorted((n, name) for name, n in lines.items() if n > LONG)

    print(f"modules                      {len(graph.modules)}")
    print(f"import cycles                {len(cycles)}")
    print(f"imports inside functions     {len(in_function)}")
    print(f"TYPE_CHECKING imports        {len(type_checking)}")
    print(f"modules over {LONG} lines       {len(long)}")
    if args.brief:
        return 0
    for group in cycles:
        print(f"\ncycle: {' <-> '.join(group)}")
        for imp in graph.cycle_edges(group):
            print(f"  {imp.where}: {imp.importer} -> {imp.target}")
    if in_function:
        print("\nimports inside functions:")
        for imp in in_function:
            print(f"  {imp.where}: {imp.target}")
    if type_checking:
        print("\nTYPE_CHECKING imports:")
        for imp in type_checking:
            print(f"  {imp.where}: {imp.target}")
    if long:
        print(f"\nmodules over {LONG} lines:")
        for n, name in reversed(long):
            print(f"  {n:5}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
