"""How fast `strictmx explain` answers: one bounce per process, and bounces in batch mode.

    python bench/explain.py [--runs 10] [--bounces 1000]

Prints, each the median of --runs runs of a fresh `python -m strictmx.receiver.cli` process,
as wall time and as CPU time (user + system, steadier on a shared machine):
- the wall time of `strictmx explain "550 5.7.1 ..."` with the explainer cache warm (the
  usual case: every run after the first), and with it cold (built, then written);
- the wall time of `strictmx explain --batch` over an mbox and a folder of --bounces bounces
  (DSNs, Postfix log lines and reply lines made from the catalogue's documented replies and
  a few it does not know), and from it the time per bounce and per 1,000 bounces, with the
  process start-up (the wall time of a batch of one bounce) taken off.

Each figure is a whole process as a user runs it, so it includes Python's own start-up,
and with strictmx's modules compiled to bytecode as pip installs them: the runs write and
read their .pyc files in a temporary folder (PYTHONPYCACHEPREFIX), whatever the caller's
PYTHONDONTWRITEBYTECODE says. Without bytecode every run compiles each strictmx module it
imports (about 55 ms of CPU for explain's), so the warm figure is also printed as this
environment runs it.
The cache lives in a temporary folder (STRICTMX_CACHE_DIR), never the user's.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from strictmx.receiver.registry import bundled

COMMAND = [sys.executable, "-m", "strictmx.receiver.cli", "explain"]
SINGLE = "550 5.7.1 Service unavailable; client host [203.0.113.9] blocked using zen.spamhaus.org"
#: Replies outside the catalogue, so "not recognised" is timed as well.
OTHERS = [
    "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown",
    "452 4.2.2 The email account that you tried to reach is over quota",
    "552 5.3.4 Message size exceeds fixed maximum message size",
    "421 4.7.0 Try again later, closing connection. (EHLO)",
]


def replies() -> list[str]:
    texts = [" ".join(e.documented) for e in bundled().entries]
    return [*texts, *OTHERS]


def dsn(n: int, reply: str) -> str:
    status = next((w for w in reply.split()[1:2] if w[:1] in "245" and "." in w), "5.0.0")
    return (
        "From: MAILER-DAEMON@out.example.net (Mail Delivery System)\n"
        f"To: sender{n}@example.net\nSubject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\n"
        f"<rcpt{n}@example.org>: host mx{n % 7}.example.org[198.51.100.25] said: {reply}"
        " (in reply to RCPT TO command)\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; out.example.net\n\n"
        f"Final-Recipient: rfc822; rcpt{n}@example.org\nAction: failed\nStatus: {status}\n"
        f"Remote-MTA: dns; mx{n % 7}.example.org\nDiagnostic-Code: smtp; {reply}\n\n--b--\n"
    )


def postfix_log(n: int, reply: str) -> str:
    return (
        f"Jun 14 12:40:02 mta postfix/smtp[{n}]: 4W0T9k2p4Jz{n:05d}: to=<rcpt{n}@example.org>, "
        f"relay=mx.example.org[198.51.100.25]:25, delay=1.2, dsn=5.0.0, status=bounced (host "
        f"mx.example.org[198.51.100.25] said: {reply} (in reply to RCPT TO command))\n"
    )


def bounces(count: int) -> list[str]:
    texts = replies()
    makers = (dsn, postfix_log, lambda n, reply: reply + "\n")
    return [makers[n % 3](n, texts[n % len(texts)]) for n in range(count)]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one process: CPU time (user + system) moves less than wall
    time when other work shares the machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    quiet = subprocess.DEVNULL
    subprocess.run([*COMMAND, *args], env=env, stdout=quiet, stderr=quiet, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(
    runs: int, args: list[str], env: dict[str, str], before: object = None
) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        if callable(before):
            before()
        wall, cpu = timed(args, env)
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def ms(figure: tuple[float, float]) -> str:
    return f"{figure[0] * 1000:6.0f} ms wall, {figure[1] * 1000:6.0f} ms CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per figure (median)")
    parser.add_argument("--bounces", type=int, default=1000, help="bounces in the batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "cache"
        plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env = {**plain, "STRICTMX_CACHE_DIR": str(cache), "PYTHONPYCACHEPREFIX": str(root / "pyc")}
        # As the caller runs it: under PYTHONDONTWRITEBYTECODE (set on some CI machines) and
        # with no __pycache__ in the tree, each strictmx module is compiled on every run.
        as_is = {**os.environ, "STRICTMX_CACHE_DIR": str(cache)}
        timed([SINGLE], env)  # writes the bytecode (and the cache) the runs below read

        def drop_cache() -> None:
            for file in cache.glob("*"):
                file.unlink()

        cold = median(args.runs, [SINGLE], env, before=drop_cache)
        warm = median(args.runs, [SINGLE], env)
        uncompiled = median(args.runs, [SINGLE], as_is)
        made = bounces(args.bounces)
        box = mailbox.mbox(root / "bounces.mbox")
        for text in made:
            box.add(f"Subject: bounce\n\n{text}" if not text.startswith("From:") else text)
        box.close()
        folder = root / "folder"
        folder.mkdir()
        for n, text in enumerate(made):
            (folder / f"{n:06d}.eml").write_text(text)
        one = root / "one"
        one.mkdir()
        (one / "a.eml").write_text(made[0])
        start_up = median(args.runs, ["--batch", str(one)], env)
        version = sys.version.split()[0]
        load = os.getloadavg()[0]
        print(f"python {version}, {os.cpu_count()} cores, load {load:.2f}; median of {args.runs}")
        print(f"strictmx explain (one bounce), cache warm: {ms(warm)}")
        print(f"strictmx explain (one bounce), cache cold: {ms(cold)}")
        writes = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
        print(f"... cache warm, this environment's .pyc (writing {writes}): {ms(uncompiled)}")
        print(f"strictmx explain --batch (one bounce):     {ms(start_up)}")
        for kind, path in (("mbox", root / "bounces.mbox"), ("folder", folder)):
            whole = median(args.runs, ["--batch", str(path), "--format", "json"], env)
            wall, cpu = ((w - s) / args.bounces for w, s in zip(whole, start_up, strict=True))
            print(
                f"--batch {kind} of {args.bounces}: {whole[0]:6.2f} s wall, {whole[1]:6.2f} s CPU;"
                f" a bounce {wall * 1000:5.2f} ms wall, {cpu * 1000:5.2f} ms CPU"
                f" (per 1,000: {wall * 1000:5.2f} s wall, {cpu * 1000:5.2f} s CPU)"
            )


if __name__ == "__main__":
    main()
