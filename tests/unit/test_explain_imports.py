"""What a one-bounce `strictmx explain` imports once its explainer is cached: nothing of the
server, the API, the DNS, DKIM and SPF libraries, nor the catalogue's file format (PyYAML
and pydantic, strictmx/receiver/catalogue_schema.py). A structural check on a fresh
interpreter's `sys.modules`, not a timing: what is not imported costs nothing on any machine.

PyYAML is not in the list: explain/signals.py reads its two tables with it on every run.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from strictmx.receiver.catalogue import Catalogue, CatalogueError, OutcomeInfo
from strictmx.receiver.outcome import Outcome
from strictmx.receiver.registry import bundled
from strictmx.receiver.verdict import Stage

#: Top-level distributions (and strictmx modules) a cached explain has no use for.
HEAVY = (
    "pydantic",
    "pydantic_core",
    "aiohttp",
    "aiosmtpd",
    "aiosmtplib",
    "dns",
    "dkim",
    "spf",
    "strictmx.receiver.catalogue_schema",
)
REPLY = "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"


def loaded(program: str, *, stdin: bytes = b"", env: dict[str, str] | None = None) -> set[str]:
    """The modules (top-level names and strictmx's full names) a fresh interpreter holds
    after `program`; the program's own output goes to standard error."""
    show = (
        "import sys\nsys.__stdout__.write(' '.join(sorted({m.split('.')[0] for m in sys.modules}"
        " | {m for m in sys.modules if m.startswith('strictmx')})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"{program}\n{show}"],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return set(done.stdout.decode().split())


EXPLAIN = (
    "import contextlib, sys\n"
    "from strictmx.receiver import cli\n"
    "with contextlib.redirect_stdout(sys.stderr):\n"
    f"    cli.main(['explain', {REPLY!r}])"
)


def test_a_cached_explain_imports_nothing_heavy(tmp_path: Path) -> None:
    env = {"STRICTMX_CACHE_DIR": str(tmp_path)}
    first = loaded(EXPLAIN, env=env)
    # The control: building the explainer parses the catalogue and imports every policy.
    assert {"pydantic", "strictmx.receiver.catalogue_schema"} <= first
    again = loaded(EXPLAIN, env=env)
    assert "strictmx.receiver.explain.command" in again  # explain did run
    assert sorted(set(HEAVY) & again) == []


def test_a_catalogue_reads_back_without_its_file_format() -> None:
    catalogue = bundled()
    program = (
        "import json, pickle, sys\n"
        "c = pickle.loads(sys.stdin.buffer.read())\n"
        "sys.stderr.write(json.dumps([[e.id for e in c.entries], sorted(map(list, c.outcomes))]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"{program}\nimport sys\nprint(' '.join(sys.modules))"],
        input=pickle.dumps(catalogue, protocol=pickle.HIGHEST_PROTOCOL),
        capture_output=True,
        check=True,
        timeout=60,
    )
    modules = set(done.stdout.decode().split())
    ids, keys = json.loads(done.stderr)
    # The control: what was read back is the whole catalogue.
    assert ids == [e.id for e in catalogue.entries]
    assert keys == sorted(map(list, catalogue.outcomes))
    assert "strictmx.receiver.catalogue" in modules
    assert not {"yaml", "pydantic", "strictmx.receiver.catalogue_schema"} & modules


def test_outcome_descriptions_are_plain_frozen_records() -> None:
    info = bundled().outcomes[("reverse_dns", "NO_PTR")]
    assert type(info) is OutcomeInfo and info.key == ("reverse_dns", "NO_PTR")
    with pytest.raises(AttributeError):
        info.fix = "changed"  # type: ignore[misc]


def _plugin(name: str) -> dict[str, list[Outcome]]:
    keen = Outcome("TOO_KEEN", "550 5.7.1 too keen", "The sender is too keen.", stage=Stage.RCPT)
    outcomes = [keen]
    return {name: outcomes}


def test_a_plugin_outcome_that_does_not_validate_names_itself() -> None:
    catalogue: Catalogue = bundled()
    # The control: a well-named plug-in's outcome becomes an entry.
    entry = catalogue.with_policies(_plugin("keen")).get("keen-too-keen")
    assert entry.cause == "The sender is too keen." and entry.family == "keen"
    # A name that makes no valid entry id is said as the catalogue's error, not pydantic's.
    with pytest.raises(CatalogueError) as err:
        catalogue.with_policies(_plugin("Keen Policy"))
    assert str(err.value).startswith("<policies> replies[0] (keen policy-too-keen) id: ids are")
