"""Pub/Sub push authentication: the OIDC token Google signs for each push request.

A push subscription with ``--push-auth-service-account`` sends ``Authorization: Bearer
<JWT>``: RS256, signed by one of Google's keys (a JWKS at :data:`GOOGLE_CERTS_URL`,
rotated every few days), ``iss`` Google's accounts, ``aud`` the subscription's audience,
``email`` the push service account (``email_verified`` true). Any Google Cloud project
can have Google sign a token for any audience, so the service account's address is what
proves the push comes from the operator's subscription; the audience keeps tokens meant
for another endpoint out.

The keys are cached as long as Google's Cache-Control allows; a token naming a key not
in the cache fetches them again (at most once per :attr:`GoogleKeys.min_refetch`
seconds, so unknown key ids cannot make crmail hammer Google). The token itself never
reaches a message or a log line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from crmail.errors import Unauthenticated
from crmail.providers.http import get_public_json

__all__ = [
    "GOOGLE_CERTS_URL",
    "GOOGLE_ISSUERS",
    "GoogleKeys",
    "PushAuthenticator",
    "PushTokenRefused",
]

log = logging.getLogger(__name__)

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
#: seconds the keys are kept when Google's answer has no max-age
DEFAULT_KEYS_LIFETIME = 300.0
#: clock skew allowed on exp/iat (seconds)
LEEWAY = 60
#: longer tokens are refused unparsed (Google's are about 1 KB)
MAX_TOKEN = 8192

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class PushTokenRefused(Unauthenticated):
    code = "push_unauthenticated"


def max_age(cache_control: str | None) -> float | None:
    found = _MAX_AGE.search(cache_control or "")
    return float(found.group(1)) if found else None


class GoogleKeys:
    """Google's public signing keys, fetched over HTTP and cached."""

    def __init__(
        self,
        url: str = GOOGLE_CERTS_URL,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_refetch: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._clock = clock
        self.min_refetch = min_refetch
        self._keys: KeySet | None = None
        self._fresh_until = 0.0
        self._fetched_at: float | None = None
        #: fetches done (tests count them)
        self.fetches = 0

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def _fetch(self) -> KeySet:
        data, headers = await get_public_json(self._http, self.url, service="Google's key server")
        try:
            keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise PushTokenRefused("Google's signing keys could not be read") from exc
        now = self._clock()
        self.fetches += 1
        self._keys, self._fetched_at = keys, now
        lifetime = max_age(headers.get("cache-control"))
        self._fresh_until = now + (DEFAULT_KEYS_LIFETIME if lifetime is None else lifetime)
        return keys

    async def key(self, kid: str) -> Any:
        """The key named ``kid``, or None when Google has no such key (even after
        fetching the keys again, if allowed)."""
        now = self._clock()
        keys = self._keys
        if keys is None or now >= self._fresh_until:
            keys = await self._fetch()
        found = _by_kid(keys, kid)
        if found is None and (
            self._fetched_at is None or now - self._fetched_at >= self.min_refetch
        ):
            # A new key Google started signing with before our cache expired.
            found = _by_kid(await self._fetch(), kid)
        return found


def _by_kid(keys: KeySet, kid: str) -> Any:
    for key in keys.keys:
        if key.kid == kid:
            return key
    return None


@dataclass(frozen=True, slots=True)
class PushAuthenticator:
    """Checks one push request's Authorization header against the configured audience
    and service account."""

    keys: GoogleKeys
    audience: str
    service_account: str

    async def verify(self, authorization: str | None) -> None:
        """Returns when the push is Google's for this subscription; raises
        :class:`PushTokenRefused` otherwise."""
        try:
            await self._verify(authorization or "")
        except PushTokenRefused as exc:
            log.warning("Gmail push refused: %s", exc.message)
            raise

    async def _verify(self, authorization: str) -> None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise PushTokenRefused(
                "this push has no bearer token",
                hint="the Pub/Sub subscription needs --push-auth-service-account",
            )
        if len(token) > MAX_TOKEN:
            raise PushTokenRefused("the push token is too long")
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError) as exc:
            raise PushTokenRefused("the push token is not a signed JWT") from exc
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str):
            raise PushTokenRefused("the push token is not signed the way Google signs")
        key = await self.keys.key(kid)
        if key is None:
            raise PushTokenRefused("the push token is signed by a key Google does not have")
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"]).claims
        except (JoseError, ValueError) as exc:
            raise PushTokenRefused("the push token's signature is not Google's") from exc
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "values": list(GOOGLE_ISSUERS)},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            email={"essential": True, "value": self.service_account},
            email_verified={"essential": True, "value": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            name = getattr(exc, "claim", None) or "claims"
            raise PushTokenRefused(
                f"the push token's {name} is not this subscription's (wrong, missing or expired)",
                hint="check CRMAIL_GMAIL_PUSH_AUDIENCE and CRMAIL_GMAIL_PUSH_SERVICE_ACCOUNT",
            ) from exc
