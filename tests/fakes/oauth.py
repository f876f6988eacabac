"""A stateful fake of Google's and Microsoft's OAuth 2.0 endpoints (an ASGI app).

What it keeps like the real ones (docs/providers/*.md, shared provider-apis notes):

- authorize: the client and its registered redirect URI must match exactly (else an
  error page, no redirect); PKCE S256 required; ``state`` echoed; a consent page with
  Allow / Deny buttons, or consent at once when :attr:`FakeOAuth.auto_consent`;
  Microsoft's admin-consent refusal (AADSTS65001) injectable.
- token: ``authorization_code`` (single use, the same redirect_uri, the PKCE verifier
  checked against the challenge, client secret checked) and ``refresh_token``;
  ``invalid_grant`` for a revoked, unknown or reused grant; Google gives a refresh token
  only with ``access_type=offline`` and never rotates it; Microsoft needs the
  ``offline_access`` scope and rotates the refresh token on every refresh (the old one
  stays good, as Microsoft's do for a while); ``expires_in``; an id_token naming the
  mailbox (``email``; Microsoft also ``preferred_username``).
- Google's RFC 7009 ``/revoke``; :meth:`FakeOAuth.revoke_user` for "the user removed the
  app" / "password changed" on either provider.
- RFC 7662 ``/introspect`` for Dovecot's oauth2 passdb: live access tokens are active,
  with ``username`` the mailbox.

Mount paths: ``/google`` (Google's URLs below it) and ``/microsoft/{tenant}/oauth2/v2.0``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import OctKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.server import LoopbackServer


@dataclass
class Client:
    client_id: str
    secret: str
    redirect_uri: str


@dataclass
class Code:
    provider: str
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    email: str
    offline: bool
    expires_at: float
    used: bool = False


@dataclass
class Grant:
    provider: str
    client_id: str
    email: str
    scope: str
    revoked: bool = False
    refresh_tokens: list[str] = field(default_factory=list)


@dataclass
class Access:
    email: str
    expires_at: float
    grant: Grant


class FakeOAuth:
    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        #: who is signed in at the provider (the mailbox a consent grants)
        self.user_email = "someone@example.test"
        #: consent without showing the page (the browser test clicks instead)
        self.auto_consent = True
        #: Microsoft answers the authorize step with "needs admin approval"
        self.admin_consent_required = False
        self.expires_in = 3600
        self.codes: dict[str, Code] = {}
        self.refresh: dict[str, Grant] = {}
        self.access: dict[str, Access] = {}
        #: refresh-token requests answered (any outcome), per provider
        self.refresh_requests: dict[str, int] = {"google": 0, "microsoft": 0}
        self.introspected: list[str] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/google/o/oauth2/v2/auth", self.authorize_google),
                Route("/google/token", self.token_google, methods=["POST"]),
                Route("/google/revoke", self.revoke_google, methods=["POST"]),
                Route("/microsoft/{tenant}/oauth2/v2.0/authorize", self.authorize_microsoft),
                Route(
                    "/microsoft/{tenant}/oauth2/v2.0/token", self.token_microsoft, methods=["POST"]
                ),
                Route("/consent", self.consent, methods=["POST"]),
                Route("/introspect", self.introspect, methods=["POST"]),
            ]
        )
        self.url = ""

    # --- test controls ------------------------------------------------------------------

    def register(self, provider: str, redirect_uri: str) -> Client:
        client = Client(
            f"{provider}-client-{secrets.token_hex(4)}", secrets.token_hex(16), redirect_uri
        )
        self.clients[client.client_id] = client
        return client

    def revoke_user(self, email: str) -> None:
        """The user removed the app's access (or changed the password): every grant of
        ``email`` stops refreshing and its access tokens stop working."""
        with self._lock:
            for g in self.refresh.values():
                if g.email == email:
                    g.revoked = True

    def expire_access_tokens(self) -> None:
        with self._lock:
            for a in self.access.values():
                a.expires_at = 0

    def live_access_tokens(self, email: str) -> list[str]:
        now = time.time()
        return [
            t
            for t, a in self.access.items()
            if a.email == email and a.expires_at > now and not a.grant.revoked
        ]

    # --- authorize ----------------------------------------------------------------------

    async def authorize_google(self, request: Request) -> Response:
        return self._authorize(request, "google")

    async def authorize_microsoft(self, request: Request) -> Response:
        return self._authorize(request, "microsoft")

    def _authorize(self, request: Request, provider: str) -> Response:
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        if client is None or client.client_id.split("-")[0] != provider:
            return HTMLResponse("Error 401: invalid_client", status_code=401)
        if q.get("redirect_uri") != client.redirect_uri:
            # Never redirected: the URI is not one the client registered.
            return HTMLResponse("Error 400: redirect_uri_mismatch", status_code=400)
        back = {"state": q.get("state", "")}
        if q.get("response_type") != "code":
            return self._back(client, error="unsupported_response_type", **back)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self._back(
                client, error="invalid_request", error_description="PKCE S256 required", **back
            )
        if provider == "microsoft" and self.admin_consent_required:
            return self._back(
                client,
                error="consent_required",
                error_description=(
                    "AADSTS65001: The user or administrator has not consented to use the "
                    "application. Send an interactive authorization request for this user "
                    "and resource."
                ),
                **back,
            )
        fields = {
            "provider": provider,
            "client_id": client.client_id,
            "challenge": q["code_challenge"],
            "scope": q.get("scope", ""),
            "state": q.get("state", ""),
            "offline": "1"
            if (
                q.get("access_type") == "offline"
                if provider == "google"
                else "offline_access" in q.get("scope", "").split()
            )
            else "",
        }
        if self.auto_consent:
            return self._grant_code(client, fields)
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items()
        )
        page = (
            f"<!doctype html><title>Fake {provider} consent</title>"
            f"<h1>{html.escape(self.user_email)}: allow crmail to read and send your mail?</h1>"
            f'<form method="post" action="/consent">{hidden}'
            '<button name="answer" value="allow">Allow</button>'
            '<button name="answer" value="deny">Deny</button></form>'
        )
        return HTMLResponse(page)

    async def consent(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client = self.clients[form["client_id"]]
        if form.get("answer") != "allow":
            return self._back(
                client,
                error="access_denied",
                error_description="The user denied",
                state=form["state"],
            )
        return self._grant_code(client, form)

    def _grant_code(self, client: Client, fields: dict[str, str]) -> Response:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = Code(
                fields["provider"],
                client.client_id,
                client.redirect_uri,
                fields["challenge"],
                fields["scope"],
                self.user_email,
                bool(fields.get("offline")),
                time.time() + 600,
            )
        return self._back(client, code=code, state=fields["state"])

    def _back(self, client: Client, **params: str) -> Response:
        return RedirectResponse(f"{client.redirect_uri}?{urlencode(params)}", status_code=302)

    # --- token --------------------------------------------------------------------------

    async def token_google(self, request: Request) -> Response:
        return await self._token(request, "google")

    async def token_microsoft(self, request: Request) -> Response:
        return await self._token(request, "microsoft")

    async def _token(self, request: Request, provider: str) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client = self.clients.get(form.get("client_id", ""))
        if client is None or not secrets.compare_digest(
            form.get("client_secret", ""), client.secret
        ):
            return _error("invalid_client", "client authentication failed", 401)
        kind = form.get("grant_type")
        with self._lock:
            if kind == "authorization_code":
                return self._exchange(provider, client, form)
            if kind == "refresh_token":
                self.refresh_requests[provider] += 1
                return self._refresh(provider, client, form)
        return _error("unsupported_grant_type", f"{kind}")

    def _exchange(self, provider: str, client: Client, form: dict[str, str]) -> Response:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.used or code.expires_at < time.time():
            return _error("invalid_grant", "the code is invalid, expired or already used")
        if code.client_id != client.client_id:
            return _error("invalid_grant", "the code was issued to another client")
        code.used = True  # one attempt, right or wrong, as the real ones
        if form.get("redirect_uri") != code.redirect_uri:
            return _error("invalid_grant", "redirect_uri mismatch")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if not verifier or challenge.rstrip(b"=").decode() != code.challenge:
            return _error("invalid_grant", "PKCE verification failed")
        grant = Grant(provider, client.client_id, code.email, code.scope)
        body = self._access(grant)
        if code.offline:
            body["refresh_token"] = self._new_refresh(grant)
        if "openid" in code.scope.split():
            body["id_token"] = self._id_token(provider, client, code.email)
        return JSONResponse(body)

    def _refresh(self, provider: str, client: Client, form: dict[str, str]) -> Response:
        grant = self.refresh.get(form.get("refresh_token", ""))
        if grant is None or grant.revoked or grant.client_id != client.client_id:
            return _error("invalid_grant", "Token has been expired or revoked.")
        body = self._access(grant)
        if provider == "microsoft":
            body["refresh_token"] = self._new_refresh(grant)  # rotates every time
        return JSONResponse(body)

    def _access(self, grant: Grant) -> dict[str, object]:
        token = "at-" + secrets.token_urlsafe(24)
        self.access[token] = Access(grant.email, time.time() + self.expires_in, grant)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": grant.scope,
        }

    def _new_refresh(self, grant: Grant) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        grant.refresh_tokens.append(token)
        self.refresh[token] = grant
        return token

    def _id_token(self, provider: str, client: Client, email: str) -> str:
        claims: dict[str, object] = {
            "iss": "https://accounts.google.com"
            if provider == "google"
            else "https://login.microsoftonline.com/fake-tenant/v2.0",
            "aud": client.client_id,
            "sub": hashlib.sha256(email.encode()).hexdigest()[:20],
            "email": email,
            "iat": int(time.time()),
            "exp": int(time.time()) + 3600,
        }
        if provider == "microsoft":
            claims["preferred_username"] = email
        return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(client.secret))

    async def revoke_google(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", ""))
        with self._lock:
            grant = self.refresh.get(token) or (a.grant if (a := self.access.get(token)) else None)
            if grant is not None:
                grant.revoked = True
        return Response(status_code=200)

    async def introspect(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", ""))
        self.introspected.append(token)
        a = self.access.get(token)
        if a is None or a.expires_at <= time.time() or a.grant.revoked:
            return JSONResponse({"active": False})
        return JSONResponse({"active": True, "username": a.email})


def _error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class RunningFakeOAuth(FakeOAuth):
    """The fake served on loopback: ``with RunningFakeOAuth() as fake: fake.url``."""

    def __enter__(self) -> RunningFakeOAuth:
        self._server = LoopbackServer(self.app).__enter__()
        self.url = self._server.url
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"
