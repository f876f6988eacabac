"""Push notifications from mail providers (Gmail through a Pub/Sub push subscription,
Microsoft Graph's change notifications).

Gmail's endpoint is authenticated by the OIDC token Pub/Sub signs for an authenticated
push subscription, when its service account is configured
(``CRMAIL_GMAIL_PUSH_SERVICE_ACCOUNT``; :mod:`crmail.providers.gmail.pushauth`): then
every push without a valid token is refused, at ``/api/push/gmail`` and at the
path-token URL alike. Without it, a secret in the path (``CRMAIL_GMAIL_PUSH_TOKEN``, set
in the push subscription's URL) authenticates the push. Answering 204 acknowledges the
message; an unknown mailbox is acknowledged too (its account may have been removed), so
Pub/Sub does not redeliver it for a week.

Graph's endpoint has no secret in its path: each notification carries the clientState
of its subscription, checked one by one (:mod:`crmail.sync.graph.push`). It answers
202 whatever it ignored, so Graph neither retries forever nor learns which
subscriptions or accounts exist.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from crmail.api.deps import ServicesDep
from crmail.errors import InvalidInput, NotFound
from crmail.providers.gmail.pushauth import GOOGLE_CERTS_URL, GoogleKeys, PushAuthenticator
from crmail.services import Services
from crmail.storage import remote
from crmail.sync.gmail import push
from crmail.sync.graph import push as graph_push

router = APIRouter(prefix="/api/push", tags=["push"])


class PubSubMessage(BaseModel):
    data: str = ""
    messageId: str | None = None
    publishTime: str | None = None


class PubSubPush(BaseModel):
    message: PubSubMessage
    subscription: str = ""


def _authenticator(request: Request, services: Services) -> PushAuthenticator | None:
    """The push token check, when configured: one per app, so Google's keys stay cached."""
    settings = services.settings
    if not settings.gmail_push_service_account:
        return None
    auth: PushAuthenticator | None = getattr(request.app.state, "gmail_push_auth", None)
    if (
        auth is None
        or auth.audience != settings.gmail_push_jwt_audience
        or auth.service_account != settings.gmail_push_service_account
    ):
        keys = auth.keys if auth is not None else None
        if keys is None or keys.url != (settings.google_certs_url or GOOGLE_CERTS_URL):
            keys = GoogleKeys(settings.google_certs_url or GOOGLE_CERTS_URL)
        auth = PushAuthenticator(
            keys, settings.gmail_push_jwt_audience, settings.gmail_push_service_account
        )
        request.app.state.gmail_push_auth = auth
    return auth


async def _signed(request: Request, services: ServicesDep) -> bool:
    """Checks the push's bearer token when push tokens are configured (before the body
    is read: an unauthenticated sender learns nothing about it); True when it did."""
    auth = _authenticator(request, services)
    if auth is None:
        return False
    await auth.verify(request.headers.get("authorization"))
    return True


SignedDep = Annotated[bool, Depends(_signed)]


@router.post("/gmail", status_code=204, response_class=Response)
async def gmail_push_signed(body: PubSubPush, services: ServicesDep, signed: SignedDep) -> Response:
    """Gmail says a mailbox changed (an authenticated Pub/Sub push: its bearer token is
    checked): its account's worker reads the history now."""
    if not signed:
        raise NotFound("there is no push endpoint here")
    return await _wake(body, services)


@router.post("/gmail/{token}", status_code=204, response_class=Response)
async def gmail_push(
    token: str, body: PubSubPush, services: ServicesDep, signed: SignedDep
) -> Response:
    """Gmail says a mailbox changed (the secret path token, and the push's bearer token
    too when push tokens are configured): its account's worker reads the history now."""
    expected = services.settings.gmail_push_token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise NotFound("there is no push endpoint here")
    return await _wake(body, services)


async def _wake(body: PubSubPush, services: Services) -> Response:
    note = push.decode(body.message.data)
    email = note.email_address
    account_ids = await services.db.read(lambda s: remote.gmail_accounts(s, email))
    if account_ids:
        # The same wake-up as a queued action: it reaches the account's worker in
        # whichever process syncs it, and a Gmail worker reads its history on it.
        services.sync.actions_queued(account_ids)
    return Response(status_code=204)


#: Graph's validation tokens are about a hundred characters
MAX_VALIDATION_TOKEN = 1024


class TooLarge(InvalidInput):
    code = "too_large"
    http_status = 413


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"a notification batch is at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"a notification batch is at most {limit} bytes")
    return bytes(body)


@router.post(
    "/graph",
    status_code=202,
    response_class=Response,
    responses={
        200: {
            "description": "the validation handshake: the token echoed",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        202: {"description": "notifications taken (those that fail their check ignored)"},
    },
)
async def graph_notifications(
    request: Request, services: ServicesDep, validationToken: str | None = None
) -> Response:
    """Microsoft Graph's change and lifecycle notifications (and its validation
    handshake): the owning accounts' workers run a delta round now."""
    if validationToken is not None:
        # Graph waits 10 s for this echo when a subscription is created or renewed.
        if not validationToken or len(validationToken) > MAX_VALIDATION_TOKEN:
            raise InvalidInput("the validationToken is empty or too long")
        return PlainTextResponse(validationToken, headers={"X-Content-Type-Options": "nosniff"})
    body = await _body(request, graph_push.MAX_BODY)
    received = await graph_push.receive(services.db, services.box, body)
    if received.account_ids:
        services.sync.actions_queued(received.account_ids)
    return Response(status_code=202)
