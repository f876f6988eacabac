"""What the sync rules need from an envelope: its identity and its participants by role.

Inbound sync and CRM sends both use these, so a message the CRM sent and later finds in
the Sent folder is recognised as the same message.
"""

from __future__ import annotations

import hashlib

from crmail.domain.identity import dedup_key
from crmail.mime.envelope import Envelope
from crmail.mime.header_block import Fields
from crmail.mime.limits import DEFAULT_LIMITS


def body_digest(raw: bytes) -> str:
    """SHA-256 of a message's body: the bytes after its header block, with line ends
    made LF and trailing whitespace dropped (servers store and serve either line end)."""
    body_start = Fields(
        raw, 0, len(raw), DEFAULT_LIMITS.max_header_bytes, to_empty_line=True
    ).body_start
    body = raw[body_start:].replace(b"\r\n", b"\n").rstrip()
    return hashlib.sha256(body).hexdigest()


def envelope_key(env: Envelope, raw: bytes | None = None) -> str:
    """The dedup key of a message. ``raw`` (the whole message) is needed only when it has
    no Message-ID (:func:`needs_body`): its body then counts."""
    if env.message_id is None and raw is None:
        raise ValueError("the key of a message without Message-ID needs its raw bytes")
    return dedup_key(
        env.message_id,
        env.from_[0].email if env.from_ else None,
        date=env.date,
        subject=env.subject,
        recipients=[a.email for a in (*env.to, *env.cc)],
        body_digest=None if env.message_id is not None or raw is None else body_digest(raw),
    )


def needs_body(env: Envelope) -> bool:
    """True when the envelope alone cannot give the message's dedup key."""
    return env.message_id is None


def envelope_roles(env: Envelope) -> dict[str, set[str]]:
    return {
        "from": {a.email for a in env.from_},
        "sender": {a.email for a in env.sender},
        "reply_to": {a.email for a in env.reply_to},
        "to": {a.email for a in env.to},
        "cc": {a.email for a in env.cc},
        "bcc": {a.email for a in env.bcc},
    }
