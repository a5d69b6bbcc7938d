"""The default explainer kept between runs: built once, then read back in milliseconds.

Building it imports the registry, hence every policy (each outcome's stage and fields, and
the plug-ins' outcomes, come from the policies), and indexes the catalogue: about a second,
nearly all of what `strictmx explain` spent on one bounce. So the registry is imported by
name (`REGISTRY`), only when an explainer is built, and the built one is pickled to the
user's cache folder with a key of everything it was built from: the Python version, every
source and data file of the strictmx package (size and modification time) and the folders
of the import path that hold installed distributions (installing, upgrading or removing a
package, a policy plug-in among them, changes its folder). Another key builds anew. A
cache that cannot be read or written only makes the run slower; a cache file that another
user could have written is not read (unpickling runs code).

`STRICTMX_CACHE_DIR` names the folder; set to the empty string it turns the cache off.

tests/unit/test_cli_lazy.py checks the by-name import of the registry as an import edge.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar, cast

from ..catalogue import Catalogue

#: Imported when an explainer is built: importing it imports every policy.
REGISTRY = "strictmx.receiver.registry"
#: Bump to drop every cache written before a change the key does not see.
FORMAT = 1
PACKAGE = Path(__file__).resolve().parent.parent.parent

T = TypeVar("T")


def _registry() -> ModuleType:
    return importlib.import_module(REGISTRY)


def bundled() -> Catalogue:
    """The reply catalogue shipped with strictmx, checked against the built-in policies."""
    return cast(Catalogue, _registry().bundled())


def installed() -> Catalogue:
    """The bundled catalogue and the installed plug-ins' outcomes."""
    registry = _registry()
    policies = registry.load_registry()
    outcomes = {name: cls.outcomes for name, cls in policies.items()}
    return cast(Catalogue, registry.bundled().with_policies(outcomes))


def folder() -> Path | None:
    """The cache folder, or None when the cache is off."""
    given = os.environ.get("STRICTMX_CACHE_DIR")
    if given is not None:
        return Path(given) if given else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "strictmx"


def key() -> str:
    """What a cached object was built from (see the module docstring)."""
    lines = [f"{FORMAT} {sys.version} {sys.executable}"]
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix in (".py", ".yaml", ".yml", ".json") and "__pycache__" not in path.parts:
            lines.append(_stamp(path))
    lines += [_stamp(Path(p)) for p in _installs()]
    return hashlib.sha256("\n".join(lines).encode(errors="surrogateescape")).hexdigest()


def _installs() -> list[str]:
    """The import path's folders that hold installed distributions (their `*.dist-info`
    carry the policy plug-ins' entry points). The current folder is left out: it is on the
    path under `python -m`, and may be a folder of a hundred thousand bounces."""
    here = os.getcwd()
    found = []
    for entry in sys.path:
        if not entry or entry == here:
            continue
        try:
            with os.scandir(entry) as listing:
                if any(e.name.endswith((".dist-info", ".egg-info")) for e in listing):
                    found.append(entry)
        except OSError:
            continue  # a zip file or a folder that is gone: nothing installed there
    return found


def _stamp(path: Path) -> str:
    try:
        info = path.stat()
    except OSError:
        return f"{path} -"
    return f"{path} {info.st_size} {info.st_mtime_ns}"


def cached(name: str, build: Callable[[], T], kind: type[T]) -> T:
    """`build()`'s result, read from the cache when it was built from what is here now."""
    where = folder()
    if where is None:
        return build()
    path = where / f"{name}.pickle"
    wanted = key()
    found = _read(path, wanted, kind)
    if found is not None:
        return found
    made = build()
    _write(where, path, wanted, made)
    return made


def _read(path: Path, wanted: str, kind: type[T]) -> T | None:
    try:
        with open(path, "rb") as handle:
            if not _ours(os.fstat(handle.fileno())) or not _ours(path.parent.stat()):
                return None
            stored_key, value = pickle.load(handle)
    except Exception:  # missing, truncated, from another version: build it again
        return None
    if stored_key != wanted or not isinstance(value, kind):
        return None
    return value


def _ours(info: os.stat_result) -> bool:
    """Owned by this user and writable by no one else: safe to unpickle."""
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _write(where: Path, path: Path, stamp: str, value: object) -> None:
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=where, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "wb") as out:
                pickle.dump((stamp, value), out, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)  # whole or not at all, for a run reading it now
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:
        return  # a read-only home: every run builds it, nothing else changes
