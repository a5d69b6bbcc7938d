"""`strictmx serve --help` documents every flag and its default."""

from __future__ import annotations

import argparse

from strictmx.receiver import cli


def serve_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser(["serve"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = sub.choices["serve"]
    return found


def test_every_serve_flag_has_help_naming_its_default() -> None:
    undocumented = []
    for action in serve_parser()._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if not action.help or "default" not in action.help:
            undocumented.append("/".join(action.option_strings))
    assert undocumented == []


def test_a_stated_default_is_the_real_one() -> None:
    for action in serve_parser()._actions:
        if action.default == argparse.SUPPRESS or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action.default, str | int | float) and not isinstance(action.default, bool):
            assert action.help is not None
            shown = f"{action.default:g}" if isinstance(action.default, float) else action.default
            assert f"default: {shown}" in action.help, action.option_strings
    listen = next(a for a in serve_parser()._actions if "--listen" in a.option_strings)
    assert listen.default == ("127.0.0.1", 2525)
    assert listen.help is not None and "default: 127.0.0.1:2525" in listen.help
