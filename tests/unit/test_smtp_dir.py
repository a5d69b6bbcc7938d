"""aiosmtpd finds commands, AUTH mechanisms and hooks by walking dir(); strictmx shortens
those walks (a large share of per-connection cost), so every name must still be listed."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP

from strictmx.receiver.smtp import HOOKS, StrictSMTP, _Hooks


def test_every_hook_is_listed() -> None:
    hooks = sorted(name for name in vars(_Hooks) if name.startswith("handle_"))
    assert hooks  # the control: there are hooks to find
    assert sorted(dir(HOOKS)) == hooks


def test_every_command_and_auth_mechanism_is_listed() -> None:
    names = {n for n in dir(SMTP) if n.startswith(("smtp_", "auth_"))}
    names |= {n for n in vars(StrictSMTP) if n.startswith(("smtp_", "auth_"))}
    assert "smtp_HELO" in names and "smtp_DATA" in names
    listed = StrictSMTP.__dir__(object.__new__(StrictSMTP))
    assert set(listed) == names
