"""The differential suite's parts: its sessions, both servers, the comparison, the report.

Used by the pytest test (test_postfix_dialect.py, through conftest.py's session fixtures)
and by `python -m tests.differential`, which prints the agreement table.

A reply is compared at three levels, each including the one before: the reply code, the
enhanced status code of every line, and the full text of every line. Only two things are
normalised: the queue id in "queued as ..." (each server makes its own) and the
receiver's host name (each side's own, configured alike). How each session ended (closed
by the server, or by the client after its last step) and anything sent unasked after the
last step are compared at every level too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver
from tests.e2e.postfix import Postfix

from . import reference
from .player import Played, Turn, play

HERE = Path(__file__).resolve().parent
SESSIONS = HERE / "sessions.yaml"
DIFFERENCES = HERE / "differences.yaml"
SCENARIO = "postfix-strict"

LEVELS = ("code", "code + enhanced code", "full text")

_QUEUED = re.compile(r"(queued as )\S+")
_CODES = re.compile(r"^(\d{3})[ -](?:([245]\.\d{1,3}\.\d{1,3})(?: |$))?")


# -- sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    name: str
    group: str
    steps: tuple[Any, ...]
    #: The configuration both servers run for it (sessions.yaml `configs:`).
    config: str = "reference"


@dataclass(frozen=True)
class Config:
    """A per-case configuration: main.cf settings over the reference's, and the same
    change said in strictmx's terms, merged over postfix-strict (mappings key by key)."""

    name: str
    postfix: Mapping[str, str] = field(default_factory=dict)
    strictmx: Mapping[str, Any] = field(default_factory=dict)


REFERENCE = Config("reference")


def load_configs(path: Path = SESSIONS) -> dict[str, Config]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = {REFERENCE.name: REFERENCE}
    for name, item in (data.get("configs") or {}).items():
        if name in found or set(item) - {"postfix", "strictmx"}:
            raise ValueError(f"{path}: configs.{name}: a new name, with postfix: and strictmx:")
        postfix = {str(k): str(v) for k, v in (item.get("postfix") or {}).items()}
        if not all(re.fullmatch(r"[a-z][a-z0-9_]*", key) for key in postfix):
            raise ValueError(f"{path}: configs.{name}.postfix: main.cf names only")
        found[name] = Config(name, postfix, dict(item.get("strictmx") or {}))
    return found


def load_sessions(path: Path = SESSIONS) -> list[Session]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    configs = load_configs(path)
    found: list[Session] = []
    seen: set[str] = set()
    for index, item in enumerate(data["sessions"]):
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ValueError(f"{path}: sessions[{index}]: a name is lowercase words and dashes")
        if name in seen:
            raise ValueError(f"{path}: sessions[{index}]: {name!r} appears twice")
        config = str(item.get("config", REFERENCE.name))
        if config not in configs:
            raise ValueError(f"{path}: sessions[{index}]: no configuration named {config!r}")
        seen.add(name)
        found.append(Session(name, str(item["group"]), tuple(item["steps"]), config))
    return found


# -- the two servers -----------------------------------------------------------------------


def record_reference(
    sessions: Sequence[Session], configs: Mapping[str, Config] | None = None
) -> dict[str, Played]:
    """Every session played once against Postfix: one fresh instance per configuration
    the sessions use (started side by side: a start is mostly waiting), all stopped once
    the sessions are played."""
    configs = configs if configs is not None else load_configs()
    names = list(dict.fromkeys(s.config for s in sessions))
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=4) as pool:
        starting = {name: pool.submit(reference.start, configs[name].postfix) for name in names}
        instances: dict[str, Postfix] = {}
        failed: BaseException | None = None
        for name, future in starting.items():
            # Every instance that started is stopped, even when another one failed.
            error = future.exception()
            if error is None:
                instances[name] = stack.enter_context(_stopping(future.result()))
            else:
                failed = failed or error
        if failed is not None:
            raise failed
        return {
            s.name: play(
                "127.0.0.1", instances[s.config].smtpd_port, s.steps, source=reference.CLIENT
            )
            for s in sessions
        }


@contextmanager
def _stopping(postfix: Postfix) -> Iterator[Postfix]:
    try:
        yield postfix
    finally:
        postfix.stop()


#: Names some sessions use for what Postfix's syntax checks make of them (an underscore in
#: a HELO name, a subdomain on the sender blocklist), given DNS records in strictmx's
#: hermetic world: the reference leaves the DNS-based restrictions out, so the sessions
#: must pass them on strictmx's side too (reference.py).
EXTRA_RECORDS: dict[str, dict[str, str]] = {
    "mail_x.example.net": {"A": "203.0.113.10"},
    "sub.blocked.example": {"MX": "10 mail.example.net."},
}


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on `base`: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def strictmx_scenario(config: Config = REFERENCE) -> scenarios.Scenario:
    """postfix-strict as bundled but for its error sleep, 0 as on the reference (the sleep
    delays replies, it does not change them), EXTRA_RECORDS and the configuration's own."""
    path = scenarios.resolve(SCENARIO)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entries in data.get("policies", {}).values():
        for entry in entries:
            if entry.get("policy") == "session_limits":
                entry["error_sleep_time"] = 0
    records = data["world"]["dns"].setdefault("records", {})
    for name, answers in EXTRA_RECORDS.items():
        assert name not in records, f"{SCENARIO} now has {name}: drop it from EXTRA_RECORDS"
        records[name] = answers
    data = merged(data, config.strictmx)
    return scenarios.from_dict(data, source=f"{path} ({config.name})", default_name=SCENARIO)


class Receivers:
    """strictmx receivers by configuration, started at first use through the project's
    pytest plugin (as tests/e2e/conftest.py's `serve`), all stopped at `close()`; a
    configuration strictmx cannot serve is remembered with its error.

    No peer may send XCLIENT or PROXY headers (`trusted` is empty), as the reference has
    no smtpd_authorized_xclient_hosts: otherwise strictmx would offer XCLIENT to the
    loopback client the sessions come from.
    """

    def __init__(self, configs: Mapping[str, Config]) -> None:
        self.configs = configs
        self.factory = StrictmxFactory(SCENARIO)
        self.running: dict[str, StrictmxReceiver | scenarios.ScenarioError] = {}

    def get(self, name: str) -> StrictmxReceiver:
        if name not in self.running:
            try:
                scenario = strictmx_scenario(self.configs[name])
            except scenarios.ScenarioError as exc:
                self.running[name] = exc
            else:
                self.running[name] = self.factory(scenario, trusted=())
        found = self.running[name]
        if isinstance(found, scenarios.ScenarioError):
            raise AssertionError(f"strictmx cannot serve configuration {name!r}: {found}")
        return found

    def close(self) -> None:
        self.factory.stop()


def play_strictmx(rx: StrictmxReceiver, session: Session) -> Played:
    return play(rx.host, rx.port, session.steps, source=reference.CLIENT)


# -- comparison ----------------------------------------------------------------------------


def normalise(line: str, hostname: str) -> str:
    line = _QUEUED.sub(r"\1QUEUE-ID", line)
    return line.replace(hostname, "HOSTNAME") if hostname else line


@dataclass(frozen=True)
class Seen:
    """One reply as compared: None lines mean the server had closed instead."""

    lines: tuple[str, ...] | None

    @property
    def code(self) -> str:
        if self.lines is None:
            return "(closed)"
        return self.lines[-1][:3]

    @property
    def enhanced(self) -> tuple[str | None, ...]:
        if self.lines is None:
            return ()
        return tuple(m[2] if (m := _CODES.match(line)) else None for line in self.lines)

    def agrees(self, other: Seen, level: int) -> bool:
        if self.code != other.code:
            return False
        if level >= 1 and self.enhanced != other.enhanced:
            return False
        return level < 2 or self.lines == other.lines

    def text(self) -> str:
        return "(closed by the server)" if self.lines is None else "\n".join(self.lines)


def seen(turn: Turn | None, hostname: str) -> Seen:
    if turn is None or turn.reply is None:
        return Seen(None)
    return Seen(tuple(normalise(line, hostname) for line in turn.reply))


@dataclass(frozen=True)
class Difference:
    """A deliberate difference: at `turn` (0 = the greeting, "end" = how the session
    ended) strictmx says `strictmx` where Postfix says `postfix`, for `reason`."""

    session: str
    turn: int | str
    postfix: str
    strictmx: str
    reason: str


def load_differences(sessions: Sequence[Session], path: Path = DIFFERENCES) -> list[Difference]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    names = {s.name for s in sessions}
    found: list[Difference] = []
    seen_keys: set[tuple[str, int | str]] = set()
    for index, item in enumerate(data.get("differences") or []):
        where = f"{path}: differences[{index}]"
        missing = {"session", "turn", "postfix", "strictmx", "reason"} - set(item)
        if missing:
            raise ValueError(f"{where}: missing {', '.join(sorted(missing))}")
        if item["session"] not in names:
            raise ValueError(f"{where}: no session named {item['session']!r}")
        turn = item["turn"]
        if not (isinstance(turn, int) and turn >= 0) and turn != "end":
            raise ValueError(f"{where}: turn is a reply's index (0: greeting) or 'end'")
        if not str(item["reason"]).strip():
            raise ValueError(f"{where}: a deliberate difference says why")
        key = (item["session"], turn)
        if key in seen_keys:
            raise ValueError(f"{where}: {key} is listed twice")
        seen_keys.add(key)
        found.append(
            Difference(
                item["session"],
                turn,
                str(item["postfix"]).rstrip("\n"),
                str(item["strictmx"]).rstrip("\n"),
                str(item["reason"]).strip(),
            )
        )
    return found


@dataclass
class Outcome:
    """One session compared: per turn, whether the two replies agree at each level."""

    session: Session
    rows: list[tuple[int, str, Seen, Seen]] = field(default_factory=list)
    ended: tuple[str, str] = ("", "")
    #: Lines each server sent unasked after the last step (normally none on either side).
    trailing: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    problems: list[str] = field(default_factory=list)
    documented: int = 0

    def turn_agrees(self, index: int, level: int) -> bool:
        _, _, theirs, ours = self.rows[index]
        return theirs.agrees(ours, level)

    def agrees(self, level: int) -> bool:
        if not self.rows:  # not played at all (strictmx could not serve its configuration)
            return False
        same_end = self.ended[0] == self.ended[1] and self.trailing[0] == self.trailing[1]
        return same_end and all(self.turn_agrees(i, level) for i in range(len(self.rows)))


def compare(
    session: Session,
    theirs: Played,
    ours: Played,
    differences: Iterable[Difference],
    *,
    postfix_hostname: str,
    strictmx_hostname: str,
) -> Outcome:
    """Postfix's and strictmx's replies side by side; `problems` lists each reply that
    differs in full text and is not a documented difference (whose both sides must then
    be exactly as documented)."""
    outcome = Outcome(
        session,
        ended=(theirs.ended, ours.ended),
        trailing=(
            tuple(normalise(line, postfix_hostname) for line in theirs.trailing),
            tuple(normalise(line, strictmx_hostname) for line in ours.trailing),
        ),
    )
    documented = {d.turn: d for d in differences if d.session == session.name}
    for index in range(max(len(theirs.turns), len(ours.turns))):
        a = theirs.turns[index] if index < len(theirs.turns) else None
        b = ours.turns[index] if index < len(ours.turns) else None
        sent = (a or b or Turn(-1, "", None)).sent
        left, right = seen(a, postfix_hostname), seen(b, strictmx_hostname)
        outcome.rows.append((index, sent, left, right))
        expected = documented.pop(index, None)
        if expected is not None:
            outcome.documented += 1
            if (left.text(), right.text()) != (expected.postfix, expected.strictmx):
                outcome.problems.append(
                    f"turn {index} ({sent}) is a documented difference, but no longer as "
                    f"documented:\n  Postfix:  {left.text()!r} (documented {expected.postfix!r})"
                    f"\n  strictmx: {right.text()!r} (documented {expected.strictmx!r})"
                )
        elif not left.agrees(right, 2):
            outcome.problems.append(
                f"turn {index} after C: {sent}\n"
                f"  Postfix:  {left.text()!r}\n  strictmx: {right.text()!r}"
            )
    expected = documented.pop("end", None)
    if expected is not None:
        outcome.documented += 1
        if outcome.ended != (expected.postfix, expected.strictmx):
            outcome.problems.append(
                f"the end is a documented difference, but no longer as documented: "
                f"{outcome.ended} (documented {(expected.postfix, expected.strictmx)})"
            )
    elif outcome.ended[0] != outcome.ended[1]:
        outcome.problems.append(
            f"the session ended differently: Postfix's by the {outcome.ended[0]}, "
            f"strictmx's by the {outcome.ended[1]}"
        )
    if outcome.trailing[0] != outcome.trailing[1]:
        outcome.problems.append(
            f"after the last step, Postfix sent {outcome.trailing[0]!r}, "
            f"strictmx {outcome.trailing[1]!r}"
        )
    for turn in documented:
        outcome.problems.append(f"differences.yaml names turn {turn}, which the session lacks")
    return outcome


# -- reports -------------------------------------------------------------------------------


def transcript(session: Session, played: Played) -> str:
    """One session as the recording file shows it."""
    out = [f"== {session.name} ({session.group})"]
    for number, turn in enumerate(played.turns):
        out.append(f"  [{number}] C: {turn.sent}")
        if turn.reply is None:
            out.append("      S: (closed by the server)")
            continue
        out.extend(f"      {'S:' if i == 0 else '  '} {line}" for i, line in enumerate(turn.reply))
    if played.trailing:
        out.extend(f"  S: (unasked) {line}" for line in played.trailing)
    out.append(f"  -- ended by the {played.ended}")
    return "\n".join(out)


def table(outcomes: Sequence[Outcome], title: str) -> str:
    sessions = len(outcomes)
    replies = sum(len(o.rows) for o in outcomes)
    lines = [title, f"{'':22}{'sessions':>18}{'replies':>20}"]
    for level, name in enumerate(LEVELS):
        s = sum(o.agrees(level) for o in outcomes)
        r = sum(o.turn_agrees(i, level) for o in outcomes for i in range(len(o.rows)))
        lines.append(f"{name:22}{_ratio(s, sessions):>18}{_ratio(r, replies):>20}")
    documented = sum(o.documented for o in outcomes)
    lines.append(f"documented deliberate differences: {documented} (differences.yaml)")
    return "\n".join(lines)


def _ratio(part: int, whole: int) -> str:
    percent = 100 * part / whole if whole else 100.0
    return f"{part}/{whole} ({percent:.1f}%)"


#: Where docs/dialects.md holds the list of deliberate differences, as differences_table
#: renders it (`python -m tests.differential --differences-table`).
DOCS = HERE.parents[1] / "docs" / "dialects.md"
DOCS_BEGIN = "<!-- deliberate differences: python -m tests.differential --differences-table -->"
DOCS_END = "<!-- end of deliberate differences -->"


def print_differences(outcomes: Sequence[Outcome]) -> int:
    """Print each session that differs and how; the exit status: 1 when any does."""
    failing = [o for o in outcomes if o.problems]
    for outcome in failing:
        print(f"--- {outcome.session.name} ({outcome.session.group})")
        for problem in outcome.problems:
            print(f"  {problem}".replace("\n", "\n  "))
    print(f"\n{len(failing)} of {len(outcomes)} sessions differ")
    return 1 if failing else 0


def differences_table(differences: Sequence[Difference]) -> str:
    """The deliberate differences as docs/dialects.md lists them (a Markdown table)."""

    def cell(text: str, *, shorten: bool = True) -> str:
        if (
            shorten and len(text) > 200
        ):  # a reply quoting a long parameter: its start and its length
            text = f"{text[:80]}… ({len(text)} characters)"
        return text.replace("|", "\\|").replace("\n", "<br>")

    rows = ["| session | turn | Postfix | strictmx | why |", "|---|---|---|---|---|"]
    rows += [
        f"| {d.session} | {d.turn} | {cell(d.postfix)} | {cell(d.strictmx)}"
        f" | {cell(d.reason, shorten=False)} |"
        for d in differences
    ]
    if not differences:
        rows.append("| (none) | | | | |")
    return "\n".join(rows)


def documented_table(path: Path = DOCS) -> str:
    """The table between DOCS_BEGIN and DOCS_END in docs/dialects.md."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no {DOCS_BEGIN!r} ... {DOCS_END!r} section")
    return text[start + len(DOCS_BEGIN) : end].strip()
