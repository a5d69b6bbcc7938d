"""Throughput of `strictmx serve` against bare aiosmtpd, measured with Postfix's smtp-source.

Each run starts one server on a free loopback port, waits until it accepts connections,
loads it with smtp-source (one message per connection, N parallel sessions), and stops it
with SIGTERM. Bare aiosmtpd and strictmx (default scenario, journal on) alternate so that
drift on the machine hits both alike; with --runs N the verdict is the median of the runs'
ratios (each run's two servers ran back to back), with the ratio of the medians beside it.

The counts are checked, not assumed: the bare server reports how many messages it took,
and strictmx's journal must hold exactly --messages messages. A mismatch exits 1.

    python bench/smtp_source.py [--messages 15000] [--sessions 20] [--size 1024] [--runs 1]
    python bench/smtp_source.py --profile [FILE]   # strictmx under cProfile, top 25 after
    python bench/smtp_source.py --pin              # event loops on one CPU, the rest on another

With --pin, each server's event-loop process runs on one CPU, and smtp-source (and
strictmx's journal writer process) on another: the ratio then measures what strictmx's
event loop does per message, without the scheduler putting the writer on the loop's CPU.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BARE_SERVER = REPO / "bench" / "bare_aiosmtpd.py"
TARGET = 0.8
HOST = "127.0.0.1"
# The default scenario refuses a HELO name that is not a fully-qualified RFC 1035 name, and
# smtp-source greets with the machine's hostname unless told otherwise (-M); a refused
# greeting would make smtp-source abort and the numbers mean nothing.
HELO_NAME = "mail.example.net"
SENDER = "bench@example.net"
RECIPIENT = "alice@example.net"
READY_TIMEOUT = 20.0  # seconds; startup under cProfile is slow
STOP_TIMEOUT = 30.0


class BenchError(Exception):
    """The benchmark could not run: a server did not start or stop, smtp-source failed."""


@dataclass(frozen=True)
class Result:
    server: str
    accepted: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        print("--pin needs at least two CPUs this process may use", file=sys.stderr)
        return 2
    smtp_source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not os.access(smtp_source, os.X_OK):
        print("smtp-source not found: install Debian's postfix package", file=sys.stderr)
        return 2
    results: dict[str, list[Result]] = {"bare": [], "strictmx": []}
    profiles: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="strictmx-bench-") as tmp:
        workdir = Path(tmp)
        try:
            for i in range(args.runs):
                order = ("bare", "strictmx") if i % 2 == 0 else ("strictmx", "bare")
                for name in order:
                    profile = None
                    if name == "strictmx" and args.profile is not None:
                        profile = _profile_path(args.profile, workdir, i, args.runs)
                        profiles.append(profile)
                    result = run_once(name, smtp_source, args, workdir / f"run{i}", profile)
                    results[name].append(result)
                    print(
                        f"run {i + 1}/{args.runs} {name:8} {result.accepted:6d} messages "
                        f"{result.seconds:7.2f} s {result.rate:8.1f} msg/s",
                        file=sys.stderr,
                    )
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        report(results, args)
        if profiles:
            print(f"\ncProfile of strictmx ({', '.join(str(p) for p in profiles)}):")
            pstats.Stats(*(str(p) for p in profiles)).sort_stats("cumulative").print_stats(25)
    short = [r for rs in results.values() for r in rs if r.accepted != args.messages]
    for r in short:
        print(f"bench: {r.server} accepted {r.accepted} of {args.messages}", file=sys.stderr)
    return 1 if short else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=_positive, default=15000, help="messages per run")
    parser.add_argument("--sessions", type=_positive, default=20, help="parallel sessions")
    parser.add_argument("--size", type=_positive, default=1024, help="message body bytes")
    parser.add_argument("--runs", type=_positive, default=1, help="runs per server (median)")
    parser.add_argument(
        "--message",
        metavar="FILE",
        help="send this file as every message (smtp-source -F; --size is then ignored): a "
        "DKIM-signed message, so that a scenario verifying signatures does its full work",
    )
    parser.add_argument(
        "--scenario", default="default", help="scenario strictmx serves (bundled name or path)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds one smtp-source run may take"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run each server's event loop on one CPU, smtp-source and helpers on another",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="",
        metavar="FILE",
        help="run strictmx under cProfile (kept in FILE if given) and print the top 25",
    )
    return parser.parse_args(argv)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return number


def _profile_path(requested: str, workdir: Path, run: int, runs: int) -> Path:
    if not requested:
        return workdir / f"strictmx-{run}.prof"
    path = Path(requested).resolve()
    return path if runs == 1 else path.with_suffix(f".{run}{path.suffix}")


def run_once(
    name: str, smtp_source: str, args: argparse.Namespace, rundir: Path, profile: Path | None
) -> Result:
    rundir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db = rundir / "bench.db"
    if name == "bare":
        command = [sys.executable, str(BARE_SERVER), HOST, str(port)]
    else:
        command = [sys.executable]
        if profile is not None:
            command += ["-m", "cProfile", "-o", str(profile)]
        command += ["-m", "strictmx.receiver.cli", "serve", "--scenario", args.scenario]
        command += ["--listen", f"{HOST}:{port}", "--db", str(db)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    log = rundir / f"{name}.log"
    # Output goes to a file, not a pipe: a server that logs per session would otherwise
    # block on a full pipe that nobody reads during the load.
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
    try:
        wait_ready(server, port, log)
        if args.pin:
            pin(server.pid)
        seconds = load(smtp_source, port, args)
    finally:
        stop(server, log)
    accepted = _bare_count(log) if name == "bare" else journal_count(db)
    return Result(name, accepted, seconds)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_ready(
    server: subprocess.Popen[bytes], port: int, log: Path, timeout: float = READY_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise BenchError(f"server exited with {server.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"server not listening after {timeout:.0f} s") from None
            time.sleep(0.05)


def load(smtp_source: str, port: int, args: argparse.Namespace) -> float:
    command = [
        smtp_source,
        "-s", str(args.sessions),
        "-m", str(args.messages),
        *(["-F", args.message] if args.message else ["-l", str(args.size)]),
        "-M", HELO_NAME,
        "-f", SENDER,
        "-t", RECIPIENT,
        f"{HOST}:{port}",
    ]  # fmt: skip
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=args.timeout,
            check=False,
            preexec_fn=(lambda: os.sched_setaffinity(0, _cpus()[1])) if args.pin else None,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"smtp-source did not finish within {args.timeout:.0f} s") from None
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise BenchError(f"smtp-source exited with {done.returncode}: {output}")
    return seconds


def _cpus() -> tuple[set[int], set[int]]:
    """The CPU for the event loops, and the CPUs for everything else."""
    mine = sorted(os.sched_getaffinity(0))
    return {mine[0]}, set(mine[1:])


def pin(pid: int) -> None:
    """The server's process on the loop CPU; the processes it started on the others."""
    loop_cpu, others = _cpus()
    os.sched_setaffinity(pid, loop_cpu)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        os.sched_setaffinity(int(child), others)


def stop(server: subprocess.Popen[bytes], log: Path) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise BenchError(f"server ignored SIGTERM for {STOP_TIMEOUT:.0f} s") from None
    if server.returncode != 0:
        raise BenchError(f"server exited with {server.returncode}:\n{_tail(log)}")


def _bare_count(log: Path) -> int:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("messages "):
            return int(line.split()[1])
    raise BenchError(f"bare server reported no count:\n{_tail(log)}")


def journal_count(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    return int(count)


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def report(results: dict[str, list[Result]], args: argparse.Namespace) -> None:
    runs = f", median of {args.runs} runs" if args.runs > 1 else ""
    body = f"the message {args.message}" if args.message else f"{args.size}-byte bodies"
    print(
        f"smtp-source: {args.messages} messages, {args.sessions} sessions, "
        f"{body}, one message per connection{runs}"
    )
    print(f"{'server':10} {'messages':>8} {'seconds':>8} {'msg/s':>8}")
    rates: dict[str, float] = {}
    for name, rs in results.items():
        rates[name] = statistics.median(r.rate for r in rs)
        seconds = statistics.median(r.seconds for r in rs)
        accepted = min(r.accepted for r in rs)
        print(f"{name:10} {accepted:8d} {seconds:8.2f} {rates[name]:8.1f}")
    counts = ", ".join(str(r.accepted) for r in results["strictmx"])
    print(f"strictmx journal: {counts} messages accepted (expected {args.messages} per run)")
    # Each run pairs the two servers back to back (alternating which goes first), so the
    # machine's drift between runs cancels within a pair: the verdict is the median of the
    # pairs' ratios. The ratio of the medians is shown beside it.
    paired = [s.rate / b.rate for s, b in zip(results["strictmx"], results["bare"], strict=True)]
    ratio = statistics.median(paired)
    of_medians = rates["strictmx"] / rates["bare"]
    if len(paired) > 1:
        print(
            "ratio per run: "
            + ", ".join(f"{r:.2f}" for r in paired)
            + f" (ratio of the medians {of_medians:.2f})"
        )
    verdict = "met" if ratio >= TARGET else "NOT met"
    note = " (strictmx under cProfile: not a fair ratio)" if args.profile is not None else ""
    if args.pin:
        note += " [--pin: event loops on one CPU, smtp-source and the journal writer on another]"
    print(f"ratio strictmx/bare = {ratio:.2f} (target >= {TARGET:.1f}: {verdict}){note}")


if __name__ == "__main__":
    sys.exit(main())
