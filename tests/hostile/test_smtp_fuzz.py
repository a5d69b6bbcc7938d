"""The SMTP protocol fuzzed over real sockets: random, invalid and pipelined commands with
8-bit bytes and control characters in every field, against a real receiver.

A hypothesis state machine drives one raw connection at a time. Whatever it sends, every
reply line must be `^\\d{3}[ -]`, printable US-ASCII, and free of exception text; each
reply must come within REPLY_TIMEOUT (else a hang); the server may close the line only
after a reply that says so (421, 221, aiosmtpd's "goodbye"), else the session crashed;
and after each example a fresh connection must still be greeted (else the server did).
Failures are counted in the tally rather than raised, so nothing is shrunk and the run
stays bounded: at most MAX_EXAMPLES examples of STEPS steps.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver

from ._smtp import EXIM_FUZZ_SCENARIO, FUZZ_SCENARIO, Closed, Hung, Peer, greets
from .conftest import Tally

MAX_EXAMPLES = int(os.environ.get("STRICTMX_FUZZ_EXAMPLES", "40"))
STEPS = 30
#: The whole run stops generating new examples after this long (a slow machine).
BUDGET_SECONDS = float(os.environ.get("STRICTMX_FUZZ_SECONDS", "40"))

VERBS = [
    b"HELO",
    b"EHLO",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"XCLIENT",
    b"RSET",
    b"NOOP",
    b"VRFY",
    b"HELP",
    b"EXPN",
    b"STARTTLS",
    b"AUTH",
    b"ETRN",
    b"BDAT",
    b"helo",
    b"mail from:",
    b"Rcpt To:",
    b"X\xffVERB",
    b"NO\rOP",
]
TOKENS = [
    b"mail.example.net",
    b"localhost",
    b"[127.0.0.1]",
    b"[IPv6:::1]",
    b"<alice@example.net>",
    b"<bob@example.org>",
    b"<nobody@example.net>",
    b"<>",
    b"<x@[127.0.0.3]>",
    b'<"a\rb"@example.net>',
    b"<a\x00b@example.net>",
    b"<@",
    b'"',
    b"0@[",
    b"0@[\t",
    b"<postmaster>",
    b"<\xc3\xa9l\xc3\xa8ve@example.net>",
    b"<\xff@example.net>",
    b"SIZE=100",
    b"SIZE=99999999999",
    b"BODY=8BITMIME",
    b"SMTPUTF8",
    b"ADDR=+0D+0A250+20fake",
    b"ADDR=203.0.113.10",
    b"ADDR=IPV6:2001:db8::1",
    b"NAME=mail.example.net",
    b"NAME=[UNAVAILABLE]",
    b"NAME=[TEMPUNAVAIL]",
    b"HELO=x+00y",
    b"LOGIN=+1B[2J",
    b"PORT=99999",
    b"PROTO=ESMTP",
    b"FOO=bar",
    b"%s%n{0}",
]

#: No field holds a LF: it would end the line, and the reply count would be off.
no_lf = st.binary(max_size=24).map(lambda b: b.replace(b"\n", b"\r"))
field = st.one_of(
    st.sampled_from(TOKENS),
    no_lf,
    st.text(max_size=16).map(lambda t: t.encode("utf-8", "surrogatepass").replace(b"\n", b"")),
)
argument = st.lists(field, max_size=4).map(b" ".join)
long_line = st.builds(
    lambda verb, n: verb + b" " + b"X" * n,
    st.sampled_from([b"NOOP", b"MAIL FROM:", b"HELO", b"XCLIENT"]),
    st.sampled_from([400, 505, 520, 1100, 5000]),
)
command = st.one_of(
    st.builds(lambda v, a: v + b" " + a if a else v, st.sampled_from(VERBS), argument),
    no_lf,
    long_line,
    st.builds(lambda a: b"XCLIENT " + a, argument),
)
body = st.binary(max_size=3000).map(
    # Dot-stuffed (RFC 5321 §4.5.2), so no line of it is the lone dot that ends the data.
    lambda b: b"Subject: fuzz\r\n\r\n" + b.replace(b"\r\n.", b"\r\n..")
)
QUEUED = re.compile(rb"^250 (?:2\.0\.0 )?Ok: queued as ([0-9a-f]+)-([0-9]+)$")
#: Replies after which the server may close the line.
FAREWELLS = (b"421", b"221")


class Fuzz(RuleBasedStateMachine):
    rx: ClassVar[StrictmxReceiver]
    tally: ClassVar[Tally]
    #: time.monotonic() after which every step is a no-op (hypothesis has no time bound).
    deadline: ClassVar[float]
    examples: ClassVar[int] = 0
    #: (session id, message number) of every message the server said it queued.
    queued: ClassVar[list[tuple[str, int]]]

    def __init__(self) -> None:
        super().__init__()
        self.peer: Peer | None = None
        self.last = b""
        type(self).examples += 1

    # -- the connection ----------------------------------------------------------------
    def _peer(self) -> Peer:
        if self.peer is None or self.peer.closed:
            self._drop()
            self.peer = Peer(self.rx)
            self.last = b""
            self._replies(1)  # the greeting
            assert self.peer is not None
        return self.peer

    def _drop(self) -> None:
        if self.peer is not None:
            self._count_bad(self.peer)
            self.peer.close()
            self.peer = None

    def _count_bad(self, peer: Peer) -> None:
        for why, line in peer.bad:
            self.tally.add("wrong_replies", example=f"{why}: {line!r}")
        peer.bad.clear()

    def _replies(self, n: int) -> list[list[bytes]]:
        """Read n replies; a hang or a close without a farewell is counted."""
        peer = self.peer
        assert peer is not None
        got: list[list[bytes]] = []
        try:
            for _ in range(n):
                reply = peer.reply()
                got.append(reply)
                self.last = reply[-1]
        except Hung as hung:
            self.tally.add("hangs", example=f"after {self.last!r}, partial {hung}")
            peer.closed = True
        except Closed:
            farewell = self.last[:3] in FAREWELLS or b"goodbye" in self.last
            if not farewell:
                self.tally.add("crashes", example=f"connection dropped after {self.last!r}")
        return got

    def _send(self, lines: list[bytes], ending: bytes = b"\r\n") -> list[list[bytes]]:
        if time.monotonic() > self.deadline:
            return []
        peer = self._peer()
        if peer.closed:
            return []
        self.tally.tried(len(lines))
        peer.send(b"".join(line + ending for line in lines))
        return self._replies(len(lines))

    # -- rules ---------------------------------------------------------------------------
    @rule(line=command)
    def one_command(self, line: bytes) -> None:
        self._send([line])

    @rule(line=command)
    def bare_lf_command(self, line: bytes) -> None:
        self._send([line], ending=b"\n")

    @rule(lines=st.lists(command, min_size=2, max_size=8))
    def pipelined(self, lines: list[bytes]) -> None:
        self._send(lines)

    @rule(sender=field, rcpt=field, content=body)
    def transaction(self, sender: bytes, rcpt: bytes, content: bytes) -> None:
        self._send([b"EHLO mail.example.net"])
        self._send([b"MAIL FROM:<" + sender + b">", b"RCPT TO:<" + rcpt + b">"])
        self.data(content)

    @rule(content=body)
    def data(self, content: bytes) -> None:
        replies = self._send([b"DATA"])
        if replies and replies[0][-1].startswith(b"354"):
            assert self.peer is not None
            self.tally.tried()
            self.peer.send(content + b"\r\n.\r\n")
            for reply in self._replies(1):
                queued = QUEUED.match(reply[-1])
                if queued:
                    self.queued.append((queued.group(1).decode(), int(queued.group(2))))

    @rule()
    def good_transaction(self) -> None:
        # A control path through the same connection: a clean message is accepted.
        self._send([b"RSET", b"EHLO mail.example.net"])
        self._send([b"MAIL FROM:<alice@example.net>", b"RCPT TO:<bob@example.org>"])
        self.data(
            b"From: alice@example.net\r\nTo: bob@example.org\r\nSubject: hi\r\n"
            b"Date: Thu, 3 Dec 2026 08:00:00 +0000\r\nMessage-ID: <1@example.net>\r\n\r\nhi"
        )

    @rule()
    def quit(self) -> None:
        self._send([b"QUIT"])
        self._drop()

    def teardown(self) -> None:
        self._drop()
        if not greets(self.rx):
            self.tally.add("crashes", example="no greeting after an example")


@pytest.mark.parametrize("scenario", [FUZZ_SCENARIO, EXIM_FUZZ_SCENARIO], ids=["postfix", "exim"])
def test_smtp_protocol_fuzz(
    strictmx: StrictmxFactory, tally: Tally, scenario: dict[str, Any]
) -> None:
    rx = strictmx(scenario)
    started = time.monotonic()
    Fuzz.rx, Fuzz.tally, Fuzz.deadline, Fuzz.examples = rx, tally, started + BUDGET_SECONDS, 0
    Fuzz.queued = []
    budgeted = settings(
        max_examples=MAX_EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # failures are tallied, nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    run_state_machine_as_test(Fuzz, settings=budgeted)
    elapsed = time.monotonic() - started
    inputs, queued = tally.counts["inputs"], len(Fuzz.queued)
    print(f"fuzz: {Fuzz.examples} examples, {inputs} inputs, {queued} queued, {elapsed:.1f}s")
    assert Fuzz.examples >= 1
    assert greets(rx), "the receiver still greets after the run"
    # The control path worked: some message was accepted during the run.
    # Every message the server said it queued is in the journal.
    for session_id, n in Fuzz.queued:
        if rx.message(session_id, n) is None:
            tally.add("lost", example=f"queued as {session_id}-{n}, not in the journal")
    accepted = rx.sessions(outcome="accepted")
    assert accepted, "no clean message was accepted during the run"
    assert elapsed < BUDGET_SECONDS * 2, f"the fuzz run took {elapsed:.0f}s"
    tally.assert_clean()


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
proxy_header = st.one_of(
    st.binary(max_size=120),
    st.builds(lambda rest: b"PROXY " + rest.replace(b"\n", b"") + b"\r\n", st.binary(max_size=100)),
    st.builds(
        lambda fields: b"PROXY " + b" ".join(fields) + b"\r\n",
        st.lists(
            st.sampled_from(
                [b"TCP4", b"TCP6", b"UNKNOWN", b"198.51.100.7", b"::1", b"127.0.0.1", b"25"]
                * 2  # valid words twice as likely as the bad ones below
                + [b"65536", b"-1", b"\xff", b"1.2.3.4.5", b"", b"\x00"]
            ),
            max_size=7,
        ),
    ),
    st.builds(lambda rest: V2_SIGNATURE + rest, st.binary(max_size=60)),
)


def test_proxy_header_fuzz(strictmx: StrictmxFactory, tally: Tally) -> None:
    # Random PROXY v1/v2 headers, each followed by EOF: the server greets (a valid header)
    # or closes at once, never sends a malformed line, and goes on serving. (An EOF inside
    # a v2 header once left the line half-open until the PROXY timeout: a hang here.)
    rx = strictmx("default", proxy_protocol=True)
    deadline = time.monotonic() + BUDGET_SECONDS

    @given(header=proxy_header)
    @settings(
        max_examples=MAX_EXAMPLES * 3,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def one(header: bytes) -> None:
        if time.monotonic() > deadline:
            return
        tally.tried()
        peer = Peer(rx)
        try:
            peer.send(header)
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(Closed):
                for _ in range(5):  # a greeting, perhaps an answer to trailing bytes
                    peer.reply()
        except Hung as hung:
            tally.add("hangs", example=f"{header!r}: {hung}")
        finally:
            peer.close()
        for why, line in peer.bad:
            tally.add("wrong_replies", example=f"{header!r}: {why}: {line!r}")

    one()
    with Peer(rx) as peer:
        peer.send(b"PROXY TCP4 198.51.100.7 127.0.0.1 4444 25\r\n")
        if not peer.reply()[0].startswith(b"220 "):
            tally.add("crashes", example="a valid PROXY header is not greeted after the fuzz")
    tally.assert_clean()
