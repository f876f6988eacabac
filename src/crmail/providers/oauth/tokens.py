"""Fresh access tokens for the sync worker's XOAUTH2 logins.

An access token is used while it has more than ``early`` seconds to live, refreshed
otherwise, and refreshed at once when a server refused it (the caller says which one).
Refreshes of one account are serialized in the process by a lock, and across processes
by a compare-and-set on the stored tokens' version: the process that loses the race
takes the winner's tokens, so no process stores a refresh token another has replaced
(Microsoft rotates them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from crmail.providers.oauth.client import Grant, GrantRevoked, OAuthClient

#: refresh this many seconds before the provider's expiry
REFRESH_EARLY = 300.0


@dataclass(frozen=True, slots=True)
class StoredTokens:
    provider: str
    refresh_token: str = field(repr=False)
    access_token: str | None = field(repr=False)
    #: epoch seconds; 0 when unknown
    expires_at: float
    #: opaque version of what is stored (the compare-and-set compares it)
    version: bytes = field(repr=False)


class TokenStore(Protocol):
    async def load(self, account_id: int) -> StoredTokens:
        """The account's tokens as stored now."""

    async def replace(self, account_id: int, version: bytes, grant: Grant) -> bytes | None:
        """Store ``grant`` if the stored version is still ``version``; the new version,
        or None when another refresh got there first."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str = field(repr=False)
    #: the stored version this token belongs to (a refusal is recorded against it)
    version: bytes = field(repr=False)


class TokenKeeper:
    def __init__(
        self,
        store: TokenStore,
        client_for: Callable[[str], OAuthClient],
        *,
        early: float = REFRESH_EARLY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client_for = client_for
        self.early = early
        self.clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        #: refreshes done (a figure for tests and the logs)
        self.refreshes = 0

    def _lock(self, account_id: int) -> asyncio.Lock:
        return self._locks.setdefault(account_id, asyncio.Lock())

    def _usable(self, t: StoredTokens, refused: str | None) -> bool:
        return (
            bool(t.access_token)
            and t.access_token != refused
            and (t.expires_at - self.early > self.clock())
        )

    async def access_token(self, account_id: int, *, refused: str | None = None) -> AccessToken:
        """A token with at least ``early`` seconds to live, not the ``refused`` one.

        Raises :class:`~crmail.providers.oauth.client.GrantRevoked` (an AuthFailed) when
        the provider no longer accepts the refresh token.
        """
        async with self._lock(account_id):
            current = await self.store.load(account_id)
            if self._usable(current, refused):
                assert current.access_token is not None
                return AccessToken(current.access_token, current.version)
            try:
                grant = await self.client_for(current.provider).refresh(current.refresh_token)
            except GrantRevoked as exc:
                exc.version = current.version
                raise
            self.refreshes += 1
            version = await self.store.replace(account_id, current.version, grant)
            if version is not None:
                return AccessToken(grant.access_token, version)
            # Another process refreshed meanwhile: its tokens are the stored ones.
            winner = await self.store.load(account_id)
            if winner.access_token and winner.access_token != refused:
                return AccessToken(winner.access_token, winner.version)
            return AccessToken(grant.access_token, winner.version)
