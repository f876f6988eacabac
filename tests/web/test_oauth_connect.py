"""Connect with Google / Microsoft, end to end: the web app's button, the fake provider's
consent and token endpoints (tests/fakes/oauth.py), the callback creating the account,
and the sync worker logging in to a real Dovecot over XOAUTH2 with the fake's access
tokens (Dovecot checks them by RFC 7662 introspection at the fake)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from crmail.errors import AuthFailed
from crmail.storage import accounts, crm, mail, outbound
from crmail.storage.models import MailAccount, Message, OAuthState, Placement
from crmail.sync.oauth import REFRESH, token_keeper
from crmail.sync.worker import AccountWorker, WorkerOptions
from tests.api.conftest import World
from tests.fakes.oauth import RunningFakeOAuth
from tests.servers import Dovecot, SmtpRelay

pytestmark = pytest.mark.db

PUBLIC = "http://testserver"
MAILBOX = "pat@gmail.example.test"
MS_MAILBOX = "kim@contoso.example.test"
SENDER = "client@customer.example.test"


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFakeOAuth]:
    with RunningFakeOAuth() as f:
        yield f


@pytest.fixture(scope="module")
def oauth_dovecot(fake: RunningFakeOAuth) -> Iterator[Dovecot]:
    """Dovecot checking the fake's tokens for IMAP and SMTP submission (which relays
    back into Dovecot's LMTP)."""
    server = Dovecot(oauth2_introspection_url=fake.introspection_url)
    relay = SmtpRelay(server.host, server.lmtp_port).start()
    server.submission_relay = (relay.host, relay.port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        relay.stop()


@pytest.fixture
def oauth_web(web: World, fake: RunningFakeOAuth) -> World:
    """The web world with Google and Microsoft configured against the fake."""
    google = fake.register("google", f"{PUBLIC}/oauth/google/callback")
    microsoft = fake.register("microsoft", f"{PUBLIC}/oauth/microsoft/callback")
    web.services.settings = replace(
        web.services.settings,
        public_url=PUBLIC,
        google_client_id=google.client_id,
        google_client_secret=google.secret,
        google_auth_base=f"{fake.url}/google",
        microsoft_client_id=microsoft.client_id,
        microsoft_client_secret=microsoft.secret,
        microsoft_tenant="organizations",
        microsoft_auth_base=f"{fake.url}/microsoft",
        google_mail_api="imap",  # these tests follow IMAP + SMTP over XOAUTH2
        microsoft_mail_api="imap",
    )
    fake.auto_consent = True
    fake.admin_consent_required = False
    fake.expires_in = 3600
    return web


def consent(b: Any, provider: str = "google") -> str:
    """Click "Connect with <provider>", consent at the fake: the callback path to open."""
    start = b.post(f"/settings/email/oauth/{provider}/start")
    assert start.status_code == 303, start.text
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    assert f"{back.scheme}://{back.netloc}" == PUBLIC
    return f"{back.path}?{back.query}"


def connect(b: Any, provider: str = "google") -> int:
    done = b.get(consent(b, provider))
    assert done.status_code == 303, done.text
    return int(done.headers["location"].rsplit("/", 1)[1])


def point_at(w: World, account_id: int, server: Dovecot) -> None:
    """As if imap.gmail.com were this Dovecot (the preset's host is not reachable here)."""

    def change(s: Any) -> None:
        a = s.get_one(MailAccount, account_id)
        a.settings = {
            **a.settings,
            "imap_host": server.host,
            "imap_port": server.imaps_port,
            "imap_security": "tls",
            "ca_file": server.ca_file,
            "smtp_host": server.host,
            "smtp_port": server.submission_port,
            "smtp_security": "none",
        }

    w.services.db.run(change)


def worker(w: World, account_id: int) -> AccountWorker:
    s = w.services
    keeper = token_keeper(s.settings, s.db, s.box)
    return AccountWorker(s.db, s.box, account_id, WorkerOptions(tokens=keeper))


def stored_messages(w: World, account_id: int) -> int:
    def count(s: Any) -> int:
        folder_ids = [f.id for f in mail.folders(s, account_id)]
        return int(
            s.scalar(
                select(func.count())
                .select_from(Placement)
                .where(Placement.folder_id.in_(folder_ids))
            )
            or 0
        )

    return w.services.db.run(count)


def deliver(server: Dovecot, to: str, subject: str) -> None:
    server.deliver(
        to,
        f"From: {SENDER}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@t>\r\n\r\nhi\r\n".encode(),
    )


def add_contact(w: World) -> None:
    w.services.db.run(
        lambda s: crm.create_contact(s, w.owner.workspace_id, name="Client", emails=[SENDER])
    )


async def test_connect_with_google_imports_refreshes_pauses_on_revoke_and_reconnects(
    oauth_web: World,
    browser: Any,
    fake: RunningFakeOAuth,
    oauth_dovecot: Dovecot,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    w = oauth_web
    fake.user_email = MAILBOX
    oauth_dovecot.add_user(MAILBOX, "a-password-nobody-uses")
    add_contact(w)
    deliver(oauth_dovecot, MAILBOX, "first")
    b = browser(w.owner)
    page = b.get("/settings/email")
    assert "Connect with Google" in page.text and "Connect with Microsoft" in page.text
    assert fake.url in page.headers["content-security-policy"]  # the form may go there

    account_id = connect(b)

    view = w.services.db.run(lambda s: crm.find_account(s, w.owner.id, MAILBOX))
    assert view == account_id
    row = w.services.db.run(lambda s: s.get_one(MailAccount, account_id))
    assert row.settings["preset"] == "gmail" and row.settings["imap_host"] == "imap.gmail.com"
    assert row.settings["oauth_provider"] == "google"
    assert b"rt-" not in row.secret and "rt-" not in str(row.settings)  # sealed, not plain
    assert w.services.box.open(row.secret)[REFRESH].startswith("rt-")

    point_at(w, account_id, oauth_dovecot)
    await worker(w, account_id).run_once()
    assert stored_messages(w, account_id) == 1
    assert fake.live_access_tokens(MAILBOX)[0] in fake.introspected  # Dovecot asked the fake

    # The server stops accepting the access token before its stated expiry: the login is
    # refused once, refreshed, and retried.
    fake.expire_access_tokens()
    before = fake.refresh_requests["google"]
    deliver(oauth_dovecot, MAILBOX, "second")
    await worker(w, account_id).run_once()
    assert fake.refresh_requests["google"] == before + 1
    assert stored_messages(w, account_id) == 2

    # The user removes crmail's access at Google: paused with the hint, nothing lost.
    fake.revoke_user(MAILBOX)
    with pytest.raises(AuthFailed):
        await worker(w, account_id).run_once()
    st = w.services.db.run(lambda s: accounts.status(s, account_id))
    assert st.state == "auth_error"
    assert "reconnect" in (st.last_error or "").lower()
    assert stored_messages(w, account_id) == 2
    health = b.get(f"/settings/email/accounts/{account_id}/health")
    assert "Connect with Google" in health.text

    folders_before = w.services.db.run(lambda s: mail.folders(s, account_id))
    assert connect(b) == account_id  # the same account, reconnected
    await worker(w, account_id).run_once()
    st = w.services.db.run(lambda s: accounts.status(s, account_id))
    assert st.state == "live"
    assert [f.id for f in w.services.db.run(lambda s: mail.folders(s, account_id))] == [
        f.id for f in folders_before
    ]
    assert stored_messages(w, account_id) == 2
    issued = [*fake.access, *fake.refresh]
    assert issued and not [t for t in issued if t in caplog.text]  # no token ever logged


async def test_an_access_token_is_refreshed_before_it_expires(
    oauth_web: World, browser: Any, fake: RunningFakeOAuth, oauth_dovecot: Dovecot
) -> None:
    w = oauth_web
    fake.user_email = "early@gmail.example.test"
    oauth_dovecot.add_user(fake.user_email, "unused-password")
    fake.expires_in = 120  # under the 5 minutes crmail keeps in hand
    account_id = connect(browser(w.owner))
    point_at(w, account_id, oauth_dovecot)
    (first,) = fake.live_access_tokens(fake.user_email)
    fake.access[first].expires_at = 0  # the one the session starts with is dead by now
    before = fake.refresh_requests["google"]
    fake.introspected.clear()
    me = w.services.db.run(lambda s: crm.get_user(s, w.owner.workspace_id, w.owner.id))
    draft = outbound.OutgoingDraft(
        to=(fake.user_email,), subject="via oauth", text="hi", from_address=fake.user_email
    )
    queued = await w.services.act(lambda s: outbound.queue_send(s, me, draft))
    assert isinstance(queued, outbound.SendQueued)
    await worker(w, account_id).run_once()
    # One refresh for the IMAP login, one for the SMTP login (each token had < 5 min).
    assert fake.refresh_requests["google"] == before + 2
    assert first not in fake.introspected  # the near-expiry token never presented
    sent = w.services.db.run(
        lambda s: s.scalar(select(Message.send_state).where(Message.id == queued.message_id))
    )
    assert sent == "sent"
    found = oauth_dovecot.doveadm(
        "search", "-u", fake.user_email, "mailbox", "INBOX", "subject", "via oauth"
    )
    assert found.strip(), "the message did not arrive over SMTP XOAUTH2"


def test_a_replayed_or_foreign_callback_is_refused(
    oauth_web: World, browser: Any, fake: RunningFakeOAuth
) -> None:
    w = oauth_web
    fake.user_email = "replay@gmail.example.test"
    owner, other_session, teammate = browser(w.owner), browser(w.owner), browser(w.teammate)
    callback = consent(owner)
    # Another session of the same user, and another user, cannot finish it.
    assert other_session.get(callback).status_code == 403
    callback = consent(owner)
    assert teammate.get(callback).status_code == 403
    callback = consent(owner)
    assert owner.get(callback).status_code == 303
    replay = owner.get(callback, headers={"accept": "text/html"})
    assert replay.status_code == 403
    assert "not valid any more" in replay.text
    forged = owner.get("/oauth/google/callback?state=made-up&code=x")
    assert forged.status_code == 403


def test_a_wrong_pkce_verifier_is_refused_by_the_provider(
    oauth_web: World, browser: Any, fake: RunningFakeOAuth
) -> None:
    w = oauth_web
    fake.user_email = "pkce@gmail.example.test"
    b = browser(w.owner)
    callback = consent(b)
    w.services.db.run(lambda s: s.execute(update(OAuthState).values(code_verifier="x" * 64)))
    resp = b.get(callback, headers={"accept": "text/html"})
    assert resp.status_code == 403
    assert "did not accept the sign-in" in resp.text
    assert w.services.db.run(lambda s: crm.find_account(s, w.owner.id, fake.user_email)) is None


def test_microsoft_admin_consent_required_is_said_in_words(
    oauth_web: World, browser: Any, fake: RunningFakeOAuth
) -> None:
    fake.admin_consent_required = True
    b = browser(oauth_web.owner)
    resp = b.get(consent(b, "microsoft"), headers={"accept": "text/html"})
    assert resp.status_code == 403
    assert "administrator to approve crmail" in resp.text
    assert "Traceback" not in resp.text


def test_connect_with_microsoft_creates_a_microsoft_365_account(
    oauth_web: World, browser: Any, fake: RunningFakeOAuth
) -> None:
    fake.user_email = MS_MAILBOX
    w = oauth_web
    account_id = connect(browser(w.owner), "microsoft")
    row = w.services.db.run(lambda s: s.get_one(MailAccount, account_id))
    assert row.email == MS_MAILBOX
    assert row.settings["preset"] == "microsoft365"
    assert row.settings["smtp_host"] == "smtp.office365.com"


def test_denied_consent_is_said_in_words(
    oauth_web: World, browser: Any, fake: RunningFakeOAuth
) -> None:
    b = browser(oauth_web.owner)
    fake.auto_consent = False
    start = b.post("/settings/email/oauth/google/start")
    page = httpx.get(start.headers["location"])
    assert "Allow" in page.text
    fields = dict(__import__("re").findall(r'name="(\w+)" value="([^"]*)"', page.text))
    back = httpx.post(f"{fake.url}/consent", data={**fields, "answer": "deny"})
    target = urlsplit(back.headers["location"])
    resp = b.get(f"{target.path}?{target.query}", headers={"accept": "text/html"})
    assert resp.status_code == 403
    assert "cancelled or access was not granted" in resp.text


def test_the_api_starts_a_sign_in_that_only_the_same_user_can_finish(
    oauth_web: World, browser: Any, fake: RunningFakeOAuth
) -> None:
    w = oauth_web
    fake.user_email = "api@gmail.example.test"
    listed = w.client.get("/api/oauth/providers", headers=w.owner.headers)
    assert [p["key"] for p in listed.json()] == ["google", "microsoft"]
    started = w.client.post("/api/accounts/oauth/google/start", headers=w.owner.headers)
    assert started.status_code == 201, started.text
    back = httpx.get(started.json()["authorization_url"], follow_redirects=False)
    target = urlsplit(back.headers["location"])
    callback = f"{target.path}?{target.query}"
    assert browser(w.teammate).get(callback).status_code == 403
    started = w.client.post("/api/accounts/oauth/google/start", headers=w.owner.headers)
    back = httpx.get(started.json()["authorization_url"], follow_redirects=False)
    target = urlsplit(back.headers["location"])
    assert browser(w.owner).get(f"{target.path}?{target.query}").status_code == 303


def test_without_configuration_no_button_and_the_page_says_why(web: World, browser: Any) -> None:
    page = browser(web.owner).get("/settings/email")
    assert "Connect with Google</button>" not in page.text
    assert "Connect with Google is not available" in page.text
    assert "CRMAIL_GOOGLE_CLIENT_ID" in page.text
    resp = web.client.post("/api/accounts/oauth/google/start", headers=web.owner.headers)
    assert resp.status_code == 422
    assert "CRMAIL_GOOGLE_CLIENT_ID" in resp.json()["error"]["hint"]
