"""A Gmail API or Graph mailbox's settings are edited without any IMAP/SMTP probe: it has
no server or password, its sign-in is renewed by Connect with Google/Microsoft."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmail.providers.imap import ImapClient
from crmail.storage import crm
from crmail.storage.models import MailAccount
from tests.api.conftest import Actor, World
from tests.web.conftest import Browser, browser, web  # noqa: F401

pytestmark = pytest.mark.db

SETTINGS = {
    "gmail": {"preset": "gmail", "username": "pat@gmail.example.test", "oauth_provider": "google"},
    "graph": {
        "preset": "microsoft365",
        "username": "pat@contoso.example.test",
        "oauth_provider": "microsoft",
    },
}


@pytest.fixture
def imap_logins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every IMAP connection crmail opens (none may reach a real server from here)."""
    opened: list[str] = []

    async def connect(settings: object, *args: object, **kwargs: object) -> ImapClient:
        opened.append(str(getattr(settings, "host", "")))
        raise AssertionError("an IMAP connection was opened")

    monkeypatch.setattr(ImapClient, "connect", connect)
    yield opened


def api_mailbox(w: World, actor: Actor, provider: str) -> int:
    settings = dict(SETTINGS[provider])

    def add(s: object) -> int:
        user = crm.get_user(s, actor.workspace_id, actor.id)  # type: ignore[arg-type]
        return crm.add_account(
            s,  # type: ignore[arg-type]
            user,
            email=str(settings["username"]),
            settings={**settings, "history_days": 365},
            secret=w.services.box.seal({"refresh_token": "rt-x"}),
            provider=provider,
        ).id

    return w.services.db.run(add)


def stored(w: World, account_id: int) -> MailAccount:
    return w.services.db.run(lambda s: s.get_one(MailAccount, account_id))


@pytest.mark.parametrize("provider", ["gmail", "graph"])
def test_the_web_app_saves_an_api_mailbox_s_options_without_a_connection_test(
    web: World,  # noqa: F811
    browser: object,  # noqa: F811
    imap_logins: list[str],
    provider: str,
) -> None:
    account_id = api_mailbox(web, web.owner, provider)
    b: Browser = browser(web.owner)  # type: ignore[operator]
    page = b.get(f"/settings/email/accounts/{account_id}")
    assert page.status_code == 200
    label = "Google" if provider == "gmail" else "Microsoft"
    # Only what applies: the options, and where its sign-in is renewed; no server form.
    assert f"Connect with {label}" in page.text
    assert "Test and reconnect" not in page.text and 'name="imap_host"' not in page.text
    assert 'name="password"' not in page.text
    assert ("Extra labels to sync" in page.text) == (provider == "gmail")

    saved = b.post(
        f"/settings/email/accounts/{account_id}/options",
        {"mode": "one_way", "scope": "folders", "folders": "Clients", "archive_on_done": "on"},
    )
    assert saved.status_code == 303, saved.text
    row = stored(web, account_id)
    assert row.settings["mode"] == "one_way" and row.settings["folders"] == ["Clients"]
    assert row.provider == provider and row.settings["oauth_provider"]

    # The server form's endpoint refuses in words, without a probe.
    refused = b.post(
        f"/settings/email/accounts/{account_id}/reconnect",
        {"provider": "gmail", "email": row.email, "password": "guess"},
    )
    assert refused.status_code == 422
    assert f"signs in with {label}" in refused.text
    assert imap_logins == []


@pytest.mark.parametrize("provider", ["gmail", "graph"])
def test_the_api_patches_an_api_mailbox_without_a_connection_test(
    world: World, imap_logins: list[str], provider: str
) -> None:
    account_id = api_mailbox(world, world.owner, provider)
    path = f"/api/accounts/{account_id}"
    h = world.owner.headers
    current = world.client.get(path, headers=h).json()

    r = world.client.patch(path, json={"mode": "one_way", "folders": ["Clients"]}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "one_way"
    # A client sending the address back with the options: nothing to test either.
    r = world.client.patch(
        path, json={"email": current["email"].upper(), "scope": "folders"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "folders" and r.json()["email"] == current["email"]

    for change in (
        {"password": "guess"},
        {"imap_host": "imap.example.test"},
        {"email": "other@example.test"},
    ):
        r = world.client.patch(path, json={**change, "mode": "two_way"}, headers=h)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert "signs in with" in error["message"] and "Connect with" in error["hint"]
    assert stored(world, account_id).settings["mode"] == "one_way"  # refused as a whole

    # Resuming a disconnected one uses its stored sign-in, untested.
    assert world.client.post(f"{path}/disconnect", headers=h).status_code == 200
    r = world.client.post(f"{path}/reconnect", json={}, headers=h)
    assert r.status_code == 200, r.text
    assert stored(world, account_id).state != "disconnected"
    assert imap_logins == []
