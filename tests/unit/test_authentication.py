"""The authentication results a message carries: what the checks left on the session, the
order a scenario must list their readers in, and the Authentication-Results header."""

from __future__ import annotations

from typing import ClassVar

import authres
import pytest

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.authentication import AuthResults, DkimAuth, DmarcAuth, SpfAuth
from strictmx.receiver.policy import Context, Policy, PolicyOptions
from strictmx.receiver.registry import load_registry
from strictmx.receiver.scenario import ScenarioError
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Stage, Verdict


class _Reader(Policy[PolicyOptions]):
    """A policy that reads spf's results at end of data."""

    name = "reader"
    stages = frozenset({Stage.MAIL, Stage.EOD})
    requires: ClassVar[tuple[str, ...]] = ("spf",)

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        return None


REGISTRY = {**load_registry(), "reader": _Reader}


def test_a_reader_listed_after_its_writer_loads() -> None:
    loaded = scenarios.loads(
        "policies:\n  mail: [{policy: spf}]\n  eod: [{policy: reader}]\n", registry=REGISTRY
    )
    assert [e.cls.name for e in loaded.entries] == ["spf", "reader"]


@pytest.mark.parametrize(
    "text",
    [
        "policies:\n  eod: [{policy: reader}]\n",  # no writer at all
        "policies:\n  mail: [{policy: reader}, {policy: spf}]\n",  # after it in one list
        # session: policies run first at their stages, before the stage's own list
        "policies:\n  session: [{policy: reader}]\n  mail: [{policy: spf}]\n",
    ],
)
def test_a_reader_without_its_writer_before_it_does_not_load(text: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenarios.loads(text, source="s.yaml", registry=REGISTRY)
    message = str(caught.value)
    assert "reader reads the results of spf" in message
    assert "list spf to run before it" in message
    assert "policy" in message and "s.yaml:" in message


def test_no_result_gives_none_and_dkim_without_signature_says_so() -> None:
    assert not AuthResults().any()
    assert AuthResults().header("mx.example") == "Authentication-Results: mx.example; none"
    ran = AuthResults(dkim=[])
    assert ran.any()
    assert ran.header("mx.example") == "Authentication-Results: mx.example;\r\n\tdkim=none"


def test_the_header_reads_back_as_what_was_concluded() -> None:
    results = AuthResults(
        spf=[SpfAuth("mailfrom", "example.net", "pass", "alice@example.net")],
        dkim=[
            DkimAuth("pass", "example.net", "s1", "rsa-sha256", header_b="AbCdEf12", key_bits=2048),
            DkimAuth("fail", "example.org", "s2", "ed25519-sha256", reason="body hash mismatch"),
        ],
        dmarc=DmarcAuth("pass", "example.net", "example.net", "reject", aligned="spf,dkim"),
    )
    text = results.header("mx.example")
    assert all(len(line) < 998 for line in text.split("\r\n"))
    # Unfolded, authres (an independent parser of RFC 8601) reads every result back.
    parsed = authres.AuthenticationResultsHeader.parse(text.replace("\r\n\t", " "))
    assert parsed.authserv_id == "mx.example"
    found = [(r.method, r.result) for r in parsed.results]
    assert found == [("spf", "pass"), ("dkim", "pass"), ("dkim", "fail"), ("dmarc", "pass")]
    dkim_pass = parsed.results[1]
    assert dkim_pass.header_d == "example.net" and dkim_pass.header_s == "s1"
    assert "dkim=pass (2048-bit key) " in text
    assert parsed.results[2].reason == "body hash mismatch"
    assert parsed.results[0].smtp_mailfrom == "alice@example.net"
