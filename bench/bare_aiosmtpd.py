"""The baseline for the benchmark: aiosmtpd with a handler that accepts every message.

Usage: python bench/bare_aiosmtpd.py HOST PORT

Served straight from `loop.create_server`, as strictmx is, so the comparison measures
what strictmx adds (policies, journal), not a different server setup. On SIGTERM it
prints `messages N` (how many DATA transactions it accepted) and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class AcceptAll:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.messages += 1
        return "250 OK"


async def serve(host: str, port: int) -> int:
    handler = AcceptAll()
    loop = asyncio.get_running_loop()
    # An explicit hostname: aiosmtpd otherwise calls socket.getfqdn() for every connection,
    # which would handicap the baseline with a resolver lookup per session.
    server = await loop.create_server(lambda: SMTP(handler, hostname="bare.bench.test"), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    print(f"messages {handler.messages}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: bare_aiosmtpd.py HOST PORT", file=sys.stderr)
        return 2
    return asyncio.run(serve(argv[0], int(argv[1])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
