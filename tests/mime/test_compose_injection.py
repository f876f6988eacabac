"""No value given to compose() can add a header or end the header block (issue 13).

Each hostile value goes through every header-bearing field; the result is read back
three ways: the stdlib parser with the modern policy (which decodes encoded words, the
CVE-2024-6923 class), the stdlib compat32 parser (raw lines) and crmail's own parser.
"""

from __future__ import annotations

import email
import re
from email import policy

import pytest

from crmail.domain.addresses import sendable_address
from crmail.errors import InvalidInput
from crmail.mime import Address, Draft, OutgoingAttachment, compose, parse_message
from crmail.mime.headers import Field, check_header_block

ME = Address("Ana Agent", "ana@crm.example")
BOB = Address("Bob", "bob@client.example")

HOSTILE = [
    "=?utf-8?q?x=0D=0AX-Injected=3A_1?=",
    "=?utf-8?b?eA0KWC1JbmplY3RlZDogMQ==?=",
    "=?UTF-8?Q?x=0AX-Injected=3A_1?=",
    "=?utf-8?q?x=0D=0A=0D=0Aevil_body?=",  # would end the header block early
    "Re: =?utf-8?q?x=0D=0AX-Injected=3A_1?=",
    '"=?utf-8?q?x=0D=0AX-Injected=3A_1?=" <x@y>',
    "x\r\nX-Injected: 1",
    "x\nX-Injected: 1",
    "x\rX-Injected: 1",
    "x\u2028X-Injected: 1",
    "x\x85X-Injected: 1",
    "x\x00X-Injected: 1",
]


def _drafts(evil: str) -> dict[str, Draft]:
    named = Address(evil, "carol@client.example")
    return {
        "subject": Draft(from_=ME, to=(BOB,), subject=evil, text="body"),
        "from name": Draft(from_=Address(evil, ME.email), to=(BOB,), text="body"),
        "to name": Draft(from_=ME, to=(named,), text="body"),
        "cc name": Draft(from_=ME, to=(BOB,), cc=(named,), text="body"),
        "bcc name": Draft(from_=ME, to=(BOB,), bcc=(named,), text="body"),
        "attachment filename": Draft(
            from_=ME,
            to=(BOB,),
            text="body",
            attachments=(OutgoingAttachment(evil, "text/plain", b"file"),),
        ),
        "inline filename": Draft(
            from_=ME,
            to=(BOB,),
            text="body",
            html='<img src="cid:i@x">',
            attachments=(OutgoingAttachment(evil, "image/png", b"png", content_id="i@x"),),
        ),
        "extra header": Draft(
            from_=ME,
            to=(BOB,),
            text="body",
            extra_headers=(("X-CRM", evil.replace("\r", "").replace("\n", "")),),
        ),
        "in-reply-to and references": Draft(
            from_=ME,
            to=(BOB,),
            text="body",
            in_reply_to=f"{evil}@client.example",
            references=(f"<{evil}@client.example>", "ok@client.example"),
        ),
    }


CASES = [(field, evil) for evil in HOSTILE for field in _drafts(evil)]


def _names(msg: email.message.Message) -> list[str]:
    return [k.lower() for k, _ in msg.items()]


@pytest.mark.parametrize(("field", "evil"), CASES)
def test_hostile_value_adds_no_header_and_keeps_the_body(field: str, evil: str) -> None:
    out = compose(_drafts(evil)[field])
    for parser_policy in (policy.default, policy.compat32):
        msg = email.message_from_bytes(out.raw, policy=parser_policy)
        for part in msg.walk():
            assert "x-injected" not in _names(part), (parser_policy, part.items())
            for _, value in part.items():
                unfolded = re.sub(r"\r?\n(?=[ \t])", "", str(value))
                assert "\n" not in unfolded and "\r" not in unfolded
    top = _names(email.message_from_bytes(out.raw, policy=policy.compat32))
    assert top[:2] == ["from", "to"]
    assert "evil body" not in out.raw.decode("ascii").split("\r\n\r\n", 1)[1]
    assert not re.search(rb"^X-Injected", out.raw, re.M | re.I)
    parsed = parse_message(out.raw)
    assert parsed.text is not None and parsed.text.strip() == "body"


@pytest.mark.parametrize("evil", HOSTILE)
def test_encoded_word_text_round_trips_as_literal_text(evil: str) -> None:
    """Text that looks like an encoded word is sent as that text, not decoded by anyone."""
    out = compose(Draft(from_=Address(evil, ME.email), to=(BOB,), subject=evil, text="b"))
    flat = " ".join(re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", evil).split())
    env = parse_message(out.raw).envelope
    assert env.subject == flat
    assert env.from_[0].name == flat
    modern = email.message_from_bytes(out.raw, policy=policy.default)
    assert str(modern["Subject"]) == flat


def test_encoded_word_in_local_part_is_refused_naming_the_address() -> None:
    evil = "=?utf-8?q?x=0D=0AX-Injected=3A_1?=@client.example"
    with pytest.raises(InvalidInput, match=re.escape(repr(evil))):
        compose(Draft(from_=ME, to=(Address("", evil),), text="b"))


@pytest.mark.parametrize(
    "address",
    ["a,injected@evil.test", 'a"b@client.example', '"a b"@client.example',
     "a@b@client.example", "a(comment)@client.example", "a..b@client.example",
     ".a@client.example", "a@client_example.test", "a@[127.0.0.1]", "a b@client.example",
     "a\r\nRCPT TO:<x@evil.test>@client.example", "a;b@client.example", "a<b@client.example"],
)  # fmt: skip
def test_addresses_outside_the_grammar_are_refused_naming_them(address: str) -> None:
    for field in ("to", "cc", "bcc"):
        draft = Draft(from_=ME, to=(BOB,), text="b")
        draft = Draft(**{**draft.__dict__, field: (Address("", address),)})
        with pytest.raises(InvalidInput, match=re.escape(repr(address))):
            compose(draft)


def test_envelope_is_exactly_the_header_addresses() -> None:
    to = (Address("Bob, Sales", "Bob@Client.Example"), Address("", "x+tag@bücher.example"))
    cc = (Address('Q "uoted"', "o'neil@client.example"), Address("", "jörg@example.de"))
    bcc = (Address("Boss", "boss@crm.example"),)
    out = compose(Draft(from_=ME, to=to, cc=cc, bcc=bcc, text="b"))
    msg = email.message_from_string(out.raw.decode("utf-8"), policy=policy.default)  # RFC 6532
    written = [a.addr_spec for name in ("To", "Cc") for a in msg[name].addresses]
    assert list(out.recipients) == [*written, "boss@crm.example"]
    assert written == [sendable_address(a.email) for a in (*to, *cc)]


def test_header_check_refuses_a_block_that_does_not_parse_back() -> None:
    subject = Field("Subject", b"Subject: hi")
    with pytest.raises(InvalidInput, match="x-injected"):
        check_header_block(b"Subject: hi\r\nX-Injected: 1\r\n\r\n", [subject])
    more = Field("X-More", b"X-More: 1")
    with pytest.raises(InvalidInput):  # the block ended early
        check_header_block(b"Subject: hi\r\n\r\nX-More: 1\r\n\r\n", [subject, more])
    with pytest.raises(InvalidInput):  # a bare CR inside a value
        check_header_block(
            b"Subject: hi\rX-More: 1\r\n\r\n", [Field("Subject", b"Subject: hi\rX-More: 1")]
        )
    folded = Field("Subject", b"Subject: a\r\n b")
    check_header_block(folded.raw + b"\r\n\r\n", [folded])
