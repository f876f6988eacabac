"""Generated hostile input: parse_message/parse_envelope must stay bounded and never raise."""

from __future__ import annotations

import random

import pytest

from crmail.mime import ParseLimits, parse_envelope, parse_message

HEAD = b"From: a@x.org\r\nTo: b@y.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def test_ten_megabyte_header_block() -> None:
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 90) for i in range(100_000))
    raw = b"From: a@x.org\r\n" + filler + b"To: late@x.org\r\n\r\nbody"
    assert len(raw) > 10_000_000
    msg = parse_message(raw)
    assert not msg.parse_failed
    assert msg.truncated
    assert "header block capped" in msg.defects
    assert [a.email for a in msg.envelope.from_] == ["a@x.org"]
    assert msg.envelope.to == ()  # it was beyond the cap
    assert msg.text == "body"
    assert parse_envelope(raw).from_ == msg.envelope.from_


def test_single_giant_header_line() -> None:
    raw = b"Subject: " + b"y" * 3_000_000 + b"\r\nFrom: after@x.org\r\n\r\nbody"
    msg = parse_message(raw)
    assert "header field subject capped" in msg.defects
    assert len(msg.envelope.subject) == 998
    assert [a.email for a in msg.envelope.from_] == ["after@x.org"]
    assert msg.truncated


def test_twenty_thousand_addresses() -> None:
    to = b", ".join(b'"User %d" <user%d@example.com>' % (i, i) for i in range(20_000))
    raw = b"From: a@x.org\r\nTo: " + to + b"\r\nSubject: big\r\n\r\nbody"
    msg = parse_message(raw)
    assert len(msg.envelope.to) == 1000
    assert msg.envelope.to[999].email == "user999@example.com"
    assert msg.truncated
    assert any("more than 1000 addresses" in d for d in msg.defects)
    assert msg.envelope.subject == "big"  # later fields survive the giant one
    assert "header field to capped" in msg.defects
    assert len(parse_envelope(raw).to) == 1000


def test_cut_address_header_never_yields_a_partial_address() -> None:
    to = b", ".join(b"u%d@example.com" % i for i in range(100))
    limits = ParseLimits(max_header_bytes=400)  # field budget 100 bytes: cut mid-address
    env = parse_envelope(b"To: " + to + b"\r\n", limits)
    assert [a.email for a in env.to] == [f"u{i}@example.com" for i in range(len(env.to))]
    assert 3 <= len(env.to) < 10


def test_thousand_deep_nesting() -> None:
    raw = HEAD + b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for depth in range(1, 1001):
        raw += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (depth - 1, depth)
    raw += b"--b1000\r\nContent-Type: text/plain\r\n\r\ndeep\r\n"
    msg = parse_message(raw)
    assert not msg.parse_failed
    assert msg.truncated
    assert any("nesting deeper than 50" in d for d in msg.defects)
    assert msg.text is None  # the text lives below the depth limit


def test_ten_thousand_parts() -> None:
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;"
        b" filename=f%d.bin\r\n\r\ndata%d\r\n" % (i, i)
        for i in range(10_000)
    )
    raw = HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    msg = parse_message(raw)
    assert len(msg.attachments) == 500
    assert msg.attachments[-1].filename == "f499.bin"
    assert msg.truncated
    assert any("more than 500 MIME parts" in d for d in msg.defects)


def test_invalid_base64_attachment_and_body() -> None:
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"aGVsbG8gd29y\r\nbGQ\r\n"  # "hello world" with its padding lost
        b"--b\r\nContent-Type: image/png; name=x.png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not*base64###\xff\xfe\r\n--b--\r\n"
    )
    msg = parse_message(raw)
    assert msg.text == "hello world"
    assert "base64 padding repaired" in msg.defects
    assert "invalid base64" in msg.defects
    [att] = msg.attachments
    assert att.placeholder_reason == "undecodable"
    assert att.filename == "x.png"


def test_missing_boundary_parameter_and_missing_delimiters() -> None:
    no_param = parse_message(HEAD + b"Content-Type: multipart/mixed\r\n\r\nsome text\r\n")
    assert no_param.text == "some text\r\n"
    assert "multipart without boundary" in no_param.defects
    not_found = parse_message(HEAD + b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nonly text")
    assert not_found.text == "only text"
    assert "multipart boundary not found" in not_found.defects
    unclosed = parse_message(
        HEAD + b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\ncut off here"
    )
    assert unclosed.text == "cut off here"
    assert "multipart close delimiter missing" in unclosed.defects


def test_boundary_that_prefixes_another() -> None:
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
        b"--ab\r\nContent-Type: multipart/alternative; boundary=ab-1\r\n\r\n"
        b"--ab-1\r\nContent-Type: text/plain\r\n\r\ninner\r\n--ab-1--\r\n"
        b"--ab\r\nContent-Type: application/zip; name=z.zip\r\n\r\nPK\r\n--ab--\r\n"
    )
    msg = parse_message(raw)
    assert msg.text == "inner"
    assert [a.filename for a in msg.attachments] == ["z.zip"]


def test_nul_bytes() -> None:
    raw = b"From: a\x00b@x.org, c@x.org\r\nSubject: nu\x00ll\r\n\r\nbo\x00dy"
    msg = parse_message(raw)
    assert msg.envelope.subject == "null"
    assert [a.email for a in msg.envelope.from_] == ["c@x.org"]
    assert msg.text == "body"
    assert "NUL characters removed from body" in msg.defects


def test_header_line_without_colon_starts_the_body() -> None:
    # As CPython's email parser and mime4j read it, the mailer forgot the empty line:
    # the body starts there. The envelope still reads the header to the empty line, as
    # IMAP servers do (see crmail.mime.header_block), so it matches HEADER.FIELDS.
    raw = b"From: a@x.org\r\nthis line has no colon\r\nSubject: s\r\n\r\nbody"
    msg = parse_message(raw)
    assert [a.email for a in msg.envelope.from_] == ["a@x.org"]
    assert msg.envelope.subject == "s"
    assert msg.text == "this line has no colon\r\nSubject: s\r\n\r\nbody"
    assert "body starts early, at a header line without a colon" in msg.defects
    assert parse_envelope(raw) == msg.envelope


def test_part_header_without_empty_line() -> None:
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain\r\nX-Note: a field\r\nthe text\r\n--zz--\r\n"
    )
    msg = parse_message(raw)
    assert msg.text == "the text"


def test_mbox_from_line_is_tolerated() -> None:
    msg = parse_message(b"From someone@x.org Mon Jan  1 00:00:00 2001\nSubject: mbox\n\nbody\n")
    assert msg.envelope.subject == "mbox"
    assert msg.defects == ()


@pytest.mark.parametrize("seed", range(20))
def test_binary_garbage(seed: int) -> None:
    raw = random.Random(seed).randbytes(50_000)
    msg = parse_message(raw)
    assert msg.size == 50_000
    parse_envelope(raw)


def test_garbage_without_any_header_is_parse_failed() -> None:
    msg = parse_message(b"\x00\x01\x02 just junk \xff\xfe\r\n\r\nmore")
    assert msg.parse_failed
    assert "no header fields found" in msg.defects
    assert msg.text is None


def test_empty_input() -> None:
    msg = parse_message(b"")
    assert msg.parse_failed
    assert msg.size == 0
    assert msg.envelope.message_id is None
    assert parse_envelope(b"").from_ == ()


def test_headers_only() -> None:
    for raw in (b"From: a@x.org\r\nSubject: only", b"From: a@x.org\r\nSubject: only\r\n\r\n"):
        msg = parse_message(raw)
        assert not msg.parse_failed
        assert msg.envelope.subject == "only"
        assert msg.text == ""
        assert msg.snippet() == ""


def test_bare_lf_and_mixed_line_endings() -> None:
    raw = (
        b"From: a@x.org\nSubject: lf\nContent-Type: multipart/alternative; boundary=q\n\n"
        b"--q\r\nContent-Type: text/plain\n\nplain\n--q\nContent-Type: text/html\r\n\r\n<i>h</i>\n--q--\n"
    )
    msg = parse_message(raw)
    assert (msg.text, msg.html) == ("plain", "<i>h</i>")


def test_limits_are_respected_with_tiny_values() -> None:
    limits = ParseLimits(max_header_bytes=40, max_parts=1, max_depth=1, max_body_chars=3)
    raw = HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nabcdef\r\n--b--"
    msg = parse_message(raw, limits)
    assert msg.truncated
    assert not msg.parse_failed
