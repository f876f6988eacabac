"""Google's side of an authenticated Pub/Sub push: the signing keys (served as a JWKS,
like https://www.googleapis.com/oauth2/v3/certs, with Cache-Control max-age) and the
OIDC token each push carries (RS256, ``iss`` accounts.google.com, ``aud`` the
subscription's audience, ``email`` its service account, ``email_verified``, ``exp`` an
hour on).

Keys rotate as Google's do (:meth:`PushSigner.rotate`): the new key signs, the old one
stays published for a while.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

CERTS_PATH = "/oauth2/v3/certs"
SERVICE_ACCOUNT = "crmail-push@fake-project.iam.gserviceaccount.com"


def _new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(20), "use": "sig"})


@dataclass
class PushSigner:
    #: the subscription's push auth: who signs, for which audience (None: pushes carry
    #: no token, as a subscription without --push-auth-service-account)
    audience: str | None = None
    service_account: str = SERVICE_ACCOUNT
    #: seconds in the JWKS answer's Cache-Control max-age
    max_age: int = 3600
    #: made on first use (a fake that never signs spends no time on RSA)
    keys: list[RSAKey] = field(default_factory=list)
    #: JWKS requests answered
    certs_requests: int = 0

    @property
    def signing_key(self) -> RSAKey:
        if not self.keys:
            self.keys.append(_new_key())
        return self.keys[-1]

    def rotate(self) -> RSAKey:
        """A new key signs from now on; the old ones stay published."""
        self.signing_key  # noqa: B018 (the first key exists before the new one)
        self.keys.append(_new_key())
        return self.signing_key

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": self.audience,
            "azp": "1234567890",
            "sub": "1234567890",
            "email": self.service_account,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def sign(
        self, claims: dict[str, Any] | None = None, *, key: RSAKey | None = None, **changes: Any
    ) -> str:
        """A push token as Google signs one; ``changes`` alter the claims (None drops one)."""
        key = key or self.signing_key
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, claims or self.claims(**changes), key)

    def jwks(self) -> dict[str, Any]:
        self.signing_key  # noqa: B018 (a key is published before anything is signed)
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    async def certs(self, request: Request) -> Response:
        self.certs_requests += 1
        return JSONResponse(
            self.jwks(),
            headers={"Cache-Control": f"public, max-age={self.max_age}, must-revalidate"},
        )
