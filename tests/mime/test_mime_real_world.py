"""Classes of real-world mail that other mature parsers read and crmail once read worse.

Each test is one class; the comment names the reference parsers that read it this way.
"""

from __future__ import annotations

from crmail.mime import Address, parse_envelope, parse_message
from crmail.mime.parse import extract_part

HEAD = b"From: a@x.org\r\nTo: b@y.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def test_raw_8bit_bytes_inside_an_encoded_word_use_its_charset() -> None:
    # Legacy mailers write the bytes unescaped inside Q words; Thunderbird and mime4j
    # decode them in the declared charset (the stdlib keeps surrogates).
    env = parse_envelope(
        b"From: =?koi8-r?Q?\xf0\xc5\xd4\xd2_\xf0\xc5\xd4\xd2\xcf\xd7?= <petr@x.ru>\r\n"
        b"Subject: =?iso-8859-1?Q?Gr\xfc\xdfe_aus_K=F6ln?=\r\n"
    )
    assert env.subject == "Grüße aus Köln"
    assert env.from_ == (Address("Петр Петров", "petr@x.ru"),)


def test_raw_8bit_filename_in_an_encoded_word() -> None:
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
        b'--zz\r\nContent-Type: application/pdf; name="=?windows-1251?Q?\xf1\xf7\xe5\xf2.pdf?="\r\n'
        b"\r\n%PDF\r\n--zz--\r\n"
    )
    assert [a.filename for a in parse_message(raw).attachments] == ["счет.pdf"]


def test_folded_content_type_without_semicolon_still_has_its_boundary() -> None:
    raw = (
        b"From: a@x.org\r\nSubject: s\r\nContent-Type: multipart/alternative\r\n"
        b'\tboundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        b"--b1\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b1--\r\n"
    )
    msg = parse_message(raw)
    assert (msg.text, msg.html) == ("plain", "<p>html</p>")
    assert msg.attachments == ()


def test_the_only_text_part_named_inline_is_the_body_and_an_attachment() -> None:
    # The stdlib's get_body() takes it as the body; crmail also keeps it listed, so the
    # file the sender attached is still there to download.
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b'Content-Disposition: inline; filename="message.txt"\r\n\r\nthe report\r\n'
        b"--zz\r\nContent-Type: image/png; name=a.png\r\n\r\nPNG\r\n--zz--\r\n"
    )
    msg = parse_message(raw)
    assert msg.text == "the report"
    assert [a.filename for a in msg.attachments] == ["message.txt", "a.png"]
    assert extract_part(raw, index=0) == ("message.txt", "text/plain", b"the report")


def test_a_named_text_part_is_not_the_body_when_there_is_one() -> None:
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n"
        b'--zz\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename="n.txt"'
        b"\r\n\r\nnotes\r\n--zz--\r\n"
    )
    msg = parse_message(raw)
    assert (msg.text, msg.html) == (None, "<p>hi</p>")
    assert [a.filename for a in msg.attachments] == ["n.txt"]


def test_boundary_line_with_trailing_text_is_a_delimiter() -> None:
    # RFC 2046 5.1.1: a boundary matches as a line prefix. (The stdlib wants only
    # whitespace after it and loses the parts.)
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz  (first part)\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--zz junk\r\nContent-Type: application/zip; name=z.zip\r\n\r\nPK\r\n"
        b"--zz-- the end\r\nepilogue\r\n"
    )
    msg = parse_message(raw)
    assert msg.text == "body"
    assert [(a.filename, a.size) for a in msg.attachments] == [("z.zip", 2)]
    assert "multipart close delimiter missing" not in msg.defects


def test_repeated_identical_address_headers_do_not_duplicate_addresses() -> None:
    env = parse_envelope(
        b"From: a@x.org\r\nTo: Bob <b@y.org>, c@y.org\r\nTo: Bob <b@y.org>, c@y.org\r\n"
        b"Cc: d@y.org\r\nCc: D <d@y.org>, e@y.org\r\n"
    )
    assert env.to == (Address("Bob", "b@y.org"), Address("", "c@y.org"))
    assert env.cc == (Address("D", "d@y.org"), Address("", "e@y.org"))


def test_nested_multipart_reusing_the_outer_boundary_keeps_its_text() -> None:
    # Seen in spam and in broken forwarders: the inner multipart declares the same
    # boundary as the outer one, so its own body is empty; its parts follow as siblings.
    raw = HEAD + (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: multipart/alternative; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain\r\n\r\n--Sent from my phone\r\n"
        b"--zz\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--zz--\r\n"
    )
    msg = parse_message(raw)
    assert (msg.text, msg.html) == ("--Sent from my phone", "<p>x</p>")
    assert msg.attachments == ()
