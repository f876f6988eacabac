"""Connect with Google in a real browser: the button's form post may leave for the
provider (the page's CSP allows exactly its origin), the fake's consent page is clicked,
and the callback comes back signed in (the SameSite=Lax session cookie travels)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Crm, shot
from tests.browser.flows import account_of, connect_through_consent, sign_in_with
from tests.fakes.oauth import RunningFakeOAuth

pytestmark = pytest.mark.browser

MAILBOX = "olivia@gmail.example.test"


def test_connect_with_google_through_the_consent_page(
    live: Crm, oauth: RunningFakeOAuth, page: object
) -> None:
    sign_in_with(live, oauth, "google")
    oauth.auto_consent = False
    oauth.user_email = MAILBOX
    p = page
    connect_through_consent(
        p, live, "Google", f"{oauth.url}/google/o/oauth2/v2/auth*", consent_shot="oauth-consent"
    )
    assert MAILBOX in p.content()  # type: ignore[attr-defined]
    shot(p, "oauth-connected")
    row = account_of(live, MAILBOX)
    assert row is not None and row.settings["oauth_provider"] == "google"
    assert row.user_id == live.owner.id
