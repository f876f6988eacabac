"""Settings → Security and Users: tokens, password changes and disabled users end access."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.api.conftest import World
from tests.web.conftest import PASSWORD, Browser, sign_in

NEW_PASSWORD = "a much better secret"
_SECRET = re.compile(r"<code class=\"secret\" data-new-token>([^<]+)</code>")

MakeBrowser = Callable[..., Browser]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signed_out(b: Browser) -> bool:
    resp = b.get("/inbox")
    return resp.status_code == 303 and resp.headers["location"].startswith("/signin")


def test_a_token_made_on_the_page_is_shown_once_and_can_be_revoked(
    web: World, browser: MakeBrowser
) -> None:
    b = browser(web.owner)
    made = b.post("/settings/security/tokens", {"name": "Zapier", "expires_in_days": "30"})
    assert made.status_code == 201
    m = _SECRET.search(made.text)
    assert m, "the new token is on the page"
    secret = m.group(1)
    assert made.headers["cache-control"] == "no-store"
    assert web.client.get("/api/me", headers=_bearer(secret)).json()["id"] == web.owner.id

    page = b.get("/settings/security")
    assert "Zapier" in page.text and secret not in page.text and secret[:8] in page.text
    token_id = next(
        t["id"]
        for t in web.client.get("/api/me/tokens", headers=web.owner.headers).json()
        if t["name"] == "Zapier"
    )
    assert b.post(f"/settings/security/tokens/{token_id}/revoke").status_code == 303
    refused = web.client.get("/api/me", headers=_bearer(secret))
    assert (refused.status_code, refused.json()["error"]["message"]) == (401, "token revoked")
    # a teammate cannot revoke it through the page either
    mate = browser(web.teammate)
    assert mate.post("/settings/security/tokens/1/revoke").status_code == 404


def test_a_nameless_token_is_refused_on_the_page(web: World, browser: MakeBrowser) -> None:
    b = browser(web.owner)
    resp = b.post("/settings/security/tokens", {"name": "  "})
    assert resp.status_code == 422 and "give the token a name" in resp.text


def test_changing_the_password_keeps_this_session_and_ends_the_others(
    web: World, browser: MakeBrowser
) -> None:
    here, elsewhere = browser(web.owner), browser(web.owner)
    wrong = here.post(
        "/settings/security/password",
        {
            "current_password": "nope",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 403 and "current password is wrong" in wrong.text
    assert not _signed_out(elsewhere)

    ok = here.post(
        "/settings/security/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert ok.status_code == 200 and "Password changed" in ok.text
    assert not _signed_out(here)
    assert _signed_out(elsewhere)
    # API tokens were not asked to go
    assert web.client.get("/api/me", headers=web.owner.headers).status_code == 200
    assert sign_in(web.client, web.owner.email).status_code == 401
    assert sign_in(web.client, web.owner.email, NEW_PASSWORD).status_code == 303


def test_changing_the_password_can_revoke_every_token(web: World, browser: MakeBrowser) -> None:
    here = browser(web.owner)
    resp = here.post(
        "/settings/security/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
            "revoke_tokens": "on",
        },
    )
    assert resp.status_code == 200
    assert web.client.get("/api/me", headers=web.owner.headers).status_code == 401


def test_a_password_change_over_the_api_ends_web_sessions_and_optionally_tokens(
    web: World, browser: MakeBrowser
) -> None:
    b = browser(web.owner)
    c, h = web.client, web.owner.headers
    wrong = c.post(
        "/api/me/password",
        json={"current_password": "nope", "new_password": NEW_PASSWORD},
        headers=h,
    )
    assert wrong.status_code == 403 and not _signed_out(b)
    short = c.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=h
    )
    assert short.status_code == 422
    ok = c.post(
        "/api/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=h,
    )
    assert ok.status_code == 204
    assert _signed_out(b)
    assert c.get("/api/me", headers=h).status_code == 200
    again = c.post(
        "/api/me/password",
        json={"current_password": NEW_PASSWORD, "new_password": PASSWORD, "revoke_tokens": True},
        headers=h,
    )
    assert again.status_code == 204
    assert c.get("/api/me", headers=h).json()["error"]["message"] == "token revoked"


def test_disabling_a_user_ends_their_session_and_tokens_and_sign_in(
    web: World, browser: MakeBrowser
) -> None:
    mate, admin = browser(web.teammate), browser(web.admin)
    users_page = admin.get("/settings/users")
    assert users_page.status_code == 200 and web.teammate.email in users_page.text

    assert admin.post(f"/settings/users/{web.teammate.id}/disable").status_code == 303
    assert _signed_out(mate)
    api = web.client.get("/api/me", headers=web.teammate.headers)
    assert api.status_code == 401
    refused = sign_in(web.client, web.teammate.email)
    assert refused.status_code == 403 and "this user is disabled" in refused.text
    # a wrong password does not tell a guesser the user is disabled
    guess = sign_in(web.client, web.teammate.email, "not the password")
    assert guess.status_code == 401 and "disabled" not in guess.text
    assert "disabled" in admin.get("/settings/users").text

    assert admin.post(f"/settings/users/{web.teammate.id}/enable").status_code == 303
    assert sign_in(web.client, web.teammate.email).status_code == 303


def test_members_do_not_manage_users(web: World, browser: MakeBrowser) -> None:
    owner = browser(web.owner)
    assert owner.get("/settings/users").status_code == 403
    assert owner.post(f"/settings/users/{web.teammate.id}/disable").status_code == 403
    assert not _signed_out(browser(web.teammate))
