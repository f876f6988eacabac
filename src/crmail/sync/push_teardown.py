"""Stopping an account's push at its provider when the account is disconnected or removed
(the use-case the API and the web app share).

A Microsoft Graph account has a change-notification subscription, a Gmail account a
``users.watch``: left alone they would go on posting to crmail's endpoint (for up to 7
days) about a mailbox nobody syncs. So the owner's disconnect or delete asks the provider
to stop them: Graph's ``DELETE /subscriptions/{id}``, Gmail's ``users.stop``.

Best effort: the disconnect or delete happens whatever the provider says (the endpoint
ignores notifications of unknown subscriptions anyway, and a subscription expires on
its own). The outcome is logged and, for a disconnected account, kept in its settings
(``push_stopped``). Credentials are read before a delete, since the row goes with them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crmail.errors import CrmailError
from crmail.providers import gmail, graph
from crmail.storage import accounts, graph_push, mail
from crmail.sync.oauth import token_keeper

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crmail.services import Services
    from crmail.storage.crm import UserInfo

log = logging.getLogger(__name__)

#: how long a disconnect or delete waits for the provider before giving up on it
TEARDOWN_TIMEOUT = 10.0

STOPPED, ALREADY_GONE = "stopped", "already gone"


@dataclass(frozen=True, slots=True)
class PushTarget:
    """What is needed to stop an account's push, read while the account still exists."""

    account_id: int
    provider: str
    access_token: str | None
    #: Graph's subscription id (None for Gmail)
    subscription_id: str | None
    #: why the token could not be had (the outcome, then)
    token_problem: str | None = None


async def push_target(services: Services, user: UserInfo, account_id: int) -> PushTarget | None:
    """The account's push to stop, or None (no push: IMAP, no subscription, no topic).

    :raises NotFound: not an account ``user`` may change (as the disconnect would).
    """

    def read(s: Session) -> tuple[mail.AccountInfo, str | None]:
        accounts.owned(s, user, account_id)
        stored = graph_push.of_account(s, account_id)
        return mail.account_info(s, account_id), stored.subscription_id if stored else None

    account, subscription_id = await services.db.read(read)
    if account.provider == "graph" and subscription_id:
        pass
    elif account.provider == "gmail" and services.settings.gmail_push_topic:
        subscription_id = None
    else:
        return None
    try:
        token = await _access_token(services, account)
    except CrmailError as exc:
        return PushTarget(account_id, account.provider, None, subscription_id, exc.message)
    return PushTarget(account_id, account.provider, token, subscription_id)


async def _access_token(services: Services, account: mail.AccountInfo) -> str | None:
    if account.settings.get("oauth_provider"):
        keeper = token_keeper(services.settings, services.db, services.box)
        return (await keeper.access_token(account.id)).token
    return services.box.open(account.secret).get("oauth2_token")


async def stop_push(services: Services, target: PushTarget) -> str:
    """Ask the provider to stop the push: the outcome, in words."""
    try:
        outcome = await asyncio.wait_for(_stop(services, target), TEARDOWN_TIMEOUT)
    except CrmailError as exc:
        outcome = f"failed: {exc.message}"
    except TimeoutError:
        outcome = f"failed: no answer within {TEARDOWN_TIMEOUT:.0f} s"
    log.info("account %s: push stopped at the provider: %s", target.account_id, outcome)
    return outcome


async def _stop(services: Services, target: PushTarget) -> str:
    token = target.access_token
    if not token:
        return f"failed: {target.token_problem or 'no access token'}"

    async def access() -> str:
        return token

    s = services.settings
    if target.provider == "graph":
        assert target.subscription_id is not None
        url = s.graph_api_url or graph.DEFAULT_BASE_URL
        async with graph.GraphClient(access, base_url=url) as graph_client:
            deleted = await graph_client.delete_subscription(target.subscription_id)
        return STOPPED if deleted else ALREADY_GONE
    url = s.gmail_api_url or gmail.DEFAULT_BASE_URL
    async with gmail.GmailClient(access, base_url=url) as gmail_client:
        await gmail_client.stop()
    return STOPPED


async def disconnect(services: Services, user: UserInfo, account_id: int) -> None:
    """Stop syncing the account (:func:`crmail.storage.accounts.disconnect`), then its
    push at the provider; the outcome is kept in the account's settings."""
    target = await push_target(services, user, account_id)
    await services.db.write(lambda s: accounts.disconnect(s, user, account_id))
    services.sync.accounts_changed()
    if target is None:
        return
    outcome = await stop_push(services, target)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    await services.db.write(lambda s: accounts.push_stopped(s, account_id, outcome, at))


async def delete(services: Services, user: UserInfo, account_id: int) -> None:
    """Forget the account (:func:`crmail.storage.accounts.delete_account`), then stop
    its push at the provider with the credentials read before."""
    target = await push_target(services, user, account_id)
    await services.db.write(lambda s: accounts.delete_account(s, user, account_id))
    services.sync.accounts_changed()
    if target is not None:
        await stop_push(services, target)
