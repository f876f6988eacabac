"""The send stages every sending path shares (SMTP, Gmail's ``messages.send``,
Graph's ``sendMail``), each committed before the next step: queued → sending → sent.

A send found in "sending" after a crash is looked up where the path can look (the Sent
folder, Gmail's ``rfc822msgid:`` search): found, it went out; otherwise it is marked
"unknown" for the user and never sent again on its own.

:class:`ApiSending` is the whole routine for a provider's API; a provider supplies the
handoff (:meth:`ApiSending.hand_off`) and, where it can, the look for an interrupted
send (:meth:`ApiSending.went_out`).
"""

from __future__ import annotations

import logging
from typing import Any, Generic, NoReturn, TypeVar

from crmail.errors import CrmailError, InvalidInput, SendFailed
from crmail.storage import mail, outbound, outbox
from crmail.storage.db import Database

log = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")


def message_id_of(action: outbox.Action) -> int:
    if action.message_id is None:
        raise InvalidInput(f"send action {action.id} has no message")
    return action.message_id


async def mark_sending(db: Database, action: outbox.Action, mid: int) -> None:
    payload = {**action.payload, "stage": "sending"}
    await db.write(lambda s: outbound.send_progress(s, action.id, mid, payload, "sending"))


async def handoff_refused(
    db: Database,
    action: outbox.Action,
    mid: int,
    exc: CrmailError,
    *,
    error_key: str = "last_send_error",
) -> None:
    """The server refused the message (or was not reached): nothing was delivered. Back
    to "queued" when the refusal was transient, "failed" otherwise."""
    permanent = not getattr(exc, "retryable", False)
    back = {**action.payload, "stage": "queued", error_key: exc.message}
    state = "failed" if permanent else "queued"
    error = exc.message
    await db.write(lambda s: outbound.send_progress(s, action.id, mid, back, state, error))


async def interrupted_unknown(
    db: Database, action: outbox.Action, mid: int, handed_to: str
) -> NoReturn:
    """A crash hit during the handoff and nothing tells whether it went out: "unknown"
    for the user, never sent again on its own."""
    why = (
        f"sending was interrupted while the message was being handed to {handed_to}; "
        "it may or may not have gone out, so it was not sent again automatically"
    )
    unknown = {**action.payload, "stage": "queued"}
    await db.write(lambda s: outbound.send_progress(s, action.id, mid, unknown, "unknown", why))
    raise SendFailed(why, permanent=True)


class ApiSending(Generic[ClientT]):
    """Sending through a provider's API, which files the Sent copy itself (crmail never
    appends one): the copy comes back through the provider's changes and is recognised
    by its Message-ID as the message the CRM stored when it was queued."""

    #: who the message is handed to, in the words of an interrupted send
    handed_to = "the provider"

    def __init__(self, db: Database, account: mail.AccountInfo, client: ClientT) -> None:
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

    async def check(self, action: outbox.Action, raw: bytes) -> None:
        """Refuse, before anything is sent, what the provider would refuse."""

    async def hand_off(self, action: outbox.Action, raw: bytes) -> dict[str, Any]:
        """Hand the message to the provider: what to add to the "sent" payload."""
        raise NotImplementedError

    async def went_out(self, action: outbox.Action, mid: int) -> bool:
        """Whether an interrupted send is found in the mailbox (False: cannot tell)."""
        return False

    async def _send(self, action: outbox.Action) -> None:
        mid = message_id_of(action)
        raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
        await self.check(action, raw)
        await mark_sending(self.db, action, mid)
        try:
            extra = await self.hand_off(action, raw)
        except CrmailError as exc:
            await handoff_refused(self.db, action, mid, exc)
            raise
        await self._record_sent(action, mid, extra)

    async def _record_sent(self, action: outbox.Action, mid: int, extra: dict[str, Any]) -> None:
        sent = {**action.payload, "stage": "sent", **extra}
        answering = (self.account.id, self.account.user_id)
        await self.db.write(lambda s: outbound.record_sent(s, action, mid, sent, answering))

    async def _after_interrupted_send(self, action: outbox.Action) -> None:
        mid = message_id_of(action)
        if await self.went_out(action, mid):
            log.info("action %s: interrupted send found in the mailbox: it went out", action.id)
            await self._record_sent(action, mid, {})
            return
        await interrupted_unknown(self.db, action, mid, self.handed_to)
