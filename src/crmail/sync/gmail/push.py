"""Gmail push notifications as Pub/Sub delivers them.

A push subscription POSTs ``{"message": {"data": base64(JSON), "messageId", ...},
"subscription"}``; the data names the mailbox and its historyId now:
``{"emailAddress": "...", "historyId": 1234}``. A notification only says "something
changed": notifications can be late, merged or lost, so the worker reads the history
from its own stored cursor, and the safety poll goes on regardless.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from crmail.domain.addresses import normalize_email
from crmail.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Notification:
    email_address: str
    history_id: int


def decode(data: str) -> Notification:
    """The notification in a Pub/Sub message's ``data``.

    :raises InvalidInput: not a Gmail notification (a 422 to the sender).
    """
    try:
        payload = json.loads(base64.b64decode(data, validate=False) or b"null")
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("the push message's data is not base64 JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidInput("the push message's data is not a Gmail notification")
    email = normalize_email(str(payload.get("emailAddress") or ""))
    try:
        history_id = int(str(payload.get("historyId")))
    except ValueError as exc:
        raise InvalidInput("the Gmail notification has no historyId") from exc
    if email is None:
        raise InvalidInput("the Gmail notification names no mailbox")
    return Notification(email, history_id)
