"""What a scenario may reach outside the receiver's process, by where the scenario came from.

A scenario is data. A few of its options reach beyond the process: they name a file to
read, a Python module to import, a URL to fetch, a listen address to bind, or real DNS
(and through it real mail servers) to talk to. A scenario file the operator chose on the
command line may use them; a scenario uploaded through the HTTP API may not, unless
`strictmx serve --api-allow-host-access` says it may.

Options mark themselves with `reaches(...)`, in one place per option model, so a new
option or a new policy gets the rule by naming what it reaches; the loader says what the
scenario may reach with a `Trust` in pydantic's validation context. A model validated
without a context (Python code building options directly) is code, not an uploaded
scenario, and may reach what it names.

Files are read with `read_regular_file`: regular files only (no FIFO that blocks for ever,
no /dev/zero that never ends, no directory), at most a stated size, and errors that never
quote what the file holds.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import AfterValidator, ValidationInfo

#: The key of the `Trust` in pydantic's validation context.
CONTEXT_KEY: Final = "strictmx.trust"
#: The `serve` flag that lets uploaded scenarios reach outside the process.
ALLOW_FLAG: Final = "--api-allow-host-access"


class Reach(enum.Enum):
    """What an option does outside the process; the value is how refusals say it."""

    FILE = "name a file on the server"
    MODULE = "name a Python module to import"
    URL = "name a URL for the server to fetch"
    LISTEN = "name an address for the server to listen on"
    HOST = "name a host for the server to contact"
    REAL_DNS = "use real DNS (overlay or system mode), whose answers the server then contacts"


@dataclass(frozen=True)
class Trust:
    """What a scenario being loaded may name, and where its relative file names lead."""

    #: Whether options that reach outside the process are allowed at all.
    host_access: bool
    #: The directory relative file names are read from (the scenario file's own); None:
    #: the current directory.
    base: Path | None = None
    #: Where the scenario came from, for refusals ("a scenario uploaded through the API").
    origin: str = "this scenario"

    def resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        if path.is_absolute() or self.base is None:
            return path
        return self.base / path


#: Python code's own scenarios (dicts and text it builds): they may name anything.
CODE: Final = Trust(host_access=True, origin="a scenario given by Python code")
#: A scenario uploaded through the HTTP API of a receiver started without ALLOW_FLAG.
UPLOADED: Final = Trust(host_access=False, origin="a scenario uploaded through the API")
#: One uploaded through a receiver started with ALLOW_FLAG: relative files from its cwd.
UPLOADED_ALLOWED: Final = Trust(host_access=True, origin="a scenario uploaded through the API")


def from_file(path: Path) -> Trust:
    """A scenario file's trust: it may name anything, relative files beside it."""
    return Trust(host_access=True, base=path.resolve().parent, origin=str(path))


def context(trust: Trust) -> dict[str, Any]:
    """The pydantic validation context carrying `trust`."""
    return {CONTEXT_KEY: trust}


def trust_of(info: ValidationInfo) -> Trust:
    """The trust of the scenario being validated; CODE when no loader set one."""
    found = (info.context or {}).get(CONTEXT_KEY) if isinstance(info.context, dict) else None
    return found if isinstance(found, Trust) else CODE


def refusal(reach: Reach, trust: Trust) -> str:
    return (
        f"{trust.origin} may not {reach.value}; the receiver allows it only when "
        f"`strictmx serve` is started with {ALLOW_FLAG}"
    )


def reaches(reach: Reach, when: Callable[[Any], bool] | None = None) -> AfterValidator:
    """Mark an option that reaches outside the process (`when` the value does so).

    Used as `Annotated[str, reaches(Reach.FILE)]`: an untrusted scenario that sets it
    fails validation with the option's key path and the rule, never with its value.
    """

    def check(value: Any, info: ValidationInfo) -> Any:
        if when is not None and not when(value):
            return value
        trust = trust_of(info)
        if not trust.host_access:
            raise ValueError(refusal(reach, trust))
        return value

    return AfterValidator(check)


# -- reading files ------------------------------------------------------------------------------


class UnreadableFile(ValueError):
    """A file that cannot be used; the message names the file and why, never its content."""


class MissingFile(UnreadableFile):
    """The file does not exist."""


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular_file(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes.

    Checked with stat before opening, so a FIFO or a device is never opened; opened
    non-blocking all the same, so a FIFO swapped in between does not block; checked
    again on the open descriptor, and read no further than `limit` + 1 bytes, so a file
    that grows meanwhile is still refused. Blocking I/O: callers on the event loop run it
    in a thread.
    """
    shown = str(path)
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise MissingFile(f"{what} {shown!r} does not exist") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {shown!r}: {exc.strerror or exc}") from None
    kind = _kind(before.st_mode)
    if kind is not None:
        raise UnreadableFile(f"{what} {shown!r} is {kind}; only regular files are read")
    if before.st_size > limit:
        raise UnreadableFile(f"{what} {shown!r} is {before.st_size} bytes; the limit is {limit}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {shown!r}: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(fd)
        kind = _kind(opened.st_mode)
        if kind is not None or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise UnreadableFile(f"{what} {shown!r} changed while it was opened; not read")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {shown!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise UnreadableFile(f"{what} {shown!r} is over the limit of {limit} bytes")
    return b"".join(chunks)


def read_text_file(path: Path, limit: int, what: str = "file") -> str:
    """`read_regular_file` decoded as UTF-8; a decoding error gives the offset, not bytes."""
    data = read_regular_file(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"{what} {str(path)!r} is not UTF-8 text (first bad byte at offset {exc.start})"
        ) from None
