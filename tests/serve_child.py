"""`strictmx serve` in a child process that the test started: its start-up lines, its
ports, its journal writer, and its exit. Shared by the CLI tests and the hostile suite.

Its stderr goes to a file, not a pipe: a server logging under load must never block on
a pipe that nobody reads until the end.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Final

ROOT: Final = Path(__file__).resolve().parents[1]
LISTENING: Final = re.compile(r"^strictmx: listening on 127\.0\.0\.1:(\d+)$")
API_ON: Final = re.compile(r"^strictmx: API on http://127\.0\.0\.1:(\d+)/api/v1$")
START_TIMEOUT: Final = 20.0
EXIT_TIMEOUT: Final = 20.0


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "strictmx.receiver.cli", *args]


def environment(*, api_token: bool = True) -> dict[str, str]:
    """The test's environment with this checkout first; without `$STRICTMX_API_TOKEN`
    unless `api_token` (tests of the token set it themselves)."""
    env = {k: v for k, v in os.environ.items() if api_token or k != "STRICTMX_API_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    return env


class ServeChild:
    """`strictmx serve --listen 127.0.0.1:0 --db journal.db ARGS...` run in `cwd` (a later
    `--db` in ARGS wins), ready once its start-up lines are printed: they end with the
    indented per-stage policy lines."""

    def __init__(self, cwd: Path, *args: str, api_token: bool = True, verbose: int = 0) -> None:
        self._stderr_path = cwd / f"serve-{time.monotonic_ns()}.stderr"
        top = ("-" + "v" * verbose,) if verbose else ()
        with self._stderr_path.open("w") as stderr:
            self.proc = subprocess.Popen(
                command(*top, "serve", "--listen", "127.0.0.1:0", "--db", "journal.db", *args),
                cwd=cwd,
                env=environment(api_token=api_token),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        try:
            self.started = self._read_start()
            ports = [int(m.group(1)) for m in map(LISTENING.match, self.started) if m]
            assert ports, self.started
            apis = [int(m.group(1)) for m in map(API_ON.match, self.started) if m]
        except BaseException:
            self.kill()
            raise
        self.port = ports[0]
        #: The HTTP API's port, when ARGS asked for one with --api-listen.
        self.api_port = apis[0] if apis else None

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_start(self) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT
        while not lines or not lines[-1].startswith("  "):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no start-up lines in {START_TIMEOUT}s: {lines}") from None
            if line is None:
                self.proc.wait(timeout=EXIT_TIMEOUT)
                raise AssertionError(f"serve exited while starting: {lines} {self.stderr()}")
            lines.append(line)
        return lines

    def line(self, timeout: float = 10.0) -> str:
        """The next line on stdout that is no start-up line (a session's line, say); the
        start-up lines' indented per-stage policy lines are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line on stdout in {timeout:g}s") from None
            assert line is not None, "stdout closed"
            if not line.startswith("  "):
                return line

    def rest(self) -> list[str]:
        """Every line left on stdout but start-up lines, once the child has exited."""
        assert self.proc.poll() is not None, "the child still runs"
        lines: list[str] = []
        while (line := self._lines.get(timeout=EXIT_TIMEOUT)) is not None:
            if not line.startswith("  "):
                lines.append(line)
        return lines

    def wait(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit code; stdout stays readable (`rest`)."""
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=EXIT_TIMEOUT)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        """What the child wrote to stderr so far (all of it, once it has exited)."""
        return self._stderr_path.read_text()

    def writer_pid(self) -> int:
        """The journal's writer: the server's only child process."""
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as children:
            pids = [int(p) for p in children.read().split()]
        assert len(pids) == 1, pids
        return pids[0]

    def status(self, key: str) -> int:
        """A `/proc/PID/status` figure in KiB (VmRSS now, VmHWM the peak)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {key} in /proc/{self.proc.pid}/status")

    def terminate(self) -> int:
        """SIGTERM, and the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=EXIT_TIMEOUT)
        self._close()
        return code

    def kill(self) -> None:
        """SIGKILL if it still runs: no grace, no flush."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=EXIT_TIMEOUT)
        self._close()

    def stop(self) -> str:
        """SIGTERM, then SIGKILL should it not exit in time; its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=EXIT_TIMEOUT)
        self._close()
        return self.stderr()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
