"""One host:port parser for listen addresses and DNS servers (strictmx/receiver/hostport.py)."""

from __future__ import annotations

import pytest

from strictmx.receiver.hostport import split_host_port, split_listen, split_nameserver


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
        ("2001:db8::1", ("2001:db8::1", 53)),  # bare: all of it is the address
        ("2001:0db8:0::1", ("2001:db8::1", 53)),  # canonical form
    ],
)
def test_a_nameserver_is_an_address_with_port_53_unless_given(
    text: str, expected: tuple[str, int]
) -> None:
    assert split_nameserver(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ns.example.net",
        "ns.example.net:53",
        ":53",
        "192.0.2.1:0",
        "192.0.2.1:65536",
        "192.0.2.1:",
        "192.0.2.1:²",
        "[2001:db8::1]:",
        "[2001:db8::1]x",
        "[ns]:53",
        "",
    ],
)
def test_a_nameserver_that_is_not_an_address_and_port_is_refused_naming_the_forms(
    text: str,
) -> None:
    with pytest.raises(ValueError) as caught:
        split_nameserver(text)
    assert str(caught.value) == f"not an IP address, IP:PORT or [IPv6]:PORT: {text!r}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.2:2525", ("127.0.0.2", 2525)),
        ("[::1]:0", ("::1", 0)),  # any free port
        ("5353", ("127.0.0.1", 5353)),
        (":5353", ("127.0.0.1", 5353)),
        ("65535", ("127.0.0.1", 65535)),
    ],
)
def test_a_listen_address_is_ip_and_port_or_a_port_alone(
    text: str, expected: tuple[str, int]
) -> None:
    assert split_listen(text) == expected


@pytest.mark.parametrize(
    "text", ["::1:53", "127.0.0.1", "[::1]", "localhost:25", "127.0.0.1:65536", "port"]
)
def test_a_listen_address_without_a_clear_port_or_with_a_name_is_refused(text: str) -> None:
    # "::1:53": unbracketed, the IPv6 address's last group would be read as the port.
    with pytest.raises(ValueError) as caught:
        split_listen(text)
    assert str(caught.value) == f"not IP:PORT, [IPv6]:PORT or a port alone: {text!r}"


def test_a_listen_address_may_name_a_host_when_asked() -> None:
    assert split_listen("localhost:2525", names=True) == ("localhost", 2525)
    assert split_listen("mx.example.test.:25", names=True) == ("mx.example.test.", 25)
    for text in ("local host:25", "::1:25", "[localhost]:25", "host:"):
        with pytest.raises(ValueError, match=r"^not HOST:PORT, \[IPv6\]:PORT or a port alone"):
            split_listen(text, names=True)


def test_without_defaults_both_host_and_port_are_needed() -> None:
    assert split_host_port("192.0.2.1:25") == ("192.0.2.1", 25)
    for text in ("192.0.2.1", ":25", "25", "192.0.2.1:0"):
        with pytest.raises(ValueError, match=r"^not IP:PORT or \[IPv6\]:PORT: "):
            split_host_port(text)
