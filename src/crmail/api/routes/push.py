"""Push notifications from mail providers (Gmail through a Pub/Sub push subscription).

The endpoint is authenticated by a secret in its path (``CRMAIL_GMAIL_PUSH_TOKEN``, set
in the push subscription's URL): Pub/Sub cannot send crmail's API tokens. Answering 204
acknowledges the message; an unknown mailbox is acknowledged too (its account may have
been removed), so Pub/Sub does not redeliver it for a week.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Response
from pydantic import BaseModel

from crmail.api.deps import ServicesDep
from crmail.errors import NotFound
from crmail.storage import remote
from crmail.sync.gmail import push

router = APIRouter(prefix="/api/push", tags=["push"])


class PubSubMessage(BaseModel):
    data: str = ""
    messageId: str | None = None
    publishTime: str | None = None


class PubSubPush(BaseModel):
    message: PubSubMessage
    subscription: str = ""


@router.post("/gmail/{token}", status_code=204, response_class=Response)
async def gmail_push(token: str, body: PubSubPush, services: ServicesDep) -> Response:
    """Gmail says a mailbox changed: its account's worker reads the history now."""
    expected = services.settings.gmail_push_token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise NotFound("there is no push endpoint here")
    note = push.decode(body.message.data)
    email = note.email_address
    account_ids = await services.db.read(lambda s: remote.gmail_accounts(s, email))
    if account_ids:
        # The same wake-up as a queued action: it reaches the account's worker in
        # whichever process syncs it, and a Gmail worker reads its history on it.
        services.sync.actions_queued(account_ids)
    return Response(status_code=204)
