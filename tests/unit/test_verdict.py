"""The one reply builder: parsing, class agreement, multi-line, limits, soft_bounce."""

import pytest

from strictmx.receiver.verdict import MAX_LINE, Action, Reply, ReplyError, placeholders


def test_single_line_with_enhanced_status() -> None:
    r = Reply.parse("550 5.7.1 Service unavailable")
    assert (r.code, r.status, r.lines) == (550, "5.7.1", ("Service unavailable",))
    assert r.render() == "550 5.7.1 Service unavailable"
    assert r.kind is Action.REJECT


def test_no_status_is_kept_absent() -> None:
    r = Reply.parse("550 Too many RSETs")
    assert r.status is None
    assert r.render() == "550 Too many RSETs"


def test_multiline_from_wire_lines_round_trips() -> None:
    wire = [
        "550-5.7.1 [192.0.2.1] Our system has detected that this message is",
        "550-5.7.1 not RFC 5322 compliant.",
        "550 5.7.1  RFC 5322 specifications for more information. x - gsmtp",
    ]
    r = Reply.parse(wire)
    assert r.status == "5.7.1"
    assert r.lines[2] == " RFC 5322 specifications for more information. x - gsmtp"
    assert r.wire_lines() == wire


def test_multiline_from_plain_text_lines() -> None:
    r = Reply.parse(
        "550-Sender envelope address is locally blacklisted here.\n"
        "550 If you think this is wrong get in touch with postmaster."
    )
    assert r.wire_lines() == [
        "550-Sender envelope address is locally blacklisted here.",
        "550 If you think this is wrong get in touch with postmaster.",
    ]


def test_persona_without_enhanced_codes_drops_them() -> None:
    r = Reply.parse("550 5.7.1 Go away")
    assert r.render(enhanced=False) == "550 Go away"


def test_class_digit_is_forced_to_agree_when_code_changes() -> None:
    r = Reply.parse("550 5.7.1 Go away").with_code(450)
    assert r.render() == "450 4.7.1 Go away"


def test_disagreeing_class_in_a_template_is_an_error() -> None:
    with pytest.raises(ReplyError, match="disagrees"):
        Reply.parse("550 4.7.1 inconsistent")


def test_mixed_codes_in_multiline_is_an_error() -> None:
    with pytest.raises(ReplyError, match="has code 451"):
        Reply.parse(["550-first", "451 second"])


@pytest.mark.parametrize("bad", ["", "hello", "600 nope", "55 short"])
def test_replies_need_a_code(bad: str) -> None:
    with pytest.raises(ReplyError):
        Reply.parse(bad)


def test_soft_bounce_turns_5xx_into_4xx() -> None:
    assert Reply.parse("554 5.7.1 blocked").soft().render() == "454 4.7.1 blocked"
    assert Reply.parse("550 blocked").soft().render() == "450 blocked"
    same = Reply.parse("421 4.7.0 busy")
    assert same.soft() == same


def test_lines_are_cut_at_512_octets_with_crlf() -> None:
    r = Reply.parse("550 5.7.1 " + "x" * 2000)
    (line,) = r.wire_lines()
    assert len(line) == MAX_LINE
    assert len((line + "\r\n").encode()) == 512


def test_non_printable_characters_are_replaced() -> None:
    r = Reply.parse("550 bad \x00name\x1b é")
    assert r.render() == "550 bad ?name? ?"


def test_placeholders_are_filled_and_unknown_ones_left() -> None:
    r = Reply.parse("554 5.7.1 Client host [{ip}] blocked using {zone}")
    assert placeholders(r) == {"ip", "zone"}
    assert r.format({"ip": "192.0.2.1"}).render() == (
        "554 5.7.1 Client host [192.0.2.1] blocked using {zone}"
    )


def test_braces_from_a_client_are_not_interpreted() -> None:
    r = Reply.parse("501 5.5.2 <{helo}>: Helo command rejected: Invalid name")
    out = r.format({"helo": "{ip}{0}"}).render()
    assert out == "501 5.5.2 <{ip}{0}>: Helo command rejected: Invalid name"
