"""Build outgoing RFC 5322 messages. Pure, no IO.

Unlike parsing (see :mod:`crmail.mime.parse`), composing uses the stdlib ``email``
package: the messages we build are well-formed by construction, and its header folding,
RFC 2047 / RFC 2231 encoding and MIME generation are correct for them.

Choices that matter for delivery:

* Bodies are always 7-bit (quoted-printable / base64), so no message depends on the
  server's 8BITMIME and no line exceeds 998 octets. Headers are folded at 78.
* Message-ID, In-Reply-To and References are written by hand: the stdlib treats the
  last two as unstructured text and RFC 2047-encodes any id longer than a line, which
  breaks threading in every client.
* Bcc is never written: those recipients only appear in the SMTP envelope.
* An HTML-only draft gets a plain-text alternative (spam filters penalise HTML-only
  mail, and text-only clients exist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from crmail.domain.addresses import email_domain, normalize_email
from crmail.errors import InvalidInput
from crmail.mime.parse import Address
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

# cte_type="7bit" makes the body encoder pick quoted-printable/base64 for anything
# that is not short ASCII lines (policy.SMTP alone would emit raw 8bit).
_POLICY = email_policy.SMTP.clone(cte_type="7bit")
# RFC 6532 (SMTPUTF8) headers, only when an address has a non-ASCII local part:
# such an address cannot be expressed in ASCII at all.
_UTF8_POLICY = _POLICY.clone(utf8=True)
if TYPE_CHECKING:  # typeshed makes EmailPolicy generic; the runtime class is not
    _Policy = email_policy.EmailPolicy[EmailMessage]

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
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")  # RFC 5322 ftext
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A msg-id we are willing to write: printable ASCII, no whitespace or <>, with "@".
# The length bound keeps "References: <id>" within one 998-octet line.
_MSG_ID = re.compile(r"[!-;=?-~]{1,900}\Z")
_MIME_TYPE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)\Z")


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
        if _MSG_ID.match(ref) and "@" in ref and ref != parent and ref not in seen:
            seen.add(ref)
            chain.append(ref)
    if _MSG_ID.match(parent):
        chain.append(parent)
    if len(chain) > MAX_REPLY_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REPLY_REFERENCES - 1) :]]
    return tuple(chain)


def _strip_id(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return "".join(value.split())


# --- compose -------------------------------------------------------------------------


def compose(draft: Draft) -> Composed:
    """Build the raw message for ``draft``. Raises :class:`InvalidInput` for bad input."""
    recipients = _envelope_recipients(draft)
    if not recipients:
        raise InvalidInput("The message has no recipients.")
    sender = _header_address(draft.from_, "From")
    header_addrs = {
        "To": [_header_address(a, "To") for a in draft.to],
        "Cc": [_header_address(a, "Cc") for a in draft.cc],
    }
    # Bcc does not count: it is never written, and send() asks for SMTPUTF8 itself.
    written = [sender, *header_addrs["To"], *header_addrs["Cc"]]
    policy = _POLICY if all(a.username.isascii() for a in written) else _UTF8_POLICY

    message_id = _message_id(draft)
    msg = EmailMessage(policy=policy)
    msg["From"] = sender
    for name, addrs in header_addrs.items():
        if addrs:
            msg[name] = addrs
    msg["Subject"] = _one_line(draft.subject)
    msg["Date"] = format_datetime(_utc(draft.date or datetime.now(UTC)))
    for name, value in draft.extra_headers:
        if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
            raise InvalidInput(f"Header {name!r} cannot be set on an outgoing message.")
        if "\r" in value or "\n" in value:
            raise InvalidInput(f"Header {name!r} contains a line break.")
        msg[name] = value
    msg["MIME-Version"] = "1.0"
    _set_body(msg, draft, policy)

    raw = msg.as_bytes(policy=policy)
    raw = _insert_headers(raw, _threading_headers(draft, message_id))
    return Composed(raw=raw, message_id=message_id, recipients=recipients)


def _envelope_recipients(draft: Draft) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for addr in (*draft.to, *draft.cc, *draft.bcc):
        normal = normalize_email(addr.email)
        if normal is None:
            raise InvalidInput(f"{addr.email!r} is not a valid email address.")
        local, _, domain = normal.partition("@")
        seen.setdefault(f"{local}@{_idna(domain, addr.email)}", None)
    return tuple(seen)


def _idna(domain: str, whole: str) -> str:
    """ASCII form of a domain: SMTP and 7-bit headers cannot carry U-labels."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise InvalidInput(f"{whole!r} has an invalid domain name.") from e


def _header_address(addr: Address, field: str) -> HeaderAddress:
    normal = normalize_email(addr.email)
    if normal is None:
        raise InvalidInput(f"{field}: {addr.email!r} is not a valid email address.")
    local, _, domain = normal.partition("@")
    try:
        return HeaderAddress(
            display_name=_one_line(addr.name),
            username=local,
            domain=_idna(domain, addr.email),
        )
    except (ValueError, IndexError) as e:  # headerregistry's complaints about odd parts
        raise InvalidInput(f"{field}: {addr.email!r} cannot be written in a header.") from e


def _one_line(text: str) -> str:
    """Header text on one line: a pasted newline must never start a new header."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _message_id(draft: Draft) -> str:
    if draft.message_id is None:
        # make_msgid adds <>; our API carries ids without them.
        domain = email_domain(draft.from_.email) or "localhost"
        return make_msgid(domain=_idna(domain, draft.from_.email))[1:-1]
    message_id = _strip_id(draft.message_id)
    if not (_MSG_ID.match(message_id) and "@" in message_id):
        raise InvalidInput(f"{draft.message_id!r} is not a usable Message-ID.")
    return message_id


def _threading_headers(draft: Draft, message_id: str) -> list[bytes]:
    lines = [b"Message-ID: <" + message_id.encode("ascii") + b">"]
    # Unusable ids (non-ASCII, spaces) can come from a parent we parsed leniently;
    # dropping them costs at most one threading hint, refusing would block the reply.
    if draft.in_reply_to is not None:
        parent = _strip_id(draft.in_reply_to)
        if _MSG_ID.match(parent):
            lines.append(b"In-Reply-To: <" + parent.encode("ascii") + b">")
    refs = [r for r in map(_strip_id, draft.references) if _MSG_ID.match(r)]
    if refs:
        lines.append(_fold_ids(b"References:", refs))
    return lines


def _fold_ids(name: bytes, ids: Sequence[str]) -> bytes:
    """``name <a> <b> ...`` folded between ids (never inside one) at 78 columns."""
    out = bytearray(name)
    line_len = len(name)
    for msg_id in dict.fromkeys(ids):
        token = b"<" + msg_id.encode("ascii") + b">"
        if line_len + 1 + len(token) > 78 and line_len > len(name):
            out += b"\r\n"
            line_len = 0
        out += b" " + token
        line_len += 1 + len(token)
    return bytes(out)


def _insert_headers(raw: bytes, lines: list[bytes]) -> bytes:
    """Insert header lines before MIME-Version (so identity headers come first)."""
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:  # as_bytes always writes a header/body separator; be safe anyway
        head_end = len(raw)
    at = raw.find(b"\r\nMIME-Version:", 0, head_end)
    at = head_end if at < 0 else at
    return raw[:at] + b"".join(b"\r\n" + line for line in lines) + raw[at:]


# --- MIME structure ------------------------------------------------------------------


def _set_body(msg: EmailMessage, draft: Draft, policy: _Policy) -> None:
    """mixed( alternative( text, related( html, inline... ) ), attachments... ).

    Each level only exists when needed. Inline parts without HTML to reference them
    are sent as ordinary attachments (keeping their Content-ID) rather than dropped.
    """
    inline = [a for a in draft.attachments if a.content_id is not None]
    attached = [a for a in draft.attachments if a.content_id is None]
    text = draft.text
    if text is None and draft.html is not None:
        text = html_to_text(draft.html)
    parts: list[MIMEPart] = [_text_part(text or "", "plain", policy)]
    if draft.html is not None:
        html: MIMEPart = _text_part(draft.html, "html", policy)
        if inline:
            related = [html, *(_file_part(a, policy, inline=True) for a in inline)]
            html = _multipart("related", related, policy)
        parts = [_multipart("alternative", [parts[0], html], policy)]
    else:
        attached = [*inline, *attached]
    if attached:
        files = [_file_part(a, policy, inline=False) for a in attached]
        parts = [_multipart("mixed", [parts[0], *files], policy)]
    _adopt(msg, parts[0])


def _text_part(text: str, subtype: str, policy: _Policy) -> MIMEPart:
    part = MIMEPart(policy=policy)
    # Normalise newlines: a lone CR would otherwise survive into the encoded body.
    part.set_content(text.replace("\r\n", "\n").replace("\r", "\n"), subtype=subtype)
    return part


def _file_part(att: OutgoingAttachment, policy: _Policy, *, inline: bool) -> MIMEPart:
    match = _MIME_TYPE.match(att.content_type.strip().lower())
    maintype, subtype = match.groups() if match else ("application", "octet-stream")
    cid: str | None = None
    if att.content_id is not None:
        cid = _strip_id(att.content_id)
        if not _MSG_ID.match(cid):
            raise InvalidInput(f"{att.content_id!r} is not a usable Content-ID.")
        cid = f"<{cid}>"
    part = MIMEPart(policy=policy)
    part.set_content(
        att.data,
        maintype=maintype,
        subtype=subtype,
        disposition="inline" if inline else "attachment",
        filename=_one_line(att.filename) or "attachment",
        cid=cid,
    )
    return part


def _multipart(subtype: str, parts: Sequence[MIMEPart], policy: _Policy) -> MIMEPart:
    container = MIMEPart(policy=policy)
    # RFC 2387 requires the root part's type on multipart/related.
    params = '; type="text/html"' if subtype == "related" else ""
    container["Content-Type"] = f"multipart/{subtype}{params}"
    for part in parts:
        container.attach(part)
    return container


def _adopt(msg: EmailMessage, part: MIMEPart) -> None:
    """Move ``part``'s content headers and payload onto the top-level message."""
    for name, value in part.items():
        msg[name] = value
    msg.set_payload(part.get_payload())
