"""`strictmx reproduce -o FILE`: an existing file is replaced only with --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from strictmx.receiver import cli
from strictmx.receiver import scenario as scenarios

BOUNCE = "550 rejected because rdns"


def test_an_existing_file_is_kept_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine.yaml"
    out.write_text("my own notes\n")
    assert cli.main(["reproduce", BOUNCE, "-o", str(out)]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err == f"strictmx: {out} exists; use --force to overwrite it\n"
    assert out.read_text() == "my own notes\n"


def test_a_symlink_to_an_existing_file_is_kept_without_force(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    assert cli.main(["reproduce", BOUNCE, "-o", str(link)]) == cli.EXIT_BAD_INPUT
    assert target.read_text() == "keep\n"


@pytest.mark.parametrize("flag", ["--force", "-f"])
def test_force_overwrites(tmp_path: Path, flag: str) -> None:
    out = tmp_path / "repro.yaml"
    out.write_text("old\n")
    assert cli.main(["reproduce", BOUNCE, "-o", str(out), flag]) == 0
    assert scenarios.load(str(out)).name == "reproduce-seed-18"


def test_a_new_file_needs_no_force(tmp_path: Path) -> None:
    out = tmp_path / "new.yaml"
    assert cli.main(["reproduce", BOUNCE, "-o", str(out)]) == 0
    assert scenarios.load(str(out)).name == "reproduce-seed-18"
