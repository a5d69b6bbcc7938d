"""The wheel, installed into a fresh venv next to a project that has its own top-level
`policies` and `receiver` packages (common names; a Django project often has both).

strictmx installs one import name, `strictmx`. Its pytest plugin loads in every pytest
run of a venv that has strictmx (the `pytest11` entry point), so a top-level name of
ours would shadow the user's package, or theirs ours, and break their whole suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

USERS_TESTS = """
import smtplib

import strictmx
from policies import NAME
from receiver import KIND


def test_the_projects_own_packages_are_its_own():
    assert (NAME, KIND) == ("the user's policies", "the user's receiver")


def test_a_third_party_policy_imports_from_strictmx():
    assert issubclass(strictmx.Policy, object) and strictmx.Stage.HELO.value == "helo"


def test_the_plugin_serves_a_receiver(strictmx_receiver):
    with smtplib.SMTP(strictmx_receiver.host, strictmx_receiver.port) as client:
        code, _ = client.ehlo("mail.example.net")
    assert code == 250
"""


def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_lives_beside_a_project_with_its_own_policies_and_receiver(
    tmp_path: Path,
) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT)
    (wheel,) = dist.glob("strictmx-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, "pytest")

    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    ours = {p.name for p in site.iterdir() if p.name.startswith(("strictmx", "receiver", "polic"))}
    assert {n for n in ours if not n.startswith("strictmx")} == set(), ours
    assert (site / "strictmx" / "scenarios" / "default.yaml").is_file()

    project = tmp_path / "project"
    for package, text in (
        ("policies", 'NAME = "the user\'s policies"\n'),
        ("receiver", 'KIND = "the user\'s receiver"\n'),
    ):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(text)
    (project / "tests").mkdir()
    (project / "tests" / "test_users.py").write_text(textwrap.dedent(USERS_TESTS))
    done = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=project)
    assert "3 passed" in done.stdout, done.stdout
