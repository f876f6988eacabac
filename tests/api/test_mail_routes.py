"""Timelines, the CRM Inbox and message detail, over mail stored the way the sync stores it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from sqlalchemy import func, select

from crmail.storage.models import Folder, InboxItem, Message, Placement, TimelineEntry
from tests.api.conftest import Mailbox, World
from tests.api.test_crm_routes import assert_error

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def raw_mail(
    sender: str,
    to: str,
    subject: str,
    when: datetime,
    *,
    html: str | None = None,
    cc: str | None = None,
    attachment: bytes | None = None,
) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    if cc:
        m["Cc"] = cc
    m["Subject"] = subject
    m["Date"] = format_datetime(when)
    m["Message-ID"] = make_msgid(domain="test.example")
    m.set_content(f"Body of {subject}")
    if html:
        m.add_alternative(html, subtype="html")
    if attachment is not None:
        m.add_attachment(attachment, maintype="application", subtype="pdf", filename="quote.pdf")
    return m.as_bytes()


@dataclass
class Scene:
    contact: int
    lead: int
    deal: int
    box: Mailbox
    m_old: int  # inbound, oldest, in the owner's INBOX, with hostile HTML
    m_mid: int  # inbound, read, with an attachment
    m_new: int  # outbound, in Sent
    private: int  # the owner's, linked to nothing
    mate_msg: int  # in the teammate's INBOX


@pytest.fixture
def scene(world: World) -> Scene:
    c, h = world.client, world.owner.headers
    lead = c.post("/api/leads", json={"name": "Initech"}, headers=h).json()["id"]
    contact = c.post(
        "/api/contacts",
        json={"name": "Ann", "emails": ["ann@client.test"], "lead_id": lead},
        headers=h,
    ).json()["id"]
    deal = c.post("/api/deals", json={"title": "Deal", "contact_ids": [contact]}, headers=h).json()[
        "id"
    ]
    box = world.mailbox(world.owner)
    mate_box = world.mailbox(world.teammate)
    m_old = world.deliver(
        box,
        raw_mail(
            "Ann <ann@client.test>",
            "owner@acme.test",
            "First",
            T0,
            html='<p onclick="steal()">Hello<script>alert(1)</script><img src="https://track.test/p.gif"></p>',
        ),
    )
    m_mid = world.deliver(
        box,
        raw_mail(
            "ann@client.test",
            "owner@acme.test",
            "Second",
            T0 + timedelta(hours=1),
            attachment=b"%PDF-1",
        ),
        flags={"\\Seen"},
    )
    m_new = world.deliver(
        box,
        raw_mail("owner@acme.test", "Ann <ann@client.test>", "Third", T0 + timedelta(hours=2)),
        folder="sent",
    )
    private = world.deliver(
        box, raw_mail("friend@private.test", "owner@acme.test", "Dinner?", T0 + timedelta(hours=3))
    )
    mate_msg = world.deliver(
        mate_box, raw_mail("ann@client.test", "mate@acme.test", "To mate", T0 + timedelta(hours=4))
    )
    return Scene(contact, lead, deal, box, m_old, m_mid, m_new, private, mate_msg)


def test_timeline_newest_first_with_reasons(world: World, scene: Scene) -> None:
    r = world.client.get(f"/api/contacts/{scene.contact}/timeline", headers=world.teammate.headers)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["message"]["id"] for i in items] == [
        scene.mate_msg,
        scene.m_new,
        scene.m_mid,
        scene.m_old,
    ]
    assert r.json()["next_before"] is None
    by_id = {i["message"]["id"]: i for i in items}
    assert by_id[scene.m_new]["reason"] == "ann@client.test is in to"
    assert by_id[scene.m_old]["reason"] == "ann@client.test is in from"
    assert by_id[scene.m_new]["message"]["direction"] == "outbound"
    assert by_id[scene.m_old]["message"]["direction"] == "inbound"
    old = by_id[scene.m_old]["message"]
    assert old["from"] == {"email": "ann@client.test", "name": "Ann"}
    assert old["to"] == [{"email": "owner@acme.test", "name": ""}]
    assert old["subject"] == "First" and old["snippet"].startswith("Body of First")
    assert old["date"].startswith("2024-05-01T09:00:00")
    assert by_id[scene.m_mid]["message"]["attachment_count"] == 1
    assert old["attachment_count"] == 0

    lead_items = world.client.get(
        f"/api/leads/{scene.lead}/timeline", headers=world.owner.headers
    ).json()["items"]
    assert {i["reason"] for i in lead_items} == {"lead of ann@client.test"}
    deal_items = world.client.get(
        f"/api/deals/{scene.deal}/timeline", headers=world.owner.headers
    ).json()["items"]
    assert {i["reason"] for i in deal_items} == {"open deal of ann@client.test"}
    assert len(lead_items) == len(deal_items) == 4


def test_timeline_pages(world: World, scene: Scene) -> None:
    url, h = f"/api/contacts/{scene.contact}/timeline", world.owner.headers
    seen: list[int] = []
    before = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 1}
        if before:
            params["before"] = before
        page = world.client.get(url, params=params, headers=h).json()
        seen += [i["message"]["id"] for i in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [scene.mate_msg, scene.m_new, scene.m_mid, scene.m_old]
    assert_error(
        world.client.get(url, params={"before": "yesterday"}, headers=h), 422, "invalid_input"
    )


def test_inbox_has_only_my_open_items(world: World, scene: Scene) -> None:
    c = world.client
    r = c.get("/api/inbox", headers=world.owner.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == world.owner.id and body["actionable"] is True
    # Sent mail is not in the Inbox; the teammate's mail is not in mine
    assert [i["message"]["id"] for i in body["items"]] == [scene.private, scene.m_mid, scene.m_old]
    assert [i["is_read"] for i in body["items"]] == [False, True, False]
    unread = c.get(
        "/api/inbox", params={"include_read": "false"}, headers=world.owner.headers
    ).json()
    assert [i["message"]["id"] for i in unread["items"]] == [scene.private, scene.m_old]
    mine = c.get("/api/inbox", headers=world.teammate.headers).json()
    assert [i["message"]["id"] for i in mine["items"]] == [scene.mate_msg]

    # archived (left INBOX) and done items are not shown
    def archive(s: object) -> None:
        from sqlalchemy.orm import Session

        assert isinstance(s, Session)
        item = s.scalar(select(InboxItem).where(InboxItem.message_id == scene.m_old))
        assert item is not None
        item.state = "archived"

    world.services.db.run(archive)
    body = c.get("/api/inbox", headers=world.owner.headers).json()
    assert [i["message"]["id"] for i in body["items"]] == [scene.private, scene.m_mid]


def test_teammate_inbox_is_read_only(world: World, scene: Scene) -> None:
    r = world.client.get(
        "/api/inbox", params={"user_id": world.owner.id}, headers=world.teammate.headers
    )
    assert r.status_code == 200
    assert r.json()["actionable"] is False and r.json()["user_id"] == world.owner.id
    # the owner's private mail is not the teammate's to see, in the list as by id
    assert [i["message"]["id"] for i in r.json()["items"]] == [scene.m_mid, scene.m_old]
    # a user of another workspace, and a made-up id, are both "not found"
    for uid in (world.other.id, 9999):
        r = world.client.get("/api/inbox", params={"user_id": uid}, headers=world.owner.headers)
        assert_error(r, 404, "not_found")
    r = world.client.get(
        "/api/inbox", params={"user_id": world.owner.id}, headers=world.other.headers
    )
    assert_error(r, 404, "not_found")


def test_message_detail_sanitizes_html(world: World, scene: Scene) -> None:
    r = world.client.get(f"/api/messages/{scene.m_old}", headers=world.owner.headers)
    assert r.status_code == 200, r.text
    m = r.json()
    assert "Hello" in m["html"]
    assert "<script" not in m["html"] and "alert(1)" not in m["html"]
    assert "onclick" not in m["html"]
    assert ' src="https://track.test' not in m["html"]  # remote images blocked
    assert m["text"].strip() == "Body of First"
    assert m["participants"]["from"] == [{"email": "ann@client.test", "name": "Ann"}]
    assert m["participants"]["to"] == [{"email": "owner@acme.test", "name": ""}]
    assert m["placements"] == [
        {
            "account_id": scene.box.account_id,
            "folder": "INBOX",
            "folder_role": "inbox",
            "uid": 1,
            "flags": [],
        }
    ]
    assert {(x["subject_type"], x["reason"]) for x in m["links"]} == {
        ("contact", "ann@client.test is in from"),
        ("lead", "lead of ann@client.test"),
        ("deal", "open deal of ann@client.test"),
    }
    assert m["parse_failed"] is False and m["thread_id"] > 0

    att = world.client.get(f"/api/messages/{scene.m_mid}", headers=world.owner.headers).json()[
        "attachments"
    ]
    assert [(a["filename"], a["content_type"]) for a in att] == [("quote.pdf", "application/pdf")]


def test_teammate_sees_linked_mail_but_not_my_placements_or_private_mail(
    world: World, scene: Scene
) -> None:
    c = world.client
    for actor in (world.teammate, world.admin):
        r = c.get(f"/api/messages/{scene.m_old}", headers=actor.headers)
        assert r.status_code == 200
        assert r.json()["placements"] == []  # where I filed it is mine
        assert_error(
            c.get(f"/api/messages/{scene.private}", headers=actor.headers), 404, "not_found"
        )
        assert_error(
            c.get(f"/api/messages/{scene.private}/raw", headers=actor.headers), 404, "not_found"
        )
    assert c.get(f"/api/messages/{scene.private}", headers=world.owner.headers).status_code == 200
    # the teammate's own copy shows the teammate's placement
    r = c.get(f"/api/messages/{scene.mate_msg}", headers=world.teammate.headers)
    assert [p["folder"] for p in r.json()["placements"]] == ["INBOX"]


def test_raw_download(world: World, scene: Scene) -> None:
    r = world.client.get(f"/api/messages/{scene.m_old}/raw", headers=world.teammate.headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "message/rfc822"
    assert r.headers["content-disposition"].startswith("attachment;")
    assert b"Subject: First" in r.content and b"<script>" in r.content  # the original, untouched
    assert_error(
        world.client.get(f"/api/messages/{scene.m_old}/raw", headers=world.other.headers),
        404,
        "not_found",
    )
    assert_error(
        world.client.get("/api/messages/99999/raw", headers=world.owner.headers), 404, "not_found"
    )


def test_deleting_an_account_keeps_the_crm_record(world: World, scene: Scene) -> None:
    def counts() -> dict[str, int]:
        def q(s: object) -> dict[str, int]:
            from sqlalchemy.orm import Session

            assert isinstance(s, Session)

            def n(model: type, *where: object) -> int:
                return s.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]

            return {
                "placements": n(Placement, Placement.account_id == scene.box.account_id),
                "folders": n(Folder, Folder.account_id == scene.box.account_id),
                "messages": n(Message),
                "timeline": n(TimelineEntry),
                "inbox": n(InboxItem, InboxItem.user_id == world.owner.id),
            }

        return world.services.db.run(q)

    before = counts()
    assert before["placements"] == 4 and before["folders"] == 2
    calls = world.sync.calls
    r = world.client.delete(f"/api/accounts/{scene.box.account_id}", headers=world.owner.headers)
    assert r.status_code == 204
    assert world.sync.calls == calls + 1
    after = counts()
    assert after == {**before, "placements": 0, "folders": 0}
    assert_error(
        world.client.get(f"/api/accounts/{scene.box.account_id}", headers=world.owner.headers),
        404,
        "not_found",
    )
    tl = world.client.get(
        f"/api/contacts/{scene.contact}/timeline", headers=world.owner.headers
    ).json()
    assert len(tl["items"]) == 4
    # still in my Inbox, so still mine to read even without the account
    assert (
        world.client.get(f"/api/messages/{scene.private}", headers=world.owner.headers).status_code
        == 200
    )
    assert (
        world.client.get(
            f"/api/messages/{scene.private}", headers=world.teammate.headers
        ).status_code
        == 404
    )
