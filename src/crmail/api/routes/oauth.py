"""Connect with Google / Microsoft through the API: what the web app's buttons do.

The API starts the sign-in and hands back the provider's consent URL; the user opens
it in a browser signed in to crmail's web app as the same user, and the provider's
callback (a web route) creates or reconnects the account.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.providers.oauth import configured_providers
from crmail.storage.oauth import STATE_TTL
from crmail.sync import oauth

router = APIRouter(prefix="/api", tags=["mail accounts"])


class OAuthProviderOut(BaseModel):
    key: str
    label: str
    #: the redirect URI to register with the provider
    redirect_uri: str
    scopes: list[str]


class OAuthStartOut(BaseModel):
    #: open in a browser signed in to crmail as the same user
    authorization_url: str
    #: seconds the sign-in may take before it must be started again
    expires_in: int


@router.get("/oauth/providers")
async def oauth_providers(user: CurrentUser, services: ServicesDep) -> list[OAuthProviderOut]:
    """The one-click sign-ins this server offers (those an administrator configured)."""
    return [
        OAuthProviderOut(
            key=p.key, label=p.label, redirect_uri=p.redirect_uri, scopes=list(p.scopes)
        )
        for p in configured_providers(services.settings)
    ]


@router.post("/accounts/oauth/{provider}/start", status_code=201)
async def start_oauth(provider: str, user: CurrentUser, services: ServicesDep) -> OAuthStartOut:
    """Start Connect with ``provider`` (google | microsoft) for the calling user."""
    url = await oauth.start_sign_in(services, user, provider, session_token=None)
    return OAuthStartOut(authorization_url=url, expires_in=int(STATE_TTL.total_seconds()))
