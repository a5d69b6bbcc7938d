"""The Dockerfile's HEALTHCHECK, run as Docker would run it (its exec form) against a real
`strictmx serve` with the API: no image is built."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serve_child import ROOT, ServeChild

pytestmark = pytest.mark.e2e


def healthcheck() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M)
    assert found, "no HEALTHCHECK in exec form"
    argv: list[str] = json.loads(found.group(1))
    return argv


def run_check(port: int) -> int:
    argv = healthcheck()
    assert argv[0] == "python"
    code = argv[-1].replace(":8025/", f":{port}/")
    return subprocess.run([sys.executable, *argv[1:-1], code], timeout=30, check=False).returncode


def test_the_image_serves_the_api_its_healthcheck_asks() -> None:
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert cmd is not None
    assert json.loads(cmd.group(1))[-2:] == ["--api-listen", "0.0.0.0:8025"]
    assert ":8025/api/v1/health" in healthcheck()[-1]


def test_the_healthcheck_passes_and_opens_no_smtp_session(tmp_path: Path) -> None:
    server = ServeChild(tmp_path, "--api-listen", "127.0.0.1:0")
    try:
        assert server.api_port is not None
        for _ in range(3):
            assert run_check(server.api_port) == 0
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)


def test_the_healthcheck_fails_when_nothing_answers() -> None:
    with socket.socket() as sock:  # control: a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert run_check(port) != 0
