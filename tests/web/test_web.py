"""The web app through its HTTP surface: auth, CSRF, rate limit, pages, authorization, bodies."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crmail.api import create_app
from crmail.storage import crm
from crmail.storage.models import InboxItem, TimelineEntry
from tests.api.conftest import Actor, World
from tests.db_fixtures import database_bytes
from tests.factories import message
from tests.web.conftest import PASSWORD, Browser, csrf_of, sign_in

BrowserFor = Callable[[Actor], Browser]

HOSTILE = (
    '<p onclick="alert(1)">hi</p><script>alert(2)</script>'
    '<img src="https://tracker.example/p.gif"><a href="javascript:alert(3)">x</a>'
    '<img src="cid:logo@x">'
)


def rich_message(sender: str, to: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, to, "Quote"
    m["Message-ID"] = "<quote-1@client.test>"
    m.set_content("plain")
    m.add_alternative(HOSTILE, subtype="html")
    html_part = m.get_payload()[1]
    html_part.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>")
    m.add_attachment(
        b"<script>alert(1)</script>", maintype="text", subtype="html", filename="evil.html"
    )
    m.add_attachment(b"%PDF-1.4 quote", maintype="application", subtype="pdf", filename="quote.pdf")
    return m.as_bytes()


@pytest.fixture
def mail(web: World) -> dict[str, int]:
    """Owner's mailbox with one contact message carrying an inline image and attachments."""
    ws = web.owner.workspace_id
    contact = web.services.db.run(
        lambda s: crm.create_contact(s, ws, name="Ivy", emails=["ivy@client.test"]).id
    )
    box = web.mailbox(web.owner)
    mid = web.deliver(box, rich_message("Ivy <ivy@client.test>", web.owner.email))
    thread = web.services.db.run(
        lambda s: crm.message_detail(s, crm.get_user(s, ws, web.owner.id), mid).summary.thread_id
    )
    att = web.services.db.run(
        lambda s: {
            a.filename: a.id
            for a in crm.message_detail(s, crm.get_user(s, ws, web.owner.id), mid).attachments
        }
    )
    return {
        "message": mid,
        "thread": thread,
        "contact": contact,
        "account": box.account_id,
        "html_att": att["evil.html"],
        "pdf_att": att["quote.pdf"],
    }


# --- sign-in, sessions, cookies -----------------------------------------------------------


def test_sign_in_sets_a_safe_session_cookie_and_sign_out_ends_it(web: World) -> None:
    c = web.client
    resp = sign_in(c, web.owner.email)
    assert resp.status_code == 303 and resp.headers["location"] == "/inbox"
    cookie = next(h for h in resp.headers.get_list("set-cookie") if h.startswith("crmail_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    page = c.get("/inbox", follow_redirects=False)
    assert page.status_code == 200 and "My Inbox" in page.text
    out = c.post("/signout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert c.get("/inbox", follow_redirects=False).status_code == 303


def test_secure_cookie_when_configured(web: World) -> None:
    from dataclasses import replace

    web.services.settings = replace(web.services.settings, cookie_secure=True)
    with TestClient(create_app(web.services), base_url="https://testserver") as c:
        resp = sign_in(c, web.owner.email)
    assert resp.status_code == 303
    cookie = next(h for h in resp.headers.get_list("set-cookie") if h.startswith("crmail_session="))
    assert "Secure" in cookie


def test_wrong_password_is_refused_without_saying_which_part(web: World) -> None:
    resp = sign_in(web.client, web.owner.email, "wrong password!")
    assert resp.status_code == 401 and "Wrong email or password" in resp.text
    assert "crmail_session" not in resp.headers.get("set-cookie", "")
    assert sign_in(web.client, "nobody@acme.test").status_code == 401


def test_sign_in_is_rate_limited_per_address(web: World) -> None:
    for _ in range(5):
        assert sign_in(web.client, web.owner.email, "nope nope nope").status_code == 401
    blocked = sign_in(web.client, web.owner.email)  # even the right password now
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    # another address from the same client is not blocked
    assert sign_in(web.client, web.teammate.email).status_code == 303


def test_sign_in_form_needs_its_csrf_token(web: World) -> None:
    web.client.get("/signin")
    resp = web.client.post(
        "/signin",
        data={"email": web.owner.email, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert resp.status_code == 403


def test_anonymous_pages_redirect_and_raw_routes_answer_401(
    web: World, mail: dict[str, int]
) -> None:
    c = web.client
    for url in ("/inbox", "/contacts", f"/threads/{mail['thread']}", "/settings/email"):
        resp = c.get(url, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/signin?next="), url
    for url in (
        f"/messages/{mail['message']}/body",
        f"/messages/{mail['message']}/attachments/{mail['pdf_att']}",
    ):
        assert c.get(url, follow_redirects=False).status_code == 401, url
    assert c.post(f"/threads/{mail['thread']}/done", follow_redirects=False).status_code == 401


# --- CSRF -------------------------------------------------------------------------------------


def test_state_changes_need_the_sessions_csrf_token(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    me = browser(web.owner)
    url = f"/threads/{mail['thread']}/done"
    no_token = me.client.post(url, follow_redirects=False, headers={"accept": "text/html"})
    assert no_token.status_code == 403 and "security token" in no_token.text
    wrong = me.client.post(url, data={"csrf_token": "x" * 43}, follow_redirects=False)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "csrf_failed"
    # another session's token does not work either
    mate = browser(web.teammate)
    assert (
        me.client.post(url, data={"csrf_token": mate.csrf}, follow_redirects=False).status_code
        == 403
    )
    assert _item_state(web, web.owner.id, mail["message"]) == "open"
    assert me.post(url).status_code == 303
    assert _item_state(web, web.owner.id, mail["message"]) == "done"
    assert web.services.sync.queued == [mail["account"]]  # type: ignore[attr-defined]


def _item_state(web: World, user_id: int, message_id: int) -> str:
    return web.services.db.run(
        lambda s: s.scalar(
            select(InboxItem.state).where(
                InboxItem.user_id == user_id, InboxItem.message_id == message_id
            )
        )
    )


def test_snooze_and_read_from_the_inbox(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    me = browser(web.owner)
    assert me.post(f"/threads/{mail['thread']}/read", {"read": "1"}).status_code == 303
    assert (
        me.post(
            f"/threads/{mail['thread']}/snooze", {"preset": "tomorrow", "tz": "Europe/Paris"}
        ).status_code
        == 303
    )
    assert _item_state(web, web.owner.id, mail["message"]) == "snoozed"
    assert (
        me.post(
            f"/threads/{mail['thread']}/snooze", {"preset": "custom", "until": "2001-01-01T08:00"}
        ).status_code
        == 422
    )


# --- pages ------------------------------------------------------------------------------------


def test_every_page_renders_for_the_owner(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    me = browser(web.owner)
    ws = web.owner.workspace_id
    lead = web.services.db.run(lambda s: crm.create_lead(s, ws, name="Client Ltd").id)
    deal = web.services.db.run(
        lambda s: crm.create_deal(s, ws, title="Big one", contact_ids=[mail["contact"]]).id
    )
    pages = {
        "/inbox": "Quote",
        f"/threads/{mail['thread']}": "evil.html",
        "/contacts": "Ivy",
        "/contacts/new": "New contact",
        f"/contacts/{mail['contact']}": "Quote",
        "/leads": "Client Ltd",
        "/leads/new": "New lead",
        f"/leads/{lead}": "Client Ltd",
        "/deals": "Big one",
        "/deals/new": "New deal",
        f"/deals/{deal}": "Big one",
        "/compose": "Sends as",
        f"/compose?reply_to={mail['message']}": "Re: Quote",
        "/settings/email": "Connect a mailbox",
        f"/settings/email/accounts/{mail['account']}": "Sync health",
        f"/settings/email/accounts/{mail['account']}/health": "<progress",
        f"/settings/email/accounts/{mail['account']}/delete": "to confirm",
    }
    for url, needle in pages.items():
        resp = me.get(url)
        assert resp.status_code == 200, (url, resp.text[:300])
        assert needle in resp.text, url
        assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert (
        'http-equiv="refresh"' in me.get(f"/settings/email/accounts/{mail['account']}/health").text
    )


def test_own_inbox_has_actions_and_a_teammates_is_read_only(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    mine = browser(web.owner).get("/inbox").text
    assert f"/threads/{mail['thread']}/done" in mine and "/snooze" in mine
    mate = browser(web.teammate)
    for view in (str(web.owner.id), "all"):
        page = mate.get(f"/inbox?view={view}").text
        assert "Quote" in page  # the thread is listed
        assert "/done" not in page and "/snooze" not in page and "/read" not in page
        assert 'type="checkbox"' not in page
        assert "read-only" in page
    # and the teammate cannot act on it by posting anyway
    assert mate.post(f"/threads/{mail['thread']}/done").status_code in (403, 404)
    assert _item_state(web, web.owner.id, mail["message"]) == "open"


def test_other_workspace_gets_404_everywhere(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    them = browser(web.other)
    m = mail["message"]
    for url in (
        f"/threads/{mail['thread']}",
        f"/messages/{m}",
        f"/messages/{m}/body",
        f"/messages/{m}/attachments/{mail['pdf_att']}",
        f"/contacts/{mail['contact']}",
        f"/inbox?view={web.owner.id}",
        f"/settings/email/accounts/{mail['account']}",
        f"/settings/email/accounts/{mail['account']}/health",
        f"/compose?reply_to={m}",
    ):
        assert them.get(url).status_code == 404, url
    assert them.post(f"/contacts/{mail['contact']}", {"name": "pwned"}).status_code == 404
    assert them.post(f"/messages/{m}/links", {"subject": "contact:1"}).status_code == 404
    assert them.post(f"/settings/email/accounts/{mail['account']}/disconnect").status_code == 404


def test_admin_may_view_but_not_manage_a_teammates_mailbox(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    boss = browser(web.admin)
    page = boss.get(f"/settings/email/accounts/{mail['account']}")
    assert (
        page.status_code == 200 and "only its owner" in page.text and "/reconnect" not in page.text
    )
    assert boss.post(f"/settings/email/accounts/{mail['account']}/disconnect").status_code == 403
    assert (
        browser(web.teammate).get(f"/settings/email/accounts/{mail['account']}").status_code == 404
    )


def test_crm_forms_create_and_edit(web: World, browser: BrowserFor) -> None:
    me = browser(web.owner)
    lead = me.post("/leads", {"name": "Initech"})
    assert lead.status_code == 303
    lead_id = int(lead.headers["location"].rsplit("/", 1)[1])
    c = me.post(
        "/contacts", {"name": "Pat", "emails": "pat@x.test\nPAT2@x.test", "lead_id": str(lead_id)}
    )
    assert c.status_code == 303
    cid = int(c.headers["location"].rsplit("/", 1)[1])
    assert (
        me.post(
            f"/contacts/{cid}", {"name": "Pat B", "emails": "pat@x.test", "lead_id": ""}
        ).status_code
        == 303
    )
    info = web.services.db.run(lambda s: crm.get_contact(s, web.owner.workspace_id, cid))
    assert (info.name, info.emails, info.lead_id) == ("Pat B", ("pat@x.test",), None)
    d = me.post(
        "/deals",
        {"title": "Renewal", "status": "open", "value": "1200.50", "contact_ids": str(cid)},
    )
    did = int(d.headers["location"].rsplit("/", 1)[1])
    deal = web.services.db.run(lambda s: crm.get_deal(s, web.owner.workspace_id, did))
    assert deal.value_cents == 120050 and deal.contact_ids == (cid,)
    dup = me.post(
        "/contacts", {"name": "Again", "emails": "pat@x.test"}, headers={"accept": "text/html"}
    )
    assert dup.status_code == 409 and "already belongs" in dup.text


# --- message bodies, parts, links -----------------------------------------------------------


def test_body_is_sanitized_and_served_with_a_strict_csp(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    me = browser(web.owner)
    resp = me.get(f"/messages/{mail['message']}/body")
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "https:" not in csp
    assert "sandbox" in csp and resp.headers["x-content-type-options"] == "nosniff"
    body = resp.text
    assert "<script" not in body and "onclick" not in body and "javascript:" not in body
    assert 'data-crmail-blocked-src="https://tracker.example/p.gif"' in body
    assert not re.search(r'\ssrc="https://tracker', body)
    shown = me.get(f"/messages/{mail['message']}/body?images=1")
    assert "https:" in shown.headers["content-security-policy"]
    assert 'src="https://tracker.example/p.gif"' in shown.text and "<script" not in shown.text
    # the inline image is served from the message's own part through a signed URL
    cid_url = re.search(r'src="(/messages/\d+/cid/[^"]+)"', body).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    anon = TestClient(create_app(web.services))
    img = anon.get(cid_url)
    assert img.status_code == 200 and img.content == b"\x89PNG fake"
    assert img.headers["content-type"] == "image/png"
    assert anon.get(cid_url.replace("sig=", "sig=0")).status_code == 401


def test_attachments_download_with_safe_headers(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    me = browser(web.owner)
    evil = me.get(f"/messages/{mail['message']}/attachments/{mail['html_att']}")
    assert evil.status_code == 200 and evil.content == b"<script>alert(1)</script>"
    assert evil.headers["content-type"] == "application/octet-stream"
    assert evil.headers["content-disposition"].startswith("attachment;")
    assert 'filename="evil.html"' in evil.headers["content-disposition"]
    assert evil.headers["x-content-type-options"] == "nosniff"
    pdf = me.get(f"/messages/{mail['message']}/attachments/{mail['pdf_att']}")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content == b"%PDF-1.4 quote"
    assert pdf.headers["content-disposition"].startswith("attachment;")


def test_manual_link_and_unlink_from_the_thread_page(
    web: World, browser: BrowserFor, mail: dict[str, int]
) -> None:
    me = browser(web.owner)
    ws = web.owner.workspace_id
    lead = web.services.db.run(lambda s: crm.create_lead(s, ws, name="Hooli").id)
    resp = me.post(
        f"/messages/{mail['message']}/links", {"subject": f"lead:{lead}", "whole_thread": "1"}
    )
    assert resp.status_code == 303
    entry = web.services.db.run(
        lambda s: s.execute(
            select(TimelineEntry.source, TimelineEntry.reason, TimelineEntry.created_by).where(
                TimelineEntry.subject_type == "lead", TimelineEntry.subject_id == lead
            )
        ).one()
    )
    assert tuple(entry) == ("manual", "linked by owner", web.owner.id)
    assert "Quote" in me.get(f"/leads/{lead}").text
    assert me.post(f"/messages/{mail['message']}/links/lead/{lead}/delete").status_code == 303
    assert "Quote" not in me.get(f"/leads/{lead}").text


def test_links_api(web: World, mail: dict[str, int]) -> None:
    c, m = web.client, mail["message"]
    ws = web.owner.workspace_id
    deal = web.services.db.run(lambda s: crm.create_deal(s, ws, title="D").id)
    resp = c.post(
        f"/api/messages/{m}/links",
        json={"subject_type": "deal", "subject_id": deal},
        headers=web.owner.headers,
    )
    assert resp.status_code == 201 and resp.json() == {"linked": [m], "unlinked": []}
    again = c.post(
        f"/api/messages/{m}/links",
        json={"subject_type": "deal", "subject_id": deal},
        headers=web.owner.headers,
    )
    assert again.json()["linked"] == []
    # the other workspace sees neither the message nor may link to our deal
    assert (
        c.post(
            f"/api/messages/{m}/links",
            json={"subject_type": "deal", "subject_id": deal},
            headers=web.other.headers,
        ).status_code
        == 404
    )
    other_contact = web.services.db.run(
        lambda s: (
            crm.create_contact(s, web.other.workspace_id, name="X", emails=["x@globex.test"]).id
        )
    )
    assert (
        c.post(
            f"/api/messages/{m}/links",
            json={"subject_type": "contact", "subject_id": other_contact},
            headers=web.owner.headers,
        ).status_code
        == 404
    )
    gone = c.delete(f"/api/messages/{m}/links/deal/{deal}", headers=web.owner.headers)
    assert gone.status_code == 200 and gone.json()["unlinked"] == [m]
    assert (
        c.delete(f"/api/messages/{m}/links/deal/{deal}", headers=web.owner.headers).status_code
        == 404
    )


def test_teammate_cannot_link_private_mail(web: World, browser: BrowserFor) -> None:
    box = web.mailbox(web.owner)
    private = web.deliver(box, message("mum@family.test", web.owner.email, "private"))
    ws = web.owner.workspace_id
    contact = web.services.db.run(
        lambda s: crm.create_contact(s, ws, name="C", emails=["c@c.test"]).id
    )
    mate = browser(web.teammate)
    assert (
        mate.post(f"/messages/{private}/links", {"subject": f"contact:{contact}"}).status_code
        == 404
    )


# --- secrets at rest ------------------------------------------------------------------------


def test_database_holds_no_password_or_session_token_in_clear(web: World, tmp_path: Path) -> None:
    resp = sign_in(web.client, web.owner.email)
    token = resp.cookies.get("crmail_session") or web.client.cookies.get("crmail_session")
    assert token
    assert web.client.get("/inbox", follow_redirects=False).status_code == 200
    blob = database_bytes(web.services)
    assert blob  # the database (and its WAL) really were read
    assert PASSWORD.encode() not in blob
    assert token.encode() not in blob
    assert b"scrypt$" in blob  # what is stored instead
