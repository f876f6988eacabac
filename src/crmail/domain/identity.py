"""When are two copies the same message?

A message is stored once per workspace. Copies in several folders or in teammates'
mailboxes share a Message-ID and a From; the pair is the identity. Messages without
a Message-ID (rare, broken senders) fall back to the headers a copy cannot change.
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
) -> str:
    if message_id:
        basis = f"mid\n{message_id}\n{from_email or ''}"
    else:
        stamp = date.isoformat() if date else ""
        basis = f"hdr\n{from_email or ''}\n{stamp}\n{subject}\n{','.join(sorted(recipients))}"
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()
