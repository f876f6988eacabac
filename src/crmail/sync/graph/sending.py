"""Sending through Microsoft Graph: once, with Outlook's own Sent Items copy.

The CRM composed the message (MIME, with its Message-ID and, for a reply, In-Reply-To
and References); it goes out as it is through ``sendMail`` (base64 MIME), so Outlook
files the Sent Items copy itself (crmail never appends one) and puts a reply in the
conversation of the message it answers. That copy comes back through the Sent Items
delta and is recognised by its Message-ID as the message the CRM stored when it was
queued: one message, now with its Sent Items placement.

Outlook's policy is checked before anything is sent, in words: 3 MB at most through
this path and the file-type allow-list for attachments.

Stages, each committed before the next step: queued → sending → sent. A send found in
"sending" after a crash is marked "unknown" for the user and never sent again on its
own (Graph cannot be asked whether a MIME send went out before its copy is filed).
"""

from __future__ import annotations

import email.policy
import logging
from email.parser import BytesParser

from crmail.errors import CrmailError, InvalidInput, SendFailed
from crmail.providers.graph import Attachment, GraphClient, check_outlook_attachments
from crmail.storage import mail, outbound, outbox
from crmail.storage.db import Database

log = logging.getLogger(__name__)


def check_outlook_policy(raw: bytes) -> None:
    """:raises MessageTooLarge, AttachmentTypeNotAllowed: Outlook would refuse it."""
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    files = []
    for part in parsed.iter_attachments():
        content = part.get_payload(decode=True)
        data = content if isinstance(content, bytes) else b""
        files.append(Attachment(part.get_filename() or "attachment", data))
    check_outlook_attachments(files)


class GraphSending:
    def __init__(self, db: Database, account: mail.AccountInfo, client: GraphClient) -> None:
        self.db = db
        self.account = account
        self.client = client

    async def run(self, action: outbox.Action) -> None:
        stage = str(action.payload.get("stage", "queued"))
        if stage == "queued":
            await self._send(action)
        elif stage == "sending":
            await self._after_interrupted_send(action)
        account_id = self.account.id
        await self.db.write(lambda s: outbound.sent_filed(s, account_id, action.id, None))

    async def _send(self, action: outbox.Action) -> None:
        mid = _message_id(action)
        raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
        try:
            check_outlook_policy(raw)
        except CrmailError as exc:
            back = {**action.payload, "last_send_error": exc.message}
            error = exc.message
            await self.db.write(
                lambda s: outbound.send_progress(s, action.id, mid, back, "failed", error)
            )
            raise
        payload = {**action.payload, "stage": "sending"}
        await self.db.write(lambda s: outbound.send_progress(s, action.id, mid, payload, "sending"))
        try:
            await self.client.send_mime(raw)
        except CrmailError as exc:
            permanent = not getattr(exc, "retryable", False)
            back = {**action.payload, "stage": "queued", "last_send_error": exc.message}
            state = "failed" if permanent else "queued"
            error = exc.message
            await self.db.write(
                lambda s: outbound.send_progress(s, action.id, mid, back, state, error)
            )
            raise
        sent = {**action.payload, "stage": "sent"}
        answering = (self.account.id, self.account.user_id)
        await self.db.write(lambda s: outbound.record_sent(s, action, mid, sent, answering))

    async def _after_interrupted_send(self, action: outbox.Action) -> None:
        mid = _message_id(action)
        why = (
            "sending was interrupted while the message was being handed to Microsoft; "
            "it may or may not have gone out, so it was not sent again automatically"
        )
        unknown = {**action.payload, "stage": "queued"}
        await self.db.write(
            lambda s: outbound.send_progress(s, action.id, mid, unknown, "unknown", why)
        )
        raise SendFailed(why, permanent=True)


def _message_id(action: outbox.Action) -> int:
    if action.message_id is None:
        raise InvalidInput(f"send action {action.id} has no message")
    return action.message_id
