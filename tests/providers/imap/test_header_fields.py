"""Judging mail on ``HEADER.FIELDS`` is judging it on the whole header.

The sync fetches only the envelope's header fields before deciding whether a message
enters the CRM. Against the real Dovecot, for every message of CPython's email corpus
and some hostile headers, the Envelope parsed from those fields equals the one parsed
from the whole header, and the whole message parsed with that head equals a plain parse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from crmail.mime import ENVELOPE_FIELDS, parse_head, parse_message
from crmail.providers.imap import ImapClient, ImapSettings
from tests.mime.corpus import cpython_email_data
from tests.servers import Dovecot, MailboxAccount

HOSTILE = [
    # folded, repeated and oddly cased envelope fields among noise
    b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    b"fRoM: =?utf-8?q?J=C3=B6rg?= <jorg@example.test>\r\n"
    b"To: a@example.test,\r\n b@example.test\r\nTO: c@example.test\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test;\r\n\tb=abc\r\n"
    b"Subject: Re: [list] hello\r\nList-Id: <list.example.test>\r\n"
    b"Message-ID: <x1@example.test>\r\nReferences: <a@x>\r\n <b@x>\r\n\r\nbody\r\n",
    # no Message-ID, auto-submitted with a comment, 8-bit garbage elsewhere
    b"From: robot@example.test\r\nX-Junk: \xff\xfe\r\nAuto-Submitted: auto-replied (vacation)\r\n"
    b"Date: Tue, 2 Jan 2024 10:00:00 +0100\r\nSubject: away\r\n\r\nbye\r\n",
    # a header line without a colon in the middle
    b"From: a@example.test\r\nthis is not a field\r\nTo: b@example.test\r\nSubject: s\r\n\r\nx\r\n",
]


@pytest.fixture
async def client(mailbox: MailboxAccount) -> AsyncIterator[ImapClient]:
    c = await ImapClient.connect(
        ImapSettings(mailbox.host, mailbox.port, "none", mailbox.email, mailbox.password)
    )
    yield c
    await c.close()


async def test_envelope_fields_give_the_whole_headers_envelope(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    corpus = [p.read_bytes() for p in sorted(cpython_email_data().glob("msg_*.txt"))]
    raws = corpus + HOSTILE
    dovecot.seed_maildir(mailbox.email, "INBOX", iter(raws))
    await client.select("INBOX", readonly=True)
    uids = await client.uid_search("ALL")
    assert len(uids) == len(raws)

    whole = {h.uid: h for h in await client.fetch_headers(uids)}
    some = {h.uid: h for h in await client.fetch_headers(uids, ENVELOPE_FIELDS)}
    bodies = {m.uid: m.raw for m in await client.fetch_messages(uids)}
    assert whole.keys() == some.keys() == bodies.keys() == set(uids)
    smaller = 0
    for uid in uids:
        full, fields = parse_head(whole[uid].header), parse_head(some[uid].header)
        assert fields.envelope == full.envelope, (uid, some[uid].header)
        smaller += len(some[uid].header) < len(whole[uid].header)
        plain = parse_message(bodies[uid])
        reused = parse_message(bodies[uid], head=fields)
        assert reused.envelope == plain.envelope
        assert set(reused.defects) == set(plain.defects), uid
        assert (reused.text, reused.html, reused.attachments) == (
            plain.text,
            plain.html,
            plain.attachments,
        )
    assert smaller > len(uids) // 2  # the point: less to fetch and parse


async def test_field_names_are_checked(client: ImapClient) -> None:
    from crmail.errors import InvalidInput

    await client.select("INBOX", readonly=True)
    with pytest.raises(InvalidInput):
        await client.fetch_headers([1], ["From)] BODY[TEXT"])
