"""Sending through ``messages.send``: once, into the conversation, with Gmail's own
Sent copy.

The stages are those of SMTP sending (:mod:`crmail.sync.sending`), each committed
before the next step: queued → sending → sent (done). A send found in "sending" after a
crash is looked up in the mailbox by its Message-ID (``rfc822msgid:``): found, it went
out; not found, it is marked "unknown" for the user and never sent again on its own.

A reply goes with the threadId of the message it answers, so Gmail files it in the same
conversation. Gmail files the SENT copy itself: crmail never appends one. That copy
arrives through history and is recognised (by its Message-ID) as the message the CRM
stored when it was queued: one message, now with its SENT placement.
"""

from __future__ import annotations

import logging

from crmail.errors import CrmailError, InvalidInput, SendFailed
from crmail.providers.gmail import GmailClient
from crmail.storage import mail, outbound, outbox, remote
from crmail.storage.db import Database

log = logging.getLogger(__name__)


class GmailSending:
    def __init__(self, db: Database, account: mail.AccountInfo, client: GmailClient) -> None:
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

    async def _thread_of_parent(self, action: outbox.Action) -> str | None:
        parent = action.payload.get("reply_to")
        if not parent:
            return None
        account_id, parent_id = self.account.id, int(str(parent))
        ids = await self.db.read(lambda s: remote.remote_ids_of(s, account_id, parent_id))
        return next((t for t in ids.values() if t), None)

    async def _send(self, action: outbox.Action) -> None:
        mid = _message_id(action)
        payload = {**action.payload, "stage": "sending"}
        await self.db.write(lambda s: outbound.send_progress(s, action.id, mid, payload, "sending"))
        raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
        thread = await self._thread_of_parent(action)
        try:
            sent_message = await self.client.send_message(raw, thread_id=thread)
        except CrmailError as exc:
            # Refused (or not reached): Gmail did not take the message.
            permanent = not getattr(exc, "retryable", False)
            back = {**action.payload, "stage": "queued", "last_send_error": exc.message}
            state = "failed" if permanent else "queued"
            error = exc.message
            await self.db.write(
                lambda s: outbound.send_progress(s, action.id, mid, back, state, error)
            )
            raise
        sent = {
            **action.payload,
            "stage": "sent",
            "gmail_id": sent_message.id,
            "gmail_thread": sent_message.thread_id,
        }
        answering = (self.account.id, self.account.user_id)
        await self.db.write(lambda s: outbound.record_sent(s, action, mid, sent, answering))

    async def _after_interrupted_send(self, action: outbox.Action) -> None:
        mid = _message_id(action)
        header = await self.db.read(lambda s: outbox.message_id_header(s, mid))
        found = header is not None and bool(
            (
                await self.client.list_messages(q=f"rfc822msgid:{header}", include_spam_trash=True)
            ).messages
        )
        if found:
            log.info("action %s: interrupted send found in Gmail: it went out", action.id)
            sent = {**action.payload, "stage": "sent"}
            answering = (self.account.id, self.account.user_id)
            await self.db.write(lambda s: outbound.record_sent(s, action, mid, sent, answering))
            return
        why = (
            "sending was interrupted while the message was being handed to Gmail; "
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
