"""Instructions per message in each server's event-loop process, counted by callgrind.

The companion of smtp_source.py for a noisy machine: wall-clock throughput on a shared
virtual machine moves by ±15% between runs, an instruction count by about 0.1%. Each
server runs under `valgrind --tool=callgrind` with instrumentation off; after a warm-up
load (caches, the first callout, the interpreter's specialisation) it is switched on for
exactly the measured smtp-source load and off again. The count covers the event-loop
process only: strictmx's journal writer is a separate process and is not counted (its
CPU is on the other core in smtp_source.py's runs too). Kernel time is not counted either.

    python bench/instructions.py [--messages 300] [--scenario default]

Prints instructions per message for bare aiosmtpd and strictmx and their ratio (bare over
strictmx, so that more than 1 means strictmx does less per message). It needs valgrind
(`apt-get install valgrind`) and smtp-source, and takes about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import smtp_source as bench

WARM_UP = 100  # messages before counting starts
# Start-up under callgrind is some 50 times slower than without (imports, the TLS key),
# and slower still on a busy machine: 20 s was not always enough on a shared 2-core VM.
READY_TIMEOUT = 180.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=300, help="messages counted")
    parser.add_argument("--sessions", type=int, default=20, help="parallel sessions")
    parser.add_argument("--size", type=int, default=1024, help="message body bytes")
    parser.add_argument("--scenario", default="default", help="scenario strictmx serves")
    parser.add_argument("--message", metavar="FILE", help="send this file as every message")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per load")
    parser.add_argument(
        "--only",
        choices=("bare", "strictmx"),
        help="count one server (large messages make the bare server's count take long)",
    )
    args = parser.parse_args(argv)
    args.pin = False
    tools = {name: shutil.which(name) for name in ("valgrind", "callgrind_control")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        print(f"{', '.join(missing)} not found: install Debian's valgrind", file=sys.stderr)
        return 2
    smtp_source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not os.access(smtp_source, os.X_OK):
        print("smtp-source not found: install Debian's postfix package", file=sys.stderr)
        return 2
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="strictmx-instructions-") as tmp:
        try:
            for name in [args.only] if args.only else ["bare", "strictmx"]:
                counts[name] = count(name, smtp_source, args, Path(tmp) / name)
                print(f"{name:8} {counts[name] / args.messages:12,.0f} instructions/message")
        except bench.BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    print(
        f"{args.messages} messages counted after {WARM_UP} to warm up, {args.sessions} sessions, "
        f"scenario {args.scenario}"
    )
    if args.only:
        return 0
    ratio = counts["bare"] / counts["strictmx"]
    print(f"instructions bare/strictmx = {ratio:.2f} (above 1: strictmx does less per message)")
    return 0


def count(name: str, smtp_source: str, args: argparse.Namespace, rundir: Path) -> int:
    rundir.mkdir(parents=True)
    port = bench.free_port()
    out = rundir / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    command += [f"--callgrind-out-file={out}", sys.executable]
    if name == "bare":
        command += [str(bench.BARE_SERVER), bench.HOST, str(port)]
    else:
        command += ["-m", "strictmx.receiver.cli", "serve", "--scenario", args.scenario]
        command += ["--listen", f"{bench.HOST}:{port}", "--db", str(rundir / "bench.db")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bench.REPO), env.get("PYTHONPATH")]))
    log = rundir / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(command, cwd=bench.REPO, env=env, stdout=output, stderr=output)
    try:
        bench.wait_ready(server, port, log, READY_TIMEOUT)
        bench.load(smtp_source, port, _with(args, messages=WARM_UP))
        _instrument(server.pid, "on")
        bench.load(smtp_source, port, args)
        _instrument(server.pid, "off")
    except BaseException:
        # Stopping a server that failed may fail too; the first error is the one to show.
        with contextlib.suppress(bench.BenchError):
            bench.stop(server, log)
        raise
    bench.stop(server, log)
    return _total(out)


def _with(args: argparse.Namespace, **changes: object) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def _instrument(pid: int, state: str) -> None:
    subprocess.run(
        ["callgrind_control", "--instr=" + state, str(pid)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _total(out: Path) -> int:
    # The file's head has a `summary:` of what was counted before instrumentation came
    # on (nothing); its `totals:` line, at the end, holds the count.
    for line in reversed(out.read_text().splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise bench.BenchError(f"no instruction total in {out}")


if __name__ == "__main__":
    sys.exit(main())
