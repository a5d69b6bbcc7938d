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
from pathlib import Path

import pytest

from strictmx.receiver.explain.classes import FAMILY_OF_CLASS, NOT_EMULATED
from strictmx.receiver.explain.corpus import Item, load
from strictmx.receiver.registry import builtin_outcomes, bundled
from strictmx.receiver.scenario import bundled_names

CORPUS = Path(__file__).resolve().parent.parent / "data" / "explain_corpus"
FILE = "mta.yaml"
#: Every reproducible catalogue entry in three forms was the aim: 350 items at least.
MIN_POSTFIX_ITEMS = 350
#: The three forms of one Postfix bounce, by the source's prefix.
FORMS = ("postfix-dsn", "postfix-log", "reply")

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


def bounces(items: Sequence[Item]) -> dict[tuple[str, str], list[Item]]:
    """Items by group and scenario, in file order: the generator writes each bounce's
    three forms together (DSN, log line, reply), and a scenario may reach one entry twice."""
    found: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for item in items:
        found[(item.group or "", _origin(item))].append(item)
    return found


def form_problems(items: Sequence[Item]) -> list[str]:
    """Bounces without their three forms in order, and forms that do not look like what
    they claim to be."""
    problems = []
    for item in items:
        form = _form(item)
        text = item.input
        if form == "postfix-dsn" and not (
            "X-Postfix-Queue-ID:" in text and "Diagnostic-Code: smtp;" in text
        ):
            problems.append(f"items[{item.index}]: no Postfix DSN")
        elif form == "postfix-log" and not re.search(r" status=(bounced|deferred) \(", text):
            problems.append(f"items[{item.index}]: no Postfix status=bounced|deferred line")
        elif form == "reply" and not _REPLY.match(text):
            problems.append(f"items[{item.index}]: no 4xx/5xx reply")
    for (group, origin), found in bounces(items).items():
        forms = [_form(i) for i in found]
        if len(forms) % len(FORMS) or forms != list(FORMS) * (len(forms) // len(FORMS)):
            problems.append(f"{group} ({origin}): forms {forms}")
    return problems


def reply_problems(items: Sequence[Item]) -> list[str]:
    """Replies that are not the text the DSN and the log line of their bounce carry."""
    problems = []
    for (group, origin), found in bounces(items).items():
        for start in range(0, len(found) - len(FORMS) + 1, len(FORMS)):
            forms = {_form(i): " ".join(i.input.split()) for i in found[start : start + 3]}
            reply = forms.get("reply")
            if reply is None:
                continue
            for form in ("postfix-dsn", "postfix-log"):
                if form in forms and reply not in forms[form]:
                    problems.append(f"{group} ({origin}): the reply is not in the {form}")
    return problems


def _form(item: Item) -> str:
    return (item.source or "").partition(":")[0]


def _origin(item: Item) -> str:
    return (item.source or "").partition(":")[2]


# -- the real file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return mta_items()


def test_there_are_enough_postfix_bounces(items: list[Item]) -> None:
    postfix = [i for i in items if _form(i) in FORMS]
    assert len(postfix) >= MIN_POSTFIX_ITEMS


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


def test_a_well_kept_bounce_passes_every_check(tmp_path: Path) -> None:
    written = _written(tmp_path, _bounce())
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
    one = Item("helo_syntax", REPLY, "reply:x", "g", FILE, 0)
    assert split_problems([one, one]) == []
    keys = [f"g{n}" for n in range(40)]
    on = {Item("helo_syntax", REPLY, "reply:x", k, FILE, 0).split: k for k in keys}
    assert len(on) == 3  # forty groups fall on every side

    class Moved(Item):
        @property
        def split(self) -> str:  # type: ignore[override]
            return "test" if super().split != "test" else "train"

    moved = Moved("helo_syntax", REPLY, "reply:x", "g", FILE, 1)
    assert split_problems([one, moved]) == [f"group:g: on {sorted({one.split, moved.split})}"]


def test_a_missing_or_doubled_form_is_named(tmp_path: Path) -> None:
    rows = _bounce()
    assert form_problems(_written(tmp_path, rows[:2])) == [
        "postfix-helo-not-fqdn (postfix-strict): forms ['postfix-dsn', 'postfix-log']"
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
    assert "items[0]: no Postfix DSN" in problems
    assert "items[1]: no Postfix status=bounced|deferred line" in problems
    assert "items[3]: no 4xx/5xx reply" in problems


def test_a_reply_its_dsn_does_not_carry_is_named(tmp_path: Path) -> None:
    rows = _bounce()
    rows[2] = (rows[2][0], "550 5.7.1 Access denied", *rows[2][2:])
    assert reply_problems(_written(tmp_path, rows)) == [
        "postfix-helo-not-fqdn (postfix-strict): the reply is not in the postfix-dsn",
        "postfix-helo-not-fqdn (postfix-strict): the reply is not in the postfix-log",
    ]
