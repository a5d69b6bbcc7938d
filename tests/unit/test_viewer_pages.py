"""The viewer's helpers without HTTP: the journal's cursors, ids filter, counts and
subscriber hook the viewer relies on, and the page helpers fed broken input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strictmx.receiver.journal import Journal
from strictmx.receiver.viewer import pages

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = Journal(tmp_path / "j.db")
    await j.open()
    yield j
    await j.close()


def start(journal: Journal, sid: str, when: datetime = T0) -> None:
    journal.session_started(
        sid,
        started=when,
        peer="127.0.0.1",
        peer_port=1,
        client_address="203.0.113.1",
        client_name=None,
        scenario="t",
    )


async def test_keyset_cursors_page_through_equal_start_times(journal: Journal) -> None:
    # Five sessions started at the same instant: the rowid breaks the tie.
    for i in range(5):
        start(journal, f"s{i}")
        journal.session_ended(f"s{i}", outcome="accepted", ended=T0)
    seen: list[str] = []
    cursor = None
    for _ in range(10):  # bounded
        page = await journal.sessions(limit=2, before=cursor)
        if not page:
            break
        seen += [s["id"] for s in page]
        cursor = (page[-1]["started"], page[-1]["id"])
    assert seen == ["s4", "s3", "s2", "s1", "s0"]
    newer = await journal.sessions(after=(T0.isoformat(timespec="microseconds"), "s2"))
    assert [s["id"] for s in newer] == ["s4", "s3"]
    assert [s["id"] for s in await journal.sessions(ids=["s1", "s3", "nope"])] == ["s3", "s1"]


async def test_subscribers_hear_each_end_and_can_leave(journal: Journal) -> None:
    heard: list[str] = []
    stop = journal.subscribe(heard.append)
    start(journal, "a")
    assert heard == []  # a start is not an end
    journal.session_ended("a", outcome="rejected", ended=T0)
    assert heard == ["a"]
    # A subscriber reading at once sees the session ended (reads follow writes).
    assert (await journal.sessions(ids=["a"]))[0]["outcome"] == "rejected"
    stop()
    start(journal, "b")
    journal.session_ended("b", outcome="accepted", ended=T0)
    assert heard == ["a"]


async def test_a_failing_subscriber_does_not_stop_the_session(journal: Journal) -> None:
    def broken(session_id: str) -> None:
        raise RuntimeError("viewer bug")

    journal.subscribe(broken)
    start(journal, "a")
    journal.session_ended("a", outcome="accepted", ended=T0)
    assert (await journal.sessions())[0]["outcome"] == "accepted"


async def test_text_search_and_counts(journal: Journal) -> None:
    start(journal, "a")
    journal.session_updated("a", helo="mail.example.net", mail_from="x_y%z@example.net")
    journal.session_ended("a", outcome="accepted", ended=T0)
    assert [s["id"] for s in await journal.sessions(text="X_Y%Z")] == ["a"]
    assert await journal.sessions(text="x_yy") == []  # _ and % are taken literally
    counts = await journal.counts("hour")
    assert counts["outcomes"] == [("2026-12-01T10", "accepted", 1)]
    assert counts["policies"] == []


def test_cursor_and_filters_name_what_is_wrong() -> None:
    assert pages.cursor_of("2026-12-01T10:00:00+00:00|abc|d", "before") == (
        "2026-12-01T10:00:00+00:00",
        "abc|d",
    )
    assert pages.cursor_of("", "before") is None
    for bad in ("nobar", "|id", "yesterday|id"):
        with pytest.raises(pages.BadQuery, match="before"):
            pages.cursor_of(bad, "before")
    assert pages.filters_of({"helo": "  x ", "sender": ""}) == {"helo": "x"}
    with pytest.raises(pages.BadQuery, match="outcome must be one of"):
        pages.filters_of({"outcome": "maybe"})


def test_broken_messages_are_shown_not_raised() -> None:
    for raw in (b"", b"\xff\xfe\x00garbage", b"Content-Type: multipart/mixed\r\n\r\nno boundary"):
        parsed = pages.parse_message(raw)
        assert isinstance(parsed.parts, list)
    parsed = pages.parse_message(
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=x-nonsense\r\n"
        b"\r\nbody\r\n"
    )
    assert ("Subject", "caf\u00e9") in parsed.headers
    assert parsed.parts[0].text == "body\r\n"  # an unknown charset falls back to UTF-8


def verdict(code: int | None, text: str | None, action: str = "reject") -> dict[str, object]:
    return {
        "policy": "helo_syntax",
        "outcome": "HELO_NOT_FQDN",
        "action": action,
        "stage": "helo",
        "replied_at": None if code is None else "rcpt",
        "code": code,
        "status": None,
        "text": text,
        "reason": "r",
        "rfc_compliant": True,
        "warned": False,
    }


def test_verdicts_sit_beside_the_reply_that_carried_them() -> None:
    lines = [
        {"when": "2026-12-01T10:00:00+00:00", "direction": "out", "line": "220 hi"},
        {"when": "2026-12-01T10:00:00.5+00:00", "direction": "in", "line": "RCPT TO:<a@b>"},
        {"when": "2026-12-01T10:00:01+00:00", "direction": "out", "line": "550-5.7.1 no"},
        {"when": "2026-12-01T10:00:01+00:00", "direction": "out", "line": "550 5.7.1 more"},
    ]
    shown, unplaced = pages.transcript(lines, [verdict(550, "no"), verdict(None, None, "dunno")])
    assert [len(line.verdicts) for line in shown] == [0, 0, 0, 1]  # after the reply's end
    assert shown[1].offset_ms == 500.0
    assert [e.verdict["action"] for e in unplaced] == ["dunno"]
    # A reply that is not in the transcript leaves its verdict unplaced, not lost.
    _, unplaced = pages.transcript(lines, [verdict(421, "bye")])
    assert len(unplaced) == 1


def test_chart_keeps_the_largest_series_and_sums_the_rest() -> None:
    rows = [("2026-12-01T10", f"p{i}", i + 1) for i in range(10)]
    chart = pages.chart(rows)
    names = [name for name, _, _ in chart.legend]
    assert len(names) == pages.MAX_SERIES + 1 and names[-1] == "other"
    assert dict((n, t) for n, _, t in chart.legend)["other"] == 1 + 2
    assert pages.chart([]).empty


async def test_cursor_at_and_oldest_bound_a_window(journal: Journal) -> None:
    for i in range(6):
        start(journal, f"s{i}")
        journal.session_ended(f"s{i}", outcome="accepted", ended=T0)
    at = T0.isoformat(timespec="microseconds")
    assert await journal.cursor_at(None, 1) == (at, "s5")
    assert await journal.cursor_at(None, 3) == (at, "s3")
    assert await journal.cursor_at((at, "s3"), 2) == (at, "s1")
    assert await journal.cursor_at(None, 7) is None
    window = await journal.sessions(before=(at, "s5"), oldest=(at, "s2"))
    assert [s["id"] for s in window] == ["s4", "s3", "s2"]
    with pytest.raises(ValueError, match="n must be >= 1"):
        await journal.cursor_at(None, 0)


def test_chart_x_axis_is_time_with_empty_buckets_shown() -> None:
    rows = [("2026-12-01T10", "accepted", 2), ("2026-12-01T13", "rejected", 1)]
    chart = pages.chart(rows, pages.OUTCOME_COLOURS, "hour")
    assert [b.title for b in chart.bars] == [
        "2026-12-01T10: accepted 2",
        "2026-12-01T13: rejected 1",
    ]
    # Four buckets (10 to 13), the empty 11 and 12 between the two bars.
    assert chart.bars[1].x - chart.bars[0].x == 3 * (pages.MAX_BAR_WIDTH + 4)
    assert max(b.width for b in chart.bars) <= pages.MAX_BAR_WIDTH + 2
    many = [(f"2026-12-0{d}", "x", 1) for d in range(1, 4)]
    assert len(pages.bucket_range([r[0] for r in many], "day")) == 3
    long = pages.bucket_range(["2026-01-01", "2026-12-31"], "day")
    assert len(long) == pages.MAX_BARS and long[-1] == "2026-12-31"
    assert pages.bucket_range(["garbage", "more"], "day") == ["garbage", "more"]
