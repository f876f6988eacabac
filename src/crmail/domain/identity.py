"""When are two copies the same message?

A message is stored once per workspace. Copies in several folders or in teammates'
mailboxes share a Message-ID and a From; the pair is the identity.

Messages without a Message-ID (cron mail, monitoring alerts, some notifiers) are told
apart by their content: the header fields the sender wrote (From, Date, Subject, To and
Cc) and a digest of the body bytes. Header fields a server adds to each copy (Received,
Return-Path, Delivered-To, X-Keywords, spam scores, ...) are left out by taking only
those named fields, so copies of one delivery still share a key, while two alerts with
identical headers but different bodies are two messages.

Keys of messages without a Message-ID stored before the body counted ("hdr" keys) were
not rewritten: such a message imported again is stored once more under its new key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime


def dedup_key(
    message_id: str | None,
    from_email: str | None,
    *,
    date: datetime | None,
    subject: str,
    recipients: Iterable[str],
    body_digest: str | None = None,
) -> str:
    """``body_digest`` (see :func:`crmail.mime.keys.body_digest`) is required when
    there is no ``message_id``: without it two different messages could share a key."""
    if message_id:
        basis = f"mid\n{message_id}\n{from_email or ''}"
    else:
        if body_digest is None:
            raise ValueError("a message without Message-ID needs its body digest for a key")
        stamp = date.isoformat() if date else ""
        recipient_list = ",".join(sorted(recipients))
        basis = f"hdr+body\n{from_email or ''}\n{stamp}\n{subject}\n{recipient_list}\n{body_digest}"
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()
