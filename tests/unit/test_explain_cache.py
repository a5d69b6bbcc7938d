"""The default explainer kept between runs (strictmx/receiver/explain/cache.py)."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from strictmx.receiver.explain import cache
from strictmx.receiver.explain.explainer import Explainer, _installed_explainer


@pytest.fixture
def where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("STRICTMX_CACHE_DIR", str(folder))
    return folder


def never() -> Any:
    raise AssertionError("built again: the cache was not used")


def test_built_once_then_read_back(where: Path) -> None:
    assert cache.cached("thing", lambda: ["built"], list) == ["built"]
    assert (where / "thing.pickle").is_file()
    assert oct(where.stat().st_mode & 0o777) == "0o700"
    assert cache.cached("thing", never, list) == ["built"]


def test_the_explainer_read_back_answers_as_the_built_one(where: Path) -> None:
    built = cache.cached("explainer", _installed_explainer, Explainer)
    read = cache.cached("explainer", never, Explainer)
    reply = (
        "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"
    )
    assert read is not built
    assert read.explain(reply).to_json() == built.explain(reply).to_json()


def test_a_changed_source_file_changes_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "strictmx"
    (package / "data").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "data" / "catalogue.yaml").write_text("outcomes: []\n")
    monkeypatch.setattr(cache, "PACKAGE", package)
    first = cache.key()
    assert cache.key() == first  # the control: nothing changed
    (package / "notes.txt").write_text("not a source")
    assert cache.key() == first
    (package / "data" / "catalogue.yaml").write_text("outcomes: [] # edited\n")
    assert cache.key() != first


def test_installing_a_distribution_changes_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "other-1.0.dist-info").mkdir(parents=True)
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setattr("sys.path", [*sys.path, str(site), str(plain)])
    first = cache.key()
    (plain / "notes.txt").write_text("")  # the control: a folder with no distribution
    assert cache.key() == first
    os.utime(site, ns=(0, 0))  # pip adds acme_policies-1.0.dist-info: the folder changes
    assert cache.key() != first


def test_another_key_builds_anew(where: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.cached("thing", lambda: ["old"], list)
    monkeypatch.setattr(cache, "key", lambda: "another")
    assert cache.cached("thing", lambda: ["new"], list) == ["new"]
    assert cache.cached("thing", never, list) == ["new"]


def test_an_empty_folder_setting_turns_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRICTMX_CACHE_DIR", "")
    monkeypatch.chdir(tmp_path)
    calls = []
    for _ in range(2):
        cache.cached("thing", lambda: calls.append(1) or ["built"], list)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_cache_file_others_can_write_is_not_unpickled(where: Path) -> None:
    cache.cached("thing", lambda: ["built"], list)
    path = where / "thing.pickle"
    path.write_bytes(pickle.dumps((cache.key(), ["planted"])))
    os.chmod(path, 0o600)
    assert cache.cached("thing", never, list) == ["planted"]  # the control: a file of ours
    os.chmod(path, 0o666)
    assert cache.cached("thing", lambda: ["rebuilt"], list) == ["rebuilt"]
    os.chmod(where, 0o777)
    assert cache.cached("thing", lambda: ["again"], list) == ["again"]


def test_a_broken_or_foreign_cache_file_is_rebuilt(where: Path) -> None:
    cache.cached("thing", lambda: ["built"], list)
    path = where / "thing.pickle"
    path.write_bytes(b"\x80\x05 not a pickle")
    assert cache.cached("thing", lambda: ["rebuilt"], list) == ["rebuilt"]
    path.write_bytes(pickle.dumps((cache.key(), {"a": "dict"})))
    assert cache.cached("thing", lambda: ["typed"], list) == ["typed"]
    assert cache.cached("thing", never, list) == ["typed"]


def test_a_cache_folder_that_cannot_be_made_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("STRICTMX_CACHE_DIR", str(blocker / "cache"))
    assert cache.cached("thing", lambda: ["built"], list) == ["built"]
    assert cache.cached("thing", lambda: ["built again"], list) == ["built again"]
