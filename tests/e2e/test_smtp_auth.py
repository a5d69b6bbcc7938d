"""SMTP AUTH (RFC 4954) on the wire: smtplib and swaks log in over loopback, after STARTTLS.

Each behaviour has its trigger and its control: the right credentials and the wrong ones,
AUTH in clear text and after STARTTLS, a listed account and any credentials at all.
"""

from __future__ import annotations

import base64
import shutil
import smtplib
import ssl
import subprocess
from typing import Any

import pytest

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.scenario import ScenarioError
from strictmx.receiver.tls import self_signed_context

from .conftest import Factory, Running
from .test_api import API, Http, Schemas

pytestmark = pytest.mark.e2e

HOST = "smtp.strictmx.test"
MESSAGE = b"From: app@example.net\r\nTo: bob@example.org\r\nSubject: auth\r\n\r\nlogged in\r\n"
SWAKS = shutil.which("swaks")
# Missing swaks is a failure, not a skip: scripts/test installs it (Debian's swaks).
assert SWAKS is not None, "swaks is not installed (Debian: swaks; scripts/test installs it)"


def scenario(**auth: Any) -> dict[str, Any]:
    return {"name": "auth", "receiver": {"hostname": HOST, "auth": auth}}


def tls_client() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def secured(rx: Running) -> smtplib.SMTP:
    client = smtplib.SMTP(rx.host, rx.port, local_hostname="app.example.net", timeout=10)
    client.ehlo()
    assert client.starttls(context=tls_client())[0] == 220
    client.ehlo()
    return client


def serve_auth(serve: Factory, spec: dict[str, Any] | str) -> Running:
    return serve(spec, tls_context=self_signed_context(HOST))


ACCOUNT = {"accounts": [{"user": "app@example.net", "password": "s3cret"}]}


# -- logging in after STARTTLS ----------------------------------------------------------------


def test_login_with_the_listed_account_succeeds_and_the_user_is_journaled(
    serve: Factory,
) -> None:
    rx = serve_auth(serve, scenario(**ACCOUNT))
    with secured(rx) as client:
        assert client.has_extn("auth")
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        code, text = client.login("app@example.net", "s3cret")
        assert (code, text) == (235, b"2.7.0 Authentication successful")
        assert client.sendmail("app@example.net", ["bob@example.org"], MESSAGE) == {}
    session = rx.last()
    assert (session["outcome"], session["auth_user"], session["tls"]) == (
        "accepted",
        "app@example.net",
        True,
    )
    # The password is nowhere in the transcript, in clear or in base64.
    detail = rx.session(session["id"])
    lines = " ".join(line["line"] for line in detail["transcript"])
    plain = base64.b64encode(b"\0app@example.net\0s3cret").decode()
    assert "s3cret" not in lines and plain not in lines
    assert "AUTH PLAIN <credentials hidden>" in lines


def test_a_wrong_password_gets_535_5_7_8_on_the_wire(serve: Factory) -> None:
    rx = serve_auth(serve, scenario(**ACCOUNT))
    with secured(rx) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("app@example.net", "wrong")
        # smtplib tries each offered mechanism; each gets the RFC 4954 §6 refusal.
        assert refused.value.smtp_code == 535
        assert refused.value.smtp_error == b"5.7.8 Authentication credentials invalid"
        # The session goes on, unauthenticated: a control that the right one still works.
        assert client.login("app@example.net", "s3cret")[0] == 235
    assert rx.last()["auth_user"] == "app@example.net"


def test_any_credentials_log_in_when_no_account_is_listed(serve: Factory) -> None:
    rx = serve_auth(serve, scenario())
    with secured(rx) as client:
        assert client.login("whoever", "anything")[0] == 235
    assert rx.last()["auth_user"] == "whoever"


def test_the_postfix_dialect_refuses_in_postfixs_words(serve: Factory) -> None:
    spec = scenario(**ACCOUNT)
    spec["receiver"]["dialect"] = "postfix"
    rx = serve_auth(serve, spec)
    with secured(rx) as client:
        code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())
        assert (code, text) == (535, b"5.7.8 Error: authentication failed: authentication failure")
        code, text = client.docmd("AUTH", "LOGIN")
        assert (code, text) == (334, b"VXNlcm5hbWU6")
        assert client.docmd("*") == (501, b"5.7.0 Authentication aborted")


def test_the_api_shows_the_user_and_hides_the_password(serve: Factory) -> None:
    rx = serve(scenario(**ACCOUNT), tls_context=self_signed_context(HOST), **API)
    with secured(rx) as client:
        client.login("app@example.net", "s3cret")
    with secured(rx) as client:  # the control: a session that did not log in
        client.noop()
    http = Http(rx)
    schemas = Schemas(http.get("/openapi.json"))
    page = http.get("/sessions")
    schemas.check("SessionPage", page)
    assert [s["auth_user"] for s in page["sessions"]] == [None, "app@example.net"]
    info = http.get("/scenario")
    schemas.check("ScenarioInfo", info)
    assert info["receiver"]["auth"]["accounts"] == [
        {"user": "app@example.net", "password": "**********"}
    ]


# -- before TLS -------------------------------------------------------------------------------


def test_auth_before_starttls_is_not_offered_and_gets_538(serve: Factory) -> None:
    rx = serve_auth(serve, scenario(**ACCOUNT))
    with smtplib.SMTP(rx.host, rx.port, local_hostname="app.example.net", timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.has_extn("starttls")
        code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0a\0b").decode())
        assert (code, text) == (
            538,
            b"5.7.11 Encryption required for requested authentication mechanism",
        )
    assert rx.last()["auth_user"] is None


def test_require_tls_false_offers_auth_in_clear_text(serve: Factory) -> None:
    rx = serve_auth(serve, scenario(require_tls=False))
    with smtplib.SMTP(rx.host, rx.port, local_hostname="app.example.net", timeout=10) as client:
        client.ehlo()
        assert client.has_extn("auth")
        assert client.login("u", "p")[0] == 235


def test_no_auth_section_offers_no_auth(serve: Factory) -> None:
    rx = serve_auth(serve, {"name": "plain", "receiver": {"hostname": HOST}})
    with secured(rx) as client:
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN")[0] == 504  # aiosmtpd's dialect: no mechanism


# -- the exchange's own errors (RFC 4954 §4) -----------------------------------------------------


def test_bad_base64_and_a_cancelled_exchange_get_501(serve: Factory) -> None:
    rx = serve_auth(serve, scenario(**ACCOUNT))
    with secured(rx) as client:
        assert client.docmd("AUTH", "PLAIN") == (334, b"")
        assert client.docmd("not base64!") == (501, b"5.5.2 Cannot decode response")
        assert client.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
        assert client.docmd(base64.b64encode(b"app@example.net").decode()) == (
            334,
            b"UGFzc3dvcmQ6",
        )
        assert client.docmd("*") == (501, b"5.7.0 Authentication cancelled")
        assert client.docmd("AUTH", "CRAM-MD5")[0] == 504
        # The control: the same session still logs in, once.
        assert client.login("app@example.net", "s3cret")[0] == 235
        assert client.docmd("AUTH", "PLAIN")[0] == 503


def test_an_over_long_response_line_gets_500_5_5_6(serve: Factory) -> None:
    rx = serve_auth(serve, scenario(**ACCOUNT))
    with secured(rx) as client:
        assert client.docmd("AUTH", "PLAIN") == (334, b"")
        client.send(b"A" * 100_000 + b"\r\n")
        assert client.getreply() == (500, b"5.5.6 Authentication Exchange line is too long")
        # The control: the line is behind it; the session goes on and logs in.
        assert client.login("app@example.net", "s3cret")[0] == 235


def test_mail_before_auth_gets_530_when_auth_is_required(serve: Factory) -> None:
    rx = serve_auth(serve, scenario(required=True, **ACCOUNT))
    with secured(rx) as client:
        assert client.mail("app@example.net") == (530, b"5.7.0 Authentication required")
        client.login("app@example.net", "s3cret")
        assert client.mail("app@example.net")[0] == 250


# -- swaks, LOGIN --------------------------------------------------------------------------------


def swaks(rx: Running, *args: str) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None
    return subprocess.run(
        [SWAKS, "--server", f"{rx.host}:{rx.port}", "--timeout", "10", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


SWAKS_ENVELOPE = ("--helo", "app.example.net", "--from", "app@example.net", "--to", "bob@x.org")


def test_swaks_logs_in_with_login_after_starttls(serve: Factory) -> None:
    rx = serve_auth(serve, "submission")
    run = swaks(
        rx,
        *SWAKS_ENVELOPE,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "app@example.net",
        "--auth-password",
        "app-password",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "<~  235 2.7.0 Authentication successful" in run.stdout
    session = rx.last()
    assert (session["outcome"], session["auth_user"]) == ("accepted", "app@example.net")


def test_swaks_with_a_wrong_password_is_refused_with_535(serve: Factory) -> None:
    rx = serve_auth(serve, "submission")
    run = swaks(
        rx,
        *SWAKS_ENVELOPE,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "app@example.net",
        "--auth-password",
        "wrong",
    )
    assert run.returncode != 0
    assert "<~* 535 5.7.8 Error: authentication failed: authentication failure" in run.stdout
    assert rx.last()["auth_user"] is None


# -- scenario errors ---------------------------------------------------------------------------


def test_a_bad_auth_option_names_file_line_and_key_path() -> None:
    text = "name: bad-auth\nreceiver:\n  auth:\n    mechanisms: [PLAIN, CRAM-MD5]\n"
    with pytest.raises(ScenarioError) as error:
        scenarios.loads(text, source="bad.yaml")
    assert str(error.value).startswith("bad.yaml:4 receiver.auth.mechanisms[1]:"), str(error.value)


def test_an_account_without_a_password_names_its_key_path() -> None:
    text = "receiver:\n  auth:\n    accounts:\n      - {user: app}\n"
    with pytest.raises(ScenarioError) as error:
        scenarios.loads(text, source="bad.yaml")
    assert "receiver.auth.accounts[0].password" in str(error.value)
    # The control: the same section, whole, loads.
    good = "receiver:\n  auth:\n    accounts:\n      - {user: app, password: pw}\n"
    assert scenarios.loads(good, source="good.yaml").receiver.auth is not None
