"""Steps several browser tests walk the same way: signing in with a provider at the
fake OAuth server, and the account page's import reaching 100 %."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import select

from crmail.storage.models import MailAccount
from tests.browser.conftest import Crm, shot, sign_in
from tests.fakes.oauth import RunningFakeOAuth


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def sign_in_with(live: Crm, fake: RunningFakeOAuth, provider: str, **settings: object) -> None:
    """The CRM's "Connect with" ``provider`` ("google", "microsoft") goes to the fake."""
    client = fake.register(provider, f"{live.url}/oauth/{provider}/callback")
    live.services.settings = replace(
        live.services.settings,
        public_url=live.url,
        **{
            f"{provider}_client_id": client.client_id,
            f"{provider}_client_secret": client.secret,
            f"{provider}_auth_base": f"{fake.url}/{provider}",
        },
        **settings,  # type: ignore[arg-type]
    )


def connect_through_consent(
    p: object, live: Crm, company: str, consent_url: str, consent_shot: str | None = None
) -> None:
    """Signed in as the owner, "Connect with ``company``", Allow at the fake's consent
    page (at ``consent_url``), back on the new account's page."""
    sign_in(p, live.url, live.owner.email)
    p.goto(f"{live.url}/settings/email")  # type: ignore[attr-defined]
    p.click(f"button:has-text('Connect with {company}')")  # type: ignore[attr-defined]
    p.wait_for_url(consent_url)  # type: ignore[attr-defined]
    if consent_shot:
        shot(p, consent_shot)
    p.click("button:has-text('Allow')")  # type: ignore[attr-defined]
    p.wait_for_url(f"{live.url}/settings/email/accounts/*")  # type: ignore[attr-defined]


def account_of(live: Crm, email: str) -> MailAccount | None:
    return live.services.db.run(
        lambda s: s.scalar(select(MailAccount).where(MailAccount.email == email))
    )


def wait_imported(p: object) -> None:
    """The account page refreshes itself (script) until every folder's import shows
    100 % and the account is live."""

    def imported() -> bool:
        pcts = p.locator("#health .pct").all_inner_texts()  # type: ignore[attr-defined]
        return (
            bool(pcts)
            and all(t.strip() == "100%" for t in pcts)
            and "live" in p.inner_text("#health")  # type: ignore[attr-defined]
        )

    wait_until(imported, 25)


def done_in_inbox(p: object, live: Crm, subject: str, absent: str) -> None:
    """The CRM Inbox lists ``subject`` (and not ``absent``); Done is clicked on it."""
    p.goto(f"{live.url}/inbox")  # type: ignore[attr-defined]
    item = p.locator("li.item", has_text=subject)  # type: ignore[attr-defined]
    assert item.count() == 1
    assert p.locator("li.item", has_text=absent).count() == 0  # type: ignore[attr-defined]
    item.locator("button.done").click()
    p.wait_for_load_state()  # type: ignore[attr-defined]
