"""Connect with Google in a real browser: the button's form post may leave for the
provider (the page's CSP allows exactly its origin), the fake's consent page is clicked,
and the callback comes back signed in (the SameSite=Lax session cookie travels)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select

from crmail.storage.models import MailAccount
from tests.browser.conftest import Crm, shot, sign_in
from tests.fakes.oauth import RunningFakeOAuth

pytestmark = pytest.mark.browser

MAILBOX = "olivia@gmail.example.test"


@pytest.fixture
def fake() -> Iterator[RunningFakeOAuth]:
    with RunningFakeOAuth() as f:
        yield f


def test_connect_with_google_through_the_consent_page(
    live: Crm, fake: RunningFakeOAuth, page: object
) -> None:
    client = fake.register("google", f"{live.url}/oauth/google/callback")
    live.services.settings = replace(
        live.services.settings,
        public_url=live.url,
        google_client_id=client.client_id,
        google_client_secret=client.secret,
        google_auth_base=f"{fake.url}/google",
    )
    fake.auto_consent = False
    fake.user_email = MAILBOX
    p = page
    sign_in(p, live.url, live.owner.email)
    p.goto(f"{live.url}/settings/email")  # type: ignore[attr-defined]
    p.click("button:has-text('Connect with Google')")  # type: ignore[attr-defined]
    p.wait_for_url(f"{fake.url}/google/o/oauth2/v2/auth*")  # type: ignore[attr-defined]
    shot(p, "oauth-consent")
    p.click("button:has-text('Allow')")  # type: ignore[attr-defined]
    p.wait_for_url(f"{live.url}/settings/email/accounts/*")  # type: ignore[attr-defined]
    assert MAILBOX in p.content()  # type: ignore[attr-defined]
    shot(p, "oauth-connected")
    row = live.services.db.run(
        lambda s: s.scalar(select(MailAccount).where(MailAccount.email == MAILBOX))
    )
    assert row is not None and row.settings["oauth_provider"] == "google"
    assert row.user_id == live.owner.id
