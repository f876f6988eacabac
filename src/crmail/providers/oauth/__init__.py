"""OAuth 2.0 sign-in to mail providers (Google, Microsoft): the provider descriptions,
the Authlib client, and the access-token keeper the sync worker logs in through.

Foreign errors (Authlib's, httpx's) are translated into :mod:`crmail.errors` here.
"""

from crmail.providers.oauth.client import (
    AdminConsentRequired,
    Grant,
    GrantRevoked,
    OAuthClient,
    PendingAuthorization,
    SignInRefused,
    authorize_error,
)
from crmail.providers.oauth.registry import (
    GOOGLE,
    MICROSOFT,
    OAuthProvider,
    configured_providers,
    provider_for,
)
from crmail.providers.oauth.tokens import AccessToken, StoredTokens, TokenKeeper, TokenStore

__all__ = [
    "GOOGLE",
    "MICROSOFT",
    "AccessToken",
    "AdminConsentRequired",
    "Grant",
    "GrantRevoked",
    "OAuthClient",
    "OAuthProvider",
    "PendingAuthorization",
    "SignInRefused",
    "StoredTokens",
    "TokenKeeper",
    "TokenStore",
    "authorize_error",
    "configured_providers",
    "provider_for",
]
