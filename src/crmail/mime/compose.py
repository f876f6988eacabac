"""Build outgoing RFC 5322 messages. Pure, no IO.

Choices that matter for delivery and safety:

* Every header is written by :mod:`crmail.mime.headers`, never by the stdlib ``email``
  package, which re-interprets RFC 2047 encoded words in the text it is given (a
  subject decoding to CR/LF became an injected header). Each finished header block is
  parsed back and must hold exactly the fields written.
* Every address goes through :func:`crmail.domain.addresses.sendable_address`, and the
  SMTP envelope (:attr:`Composed.recipients`) is built from the very addresses written
  in To/Cc (plus Bcc): header and envelope cannot disagree.
* Bodies are always 7-bit (see :mod:`crmail.mime.parts`). Headers are folded at 78.
* Bcc is never written: those recipients only appear in the SMTP envelope.
* An HTML-only draft gets a plain-text alternative (spam filters penalise HTML-only
  mail, and text-only clients exist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from crmail.domain.addresses import email_domain, sendable_address
from crmail.errors import InvalidInput
from crmail.mime.headers import (
    Field,
    address_field,
    check_header_block,
    msg_id_field,
    token_field,
    unstructured_field,
)
from crmail.mime.parse import Address
from crmail.mime.parts import (
    Part,
    calendar_part,
    file_part,
    header_block,
    multipart,
    render,
    text_part,
)
from crmail.mime.sanitize import html_to_text

__all__ = [
    "MAX_REPLY_REFERENCES",
    "Composed",
    "Draft",
    "OutgoingAttachment",
    "compose",
    "reply_references",
    "reply_subject",
]

#: References kept in a reply: the thread root plus the most recent ancestors. Long
#: threads otherwise grow the header without bound (some servers refuse > 998-octet
#: unfolded headers, and clients only need the root and the last few ids).
MAX_REPLY_REFERENCES = 20

# Headers a caller may not set through extra_headers: they define the message's
# identity, recipients or MIME structure, which compose() owns.
_RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
        "return-path",
        "received",
    }
)
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}\Z")  # RFC 5322 ftext, short enough for one line
# A msg-id we are willing to write: printable ASCII, no whitespace or <>, with "@".
# The length bound keeps "References: <id>" within one 998-octet line.
_MSG_ID = re.compile(r"[!-;=?-~]{1,900}\Z")


# --- public data -------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str  # "type/subtype"; anything unparsable is sent as octet-stream
    data: bytes
    content_id: str | None = None  # without <>; set = inline part referenced by cid:


@dataclass(frozen=True)
class Draft:
    from_: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[OutgoingAttachment, ...] = ()
    in_reply_to: str | None = None  # message-id without <>
    references: tuple[str, ...] = ()  # message-ids without <>
    message_id: str | None = None  # generated when None (without <>)
    date: datetime | None = None  # now when None; naive means UTC
    extra_headers: tuple[tuple[str, str], ...] = ()
    #: an iMIP invitation (iTIP method, VCALENDAR bytes): a text/calendar alternative
    calendar: tuple[str, bytes] | None = None


@dataclass(frozen=True)
class Composed:
    raw: bytes  # CRLF line endings, ready for SMTP DATA or IMAP APPEND
    message_id: str  # without <>
    recipients: tuple[str, ...]  # envelope RCPT TO: to + cc + bcc, normalized, unique


# --- subjects and threading ------------------------------------------------------------

# Reply prefixes of common clients: English, German (AW), Scandinavian (SV),
# Dutch (Antw), Finnish (VS), Polish (Odp), Italian (Rif), Turkish (YNT), Chinese.
# Optional counters like "Re[2]:" or "RE(3):" (Outlook, some webmails).
_REPLY_PREFIX = re.compile(
    r"\s*(?:re|aw|sv|antw|vs|odp|rif|ynt|回复|答复)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)


def reply_subject(subject: str) -> str:
    """The subject of a reply: exactly one leading "Re: ".

    Existing reply prefixes (any language/case) are removed first, so "RE: AW: x"
    becomes "Re: x"; a forward prefix is content and stays: "Fwd: x" -> "Re: Fwd: x".
    """
    text = " ".join(subject.split())
    pos = 0
    while (match := _REPLY_PREFIX.match(text, pos)) is not None and match.end() > pos:
        pos = match.end()
    rest = text[pos:]
    return f"Re: {rest}" if rest else "Re:"


def reply_references(parent_message_id: str, parent_references: Sequence[str]) -> tuple[str, ...]:
    """References of a reply (RFC 5322 §3.6.4): the parent's References + the parent's id.

    Pass the parent's In-Reply-To as ``parent_references`` when it has no References.
    Ids are given without <>; duplicates and unusable ids are dropped. The result is
    capped at :data:`MAX_REPLY_REFERENCES` by keeping the first id (the thread root,
    which threading algorithms rely on) and the most recent ones.
    """
    parent = _strip_id(parent_message_id)
    seen: set[str] = set()
    chain: list[str] = []
    for ref in parent_references:
        ref = _strip_id(ref)
        if _usable_id(ref) and "@" in ref and ref != parent and ref not in seen:
            seen.add(ref)
            chain.append(ref)
    if _usable_id(parent):
        chain.append(parent)
    if len(chain) > MAX_REPLY_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REPLY_REFERENCES - 1) :]]
    return tuple(chain)


def _usable_id(msg_id: str) -> bool:
    # "=?" would read as an RFC 2047 encoded word to software that decodes ids.
    return bool(_MSG_ID.match(msg_id)) and "=?" not in msg_id


def _strip_id(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return "".join(value.split())


# --- compose -------------------------------------------------------------------------

Mailbox = tuple[str, str]  # (display name, addr-spec as validated)


def compose(draft: Draft) -> Composed:
    """Build the raw message for ``draft``. Raises :class:`InvalidInput` for bad input."""
    sender = _mailbox(draft.from_, "From")
    to, cc, bcc = (
        _mailboxes(draft.to, "To"),
        _mailboxes(draft.cc, "Cc"),
        _mailboxes(draft.bcc, "Bcc"),
    )
    recipients = tuple(dict.fromkeys(addr for _, addr in (*to, *cc, *bcc)))
    if not recipients:
        raise InvalidInput("The message has no recipients.")
    message_id = _message_id(draft, sender[1])
    body = _body(draft)
    heading = (
        *_origin_fields(draft, sender, to, cc),
        *_extra_fields(draft.extra_headers),
        *_threading_fields(draft, message_id),
        token_field("MIME-Version", "1.0"),
    )
    message = Part((*heading, *body.fields), body.body, body.children)
    for part in message.walk():
        check_header_block(header_block(part), part.fields)
    return Composed(raw=render(message), message_id=message_id, recipients=recipients)


def _mailbox(addr: Address, field: str) -> Mailbox:
    return addr.name, sendable_address(addr.email, field)


def _mailboxes(addrs: Sequence[Address], field: str) -> list[Mailbox]:
    return [_mailbox(a, field) for a in addrs]


def _origin_fields(
    draft: Draft, sender: Mailbox, to: list[Mailbox], cc: list[Mailbox]
) -> list[Field]:
    fields = [address_field("From", [sender])]
    fields += [address_field(name, addrs) for name, addrs in (("To", to), ("Cc", cc)) if addrs]
    fields.append(unstructured_field("Subject", draft.subject))
    fields.append(token_field("Date", format_datetime(_utc(draft.date or datetime.now(UTC)))))
    return fields


def _extra_fields(headers: Sequence[tuple[str, str]]) -> list[Field]:
    fields = []
    for name, value in headers:
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise InvalidInput(f"Header {name!r} cannot be set on an outgoing message.")
        if "\r" in value or "\n" in value:
            raise InvalidInput(f"Header {name!r} contains a line break.")
        fields.append(unstructured_field(name, value))
    return fields


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _message_id(draft: Draft, sender: str) -> str:
    if draft.message_id is None:
        # make_msgid adds <>; our API carries ids without them.
        return make_msgid(domain=email_domain(sender) or "localhost")[1:-1]
    message_id = _strip_id(draft.message_id)
    if not (_usable_id(message_id) and "@" in message_id):
        raise InvalidInput(f"{draft.message_id!r} is not a usable Message-ID.")
    return message_id


def _threading_fields(draft: Draft, message_id: str) -> list[Field]:
    """Message-ID, In-Reply-To, References: ids are folded between, never inside.

    Unusable ids (non-ASCII, spaces, encoded-word look-alikes) can come from a parent we
    parsed leniently; dropping them costs at most one threading hint, refusing would
    block the reply.
    """
    fields = [msg_id_field("Message-ID", [message_id])]
    if draft.in_reply_to is not None:
        parent = _strip_id(draft.in_reply_to)
        if _usable_id(parent):
            fields.append(msg_id_field("In-Reply-To", [parent]))
    refs = [r for r in map(_strip_id, draft.references) if _usable_id(r)]
    if refs:
        fields.append(msg_id_field("References", refs))
    return fields


# --- MIME structure ------------------------------------------------------------------


def _body(draft: Draft) -> Part:
    """mixed( alternative( text, related( html, inline... ) ), attachments... ).

    Each level only exists when needed. Inline parts without HTML to reference them
    are sent as ordinary attachments (keeping their Content-ID) rather than dropped.
    """
    inline = [a for a in draft.attachments if a.content_id is not None]
    attached = [a for a in draft.attachments if a.content_id is None]
    text = draft.text
    if text is None and draft.html is not None:
        text = html_to_text(draft.html)
    main = text_part(text or "", "plain")
    if draft.html is not None:
        html = text_part(draft.html, "html")
        if inline:
            html = multipart("related", [html, *(_file(a, inline=True) for a in inline)])
        main = multipart("alternative", [main, html])
    else:
        attached = [*inline, *attached]
    if draft.calendar is not None:
        method, ics = draft.calendar
        main = multipart("alternative", [main, calendar_part(ics, method)])
    if attached:
        main = multipart("mixed", [main, *(_file(a, inline=False) for a in attached)])
    return main


def _file(att: OutgoingAttachment, *, inline: bool) -> Part:
    cid: str | None = None
    if att.content_id is not None:
        cid = _strip_id(att.content_id)
        if not _usable_id(cid):
            raise InvalidInput(f"{att.content_id!r} is not a usable Content-ID.")
    return file_part(att.filename, att.content_type, att.data, inline=inline, content_id=cid)
