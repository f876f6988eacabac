"""What the sync rules need from an envelope: its identity and its participants by role.

Inbound sync and CRM sends both use these, so a message the CRM sent and later finds in
the Sent folder is recognised as the same message.
"""

from __future__ import annotations

from crmail.domain.identity import dedup_key
from crmail.mime.parse import Envelope


def envelope_key(env: Envelope) -> str:
    return dedup_key(
        env.message_id,
        env.from_[0].email if env.from_ else None,
        date=env.date,
        subject=env.subject,
        recipients=[a.email for a in (*env.to, *env.cc)],
    )


def envelope_roles(env: Envelope) -> dict[str, set[str]]:
    return {
        "from": {a.email for a in env.from_},
        "sender": {a.email for a in env.sender},
        "reply_to": {a.email for a in env.reply_to},
        "to": {a.email for a in env.to},
        "cc": {a.email for a in env.cc},
        "bcc": {a.email for a in env.bcc},
    }
