"""Request dependencies: the shared services and the authenticated user."""

from __future__ import annotations

import logging
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crmail.errors import StorageError, Unauthenticated
from crmail.services import Services
from crmail.storage import auth_cache, crm, tokens
from crmail.storage.crm import UserInfo

log = logging.getLogger(__name__)

# auto_error=False: a missing header must answer our own 401 shape, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    description="an API token of the user (Settings → API tokens, or `crmail user tokens create`)",
)


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain def dependency on its thread pool, a hop per request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_user(
    services: ServicesDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserInfo:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Unauthenticated(
            "missing API token", hint="send the header 'Authorization: Bearer <token>'"
        )
    token = creds.credentials
    db = services.db
    hit = auth_cache.get(db.url, token)
    if hit is None:
        user, checked = await db.read(
            lambda s: auth_cache.cached_check(db.url, token, lambda: crm.user_for_token(s, token))
        )
    else:
        user, checked = cast(UserInfo, hit[0]), hit[1]
    if checked.stale and await record_use(services, checked.token_id):
        auth_cache.mark_recorded(db.url, token)
    return user


async def record_use(services: Services, token_id: int) -> bool:
    """Note the token's last use, best effort: it is bookkeeping shown on the token list,
    and a database busy elsewhere (a held lock, a full disk) must not fail the request
    the token was checked for. The next request a minute later tries again."""
    try:
        await services.db.write(lambda s: tokens.touch(s, token_id))
    except StorageError as exc:
        log.debug("last use of API token %s not recorded: %s", token_id, exc.message)
        return False
    return True


CurrentUser = Annotated[UserInfo, Depends(current_user)]
