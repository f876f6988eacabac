"""The envelope of a message: who, when, what about, in which thread.

Built from a header block alone, so a sync can judge a message before fetching its body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from crmail.mime.address_list import Address, parse_address_list
from crmail.mime.header_block import (
    ADDRESS_HEADERS,
    CONTROL_CHARS,
    Fields,
    clean_line,
    decoded,
    fold_ws,
    header_text,
)
from crmail.mime.limits import DEFAULT_LIMITS, ParseLimits

__all__ = [
    "ENVELOPE_FIELDS",
    "Envelope",
    "Head",
    "envelope_from_fields",
    "normalize_subject",
    "parse_envelope",
    "parse_head",
]

MAX_SUBJECT_CHARS = 998  # RFC 5322 line limit; longer subjects are junk or attacks
MAX_REFERENCES = 100  # keep the thread root plus the most recent ancestors
MAX_MESSAGE_ID_CHARS = 998

#: Every header field an Envelope is made of: a header block holding only these
#: (IMAP ``BODY.PEEK[HEADER.FIELDS (...)]``) gives the same Envelope as the whole header.
ENVELOPE_FIELDS = (
    *(name.title() for name in ADDRESS_HEADERS),
    "Message-ID",
    "In-Reply-To",
    "References",
    "Date",
    "Subject",
    # bulk mail
    "List-Id",
    "List-Unsubscribe",
    "Precedence",
    "Auto-Submitted",
)


@dataclass(frozen=True, slots=True)
class Envelope:
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    date: datetime | None
    from_: tuple[Address, ...]
    sender: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    is_bulk: bool

    def participants(self) -> set[str]:
        """Every address in from_/sender/reply_to/to/cc/bcc."""
        groups = (self.from_, self.sender, self.reply_to, self.to, self.cc, self.bcc)
        return {addr.email for group in groups for addr in group}


_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_WS = re.compile(r"\s+")


def _message_ids(value: str) -> list[str]:
    """Message ids in a Message-ID / In-Reply-To / References value, in order, unique."""
    found = [_WS.sub("", m) for m in _BRACKETED_ID.findall(value)]
    if not found:
        # Missing <>: accept bare tokens that look like ids (contain "@").
        found = [w.strip("<>,;") for w in value.replace(",", " ").split() if "@" in w]
    seen: set[str] = set()
    ids = []
    for msg_id in found:
        if (
            msg_id
            and len(msg_id) <= MAX_MESSAGE_ID_CHARS
            and not CONTROL_CHARS.search(msg_id)
            and msg_id not in seen
        ):
            seen.add(msg_id)
            ids.append(msg_id)
    return ids


def _parse_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        try:  # some API-generated mail carries ISO 8601 dates
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    try:
        if parsed.tzinfo is None:  # "-0000" means UTC with unknown local zone
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


_SUBJECT_PREFIX = re.compile(
    r"""\s*(?:
        (?:re|fw|fwd|aw|wg|sv|vs|antw|rif|rv|tr|odp|enc|ynt|vl|r)
        \s*(?:\[\d+\]|\(\d+\))?\s*[:：]
      | \[[^\]]*\]
    )\s*""",
    re.X | re.I,
)


def normalize_subject(subject: str) -> str:
    """Subject for last-resort threading: reply/forward prefixes gone, tags kept.

    "[crm] Re: Fwd: Offer" and "Re: [crm] offer" both become "[crm] offer".
    """
    text = fold_ws(subject)
    tags: list[str] = []
    pos = 0
    while True:
        match = _SUBJECT_PREFIX.match(text, pos)
        if match is None or match.end() == pos:
            break
        token = match.group().strip()
        if token.startswith("["):
            tags.append(token)
        pos = match.end()
    return fold_ws(" ".join([*tags, text[pos:]])).casefold()


# --- envelope ------------------------------------------------------------------------


def _is_bulk(fields: Fields) -> bool:
    if fields.first("list-id") is not None or fields.first("list-unsubscribe") is not None:
        return True
    precedence = (fields.first("precedence") or b"").strip().lower()
    if precedence in (b"bulk", b"list", b"junk"):
        return True
    auto = fields.first("auto-submitted")
    if auto is not None:
        # The keyword may be followed by parameters or a comment: "no (human)".
        keyword = auto.split(b";", 1)[0].split(b"(", 1)[0].strip().lower()
        return keyword not in (b"no", b"")
    return False


def envelope_from_fields(fields: Fields, limits: ParseLimits, defects: list[str]) -> Envelope:
    def text(name: str) -> str | None:
        raw = fields.first(name)
        return None if raw is None else header_text(raw, defects)

    def addresses(name: str) -> tuple[Address, ...]:
        # Repeated address headers are concatenated: dropping a participant is worse
        # than accepting a non-conforming message. An identical repeat (relays add them)
        # is read once; the list drops addresses it already holds.
        values = [header_text(raw, defects) for raw in dict.fromkeys(fields.all(name))]
        if not values:
            return ()
        return parse_address_list(", ".join(values), limits.max_addresses_per_header, defects, name)

    subject = clean_line(decoded(text("subject") or "", defects))
    if len(subject) > MAX_SUBJECT_CHARS:
        defects.append("subject capped")
        subject = subject[:MAX_SUBJECT_CHARS]
    references = _message_ids(text("references") or "")
    if len(references) > MAX_REFERENCES:
        defects.append(f"{len(references)} references, kept first and last")
        references = [references[0], *references[-(MAX_REFERENCES - 1) :]]
    message_ids = _message_ids(text("message-id") or "")
    date_text = text("date")
    date = _parse_date(date_text) if date_text else None
    if date_text and date is None:
        defects.append("unparseable date")
    from_, sender, reply_to, to, cc, bcc = (addresses(name) for name in ADDRESS_HEADERS)
    return Envelope(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=tuple(_message_ids(text("in-reply-to") or "")),
        references=tuple(references),
        subject=subject,
        date=date,
        from_=from_,
        sender=sender,
        reply_to=reply_to,
        to=to,
        cc=cc,
        bcc=bcc,
        is_bulk=_is_bulk(fields),
    )


EMPTY_ENVELOPE = Envelope(None, (), (), "", None, (), (), (), (), (), (), False)


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed header block: its envelope and what was wrong with it."""

    envelope: Envelope
    defects: tuple[str, ...]
    #: False when parsing failed and ``envelope`` is empty
    complete: bool = True


def parse_head(header_bytes: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Head:
    """Parse a header block (e.g. IMAP BODY.PEEK[HEADER]). Never raises."""
    try:
        fields = Fields(
            header_bytes, 0, len(header_bytes), limits.max_header_bytes, to_empty_line=True
        )
        defects = fields.defects()
        envelope = envelope_from_fields(fields, limits, defects)
        return Head(envelope, tuple(defects))
    except Exception as exc:  # last line of defence: a bug here must not stop a sync
        return Head(EMPTY_ENVELOPE, (f"internal parse error: {type(exc).__name__}",), False)


def parse_envelope(header_bytes: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Envelope:
    """Envelope from a header block (e.g. IMAP BODY.PEEK[HEADER]). Never raises."""
    return parse_head(header_bytes, limits).envelope
