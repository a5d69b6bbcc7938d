"""The real MTA bounces of explain's corpus (tests/data/explain_corpus/mta.yaml, written by
generate_mta.py beside it) are kept as the fixed split needs them.

Nothing here runs explain: the file's labels are strictmx's journal, and how well explain
reads these bounces is measured where its model is fitted. Each check is a function that
lists what is wrong, run on the real file (nothing may be wrong) and on a small file broken
on purpose (the check must see it).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from strictmx.receiver.explain.classes import FAMILY_OF_CLASS, NOT_EMULATED
from strictmx.receiver.explain.corpus import Item, assign, load
from strictmx.receiver.registry import builtin_outcomes, bundled
from strictmx.receiver.scenario import bundled_names

CORPUS = Path(__file__).resolve().parent.parent / "data" / "explain_corpus"
FILE = "mta.yaml"
#: Every reproducible catalogue entry in three forms was the aim: 350 items at least.
MIN_POSTFIX_ITEMS = 350
#: Exim relays the same cases: 542 bounces in two forms when this was written (1084 items).
MIN_EXIM_ITEMS = 1000
#: The forms of one bounce by the MTA that wrote it, by the source's prefix, in file order.
FORMS: dict[str, tuple[str, ...]] = {
    "postfix": ("postfix-dsn", "postfix-log", "reply"),
    "exim": ("exim-bounce", "exim-log"),
}

CATALOGUE = bundled()
ENTRY_IDS = frozenset(e.id for e in CATALOGUE.entries)
CLASSES = frozenset(CATALOGUE.families) | set(NOT_EMULATED) | set(FAMILY_OF_CLASS) | {"unknown"}
PERSONAS = frozenset(bundled_names())
OUTCOMES = frozenset(
    (policy, o.id) for policy, outcomes in builtin_outcomes().items() for o in outcomes
)
# persona:<scenario>:<policy>:<outcome>, the generator's group for a persona's own reply text.
_PERSONA_GROUP = re.compile(r"^persona:(?P<scenario>[^:]+):(?P<policy>[^:]+):(?P<outcome>[^:]+)$")
_REPLY = re.compile(r"^[45]\d\d[ -]")
#: The fixed first line of Exim's bounce text (deliver.c), and its log line for a failure
#: (`**`, or `==` for the deferral of a 4xx):
#: `2026-12-03 20:28:31 1xZDPr-0005QU-1q ** bob@example.org R=... T=...: SMTP error ...`.
_EXIM_BOUNCE = "This message was created automatically by mail delivery software."
_EXIM_FAILED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ (\*\*|==) ")


def mta_items(folder: Path = CORPUS) -> list[Item]:
    return [i for i in load(folder) if i.file == FILE]


def group_problems(items: Sequence[Item]) -> list[str]:
    """Groups that are neither a catalogue entry nor a bundled persona's outcome."""
    problems = []
    for item in items:
        group = item.group or ""
        persona = _PERSONA_GROUP.match(group)
        if group in ENTRY_IDS:
            continue
        if (
            persona
            and persona["scenario"] in PERSONAS
            and (persona["policy"], persona["outcome"]) in OUTCOMES
        ):
            continue
        problems.append(f"items[{item.index}]: group {group!r} is no entry or persona outcome")
    return problems


def family_problems(items: Sequence[Item]) -> list[str]:
    """Labels that are no class, and the forms of one bounce labelled differently."""
    problems = [
        f"items[{i.index}]: family {i.label!r} is no class" for i in items if i.label not in CLASSES
    ]
    labels: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in items:
        labels[(item.group or "", _origin(item))].add(item.label)
    problems += [
        f"{group} ({origin}): labelled {sorted(found)}"
        for (group, origin), found in labels.items()
        if len(found) > 1
    ]
    return problems


def split_problems(items: Sequence[Item]) -> list[str]:
    """Groups whose items are not all on one side of the split."""
    sides: dict[str, set[str]] = defaultdict(set)
    for item in items:
        sides[item.key].add(item.split)
    return [f"{key}: on {sorted(found)}" for key, found in sides.items() if len(found) > 1]


def bounces(items: Sequence[Item]) -> dict[tuple[str, str, str], list[Item]]:
    """Items by group, scenario and MTA, in file order: the generator writes each bounce's
    forms together (Postfix: DSN, log line, reply; Exim: bounce, log line), and a scenario
    may reach one entry twice."""
    found: dict[tuple[str, str, str], list[Item]] = defaultdict(list)
    for item in items:
        found[(item.group or "", _origin(item), _mta(item))].append(item)
    return found


def form_problems(items: Sequence[Item]) -> list[str]:
    """Bounces without their forms in order, and forms that do not look like what they
    claim to be."""
    problems = []
    for item in items:
        form, text = _form(item), item.input
        looks = {
            "postfix-dsn": "X-Postfix-Queue-ID:" in text and "Diagnostic-Code: smtp;" in text,
            "postfix-log": bool(re.search(r" status=(bounced|deferred) \(", text)),
            "reply": bool(_REPLY.match(text)),
            "exim-bounce": _EXIM_BOUNCE in text and "Diagnostic-Code: smtp;" in text,
            "exim-log": bool(_EXIM_FAILED.match(text)),
        }
        if not looks.get(form, False):
            problems.append(f"items[{item.index}]: is no {form or 'known form'}")
    for (group, origin, mta), found in bounces(items).items():
        forms = [_form(i) for i in found]
        whole = FORMS[mta]
        if len(forms) % len(whole) or forms != list(whole) * (len(forms) // len(whole)):
            problems.append(f"{group} ({origin}, {mta}): forms {forms}")
    return problems


def reply_problems(items: Sequence[Item]) -> list[str]:
    """Replies that are not the text the bounce and the log line of their bounce carry."""
    problems = []
    for (group, origin, mta), found in bounces(items).items():
        whole = FORMS[mta]
        for start in range(0, len(found) - len(whole) + 1, len(whole)):
            forms = {_form(i): i.input for i in found[start : start + len(whole)]}
            reply = forms.get("reply") or _diagnostic(forms.get("exim-bounce", ""))
            if reply is not None:
                # Exim's Diagnostic-Code for a 4xx it gave up on adds why it gave up.
                reply = reply.removesuffix(": retry timeout exceeded")
            if reply is None:
                problems.append(f"{group} ({origin}, {mta}): no reply")
                continue
            for form, text in forms.items():
                if form == "exim-log":
                    # Exim logs a multi-line reply on one line, its line breaks as "\n".
                    text = text.replace("\\n", " ")
                if form != "reply" and _flat(reply) not in _flat(text):
                    problems.append(f"{group} ({origin}, {mta}): the reply is not in the {form}")
    return problems


def _diagnostic(text: str) -> str | None:
    found = re.search(r"^Diagnostic-Code: *smtp; *(.*(?:\n[ \t]+.*)*)", text, re.M)
    return found.group(1) if found else None


def _flat(text: str) -> str:
    return " ".join(text.split())


def _mta(item: Item) -> str:
    return "exim" if _form(item).startswith("exim-") else "postfix"


def _form(item: Item) -> str:
    return (item.source or "").partition(":")[0]


def _origin(item: Item) -> str:
    return (item.source or "").partition(":")[2]


# -- the real file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return mta_items()


def test_there_are_enough_postfix_bounces(items: list[Item]) -> None:
    postfix = [i for i in items if _mta(i) == "postfix"]
    assert len(postfix) >= MIN_POSTFIX_ITEMS
    assert len(items) - len(postfix) >= MIN_EXIM_ITEMS


def test_every_group_is_a_catalogue_entry_or_a_persona_outcome(items: list[Item]) -> None:
    assert group_problems(items) == []


def test_every_family_is_a_class_and_one_bounce_has_one(items: list[Item]) -> None:
    assert family_problems(items) == []


def test_every_group_is_on_one_side_of_the_split(items: list[Item]) -> None:
    assert all(item.group for item in items)
    assert split_problems(items) == []
    # The three sides are all used: the rule spreads the groups.
    assert {item.split for item in items} == {"train", "dev", "test"}


def test_every_bounce_has_its_three_forms(items: list[Item]) -> None:
    assert form_problems(items) == []


def test_every_reply_is_what_its_dsn_and_log_line_say(items: list[Item]) -> None:
    assert reply_problems(items) == []


# -- the checks see what they are for ---------------------------------------------------------

DSN = """\
Reporting-MTA: dns; staging.strictmx.test
X-Postfix-Queue-ID: 4F2A1C0E3B
Final-Recipient: rfc822; bob@strictmx.test
Action: failed
Status: 5.5.2
Diagnostic-Code: smtp; 504 5.5.2 <localhost>: Helo command rejected: need
    fully-qualified hostname
"""
LOG = (
    "Dec 03 20:08:47 staging postfix/smtp[1124]: 4F2A1C0E3B: to=<bob@strictmx.test>, "
    "relay=127.0.0.1[127.0.0.1]:37823, delay=0.25, delays=0/0.16/0.09/0, dsn=5.5.2, "
    "status=bounced (host 127.0.0.1[127.0.0.1] said: 504 5.5.2 <localhost>: Helo command "
    "rejected: need fully-qualified hostname (in reply to RCPT TO command))"
)
REPLY = "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
EXIM_BOUNCE = """\
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  bob@strictmx.test
    host 127.0.0.1 [127.0.0.1]
    SMTP error from remote mail server after HELO localhost:
    504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname

Action: failed
Final-Recipient: rfc822;bob@strictmx.test
Status: 5.0.0
Diagnostic-Code: smtp; 504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname
"""
EXIM_LOG = (
    "2026-12-03 20:30:14 1xZDRV-0005pM-36 ** bob@strictmx.test R=smarthost "
    "T=remote_smtp_smarthost H=127.0.0.1 [127.0.0.1]: SMTP error from remote mail server "
    "after HELO localhost: 504 5.5.2 <localhost>: Helo command rejected: need "
    "fully-qualified hostname"
)


def _written(tmp_path: Path, rows: list[tuple[str, str, str, str]]) -> list[Item]:
    lines = ["items:"]
    for family, text, source, group in rows:
        block = "\n".join(f"      {line}" for line in text.splitlines())
        lines += [
            f"  - family: {family}",
            "    input: |",
            block,
            f"    source: {source}",
            f"    group: {group}",
        ]
    (tmp_path / FILE).write_text("\n".join(lines) + "\n")
    return mta_items(tmp_path)


def _bounce(
    family: str = "helo_syntax", group: str = "postfix-helo-not-fqdn"
) -> list[tuple[str, str, str, str]]:
    origin = "postfix-strict"
    return [
        (family, DSN, f"postfix-dsn:{origin}", group),
        (family, LOG, f"postfix-log:{origin}", group),
        (family, REPLY, f"reply:{origin}", group),
    ]


def _exim_bounce(group: str = "postfix-helo-not-fqdn") -> list[tuple[str, str, str, str]]:
    origin = "postfix-strict"
    return [
        ("helo_syntax", EXIM_BOUNCE, f"exim-bounce:{origin}", group),
        ("helo_syntax", EXIM_LOG, f"exim-log:{origin}", group),
    ]


def test_a_well_kept_bounce_passes_every_check(tmp_path: Path) -> None:
    written = _written(tmp_path, [*_bounce(), *_exim_bounce()])
    for check in (group_problems, family_problems, split_problems, form_problems, reply_problems):
        assert check(written) == [], check.__name__


def test_a_group_that_is_no_entry_or_persona_outcome_is_named(tmp_path: Path) -> None:
    written = _written(
        tmp_path,
        [
            *_bounce(group="no-such-entry"),
            *_bounce(group="persona:postfix-strict:helo_syntax:NO_SUCH_OUTCOME"),
            *_bounce(group="persona:no-such-scenario:helo_syntax:HELO_NOT_FQDN"),
            *_bounce(group="persona:postfix-strict:helo_syntax:HELO_NOT_FQDN"),
        ],
    )
    problems = group_problems(written)
    assert len(problems) == 9 and all("is no entry or persona outcome" in p for p in problems)


def test_a_label_that_is_no_class_or_differs_between_forms_is_named(tmp_path: Path) -> None:
    rows = _bounce(family="helo_sintax")
    assert len(family_problems(_written(tmp_path, rows))) == 3
    mixed = _bounce()
    mixed[1] = ("reverse_dns", *mixed[1][1:])
    assert family_problems(_written(tmp_path, mixed)) == [
        "postfix-helo-not-fqdn (postfix-strict): labelled ['helo_syntax', 'reverse_dns']"
    ]


def test_items_of_one_key_on_two_sides_are_named() -> None:
    # The rule cannot do this to a file: two items with one key on two sides is made here.
    (one,) = assign([Item("helo_syntax", REPLY, "reply:x", "g", FILE, 0)])
    assert split_problems([one, one]) == []
    # Forty groups of different texts fall on every side.
    words = [f"zz{chr(97 + n // 26)}{chr(97 + n % 26)}" for n in range(40)]
    spread = assign(
        [Item("helo_syntax", f"550 {w}", "reply:x", w, FILE, n) for n, w in enumerate(words)]
    )
    assert {item.split for item in spread} == {"train", "dev", "test"}
    moved = replace(one, index=1, split="test" if one.split != "test" else "train")
    assert split_problems([one, moved]) == [f"group:g: on {sorted({one.split, moved.split})}"]


def test_a_missing_or_doubled_form_is_named(tmp_path: Path) -> None:
    rows = _bounce()
    assert form_problems(_written(tmp_path, rows[:2])) == [
        "postfix-helo-not-fqdn (postfix-strict, postfix): forms ['postfix-dsn', 'postfix-log']"
    ]
    assert len(form_problems(_written(tmp_path, [*rows, rows[2]]))) == 1
    # One scenario reaching one entry twice: two bounces, each whole.
    assert form_problems(_written(tmp_path, [*rows, *rows])) == []
    assert len(form_problems(_written(tmp_path, [*rows, rows[1], rows[0], rows[2]]))) == 1


def test_a_form_that_is_not_what_it_claims_is_named(tmp_path: Path) -> None:
    rows = _bounce()
    swapped = [(rows[0][0], LOG, *rows[0][2:]), (rows[1][0], DSN, *rows[1][2:]), rows[2]]
    swapped.append(("helo_syntax", "Helo command rejected", "reply:other", "seed-13"))
    problems = form_problems(_written(tmp_path, swapped))
    assert "items[0]: is no postfix-dsn" in problems
    assert "items[1]: is no postfix-log" in problems
    assert "items[3]: is no reply" in problems


def test_a_reply_its_dsn_does_not_carry_is_named(tmp_path: Path) -> None:
    rows = _bounce()
    rows[2] = (rows[2][0], "550 5.7.1 Access denied", *rows[2][2:])
    assert reply_problems(_written(tmp_path, rows)) == [
        "postfix-helo-not-fqdn (postfix-strict, postfix): the reply is not in the postfix-dsn",
        "postfix-helo-not-fqdn (postfix-strict, postfix): the reply is not in the postfix-log",
    ]


def test_an_exim_bounce_without_its_log_line_or_reply_is_named(tmp_path: Path) -> None:
    rows = _exim_bounce()
    assert form_problems(_written(tmp_path, rows[:1])) == [
        "postfix-helo-not-fqdn (postfix-strict, exim): forms ['exim-bounce']"
    ]
    other = rows[1][1].replace("need fully-qualified hostname", "Invalid name")
    assert reply_problems(_written(tmp_path, [rows[0], (rows[1][0], other, *rows[1][2:])])) == [
        "postfix-helo-not-fqdn (postfix-strict, exim): the reply is not in the exim-log"
    ]
    not_exim = [(rows[0][0], DSN, *rows[0][2:]), (rows[1][0], LOG, *rows[1][2:])]
    assert form_problems(_written(tmp_path, not_exim)) == [
        "items[0]: is no exim-bounce",
        "items[1]: is no exim-log",
    ]
