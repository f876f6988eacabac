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

The key of a message with a Message-ID starts with a digest of the Message-ID alone
(:func:`message_id_prefix`), and its other half is the pair's: a message is then found
by its Message-ID (threading looks its references up) through the index that keeps the
workspace's keys unique, and needs no index of its own keyed by Message-ID. Every index
keyed at random costs a big workspace's import a leaf page per message (issue 14).
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
        pair = f"mid\n{message_id}\n{from_email or ''}"
        return message_id_prefix(message_id) + _sha256(pair)[:PREFIX_LENGTH]
    if body_digest is None:
        raise ValueError("a message without Message-ID needs its body digest for a key")
    stamp = date.isoformat() if date else ""
    recipient_list = ",".join(sorted(recipients))
    basis = f"hdr+body\n{from_email or ''}\n{stamp}\n{subject}\n{recipient_list}\n{body_digest}"
    return _sha256(basis)


#: hex digits of a key taken by its Message-ID's digest (128 bits), and by the pair's
PREFIX_LENGTH = 32


def message_id_prefix(message_id: str) -> str:
    """The first half of the key of every message with this Message-ID."""
    return _sha256(f"mid\n{message_id}")[:PREFIX_LENGTH]


def key_range(message_id: str) -> tuple[str, str]:
    """Keys of messages with this Message-ID are those from the first bound (included)
    to the second (excluded): keys are lowercase hex, and ``g`` sorts after every hex
    digit in byte order and in any collation a database would use for such text."""
    prefix = message_id_prefix(message_id)
    return prefix, prefix + "g"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
