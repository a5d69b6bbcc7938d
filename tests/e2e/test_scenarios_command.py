"""`strictmx scenarios` list/show/init as a user runs them: a real process in a temporary
directory, its stdout, stderr and exit status."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from strictmx.receiver import scenario as scenarios
from tests.serve_child import command, environment

pytestmark = pytest.mark.e2e


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        command("scenarios", *args),
        cwd=cwd,
        env=environment(),
        capture_output=True,
        timeout=60,
        check=False,
    )


def shipped(name: str) -> bytes:
    return (scenarios.bundled_dir() / f"{name}.yaml").read_bytes()


@pytest.mark.parametrize("args", [(), ("list",)])
def test_list_names_each_bundled_scenario(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = run(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in done.stdout.decode().splitlines()]
    assert names == scenarios.bundled_names()


@pytest.mark.parametrize("name", ["default", "postfix-strict", "gmail"])
def test_show_prints_the_yaml_as_shipped(tmp_path: Path, name: str) -> None:
    done = run(tmp_path, "show", name)
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == shipped(name)


@pytest.mark.parametrize("action", ["show", "init"])
def test_an_unknown_name_is_exit_2_listing_the_names(tmp_path: Path, action: str) -> None:
    done = run(tmp_path, action, "no-such-scenario")
    assert done.returncode == 2
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("strictmx: no bundled scenario named 'no-such-scenario'; bundled")
    assert all(name in line for name in scenarios.bundled_names())
    assert done.stdout == b""
    assert list(tmp_path.iterdir()) == []


def test_init_copies_to_name_yaml_and_it_loads(tmp_path: Path) -> None:
    done = run(tmp_path, "init", "postfix-strict")
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "postfix-strict.yaml"
    assert copy.read_bytes() == shipped("postfix-strict")
    assert scenarios.load(str(copy)).name == "postfix-strict"


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    target.write_text("my own work\n")
    refused = run(tmp_path, "init", "default", "-o", "mine.yaml")
    assert refused.returncode == 2
    assert b"'mine.yaml' exists" in refused.stderr and b"--force" in refused.stderr
    assert target.read_text() == "my own work\n"
    forced = run(tmp_path, "init", "default", "-o", "mine.yaml", "--force")
    assert forced.returncode == 0, forced.stderr
    assert target.read_bytes() == shipped("default")


def test_init_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    done = run(tmp_path, "init", "default", "-o", "nowhere/x.yaml")
    assert done.returncode == 2
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("strictmx: cannot write 'nowhere/x.yaml'")
