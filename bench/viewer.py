"""How fast the viewer's session list answers with a large journal.

Fills a journal file with SESSIONS sessions (default 100,000; each with a recipient and,
for the refused ones, a verdict), serves the receiver with its API and viewer on loopback,
and times GET requests to the list: the first page, a page filtered by outcome, one
filtered by policy, text searches (a rare term, one that matches nothing), a rare HELO,
and the tenth page reached by keyset cursors. A filter that cannot use an index reads at
most the viewer's SCAN_WINDOW sessions a page (then offers to search older). Prints
the median and the slowest of N requests each; the target is a median under 200 ms.

    python bench/viewer.py                     # 100,000 sessions, 21 requests per page
    python bench/viewer.py --sessions 20000 --requests 11 --db /tmp/j.db
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from strictmx.receiver import journal_writer
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.api import Api
from strictmx.receiver.server import Receiver, ReceiverThread, ServerOptions

MAX_SESSIONS = 2_000_000  # a bound on what the command line may ask for
TARGET_MS = 200.0
HELO_POLICY = "helo_syntax"


def fill(path: Path, count: int) -> None:
    """`count` sessions over the last days, one in three refused by helo_syntax."""
    conn = journal_writer.connect(str(path))
    start = datetime.now(UTC) - timedelta(seconds=count)
    sessions, verdicts, rcpts = [], [], []
    for i in range(count):
        at = (start + timedelta(seconds=i)).isoformat(timespec="microseconds")
        sid = f"bench{i:08d}"
        refused = i % 3 == 0
        helo = "localhost" if refused else f"mail{i % 500}.example.net"
        peer = f"127.0.0.{i % 200 + 1}"
        outcome = "rejected" if refused else "accepted"
        address, sender = f"203.0.113.{i % 250}", f"sender{i % 1000}@example.net"
        sessions.append(
            (sid, at, at, outcome, "bench", peer, 40000 + i % 20000, address, None, helo, sender, 0)
        )
        rcpts.append((sid, f"user{i % 5000}@example.org"))
        if refused:
            reply = "<localhost>: Helo command rejected: need fully-qualified hostname"
            reason = "localhost is not a fully qualified domain name"
            verdicts.append(
                (
                    sid,
                    at,
                    HELO_POLICY,
                    "HELO_NOT_FQDN",
                    "reject",
                    "helo",
                    "rcpt",
                    504,
                    "5.5.2",
                    reply,
                    reason,
                    1,
                    0,
                    0.0,
                    "{}",
                )
            )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO sessions (id, started, ended, outcome, scenario, peer, peer_port,"
        " client_address, client_name, helo, mail_from, tls)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sessions,
    )
    conn.executemany("INSERT INTO rcpts (session_id, rcpt) VALUES (?, ?)", rcpts)
    conn.executemany(
        "INSERT INTO verdicts (session_id, at, policy, outcome, action, stage, replied_at,"
        " code, status, text, reason, rfc_compliant, warned, delay, details)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        verdicts,
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def timed(url: str) -> tuple[float, str]:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = answer.read().decode()
        assert answer.status == 200, answer.status
    return (time.perf_counter() - began) * 1000, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=21, help="per page (median of them)")
    parser.add_argument("--db", type=Path, help="journal file (default: a temporary one)")
    args = parser.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS or not 1 <= args.requests <= 1000:
        parser.error(f"--sessions 1..{MAX_SESSIONS}, --requests 1..1000")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "viewer-bench.db"
        if path.exists():
            path.unlink()
        began = time.perf_counter()
        fill(path, args.sessions)
        print(f"journal: {args.sessions} sessions in {time.perf_counter() - began:.1f}s ({path})")
        receiver = Receiver(
            scenarios.load("default"), ServerOptions(host="127.0.0.1", port=0, db=str(path))
        )
        api = Api(receiver, "127.0.0.1", 0)
        receiver.attach(api)
        thread = ReceiverThread(receiver).start()
        try:
            base = api.url.removesuffix("/api/v1")
            _, first = timed(base + "/")  # templates compiled, caches warm
            tenth = "/"
            for _ in range(9):
                found = re.search(r'href="(/\?[^"]*before=[^"]+)" id="older"', first)
                assert found is not None, "no older page"
                tenth = found.group(1).replace("&amp;", "&")
                _, first = timed(base + tenth)
            pages = {
                "first page": "/",
                "outcome=rejected": "/?outcome=rejected",
                f"policy={HELO_POLICY}": f"/?policy={HELO_POLICY}",
                "search q=sender42@": "/?q=sender42%40",
                "search, no match": "/?q=no-such-term",
                "helo=mail42.": "/?helo=mail42.",
                "10th page (keyset)": tenth,
                # Not the list: shown for what it is, a count over the whole journal.
                "dashboard (per hour)": "/dashboard?bucket=hour",
            }
            results = {}
            worst_median = 0.0
            for name, page in pages.items():
                listed = not page.startswith("/dashboard")
                times = []
                rows = 0
                for _ in range(args.requests):
                    ms, body = timed(base + page)
                    times.append(ms)
                    rows = body.count('<tr id="s-')
                median = statistics.median(times)
                if listed:
                    worst_median = max(worst_median, median)
                results[name] = {"median_ms": round(median, 1), "max_ms": round(max(times), 1)}
                print(
                    f"{name:22} median {median:7.1f} ms  max {max(times):7.1f} ms"
                    f"  ({rows} rows, {args.requests} requests)"
                )
        finally:
            thread.stop()
    verdict = "under" if worst_median < TARGET_MS else "OVER"
    print(f"slowest list median {worst_median:.1f} ms: {verdict} the {TARGET_MS:g} ms target")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
