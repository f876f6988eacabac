"""Connect with Google in the Gmail API mode (the default): the callback creates a
``gmail`` account, and its worker syncs through the Gmail API with the OAuth layer's
tokens (the fake OAuth server's access tokens, honoured by the fake Gmail)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from crmail.storage.models import MailAccount
from crmail.sync.gmail.options import GmailOptions
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.oauth import token_keeper
from crmail.sync.worker import WorkerOptions
from crmail.sync.workers import worker_for
from tests.api.conftest import World
from tests.fakes.gmail import FakeGmail
from tests.fakes.oauth import RunningFakeOAuth
from tests.fakes.server import LoopbackServer
from tests.web.test_oauth_connect import MAILBOX, SENDER, add_contact, connect, fake, oauth_web

pytestmark = pytest.mark.db

__all__ = ["fake", "oauth_web"]  # fixtures shared with the IMAP-mode tests


@pytest.fixture(scope="module")
def gmail() -> Iterator[tuple[FakeGmail, str]]:
    g = FakeGmail(seed=5)
    with LoopbackServer(g.app) as server:
        yield g, server.url


async def test_connect_with_google_creates_a_gmail_api_account_that_syncs(
    oauth_web: World, browser: object, fake: RunningFakeOAuth, gmail: tuple[FakeGmail, str]
) -> None:
    w = oauth_web
    w.services.settings = replace(w.services.settings, google_mail_api="gmail")
    fake.user_email = MAILBOX
    g, url = gmail
    box = g.add_mailbox(MAILBOX)
    add_contact(w)
    box.deliver(
        f"From: {SENDER}\r\nTo: {MAILBOX}\r\nSubject: via the API\r\n"
        "Message-ID: <api-1@t>\r\n\r\nhi\r\n".encode()
    )
    b = browser(w.owner)  # type: ignore[operator]

    account_id = connect(b)

    row = w.services.db.run(lambda s: s.get_one(MailAccount, account_id))
    assert row.provider == "gmail"
    assert row.settings["oauth_provider"] == "google"
    assert not any(k.startswith(("imap_", "smtp_")) for k in row.settings)
    s = w.services
    options = WorkerOptions(
        tokens=token_keeper(s.settings, s.db, s.box), gmail=GmailOptions(base_url=url)
    )
    worker = await worker_for(s.db, s.box, account_id, options)
    assert isinstance(worker, GmailWorker)
    # Gmail accepts the access token Google's token endpoint issued at the callback.
    for token in fake.live_access_tokens(MAILBOX):
        g.grant(token, MAILBOX)
    await worker.run_once()
    state = s.db.run(lambda x: x.get_one(MailAccount, account_id).state)
    assert state == "live"
    assert worker.ingest is not None and worker.ingest.raw_fetched == 1


def test_the_gmail_api_mode_asks_google_for_the_narrower_scope(oauth_web: World) -> None:
    from crmail.providers.oauth import provider_for

    api_mode = replace(oauth_web.services.settings, google_mail_api="gmail")
    imap_mode = replace(oauth_web.services.settings, google_mail_api="imap")
    assert "https://www.googleapis.com/auth/gmail.modify" in provider_for(api_mode, "google").scopes
    assert (
        "https://www.googleapis.com/auth/calendar.events" in provider_for(api_mode, "google").scopes
    )
    assert "https://mail.google.com/" not in provider_for(api_mode, "google").scopes
    assert "https://mail.google.com/" in provider_for(imap_mode, "google").scopes
