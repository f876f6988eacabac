"""Sending through ``messages.send``: once, into the conversation, with Gmail's own
Sent copy.

The stages are those of every send (:mod:`crmail.sync.send_stages`), each committed
before the next step: queued → sending → sent (done). A send found in "sending" after a
crash is looked up in the mailbox by its Message-ID (``rfc822msgid:``): found, it went
out; not found, it is marked "unknown" for the user and never sent again on its own.

A reply goes with the threadId of the message it answers, so Gmail files it in the same
conversation. Gmail files the SENT copy itself: crmail never appends one. That copy
arrives through history and is recognised (by its Message-ID) as the message the CRM
stored when it was queued: one message, now with its SENT placement.
"""

from __future__ import annotations

from typing import Any

from crmail.providers.gmail import GmailClient
from crmail.storage import outbox, remote
from crmail.sync.send_stages import ApiSending


class GmailSending(ApiSending[GmailClient]):
    handed_to = "Gmail"

    async def hand_off(self, action: outbox.Action, raw: bytes) -> dict[str, Any]:
        thread = await self._thread_of_parent(action)
        sent_message = await self.client.send_message(raw, thread_id=thread)
        return {"gmail_id": sent_message.id, "gmail_thread": sent_message.thread_id}

    async def went_out(self, action: outbox.Action, mid: int) -> bool:
        header = await self.db.read(lambda s: outbox.message_id_header(s, mid))
        if header is None:
            return False
        q = f"rfc822msgid:{header}"
        return bool((await self.client.list_messages(q=q, include_spam_trash=True)).messages)

    async def _thread_of_parent(self, action: outbox.Action) -> str | None:
        parent = action.payload.get("reply_to")
        if not parent:
            return None
        account_id, parent_id = self.account.id, int(str(parent))
        ids = await self.db.read(lambda s: remote.remote_ids_of(s, account_id, parent_id))
        return next((t for t in ids.values() if t), None)
