"""Header-level parsing: addresses, ids, dates, subjects, bulk detection, charsets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmail.mime import (
    Address,
    Envelope,
    ParseLimits,
    normalize_subject,
    parse_envelope,
    parse_message,
)


def env(header_block: str | bytes) -> Envelope:
    data = header_block.encode() if isinstance(header_block, str) else header_block
    return parse_envelope(data)


# --- addresses ---------------------------------------------------------------------


def test_display_names_rfc2047_and_quotes() -> None:
    e = env(
        'From: "M=?utf-8?q?=C3=BC?=ller, Hans" <Hans@Example.COM>\r\n'
        "To: =?iso-8859-1?q?J=F6rg?= <jorg@x.de>, =?utf-8?b?5p2O5piO?= <li@x.cn>\r\n"
        'Cc: "Smith, \\"Bob\\"" <bob@x.org>, plain@x.org (Plain Comment)\r\n'
    )
    assert e.from_ == (Address("Müller, Hans", "hans@example.com"),)
    assert e.to == (Address("Jörg", "jorg@x.de"), Address("李明", "li@x.cn"))
    assert e.cc == (Address('Smith, "Bob"', "bob@x.org"), Address("Plain Comment", "plain@x.org"))


def test_adjacent_encoded_words_split_inside_a_character() -> None:
    # "Grüße" split between two encoded words in the middle of the two-byte "ü".
    e = env("From: =?utf-8?q?Gr=C3?= =?utf-8?q?=BC=C3=9Fe?= <g@x.de>\r\n")
    assert e.from_[0].name == "Grüße"


def test_groups() -> None:
    e = env(
        "To: undisclosed-recipients:;\r\n"
        'Cc: Team: a@x.org, "B" <B@y.org>;, after@z.org\r\n'
        "Bcc: Empty Group:;\r\n"
    )
    assert e.to == ()
    assert [a.email for a in e.cc] == ["a@x.org", "b@y.org", "after@z.org"]
    assert e.bcc == ()


def test_malformed_addresses_are_dropped_or_recovered() -> None:
    e = env(
        "To: broken <>, Alice alice@z.org, not an address, <@relay.example:route@x.org>,"
        ' ,, "unterminated <u@x.org>\r\n'
        "Cc: <a@b@c>, bare@x.org\r\n"
    )
    # The unterminated quote swallows the rest; the address inside is still recovered.
    assert [a.email for a in e.to] == ["alice@z.org", "route@x.org", "u@x.org"]
    assert e.to[0].name == "Alice"
    assert [a.email for a in e.cc] == ["bare@x.org"]


def test_repeated_address_headers_are_merged() -> None:
    e = env("To: a@x.org\r\nTo: b@x.org\r\n")
    assert [a.email for a in e.to] == ["a@x.org", "b@x.org"]


def test_participants_covers_all_address_headers() -> None:
    e = env(
        "From: f@x.org\r\nSender: s@x.org\r\nReply-To: r@x.org\r\nTo: t@x.org\r\n"
        "Cc: C@X.org\r\nBcc: b@x.org\r\n"
    )
    assert e.participants() == {"f@x.org", "s@x.org", "r@x.org", "t@x.org", "c@x.org", "b@x.org"}


def test_address_cap_records_defect() -> None:
    to = ", ".join(f"u{i}@x.org" for i in range(30))
    msg = parse_message(
        f"From: a@x.org\r\nTo: {to}\r\n\r\nbody".encode(), ParseLimits(max_addresses_per_header=10)
    )
    assert len(msg.envelope.to) == 10
    assert msg.truncated
    assert any("more than 10 addresses" in d for d in msg.defects)


# --- message ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@example.com>", "abc@example.com"),
        ("  < abc@exa\r\n mple.com >  ", "abc@example.com"),
        ("abc@example.com", "abc@example.com"),
        ("<first@x> <second@x>", "first@x"),
        ("garbage without at sign", None),
        ("<>", None),
        ("", None),
    ],
)
def test_message_id(value: str, expected: str | None) -> None:
    assert env(f"Message-ID: {value}\r\n").message_id == expected


def test_missing_message_id() -> None:
    assert env("Subject: x\r\n").message_id is None


def test_in_reply_to_and_references() -> None:
    e = env(
        "In-Reply-To: <parent@x> (Alice's message of Monday)\r\n"
        "References: <root@x>\r\n <mid@x>,<parent@x> <root@x> junk\r\n"
    )
    assert e.in_reply_to == ("parent@x",)
    assert e.references == ("root@x", "mid@x", "parent@x")


def test_references_without_brackets() -> None:
    assert env("References: root@x mid@x\r\n").references == ("root@x", "mid@x")


def test_many_references_keep_root_and_latest() -> None:
    refs = " ".join(f"<r{i}@x>" for i in range(5000))
    msg = parse_message(f"From: a@x.org\r\nReferences: {refs}\r\n\r\n".encode())
    got = msg.envelope.references
    assert len(got) == 100
    assert got[0] == "r0@x"
    assert got[-1] == "r4999@x"
    assert any("references" in d for d in msg.defects)


# --- dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 20 Nov 2023 10:00:00 +0100", datetime(2023, 11, 20, 9, 0, tzinfo=UTC)),
        ("20 Nov 2023 10:00:00 -0800", datetime(2023, 11, 20, 18, 0, tzinfo=UTC)),
        ("Mon, 20 Nov 2023 10:00:00 -0000", datetime(2023, 11, 20, 10, 0, tzinfo=UTC)),
        ("Mon, 20 Nov 2023 10:00:00 GMT", datetime(2023, 11, 20, 10, 0, tzinfo=UTC)),
        ("Mon, 20 Nov 23 10:00:00 EST", datetime(2023, 11, 20, 15, 0, tzinfo=UTC)),
        ("2023-11-20T10:00:00+02:00", datetime(2023, 11, 20, 8, 0, tzinfo=UTC)),
    ],
)
def test_dates_are_utc(value: str, expected: datetime) -> None:
    got = env(f"Date: {value}\r\n").date
    assert got == expected
    assert got is not None and got.utcoffset() is not None and got.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "value",
    ["", "yesterday", "Mon, 45 Foo 2023 99:99:99 +0100", "Mon, 20 Nov 2023 10:00:00 +9999",
     "Mon, 20 Nov 99999999 10:00:00 +0000", "\x00\x01"],
)  # fmt: skip
def test_bad_dates_are_none(value: str) -> None:
    assert env(f"Date: {value}\r\n").date is None


# --- subjects ----------------------------------------------------------------------


def test_subject_decoding_and_folding() -> None:
    e = env("Subject: =?utf-8?b?SGVsbG8=?=\r\n =?utf-8?b?IFfDtnJsZA==?=   and\r\n\tmore\x00\r\n")
    assert e.subject == "Hello Wörld and more"


def test_subject_capped() -> None:
    msg = parse_message(b"Subject: " + b"x" * 5000 + b"\r\n\r\n")
    assert len(msg.envelope.subject) == 998
    assert "subject capped" in msg.defects


def test_subject_8bit_utf8_and_latin1() -> None:
    assert env("Subject: Grüße\r\n".encode()).subject == "Grüße"
    assert env("Subject: Grüße\r\n".encode("latin-1")).subject == "Grüße"


def test_subject_unknown_charset_and_mac_cyrillic() -> None:
    assert env("Subject: =?x-mac-cyrillic?q?=8F=F0=E8=E2=E5=F2?=\r\n").subject == "Привет"
    e = env("Subject: =?x-no-such-charset?q?caf=C3=A9?=\r\n")
    assert e.subject == "café"  # unknown label, bytes are valid UTF-8
    assert env("Subject: =?ks_c_5601-1987?b?vsiz58fPvLy/5A==?=\r\n").subject == "안녕하세요"
    assert env("Subject: =?gb2312?b?xOO6ww==?=\r\n").subject == "你好"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Offer", "offer"),
        ("RE: Fwd: AW: WG: SV: Offer", "offer"),
        ("Re[2]: Offer", "offer"),
        ("Re(3): Offer", "offer"),
        ("[crm] Re: Offer", "[crm] offer"),
        ("Re: [crm] Offer", "[crm] offer"),
        ("  fwd :   Big    OFFER  ", "big offer"),
        ("Réponse: Straße", "réponse: strasse"),
        ("Offer: Re: details", "offer: re: details"),
        ("", ""),
    ],
)
def test_normalize_subject(subject: str, expected: str) -> None:
    assert normalize_subject(subject) == expected


# --- bulk ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "bulk"),
    [
        ("List-Id: <news.example.com>", True),
        ("List-Unsubscribe: <mailto:u@x>", True),
        ("Precedence: bulk", True),
        ("Precedence: List", True),
        ("Precedence: junk", True),
        ("Precedence: first-class", False),
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: auto-generated; type=x", True),
        ("Auto-Submitted: no", False),
        ("Auto-Submitted: No (comment)", False),
        ("X-Mailer: something", False),
    ],
)
def test_is_bulk(header: str, bulk: bool) -> None:
    assert env(f"From: a@x.org\r\n{header}\r\n").is_bulk is bulk


def test_parse_envelope_stops_at_body() -> None:
    e = env("From: a@x.org\r\n\r\nTo: not-a-header@x.org\r\n")
    assert e.to == ()
