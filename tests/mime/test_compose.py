"""compose(): outgoing messages, checked by parsing them back with our own parser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from crmail.errors import InvalidInput
from crmail.mime import (
    Address,
    Draft,
    OutgoingAttachment,
    compose,
    parse_message,
    reply_references,
    reply_subject,
)
from crmail.mime.compose import MAX_REPLY_REFERENCES

ME = Address("Ana Agent", "ana@crm.example")
BOB = Address("Bob", "bob@client.example")
CAROL = Address("Carol", "carol@client.example")
SECRET = Address("Boss", "boss@crm.example")


def lines(raw: bytes) -> list[bytes]:
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF in output"
    return raw.split(b"\r\n")


def lf(text: str | None) -> str | None:
    """Bodies come back as transmitted (CRLF); compare them with LF."""
    return None if text is None else text.replace("\r\n", "\n")


def head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


# --- round trip ----------------------------------------------------------------------


def test_round_trip_participants_subject_threading_and_body() -> None:
    draft = Draft(
        from_=ME,
        to=(BOB,),
        cc=(CAROL,),
        subject="Offer for Q3",
        text="Hello Bob,\nsee attached.\n",
        in_reply_to="parent.1@client.example",
        references=("root.0@client.example", "parent.1@client.example"),
        message_id="mine.2@crm.example",
        date=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
    )
    out = compose(draft)
    parsed = parse_message(out.raw)
    env = parsed.envelope
    assert not parsed.defects, parsed.defects
    assert env.from_ == (ME,)
    assert env.to == (BOB,)
    assert env.cc == (CAROL,)
    assert env.subject == "Offer for Q3"
    assert env.message_id == out.message_id == "mine.2@crm.example"
    assert env.in_reply_to == ("parent.1@client.example",)
    assert env.references == ("root.0@client.example", "parent.1@client.example")
    assert env.date == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert lf(parsed.text) == "Hello Bob,\nsee attached.\n"
    assert parsed.html is None
    assert out.recipients == ("bob@client.example", "carol@client.example")


def test_generated_message_id_uses_from_domain_without_brackets() -> None:
    out = compose(Draft(from_=ME, to=(BOB,), text="x"))
    assert out.message_id.endswith("@crm.example")
    assert "<" not in out.message_id and ">" not in out.message_id
    assert parse_message(out.raw).envelope.message_id == out.message_id
    assert compose(Draft(from_=ME, to=(BOB,), text="x")).message_id != out.message_id


def test_bcc_is_in_envelope_only() -> None:
    out = compose(Draft(from_=ME, to=(BOB,), bcc=(SECRET,), subject="s", text="t"))
    assert b"boss@crm.example" not in out.raw
    assert b"bcc" not in head(out.raw).lower()
    assert out.recipients == ("bob@client.example", "boss@crm.example")
    assert parse_message(out.raw).envelope.bcc == ()


def test_recipients_are_normalized_and_deduplicated() -> None:
    out = compose(
        Draft(
            from_=ME,
            to=(Address("", "Bob@Client.Example"), CAROL),
            cc=(BOB,),
            bcc=(Address("", "CAROL@client.example"), SECRET),
        )
    )
    assert out.recipients == ("bob@client.example", "carol@client.example", "boss@crm.example")


def test_text_and_html_make_multipart_alternative() -> None:
    out = compose(Draft(from_=ME, to=(BOB,), text="plain body", html="<p>html body</p>"))
    assert re.search(rb"^Content-Type: multipart/alternative", head(out.raw), re.M)
    parsed = parse_message(out.raw)
    assert parsed.text is not None and parsed.text.strip() == "plain body"
    assert parsed.html is not None and parsed.html.strip() == "<p>html body</p>"
    assert parsed.attachments == ()


def test_html_only_gets_a_text_alternative() -> None:
    out = compose(Draft(from_=ME, to=(BOB,), html="<p>Hi <b>Bob</b></p><p>Bye</p>"))
    parsed = parse_message(out.raw)
    assert parsed.html is not None and "<b>Bob</b>" in parsed.html
    assert parsed.text is not None and "Hi Bob" in parsed.text and "<" not in parsed.text


def test_attachments_make_multipart_mixed_with_names_and_sizes() -> None:
    pdf = bytes(range(256)) * 40  # binary, 10,240 bytes
    out = compose(
        Draft(
            from_=ME,
            to=(BOB,),
            text="see attached",
            html="<p>see attached</p>",
            attachments=(
                OutgoingAttachment("offer.pdf", "application/pdf", pdf),
                OutgoingAttachment("notes.txt", "text/plain", b"line 1\nline 2\n"),
            ),
        )
    )
    assert re.search(rb"^Content-Type: multipart/mixed", head(out.raw), re.M)
    parsed = parse_message(out.raw)
    assert parsed.text is not None and parsed.text.strip() == "see attached"
    got = {(a.filename, a.content_type, a.size, a.inline) for a in parsed.attachments}
    assert got == {
        ("offer.pdf", "application/pdf", len(pdf), False),
        ("notes.txt", "text/plain", 14, False),  # bytes kept exactly (LF, no CRLF)
    }


def test_inline_image_is_related_to_the_html() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    out = compose(
        Draft(
            from_=ME,
            to=(BOB,),
            html='<p>Logo: <img src="cid:logo.1@crm.example"></p>',
            attachments=(
                OutgoingAttachment("logo.png", "image/png", png, content_id="logo.1@crm.example"),
                OutgoingAttachment("a.pdf", "application/pdf", b"%PDF-1.4"),
            ),
        )
    )
    assert b'multipart/related; type="text/html"' in out.raw
    assert b"Content-ID: <logo.1@crm.example>" in out.raw
    parsed = parse_message(out.raw)
    logo = next(a for a in parsed.attachments if a.filename == "logo.png")
    assert logo.inline and logo.content_id == "logo.1@crm.example" and logo.size == len(png)
    pdf = next(a for a in parsed.attachments if a.filename == "a.pdf")
    assert not pdf.inline
    # The structure: mixed( alternative( text, related( html, png ) ), pdf )
    types = re.findall(rb"Content-Type: ([a-z]+/[a-z]+)", out.raw)
    assert types == [
        b"multipart/mixed",
        b"multipart/alternative",
        b"text/plain",
        b"multipart/related",
        b"text/html",
        b"image/png",
        b"application/pdf",
    ]


def test_inline_part_without_html_is_still_sent_as_attachment() -> None:
    out = compose(
        Draft(
            from_=ME,
            to=(BOB,),
            text="no html",
            attachments=(OutgoingAttachment("x.png", "image/png", b"png", content_id="x@y"),),
        )
    )
    (att,) = parse_message(out.raw).attachments
    assert att.filename == "x.png" and att.size == 3 and att.content_id == "x@y"


# --- encoding --------------------------------------------------------------------------


def test_non_ascii_names_subject_body_and_filename() -> None:
    out = compose(
        Draft(
            from_=Address('Jörg Müller, "Sales"', "jorg@crm.example"),
            to=(Address("Zoë Ångström", "zoe@client.example"),),
            subject="Angebot für Zoë – €100",
            text="Grüße aus Köln 🙂\n",
            attachments=(OutgoingAttachment("Preisliste €.pdf", "application/pdf", b"%PDF"),),
        )
    )
    assert out.raw.isascii(), "7-bit message expected: no 8BITMIME/SMTPUTF8 needed"
    env = parse_message(out.raw).envelope
    assert env.from_ == (Address('Jörg Müller, "Sales"', "jorg@crm.example"),)
    assert env.to == (Address("Zoë Ångström", "zoe@client.example"),)
    assert env.subject == "Angebot für Zoë – €100"
    parsed = parse_message(out.raw)
    assert lf(parsed.text) == "Grüße aus Köln 🙂\n"
    assert [a.filename for a in parsed.attachments] == ["Preisliste €.pdf"]


def test_idn_domain_is_punycoded() -> None:
    out = compose(Draft(from_=ME, to=(Address("", "info@bücher.example"),), text="x"))
    assert out.recipients == ("info@xn--bcher-kva.example",)
    assert parse_message(out.raw).envelope.to[0].email == "info@xn--bcher-kva.example"
    assert out.raw.isascii()


def test_non_ascii_local_part_uses_utf8_headers() -> None:
    out = compose(Draft(from_=ME, to=(Address("", "jörg@example.de"),), subject="Grüße"))
    assert out.recipients == ("jörg@example.de",)
    assert "jörg@example.de".encode() in head(out.raw)
    assert parse_message(out.raw).envelope.to[0].email == "jörg@example.de"


def test_long_subject_is_folded_and_round_trips() -> None:
    subject = " ".join(f"word{i}" for i in range(120))
    out = compose(Draft(from_=ME, to=(BOB,), subject=subject, text="x"))
    subject_lines = re.search(rb"^Subject:.*?(?=\r\n\S)", out.raw, re.M | re.S)
    assert subject_lines is not None and subject_lines.group().count(b"\r\n") >= 5
    assert all(len(line) <= 78 for line in lines(head(out.raw)))
    assert parse_message(out.raw).envelope.subject == subject


def test_no_line_exceeds_998_octets() -> None:
    long_id = "x" * 300 + "@client.example"
    out = compose(
        Draft(
            from_=ME,
            to=tuple(Address(f"Person {i}", f"p{i}@client.example") for i in range(60)),
            subject="ü" * 2000,
            text="a" * 5000 + "\n" + "ä" * 5000,
            html="<p>" + "b" * 5000 + "</p>",
            in_reply_to=long_id,
            references=(*tuple(f"ref{i}.{'y' * 40}@client.example" for i in range(30)), long_id),
        )
    )
    assert max(len(line) for line in lines(out.raw)) <= 998
    parsed = parse_message(out.raw)
    assert lf(parsed.text) == "a" * 5000 + "\n" + "ä" * 5000 + "\n"
    assert parsed.envelope.in_reply_to == (long_id,)
    assert parsed.envelope.references[-1] == long_id
    assert len(parsed.envelope.to) == 60


def test_newline_in_subject_or_name_cannot_inject_headers() -> None:
    out = compose(
        Draft(
            from_=ME,
            to=(Address("Bob\r\nBcc: evil@x.example", "bob@client.example"),),
            subject="Hi\r\nBcc: evil@x.example",
            text="x",
        )
    )
    assert not re.search(rb"^Bcc:", out.raw, re.M | re.I)
    assert out.recipients == ("bob@client.example",)
    assert parse_message(out.raw).envelope.subject == "Hi Bcc: evil@x.example"


def test_date_naive_is_utc_and_aware_is_kept() -> None:
    naive = compose(Draft(from_=ME, to=(BOB,), date=datetime(2024, 1, 2, 3, 4, 5)))
    assert parse_message(naive.raw).envelope.date == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    cet = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    aware = compose(Draft(from_=ME, to=(BOB,), date=cet))
    assert b"+0100" in head(aware.raw)
    assert parse_message(aware.raw).envelope.date == cet


def test_extra_headers_are_written_but_cannot_override_structure() -> None:
    out = compose(Draft(from_=ME, to=(BOB,), extra_headers=(("X-CRM-Id", "deal-42"),)))
    assert b"X-CRM-Id: deal-42" in head(out.raw)
    for name in ("Bcc", "content-type", "Message-ID", "From"):
        with pytest.raises(InvalidInput):
            compose(Draft(from_=ME, to=(BOB,), extra_headers=((name, "x"),)))
    with pytest.raises(InvalidInput):
        compose(Draft(from_=ME, to=(BOB,), extra_headers=(("X-A", "a\r\nBcc: b@c.d"),)))


def test_invalid_input_is_refused() -> None:
    with pytest.raises(InvalidInput):
        compose(Draft(from_=ME, to=()))
    with pytest.raises(InvalidInput):
        compose(Draft(from_=ME, to=(Address("", "not an address"),)))
    with pytest.raises(InvalidInput):
        compose(Draft(from_=ME, to=(BOB,), message_id="no at sign"))


# --- reply helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Offer", "Re: Offer"),
        ("Re: Offer", "Re: Offer"),
        ("RE: Re: re: Offer", "Re: Offer"),
        ("AW: Angebot", "Re: Angebot"),
        ("SV: Tilbud", "Re: Tilbud"),
        ("Antw: Offerte", "Re: Offerte"),
        ("Re[2]: Offer", "Re: Offer"),
        ("RE (3): Offer", "Re: Offer"),
        ("Re： Offer", "Re: Offer"),
        ("Fwd: Offer", "Re: Fwd: Offer"),
        ("Re: Fwd: Offer", "Re: Fwd: Offer"),
        ("  Re:   spaced   out ", "Re: spaced out"),
        ("Regarding the offer", "Re: Regarding the offer"),
        ("", "Re:"),
    ],
)
def test_reply_subject(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_reply_references_appends_parent() -> None:
    assert reply_references("p@x", ["a@x", "b@x"]) == ("a@x", "b@x", "p@x")
    assert reply_references("<p@x>", []) == ("p@x",)
    # parent already listed, duplicates, unusable ids
    assert reply_references("p@x", ["<a@x>", "a@x", "p@x", "bad id", "ü@x"]) == ("a@x", "p@x")


def test_reply_references_keeps_root_and_most_recent() -> None:
    chain = [f"m{i}@x" for i in range(50)]
    refs = reply_references("parent@x", chain)
    assert len(refs) == MAX_REPLY_REFERENCES
    assert refs[0] == "m0@x"
    assert refs[-1] == "parent@x"
    assert refs[1:-1] == tuple(chain[-(MAX_REPLY_REFERENCES - 2) :])


def test_reply_draft_threads_with_parent() -> None:
    parent = parse_message(
        compose(
            Draft(from_=BOB, to=(ME,), subject="AW: Termin", text="ok", references=("r@x",))
        ).raw
    )
    env = parent.envelope
    assert env.message_id is not None
    reply = compose(
        Draft(
            from_=ME,
            to=env.from_,
            subject=reply_subject(env.subject),
            text="thanks",
            in_reply_to=env.message_id,
            references=reply_references(env.message_id, env.references or env.in_reply_to),
        )
    )
    renv = parse_message(reply.raw).envelope
    assert renv.subject == "Re: Termin"
    assert renv.in_reply_to == (env.message_id,)
    assert renv.references == ("r@x", env.message_id)
