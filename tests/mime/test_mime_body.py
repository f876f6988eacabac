"""Body selection, attachments, transfer encodings, charsets and snippets."""

from __future__ import annotations

import base64

from crmail.mime import ParseLimits, parse_message

HEAD = "From: a@x.org\r\nTo: b@y.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"


def mime(content_type: str, body: str, extra: str = "") -> bytes:
    return f"{HEAD}Content-Type: {content_type}\r\n{extra}\r\n{body}".encode()


ALTERNATIVE_IN_MIXED = (
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
    "--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain body\r\n"
    "--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    '<p>html <img src="cid:logo@x"></p>\r\n'
    "--inner\r\nContent-Type: text/enriched\r\n\r\n<bold>enriched</bold>\r\n"
    "--inner--\r\n"
    "--outer\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.b64encode(b"\x89PNG" * 10).decode()
    + "\r\n"
    '--outer\r\nContent-Type: application/pdf; name="=?utf-8?q?R=C3=A9sum=C3=A9.pdf?="\r\n'
    "Content-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(b"%PDF" * 1000).decode().replace("\n", "\r\n")
    + "\r\n"
    "--outer\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Disposition: attachment; filename*=utf-8''notes%20%E2%82%AC.txt\r\n\r\nnotes\r\n"
    "--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: fw@x.org\r\nSubject: inner\r\n\r\nhi\r\n"
    "--outer\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\neJ8+IgEAAQ==\r\n"
    "--outer--\r\nepilogue\r\n"
)


def test_body_selection_and_attachments() -> None:
    msg = parse_message(
        mime('multipart/mixed; boundary="outer"', "preamble\r\n" + ALTERNATIVE_IN_MIXED)
    )
    assert not msg.parse_failed
    assert msg.text == "plain body"
    assert msg.html == '<p>html <img src="cid:logo@x"></p>'
    got = [(a.filename, a.content_type, a.size, a.content_id, a.inline) for a in msg.attachments]
    assert got == [
        (None, "image/png", 40, "logo@x", True),  # referenced from the html: inline
        ("Résumé.pdf", "application/pdf", 4000, None, False),
        ("notes €.txt", "text/plain", 5, None, False),
        (
            "forwarded.eml",
            "message/rfc822",
            len(b"From: fw@x.org\r\nSubject: inner\r\n\r\nhi"),
            None,
            False,
        ),
        ("winmail.dat", "application/ms-tnef", 7, None, False),
    ]
    assert msg.defects == ()
    assert msg.size == len(
        mime('multipart/mixed; boundary="outer"', "preamble\r\n" + ALTERNATIVE_IN_MIXED)
    )


def test_forwarded_message_body_is_not_the_body() -> None:
    body = (
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        "From: inner@x.org\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--b--\r\n"
    )
    msg = parse_message(mime("multipart/mixed; boundary=b", body))
    assert msg.text is None
    assert [a.filename for a in msg.attachments] == ["forwarded.eml"]


def test_html_only_and_non_mime_message() -> None:
    msg = parse_message(mime("text/html; charset=utf-8", "<b>Hi</b> there"))
    assert (msg.text, msg.html) == (None, "<b>Hi</b> there")
    plain = parse_message(b"From: a@x.org\r\nSubject: old school\r\n\r\nJust text.\r\n")
    assert plain.text == "Just text.\r\n"
    assert plain.attachments == ()


def test_inline_text_part_after_body_becomes_attachment() -> None:
    # Apple Mail style: text, inline image, more text. The second text is kept as a part.
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
        "--b\r\nContent-Type: image/jpeg\r\nContent-Disposition: inline; filename=a.jpg\r\n\r\nJPG\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n"
    )
    msg = parse_message(mime("multipart/mixed; boundary=b", body))
    assert msg.text == "first"
    assert [(a.content_type, a.inline, a.filename) for a in msg.attachments] == [
        ("image/jpeg", True, "a.jpg"),
        ("text/plain", False, None),
    ]


def test_quoted_printable_and_charsets() -> None:
    qp = "Content-Transfer-Encoding: quoted-printable\r\n"
    assert (
        parse_message(mime("text/plain; charset=x-mac-cyrillic", "=8F=F0=E8=E2=E5=F2", qp)).text
        == "Привет"
    )
    assert (
        parse_message(mime("text/plain; charset=iso-8859-8-i", "=F9=EC=E5=ED", qp)).text == "שלום"
    )
    assert (
        parse_message(mime('text/plain; charset="ISO-8859-1"', "caf=E9 =80", qp)).text == "café €"
    )
    unknown = parse_message(mime("text/plain; charset=x-klingon", "caf=E9", qp))
    assert unknown.text == "café"  # not UTF-8, so the Latin-1 family fallback
    assert any("unknown charset" in d for d in unknown.defects)


def test_8bit_body_declared_ascii_or_undeclared() -> None:
    raw = HEAD.encode() + b"Content-Type: text/plain\r\n\r\nGr\xc3\xbc\xc3\x9fe"
    assert parse_message(raw).text == "Grüße"
    raw = HEAD.encode() + b"Content-Type: text/plain; charset=us-ascii\r\n\r\nGr\xfc\xdfe"
    assert parse_message(raw).text == "Grüße"


def test_iso_2022_jp_is_not_mistaken_for_ascii() -> None:
    encoded = "こんにちは".encode("iso-2022-jp")
    raw = HEAD.encode() + b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + encoded
    assert parse_message(raw).text == "こんにちは"


def test_invalid_utf8_is_replaced_not_raised() -> None:
    raw = HEAD.encode() + b"Content-Type: text/plain; charset=utf-8\r\n\r\nok \xff\xfe end"
    msg = parse_message(raw)
    assert msg.text == "ok \ufffd\ufffd end"
    assert any("utf-8" in d for d in msg.defects)


def test_transform_codec_is_not_a_charset() -> None:
    raw = HEAD.encode() + b"Content-Type: text/plain; charset=base64\r\n\r\naGVsbG8="
    assert parse_message(raw).text == "aGVsbG8="


def test_body_cap() -> None:
    msg = parse_message(mime("text/plain", "x" * 5000), ParseLimits(max_body_chars=1000))
    assert msg.text == "x" * 1000
    assert msg.truncated
    assert "body truncated" in msg.defects


def test_snippet_from_text_and_html() -> None:
    msg = parse_message(
        mime("text/plain; charset=utf-8", "Hello\r\n\r\n   world\tand   more " + "x " * 500)
    )
    assert msg.snippet(20) == "Hello world and more"
    assert msg.snippet(0) == ""
    html = "<html><head><style>p{color:red}</style></head><body><p>Hi&nbsp;<b>Bob</b>,</p><p>see &lt;this&gt;</p><script>evil()</script></body></html>"
    msg = parse_message(mime("text/html", html))
    assert msg.snippet() == "Hi Bob, see <this>"
    assert parse_message(b"From: a@x.org\r\n\r\n").snippet() == ""


def test_snippet_of_huge_html_only_converts_a_prefix() -> None:
    html = "<p>" + "word " * 400_000 + "</p>"
    msg = parse_message(mime("text/html", html))
    assert msg.snippet(10) == "word word"
