"""One HOST:PORT grammar for nameservers, the DNS listener and `strictmx serve --listen`."""

from __future__ import annotations

import argparse
import re

import pytest

from strictmx.receiver.serve_command import _listen
from strictmx.receiver.world.endpoints import (
    EndpointError,
    split_host_port,
    split_listen,
    split_nameserver,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        ("192.0.2.53:5353", ("192.0.2.53", 5353)),
        ("::1", ("::1", 53)),
        ("2001:DB8::0:1", ("2001:db8::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_nameservers(text: str, expected: tuple[str, int]) -> None:
    assert split_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.2:0", ("127.0.0.2", 0)),
        ("5353", ("127.0.0.1", 5353)),
        (":5353", ("127.0.0.1", 5353)),
        ("[::1]:53", ("::1", 53)),
        ("[2001:db8::0:1]:25", ("2001:db8::1", 25)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert split_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("192.0.2.1:", "no port after ':'"),
        ("192.0.2.1:x53", "port 'x53' is not a number"),
        ("192.0.2.1:٥٣", "port '٥٣' is not a number"),
        ("192.0.2.1:70000", "port 70000 is outside 0-65535"),
        ("192.0.2.1", "no port"),
        ("::1:5353", "an IPv6 address before a port needs brackets: [::1]:5353"),
        ("[::1:5353", "'[' without a closing ']'"),
        ("[::1]5353", "'5353' after ']'"),
        ("[]:25", "empty brackets"),
        ("[192.0.2.1]:25", "brackets are for IPv6 addresses"),
        ("[mx.example]:25", "'mx.example' in brackets is not an IPv6 address"),
        ("localhost:25", "'localhost' is not an IP address"),
        ("192.0.2:25", "'192.0.2' is not an IP address"),
    ],
)
def test_each_problem_is_named(text: str, problem: str) -> None:
    with pytest.raises(EndpointError, match="^" + re.escape(problem)):
        split_host_port(text, default_host=None, port_zero=True)
    # The callers keep their own first words, then say what is wrong.
    with pytest.raises(ValueError, match=r"^not IP:PORT, \[IPv6\]:PORT or a port alone: "):
        split_listen(text or "x")


def test_port_zero_only_where_asked() -> None:
    assert split_host_port("192.0.2.1:0", port_zero=True) == ("192.0.2.1", 0)
    with pytest.raises(EndpointError, match="port 0 is outside 1-65535"):
        split_host_port("192.0.2.1:0")
    with pytest.raises(ValueError, match=r"\(port 0 is outside 1-65535\)$"):
        split_nameserver("192.0.2.1:0")


def test_host_names_only_where_asked() -> None:
    assert split_host_port("mx.example:25", names=True) == ("mx.example", 25)
    assert split_host_port("localhost:25", names=True) == ("localhost", 25)
    with pytest.raises(EndpointError, match="'-bad' is not an IP address or host name"):
        split_host_port("-bad:25", names=True)
    with pytest.raises(EndpointError, match=r"'mx\.example' is not an IP address$"):
        split_host_port("mx.example:25")


def test_the_command_line_reads_the_same_grammar() -> None:
    assert _listen("localhost:2525") == ("localhost", 2525)
    assert _listen("[::1]:0") == ("::1", 0)
    assert _listen(":2525") == ("127.0.0.1", 2525)
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        _listen("::1:2525")
    assert str(caught.value) == (
        "expected HOST:PORT, got '::1:2525' "
        "(an IPv6 address before a port needs brackets: [::1]:2525)"
    )
