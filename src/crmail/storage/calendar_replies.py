"""Attendee answers arriving by mail (iMIP, RFC 6047): a METHOD:REPLY text/calendar part
in a synced message sets that attendee's PARTSTAT on the meeting.

Called where messages are stored (:func:`crmail.storage.mail.store_messages`), in the same
transaction: the answer is recorded exactly when the message is. Only messages that carry
a text/calendar part are parsed; an unreadable one is ignored (the mail is still kept).
"""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Iterable

from sqlalchemy.orm import Session

from crmail.domain.ical import replies
from crmail.errors import InvalidInput

log = logging.getLogger(__name__)

#: bytes that every iMIP REPLY contains (cheap filter before parsing)
_MARKERS = (b"text/calendar", b"REPLY")


def _calendar_parts(raw: bytes) -> list[bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    out: list[bytes] = []
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out.append(payload)
    return out


def apply_replies(s: Session, workspace_id: int, raws: Iterable[bytes]) -> int:
    """The answers found in ``raws`` applied; how many changed a meeting."""
    from crmail.storage.calendar_events import set_partstat

    applied = 0
    for raw in raws:
        if not all(m in raw for m in _MARKERS):
            continue
        for body in _calendar_parts(raw):
            try:
                answers = replies(body)
            except InvalidInput:
                continue
            for r in answers:
                if set_partstat(s, workspace_id, r.uid, r.attendee, r.partstat) is not None:
                    applied += 1
    return applied
