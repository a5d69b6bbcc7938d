from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from strictmx.policies import BUILTIN
from strictmx.policies.sender_blocklist import SenderBlocklist, SenderBlocklistOptions
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.scenario import ScenarioError
from strictmx.receiver.session import Client, Session
from strictmx.receiver.trust import UPLOADED, UPLOADED_ALLOWED, Trust
from strictmx.receiver.verdict import Action, Reply, Stage, Verdict

HOST = "mx.strictmx.test"


def make_ctx() -> Context:
    # The lists are the policy's own: it never consults the world.
    return Context(world=cast(Any, None), hostname=HOST, history=ClientHistory())


def make_session(sender: str, address: str = "203.0.113.9") -> Session:
    session = Session(Client("127.0.0.1", address=address))
    session.helo = "mail.example.net"
    session.mail_from = sender
    return session


async def at_mail(
    sender: str,
    replies: dict[str, Reply] | None = None,
    address: str = "203.0.113.9",
    **options: Any,
) -> Verdict | None:
    policy = SenderBlocklist(SenderBlocklistOptions(**options), replies=replies)
    return await policy.check(Stage.MAIL, make_session(sender, address), make_ctx())


async def listed(sender: str, **options: Any) -> bool:
    return await at_mail(sender, **options) is not None


def test_registered() -> None:
    assert SenderBlocklist in BUILTIN
    assert SenderBlocklist.stages == frozenset({Stage.MAIL})
    assert [o.id for o in SenderBlocklist.outcomes] == ["SENDER_BLOCKED"]


async def test_default_reply_is_postfix_access_reject() -> None:
    verdict = await at_mail("Spammer@Example.com", addresses=["spammer@example.com"])
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SENDER_BLOCKED"
    assert verdict.action is Action.REJECT
    assert verdict.reply.render() == (
        "554 5.7.1 <Spammer@Example.com>: Sender address rejected: Access denied"
    )
    assert verdict.reason == (
        "<Spammer@Example.com> is listed by address entry 'spammer@example.com' (addresses[0])"
    )
    assert verdict.details == {"entry": "spammer@example.com", "origin": "addresses[0]"}
    assert verdict.rfc_compliant


@pytest.mark.parametrize("address", ["203.0.113.9", "2001:db8::9"])
async def test_unlisted_sender_passes_from_either_family(address: str) -> None:
    assert await at_mail("friend@example.com", address=address, addresses=["x@example.com"]) is None
    assert await at_mail("x@example.com", address=address, addresses=["x@example.com"]) is not None


async def test_nothing_listed_refuses_nobody() -> None:
    assert await at_mail("anyone@example.com") is None
    assert await at_mail("") is None


# -- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("bad@example.com", True),
        ("BAD@EXAMPLE.COM", True),
        ("bad@example.com.", True),  # the root dot is not part of the domain
        ("bad@mail.example.com", False),
        ("bad2@example.com", False),
        ("notbad@example.com", False),
    ],
)
async def test_addresses(sender: str, expected: bool) -> None:
    assert await listed(sender, addresses=["bad@example.com"]) is expected


# -- domains -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "exact", "subdomains", "both"),
    [
        ("a@spam.example", True, False, True),
        ("a@SPAM.Example", True, False, True),
        ("a@mail.spam.example", False, True, True),
        ("a@x.y.spam.example", False, True, True),
        ("a@notspam.example", False, False, False),
        ("a@spam.example.org", False, False, False),
        ("a@example", False, False, False),
    ],
)
async def test_domains(sender: str, exact: bool, subdomains: bool, both: bool) -> None:
    assert await listed(sender, domains=["spam.example"]) is exact
    assert await listed(sender, domains=[".spam.example"]) is subdomains
    assert await listed(sender, domains=["spam.example", ".spam.example"]) is both


async def test_non_ascii_domain_matches_its_a_label() -> None:
    assert await listed("a@bücher.example", domains=["xn--bcher-kva.example"])
    assert await listed("a@xn--bcher-kva.example", domains=["BÜCHER.example"])
    assert not await listed("a@bucher.example", domains=["bücher.example"])


# -- patterns and regex ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("news@mx1.bulk.example", True),
        ("NEWS@MX1.BULK.EXAMPLE", True),
        ("news@bulk.example", False),  # *.bulk.example needs a label before it
        ("promo-7@example.org", True),
        ("promo@example.org", False),
        ("friend@example.org", False),
    ],
)
async def test_patterns(sender: str, expected: bool) -> None:
    got = await listed(sender, patterns=["*@*.bulk.example", "promo-?@*"])
    assert got is expected


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        ("winner2093@lucky.example", True),
        ("WINNER2093@lucky.example", True),
        ("winner20@lucky.example", False),
        ("a@casino-royal.example", True),
        ("a@casino.example.org", False),  # anchored with $
    ],
)
async def test_regex(sender: str, expected: bool) -> None:
    got = await listed(sender, regex=[r"^[a-z]+[0-9]{4,}@", r"@casino(-[a-z]+)?\.example$"])
    assert got is expected


async def test_regex_is_searched_not_matched() -> None:
    assert await listed("mailer-daemon@example.org", regex=["daemon"])


# -- the null sender ---------------------------------------------------------------------


async def test_null_sender_is_listed_only_explicitly() -> None:
    wide: dict[str, Any] = {"patterns": ["*"], "regex": [".*", "^$"], "domains": ["example.com"]}
    assert await at_mail("", **wide) is None
    verdict = await at_mail("", addresses=["<>"])
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == "554 5.7.1 <>: Sender address rejected: Access denied"
    assert verdict.reason == "the null sender <> is listed by address entry '<>' (addresses[0])"
    assert await at_mail("a@example.com", addresses=["<>"]) is None


# -- the file ----------------------------------------------------------------------------


def write_list(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blocked.txt"
    path.write_text(text, encoding="utf-8")
    return path


FILE = """\
# senders refused here
spammer@example.com
<>

spam.example
  .spam.example
*@*.bulk.example
/^[a-z]+[0-9]{4,}@/
"""


@pytest.mark.parametrize(
    ("sender", "origin"),
    [
        ("spammer@example.com", ":2"),
        ("", ":3"),
        ("a@spam.example", ":5"),
        ("a@mail.spam.example", ":6"),
        ("a@mx.bulk.example", ":7"),
        ("winner2093@lucky.example", ":8"),
        ("friend@example.com", None),
    ],
)
async def test_file_entries(tmp_path: Path, sender: str, origin: str | None) -> None:
    path = write_list(tmp_path, FILE)
    verdict = await at_mail(sender, file=str(path))
    if origin is None:
        assert verdict is None
    else:
        assert verdict is not None
        assert verdict.details["origin"] == f"{path}{origin}"


async def test_file_and_inline_lists_combine(tmp_path: Path) -> None:
    path = write_list(tmp_path, "spam.example\n")
    options = {"file": str(path), "addresses": ["x@example.com"]}
    assert await listed("a@spam.example", **options)
    assert await listed("x@example.com", **options)
    assert not await listed("y@example.com", **options)


async def test_relative_file_is_read_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_list(tmp_path, "spam.example\n")
    monkeypatch.chdir(tmp_path)
    assert await listed("a@spam.example", file="blocked.txt")


def test_missing_file_fails_at_load_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(ValueError, match=r"blocklist file '.*nowhere\.txt' does not exist"):
        SenderBlocklistOptions(file=str(missing))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "/sec(ret/",
            r"blocked\.txt:2: the line is not a valid regular expression \(at position 3\)",
        ),
        ("secret@", r"blocked\.txt:2: the line is not an address"),
        ("sec ret.example", r"blocked\.txt:2: the line is not a domain"),
    ],
)
def test_bad_file_line_fails_at_load_naming_file_and_line_not_its_text(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write_list(tmp_path, f"ok.example\n{line}\n")
    with pytest.raises(ValueError, match=message) as raised:
        SenderBlocklistOptions(file=str(path))
    assert "sec" not in str(raised.value).replace(str(tmp_path), "")


def test_a_bad_inline_entry_is_quoted(tmp_path: Path) -> None:
    # Control: the scenario's own text may be repeated back; only files' lines are not.
    with pytest.raises(ValueError, match=r"regex\[0\]: 'a\(b' is not a valid regular"):
        SenderBlocklistOptions(regex=["a(b"])


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "is a FIFO"),
        (lambda d: Path("/dev/zero"), "is a device"),
        (lambda d: d, "is a directory"),
        (
            lambda d: (d / "big.txt").write_bytes(b"a.example\n" * 500_000) and d / "big.txt",
            "the limit is 4194304",
        ),
        (
            lambda d: (d / "bin.txt").write_bytes(b"ok.example\n\xff\n") and d / "bin.txt",
            "not UTF-8",
        ),
    ],
)
def test_only_regular_files_within_the_limit_are_read(
    tmp_path: Path, make: Callable[[Path], Path], why: str
) -> None:
    path = make(tmp_path)
    started = time.monotonic()
    with pytest.raises(ValueError, match=why):
        SenderBlocklistOptions(file=str(path))
    assert time.monotonic() - started < 2, "refused without waiting on the file"


def test_a_relative_file_is_read_beside_the_scenario_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lists").mkdir()
    write_list(tmp_path / "lists", "spam.example\n")
    scenario = tmp_path / "persona.yaml"
    scenario.write_text("policies: {mail: [{policy: sender_blocklist, file: lists/blocked.txt}]}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (entry,) = scenarios.load(str(scenario)).entries
    assert isinstance(entry.options, SenderBlocklistOptions)
    assert entry.options.blocklist.match("a@spam.example") is not None


@pytest.mark.parametrize(("trust", "allowed"), [(UPLOADED, False), (UPLOADED_ALLOWED, True)])
def test_an_uploaded_scenario_names_a_file_only_when_allowed(
    tmp_path: Path, trust: Trust, allowed: bool
) -> None:
    path = write_list(tmp_path, "top-secret.example\n")
    text = f"policies: {{mail: [{{policy: sender_blocklist, file: '{path}'}}]}}"
    if allowed:
        assert scenarios.loads(text, trust=trust).entries
        return
    with pytest.raises(ScenarioError) as raised:
        scenarios.loads(text, source="<request>", trust=trust)
    message = str(raised.value)
    assert message.startswith("<request>:1 policies.mail[0].file: ")
    assert "--api-allow-host-access" in message
    assert "top-secret" not in message


# -- validation at load ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"regex": ["ok", "a(b"]}, r"regex\[1\]: 'a\(b' is not a valid regular expression"),
        ({"addresses": ["example.com"]}, r"addresses\[0\]: 'example.com' is not an address"),
        ({"addresses": ["@example.com"]}, r"addresses\[0\]: '@example.com' is not an address"),
        ({"domains": ["a@example.com"]}, r"domains\[0\]: 'a@example.com' is not a domain"),
        ({"domains": ["..example.com"]}, r"domains\[0\]: '..example.com' is not a domain"),
        ({"patterns": [""]}, r"patterns\[0\]: empty entry"),
        ({"lists": ["x"]}, r"Extra inputs"),
    ],
)
def test_bad_options_fail_at_load(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SenderBlocklistOptions(**options)


def test_scenario_error_names_the_policy_entry() -> None:
    spec = {"policies": {"mail": [{"policy": "sender_blocklist", "regex": ["(unclosed"]}]}}
    with pytest.raises(ScenarioError, match=r"policies\.mail\[0\]: .*regex\[0\]"):
        scenarios.from_dict(spec, source="<test>")


# -- replies -----------------------------------------------------------------------------


async def test_two_line_override_seed_60() -> None:
    reply = Reply.parse(
        [
            "550-Sender envelope address is locally blacklisted here.",
            "550 If you think this is wrong get in touch with postmaster.",
        ]
    )
    verdict = await at_mail(
        "a@spam.example", replies={"SENDER_BLOCKED": reply}, domains=["spam.example"]
    )
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.wire_lines() == [
        "550-Sender envelope address is locally blacklisted here.",
        "550 If you think this is wrong get in touch with postmaster.",
    ]


async def test_override_may_name_the_entry() -> None:
    reply = Reply.parse("550 5.7.1 <{sender}> refused: listed as {entry} ({origin})")
    SenderBlocklist.validate_reply("SENDER_BLOCKED", reply)
    verdict = await at_mail(
        "a@mail.spam.example", replies={"SENDER_BLOCKED": reply}, domains=[".spam.example"]
    )
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.render() == (
        "550 5.7.1 <a@mail.spam.example> refused: listed as .spam.example (domains[0])"
    )


async def test_non_ascii_domain_is_keyed_by_idna_2008() -> None:
    # IDNA 2003 made straße.example and strasse.example one key; IDNA 2008 does not.
    assert await listed("a@straße.example", domains=["xn--strae-oqa.example"])
    assert await listed("a@STRASSE.example", domains=["strasse.example"])
    assert not await listed("a@straße.example", domains=["strasse.example"])
    assert not await listed("a@strasse.example", domains=["straße.example"])
