"""Connect with Google in a real browser, in the Gmail API mode: consent at the fake
Google, the import's progress on the account page, then Done in the CRM Inbox removes
INBOX and UNREAD from the message in the fake Gmail."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from crmail.storage import crm
from crmail.sync.gmail.options import GmailOptions
from tests.browser import flows
from tests.browser.conftest import Crm, shot
from tests.factories import message
from tests.fakes.gmail import FakeGmail
from tests.fakes.oauth import RunningFakeOAuth
from tests.fakes.server import LoopbackServer

pytestmark = pytest.mark.browser

MAILBOX = "gina@gmail.example.test"
CUSTOMER = "buyer@client.example.test"


@pytest.fixture
def gmail() -> Iterator[tuple[FakeGmail, str]]:
    g = FakeGmail(seed=9)
    with LoopbackServer(g.app) as server:
        yield g, server.url


def test_connect_with_google_imports_through_the_gmail_api_and_done_reaches_gmail(
    live: Crm, oauth: RunningFakeOAuth, gmail: tuple[FakeGmail, str], page: object
) -> None:
    g, gmail_url = gmail
    flows.sign_in_with(live, oauth, "google", google_mail_api="gmail")
    sync = live.services.sync
    sync.options = replace(sync.options, gmail=GmailOptions(base_url=gmail_url))  # type: ignore[attr-defined]
    oauth.auto_consent = False
    oauth.user_email = MAILBOX
    box = g.add_mailbox(MAILBOX)
    # Gmail honours the access tokens Google's token endpoint hands out.
    g.authorize = lambda token: MAILBOX if token in oauth.live_access_tokens(MAILBOX) else None
    live.services.db.run(
        lambda s: crm.create_contact(s, live.workspace_id, name="Buyer", emails=[CUSTOMER])
    )
    asked = box.deliver(message(CUSTOMER, MAILBOX, "Pricing via Gmail", msgid="<g1@client.test>"))
    private = box.deliver(message("mum@family.test", MAILBOX, "Sunday lunch"))

    p = page
    flows.connect_through_consent(p, live, "Google", f"{oauth.url}/google/o/oauth2/v2/auth*")
    row = flows.account_of(live, MAILBOX)
    assert row is not None and row.provider == "gmail"
    flows.wait_imported(p)
    shot(p, "gmail-01-imported")
    raw_asked = [r for r in g.requests if "format=raw" in r.query]
    assert any(r.path.endswith(asked.id) for r in raw_asked)
    assert not any(r.path.endswith(private.id) for r in raw_asked)

    flows.done_in_inbox(p, live, "Pricing via Gmail", absent="Sunday lunch")
    shot(p, "gmail-02-done")
    flows.wait_until(lambda: not ({"INBOX", "UNREAD"} & box.messages[asked.id].labels))
