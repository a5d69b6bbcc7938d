"""The session viewer over real HTTP, on a real receiver on loopback fed by real SMTP
sessions (smtplib): escaping, filters, paging, the token cookie, live events, the
scenario editor's errors. The page helpers' own cases are in test_viewer_pages.py."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import smtplib
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest

from strictmx.receiver import api
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver
from strictmx.receiver.server import Receiver, ReceiverThread, ServerOptions
from strictmx.receiver.viewer import pages

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
TOKEN = "s3cret-viewer-token"

#: A HELO name that is not fully qualified is refused (at RCPT, delay_reject); a good one
#: is accepted, so messages get stored.
SCENARIO: dict[str, Any] = {
    "name": "viewer-test",
    "policies": {"helo": [{"policy": "helo_syntax", "require_fqdn": True}]},
}

HTML_MESSAGE = (
    "From: <alice@example.net>\r\n"
    "To: <bob@example.org>\r\n"
    f"Subject: {HOSTILE}\r\n"
    f"X-Hostile: <img src=x onerror=alert(3)>\r\n"
    "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    "Message-ID: <viewer-1@example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/alternative; boundary="b"\r\n'
    "\r\n"
    "--b\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    f"plain {HOSTILE}\r\n"
    "--b\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    f"<p>html</p><script>alert(2)</script><img src=x onerror=alert(4)>\r\n"
    "--b--\r\n"
).encode()


@dataclass
class Page:
    status: int
    headers: Message
    text: str


class Browser:
    """urllib with a cookie jar, not following redirects (the tests look at them)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect
        )

    def __call__(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Page:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=10) as answer:
                return Page(answer.status, answer.headers, answer.read().decode())
        except urllib.error.HTTPError as exc:
            with exc:
                return Page(exc.code, exc.headers, exc.read().decode())


def smtp_session(
    port: int, helo: str, sender: str = "alice@example.net", message: bytes | None = None
) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo(helo)
        # Refused or not: the tests look at what the journal and the viewer recorded.
        with contextlib.suppress(smtplib.SMTPRecipientsRefused):
            client.sendmail(sender, ["bob@example.org"], message or b"Subject: x\r\n\r\nx\r\n")


def base_of(rx: StrictmxReceiver) -> str:
    assert rx.api is not None
    return rx.api.url.removesuffix("/api/v1")


def row_ids(page: Page) -> list[str]:
    return re.findall(r'<tr id="s-([^"]+)"', page.text)


@pytest.fixture
def rx(strictmx: StrictmxFactory) -> Iterator[StrictmxReceiver]:
    scenario = scenarios.from_dict(SCENARIO, source="<test>")
    yield strictmx(scenario, api_listen=("127.0.0.1", 0))


@pytest.fixture
def browser(rx: StrictmxReceiver) -> Browser:
    return Browser(base_of(rx))


def test_hostile_helo_sender_headers_and_bodies_are_shown_as_text(
    rx: StrictmxReceiver, browser: Browser
) -> None:
    smtp_session(rx.port, HOSTILE)  # refused: not a host name
    smtp_session(rx.port, "mail.example.net", message=HTML_MESSAGE)  # accepted, stored
    rx.settle()
    listing = browser("/")
    assert listing.status == 200
    assert ESCAPED in listing.text
    assert "<script>alert" not in listing.text
    refused, accepted = [rx.sessions(helo=h)[0]["id"] for h in (HOSTILE, "mail.example.net")]
    page = browser(f"/sessions/{refused}")
    assert page.status == 200
    assert f'<dd id="helo">{ESCAPED}</dd>' in page.text
    page = browser(f"/sessions/{accepted}")
    assert page.status == 200
    # No markup of the client's survives: every < of it is escaped, in the headers, the
    # text part, the HTML source and the iframe's srcdoc alike.
    assert "<script>" not in page.text and "<img src=x" not in page.text
    assert f"Subject</th><td>{ESCAPED}" in page.text
    assert f"plain {ESCAPED}" in page.text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text
    assert 'sandbox=""' in page.text
    # The control: the viewer's own markup is there.
    assert '<script src="/static/viewer.js" defer></script>' in page.text
    raw = browser(f"/sessions/{accepted}/messages/1")
    assert raw.status == 200 and raw.headers.get_content_type() == "message/rfc822"
    assert raw.headers["Content-Disposition"].startswith("attachment")
    assert HOSTILE.encode() in raw.text.encode()


def test_pages_carry_a_strict_content_security_policy(
    rx: StrictmxReceiver, browser: Browser
) -> None:
    for path in ("/", "/dashboard", "/scenario", "/static/viewer.js", "/login"):
        page = browser(path)
        assert page.status == 200, path
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp.split("style-src")[0], path
        assert page.headers["X-Content-Type-Options"] == "nosniff", path
    assert "<script>" not in browser("/").text  # no inline script at all
    assert browser("/static/nothing.js").status == 404


def test_filters_and_text_search(rx: StrictmxReceiver, browser: Browser) -> None:
    smtp_session(rx.port, "badname")  # refused
    smtp_session(rx.port, "mail.example.net", sender="carol@example.com")  # accepted
    rx.settle()
    refused = rx.sessions(helo="badname")[0]["id"]
    accepted = rx.sessions(helo="mail.example.net")[0]["id"]
    assert set(row_ids(browser("/"))) == {refused, accepted}
    cases = {
        "/?outcome=rejected": [refused],
        "/?outcome=accepted": [accepted],
        "/?policy=helo_syntax": [refused],
        "/?helo=badna": [refused],
        "/?sender=carol": [accepted],
        "/?rcpt=bob%40example.org": [refused, accepted],
        "/?client=127.0.0.1": [refused, accepted],
        "/?q=HELO_NOT_FQDN": [refused],  # a verdict's outcome
        "/?q=carol": [accepted],
        "/?q=nobody-at-all": [],
    }
    for path, wanted in cases.items():
        page = browser(path)
        assert page.status == 200, path
        assert sorted(row_ids(page)) == sorted(wanted), path
    bad = browser("/?outcome=exploded")
    assert bad.status == 400 and "outcome must be one of" in bad.text


def test_keyset_paging_walks_every_session_once(rx: StrictmxReceiver, browser: Browser) -> None:
    count = 57  # more than a page (50)
    for i in range(count):
        smtp_session(rx.port, f"mail{i}.example.net")
    rx.settle()
    seen: list[str] = []
    path: str | None = "/?q=example"
    for _ in range(5):  # bounded: two pages are expected
        assert path is not None
        page = browser(path)
        assert page.status == 200
        seen += row_ids(page)
        older = re.search(r'href="(/\?[^"]*before=[^"]+)" id="older"', page.text)
        path = None if older is None else older.group(1).replace("&amp;", "&")
        if path is None:
            break
    assert len(seen) == count and len(set(seen)) == count
    newest_first = [s["id"] for s in rx.sessions(limit=count)]
    assert seen == newest_first
    assert browser("/?before=garbage").status == 400


def test_token_asked_once_and_kept_in_an_httponly_cookie(strictmx: StrictmxFactory) -> None:
    scenario = scenarios.from_dict(SCENARIO, source="<test>")
    rx = strictmx(scenario, api_listen=("127.0.0.1", 0), api_token=TOKEN)
    browser = Browser(base_of(rx))
    first = browser("/?outcome=rejected")
    assert first.status == 401
    assert 'name="token"' in first.text
    assert 'value="/?outcome=rejected"' in first.text  # back there after signing in
    wrong = browser("/login", {"token": "not-it", "next": "/"})
    assert wrong.status == 401 and "Wrong token" in wrong.text
    assert not list(browser.jar)
    right = browser("/login", {"token": TOKEN, "next": "/?outcome=rejected"})
    assert right.status == 303 and right.headers["Location"] == "/?outcome=rejected"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKEN not in cookie  # an HMAC of it, not the token
    assert browser("/").status == 200
    assert browser("/dashboard").status == 200
    # The cookie opens the viewer only: the API still wants its bearer token.
    assert browser("/api/v1/sessions").status == 401
    # A redirect after sign-in stays on this server.
    assert browser("/login", {"token": TOKEN, "next": "//evil.example/"}).headers["Location"] == "/"


def test_a_form_from_another_origin_is_refused(rx: StrictmxReceiver, browser: Browser) -> None:
    page = browser("/scenario", {"name": "default"}, {"Origin": "http://evil.example"})
    assert page.status == 403
    assert rx.api is not None
    assert browser("/scenario").text.count("viewer-test") >= 1  # not switched
    same = browser("/scenario", {"name": "default"}, {"Origin": base_of(rx)})
    assert same.status == 200 and 'id="scenario-name">default<' in same.text


def test_scenario_yaml_error_names_file_line_and_key_path(
    rx: StrictmxReceiver, browser: Browser
) -> None:
    text = "name: broken\npolicies:\n  helo:\n    - policy: helo_syntax\n      mode: nonsense\n"
    page = browser("/scenario", {"yaml": text})
    assert page.status == 422
    assert re.search(r"&lt;editor&gt;:5 policies\.helo\[0\]\.mode</code>", page.text), page.text
    assert "mode: nonsense" in page.text  # the text is kept for the fix
    good = text.replace("nonsense", "rfc1035")
    page = browser("/scenario", {"yaml": good})
    assert page.status == 200 and 'id="switched"' in page.text
    assert 'id="scenario-name">broken<' in page.text
    assert "mode: rfc1035" in browser("/scenario").text  # the editor shows what was applied


def test_live_events_push_ended_sessions_that_pass_the_filters(
    rx: StrictmxReceiver, browser: Browser
) -> None:
    stream = urllib.request.urlopen(browser.base + "/events?outcome=rejected", timeout=10)
    with stream:
        assert stream.headers.get_content_type() == "text/event-stream"
        assert stream.readline() == b": connected\n"
        smtp_session(rx.port, "mail.example.net")  # accepted: filtered out
        smtp_session(rx.port, "badname")  # refused: pushed
        event = data = None
        for _ in range(20):  # bounded; the socket timeout bounds each read
            line = stream.readline().decode()
            if line.startswith("event: "):
                event = line.removeprefix("event: ").strip()
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                break
        assert event == "rows" and data is not None
        refused = rx.sessions(helo="badname")[0]["id"]
        assert [r["id"] for r in data["rows"]] == [refused]
        assert f'<tr id="s-{refused}"' in data["rows"][0]["html"]


def test_dashboard_draws_counts_as_inline_svg(rx: StrictmxReceiver, browser: Browser) -> None:
    empty = browser("/dashboard")
    assert empty.status == 200 and "Nothing yet." in empty.text
    smtp_session(rx.port, "badname")
    smtp_session(rx.port, "mail.example.net")
    rx.settle()
    page = browser("/dashboard?bucket=minute")
    assert page.status == 200
    assert page.text.count('<svg class="chart"') == 2
    assert re.search(r"<title>[^<]*: rejected 1</title>", page.text)
    assert re.search(r"<title>[^<]*: accepted 1</title>", page.text)
    assert re.search(r"<title>[^<]*: helo_syntax 1</title>", page.text)
    assert browser("/dashboard?bucket=year").status == 400


def test_unknown_session_and_message_are_404(rx: StrictmxReceiver, browser: Browser) -> None:
    assert browser("/sessions/nope").status == 404
    assert browser(f"/sessions/{HOSTILE}").text.count("<script>alert") == 0
    assert browser("/sessions/nope/messages/1").status == 404
    assert browser("/sessions/nope/messages/0").status == 400


def test_an_open_event_stream_does_not_hold_the_server_up() -> None:
    receiver = Receiver(
        scenarios.from_dict(SCENARIO, source="<test>"),
        ServerOptions(host="127.0.0.1", port=0, db=":memory:"),
    )
    server = api.Api(receiver, "127.0.0.1", 0)
    receiver.attach(server)
    thread = ReceiverThread(receiver).start()
    try:
        stream = urllib.request.urlopen(server.url.removesuffix("/api/v1") + "/events", timeout=10)
    except BaseException:
        thread.stop()
        raise
    with stream:
        assert stream.readline() == b": connected\n"
        began = time.monotonic()
        thread.stop()
        assert time.monotonic() - began < api.SHUTDOWN_TIMEOUT  # ended, not timed out
        assert stream.read() == b"\n"  # the rest of the first event, then the end


def test_a_search_reads_a_bounded_window_and_offers_to_go_on(
    rx: StrictmxReceiver, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "SCAN_WINDOW", 3)
    smtp_session(rx.port, "needle.example.net")  # the oldest
    for i in range(4):
        smtp_session(rx.port, f"hay{i}.example.net")
    rx.settle()
    needle = rx.sessions(helo="needle")[0]["id"]
    first = browser("/?q=needle")
    assert row_ids(first) == []
    assert 'id="searched"' in first.text and "search older" in first.text
    older = re.search(r'href="(/\?[^"]*before=[^"]+)" id="older"', first.text)
    assert older is not None
    second = browser(older.group(1).replace("&amp;", "&"))
    assert row_ids(second) == [needle]
    assert 'id="searched"' not in second.text and 'id="older"' not in second.text
    # The control: without a filter that scans, no window and no note.
    assert 'id="searched"' not in browser("/?outcome=accepted").text


def test_eight_bit_headers_and_bodies_do_not_break_the_page(
    rx: StrictmxReceiver, browser: Browser
) -> None:
    message = (
        b"From: <alice@example.net>\r\nTo: <bob@example.org>\r\n"
        b"Subject: caf\xe9 \xff\xfe\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b'Content-Disposition: attachment; filename="\xe9\xff.txt"\r\n\r\n\xe9t\xe9 \xff\r\n'
    )
    with smtplib.SMTP("127.0.0.1", rx.port, timeout=10) as client:
        client.ehlo("mail.example.net")
        client.sendmail("alice@example.net", ["bob@example.org"], message, ["BODY=8BITMIME"])
    rx.settle()
    session = rx.sessions(helo="mail.example.net")[0]["id"]
    page = browser(f"/sessions/{session}")
    assert page.status == 200
    assert "Subject</th><td>caf" in page.text
    assert browser("/?q=caf").status == 200
