"""Who sees which message, on every read path: lists and counts answer what reading by id does.

A teammate (admins included) sees the owner's mail that is on a timeline, never the
owner's private mail: neither a message linked to nothing nor one its owner unlinked
from every record. Reading such a message by id is 404; these tests check that no list,
Inbox view, thread, timeline, body, part or form shows its id, subject, sender or text
either. The last test walks every GET route of the app (API and web pages), so a read
path added later has to be given a case here, and is then checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import quote

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from crmail.api import create_app
from crmail.storage import mail as mail_store
from crmail.storage import web as web_store
from crmail.storage.models import Attachment, Message, Thread
from crmail.web import mail as web_mail
from crmail.web.common import SESSION_COOKIE
from tests.api.conftest import Actor, Mailbox, World
from tests.api.test_mail_routes import T0
from tests.web.conftest import PASSWORD, sign_in

#: Private messages get ids no other object of the test has, so finding the number
#: anywhere in a response means the message leaked (in a link, a JSON field, a header).
PRIVATE_ID = 7_700_001
UNLINKED_ID = 7_800_001

LINKED_SUBJECT = "Quarterly kumquat quote"
LINKED_BODY = "linked-body-kumquat"
LINKED_ATTACHMENT = "linked-attachment-kumquat"

#: what must never reach a teammate, per private message: id (also its thread's id),
#: subject, sender, body/snippet and attachment text
PRIVATE_MARKERS = (str(PRIVATE_ID), "zebracrossing", "Quixotic", "zed@home.test")
UNLINKED_MARKERS = (str(UNLINKED_ID), "yakherding", "Yarrowby")


def mail(sender: str, subject: str, body: str, attachment: str, minutes: int) -> bytes:
    """A message with a text body, an HTML body with an inline image, and an attachment."""
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = sender, "owner@acme.test", subject
    m["Date"] = format_datetime(T0 + timedelta(minutes=minutes))
    m["Message-ID"] = make_msgid(domain="test.example")
    m.set_content(body)
    m.add_alternative(f'<p>{body}</p><img src="cid:logo@x">', subtype="html")
    m.get_payload()[1].add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@x>")
    m.add_attachment(attachment.encode(), maintype="text", subtype="plain", filename="notes.txt")
    return m.as_bytes()


def number_next_messages_from(world: World, first: int) -> None:
    """Make the next message and thread ids start at ``first`` (placeholders in workspace B)."""
    ws = world.other.workspace_id

    def run(s: Session) -> None:
        s.add(Thread(id=first - 1, workspace_id=ws))
        s.flush()
        s.add(Message(id=first - 1, workspace_id=ws, thread_id=first - 1, dedup_key=str(first)))
        s.flush()
        if s.get_bind().dialect.name == "postgresql":  # SQLite goes on from the largest id
            for table in ("threads", "messages"):
                s.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {first - 1})")
                )

    world.services.db.run(run)


@dataclass(frozen=True)
class Scene:
    ids: dict[str, int]
    box: Mailbox


@pytest.fixture
def scene(world: World) -> Scene:
    """Owner's INBOX: one message on Ann's timelines, one private, one unlinked by hand."""
    c, h = world.client, world.owner.headers
    lead = c.post("/api/leads", json={"name": "Initech"}, headers=h).json()["id"]
    ann = c.post(
        "/api/contacts",
        json={"name": "Ann", "emails": ["ann@client.test"], "lead_id": lead},
        headers=h,
    ).json()["id"]
    bob = c.post("/api/contacts", json={"name": "Bob", "emails": ["bob@client.test"]}, headers=h)
    bob_id = bob.json()["id"]
    deal = c.post("/api/deals", json={"title": "Deal", "contact_ids": [ann]}, headers=h).json()[
        "id"
    ]
    box = world.mailbox(world.owner)
    linked = world.deliver(
        box,
        mail("Ann <ann@client.test>", LINKED_SUBJECT, LINKED_BODY, LINKED_ATTACHMENT, 1),
    )
    number_next_messages_from(world, PRIVATE_ID)
    private = world.deliver(
        box,
        mail(
            "Zed Quixotic <zed@home.test>",
            "Private zebracrossing plans",
            "private-body-zebracrossing",
            "private-attachment-zebracrossing",
            2,
        ),
    )
    number_next_messages_from(world, UNLINKED_ID)
    unlinked = world.deliver(
        box,
        mail(
            "Bob Yarrowby <bob@client.test>",
            "Unlinked yakherding plans",
            "unlinked-body-yakherding",
            "unlinked-attachment-yakherding",
            3,
        ),
    )
    assert (private, unlinked) == (PRIVATE_ID, UNLINKED_ID)
    # Linked to Bob at arrival, then its owner unlinked it from every record.
    links = c.get(f"/api/messages/{unlinked}", headers=h).json()["links"]
    assert [(x["subject_type"], x["subject_id"]) for x in links] == [("contact", bob_id)]
    gone = c.delete(f"/api/messages/{unlinked}/links/contact/{bob_id}", headers=h)
    assert gone.status_code == 200, gone.text

    def details(s: Session) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, mid in (
            ("linked", linked),
            ("private", private),
            ("unlinked", unlinked),
        ):
            out[f"{name}_thread"] = s.get_one(Message, mid).thread_id
            out[f"{name}_att"] = s.scalars(
                select(Attachment.id).where(
                    Attachment.message_id == mid, Attachment.filename == "notes.txt"
                )
            ).one()
        return out

    webhook = c.post(
        "/api/webhooks",
        json={"url": "https://hooks.example.com/"},
        headers=world.admin.headers,
    ).json()["id"]
    ids = {
        "lead": lead,
        "ann": ann,
        "bob": bob_id,
        "deal": deal,
        "account": box.account_id,
        "owner": world.owner.id,
        "webhook": webhook,
        "linked": linked,
        "private": private,
        "unlinked": unlinked,
        **world.services.db.run(details),
    }
    return Scene(ids, box)


def subjects(resp: object) -> list[str]:
    body = resp.json()  # type: ignore[attr-defined]
    return [i["message"]["subject"] for i in body["items"]]


# --- the reported case: a teammate's view of the owner's Inbox ------------------------------


def test_teammate_inbox_view_lists_only_mail_on_timelines(world: World, scene: Scene) -> None:
    c, owner = world.client, world.owner.id
    for actor in (world.teammate, world.admin):
        for include_read in ("true", "false"):
            r = c.get(
                f"/api/inbox?user_id={owner}&include_read={include_read}",
                headers=actor.headers,
            )
            assert r.status_code == 200, r.text
            assert subjects(r) == [LINKED_SUBJECT]
            for marker in PRIVATE_MARKERS + UNLINKED_MARKERS:
                assert marker not in r.text
        # Paging one item at a time reaches the end without a hidden item in between.
        r = c.get(f"/api/inbox?user_id={owner}&limit=1", headers=actor.headers)
        assert subjects(r) == [LINKED_SUBJECT] and r.json()["next_before"] is None
    # The owner's own Inbox still has all three (newest first).
    mine = c.get("/api/inbox", headers=world.owner.headers)
    assert subjects(mine) == [
        "Unlinked yakherding plans",
        "Private zebracrossing plans",
        LINKED_SUBJECT,
    ]


def test_private_mail_stays_private_by_id_too(world: World, scene: Scene) -> None:
    for actor in (world.teammate, world.admin):
        for mid in (PRIVATE_ID, UNLINKED_ID):
            for path in (f"/api/messages/{mid}", f"/api/messages/{mid}/raw"):
                r = world.client.get(path, headers=actor.headers)
                assert r.status_code == 404, (path, r.text)


def test_mail_the_teammate_has_a_copy_of_shows_in_the_owners_inbox_view(
    world: World, scene: Scene
) -> None:
    """No over-filtering: the owner's private mail that also reached the teammate is theirs too."""
    mate_box = world.mailbox(world.teammate)

    def copy_to_teammate(s: Session) -> None:
        # Through the sync's step, which keeps the owner's item flagged as shared.
        key = s.get_one(Message, PRIVATE_ID).dedup_key
        step = mail_store.FolderStep(
            folder_id=mate_box.inbox,
            copies=[mail_store.Copy(uid=1, flags=frozenset(), modseq=None, dedup_key=key)],
        )
        mail_store.apply_step(s, mate_box.account_id, step)

    world.services.db.run(copy_to_teammate)
    r = world.client.get(f"/api/inbox?user_id={world.owner.id}", headers=world.teammate.headers)
    assert subjects(r) == ["Private zebracrossing plans", LINKED_SUBJECT]
    # ... and only to that teammate.
    r = world.client.get(f"/api/inbox?user_id={world.owner.id}", headers=world.admin.headers)
    assert subjects(r) == [LINKED_SUBJECT]
    assert world.client.get(
        f"/api/messages/{PRIVATE_ID}", headers=world.teammate.headers
    ).is_success


def test_linking_the_private_message_makes_it_visible(world: World, scene: Scene) -> None:
    """The lists follow the rule both ways: once on a timeline, teammates see it."""
    c = world.client
    r = c.post(
        f"/api/messages/{UNLINKED_ID}/links",
        json={"subject_type": "deal", "subject_id": scene.ids["deal"]},
        headers=world.owner.headers,
    )
    assert r.status_code == 201, r.text
    r = c.get(f"/api/inbox?user_id={world.owner.id}", headers=world.teammate.headers)
    assert subjects(r) == ["Unlinked yakherding plans", LINKED_SUBJECT]
    r = c.get(f"/api/deals/{scene.ids['deal']}/timeline", headers=world.teammate.headers)
    assert [i["message"]["subject"] for i in r.json()["items"]] == [
        "Unlinked yakherding plans",
        LINKED_SUBJECT,
    ]


# --- every read path, derived from the app's routes -----------------------------------------


@dataclass(frozen=True)
class Case:
    #: formatted with the scene's ids
    url: str
    #: text of the linked message the response must show (the teammate may see it)
    shows: str | None = None
    #: expected status; None: any answer that is not an error of ours (status < 500)
    status: int | None = None


#: Every GET route of the app, with the requests that exercise it. A route missing here
#: fails ``test_every_get_route_has_cases``: decide what it shows a teammate, then add it.
CASES: dict[str, tuple[Case, ...]] = {
    # API
    "/healthz": (Case("/healthz", status=200),),
    # counts only, never mail; behind its own operator token (none configured here)
    "/metrics": (Case("/metrics", status=404),),
    "/api/me": (Case("/api/me", status=200),),
    "/api/me/tokens": (Case("/api/me/tokens", status=200),),
    "/api/users": (Case("/api/users"),),
    "/api/providers": (Case("/api/providers", status=200),),
    "/api/oauth/providers": (Case("/api/oauth/providers", status=200),),
    "/api/workspace/auto-create-blocklist": (Case("/api/workspace/auto-create-blocklist"),),
    "/api/contacts": (Case("/api/contacts", status=200),),
    "/api/contacts/{contact_id}": (
        Case("/api/contacts/{ann}"),
        Case("/api/contacts/{bob}"),
    ),
    "/api/contacts/{contact_id}/timeline": (
        Case("/api/contacts/{ann}/timeline", shows=LINKED_SUBJECT),
        Case("/api/contacts/{bob}/timeline", status=200),
    ),
    "/api/leads": (Case("/api/leads", status=200),),
    "/api/leads/{lead_id}": (Case("/api/leads/{lead}", status=200),),
    "/api/leads/{lead_id}/timeline": (Case("/api/leads/{lead}/timeline", shows=LINKED_SUBJECT),),
    "/api/deals": (Case("/api/deals", status=200),),
    "/api/deals/{deal_id}": (Case("/api/deals/{deal}", status=200),),
    "/api/deals/{deal_id}/timeline": (Case("/api/deals/{deal}/timeline", shows=LINKED_SUBJECT),),
    "/api/accounts": (Case("/api/accounts"), Case("/api/accounts?all_users=true")),
    "/api/accounts/{account_id}": (Case("/api/accounts/{account}"),),
    "/api/accounts/{account_id}/status": (Case("/api/accounts/{account}/status"),),
    "/api/inbox": (
        Case("/api/inbox", status=200),
        Case("/api/inbox?user_id={owner}", shows=LINKED_SUBJECT),
        Case("/api/inbox?user_id={owner}&include_read=false", shows=LINKED_SUBJECT),
        Case("/api/inbox?user_id={owner}&limit=1", shows=LINKED_SUBJECT),
    ),
    "/api/messages/{message_id}": (
        Case("/api/messages/{linked}", shows=LINKED_SUBJECT),
        Case("/api/messages/{private}", status=404),
        Case("/api/messages/{unlinked}", status=404),
    ),
    "/api/messages/{message_id}/raw": (
        Case("/api/messages/{linked}/raw", shows=LINKED_SUBJECT),
        Case("/api/messages/{private}/raw", status=404),
        Case("/api/messages/{unlinked}/raw", status=404),
    ),
    "/api/webhooks": (Case("/api/webhooks"),),
    "/api/webhooks/{webhook_id}": (Case("/api/webhooks/{webhook}"),),
    "/api/webhooks/{webhook_id}/deliveries": (Case("/api/webhooks/{webhook}/deliveries"),),
    "/api/sender": (Case("/api/sender"),),
    # calendar: a calendar account is its user's own; meetings on records are the team's
    "/api/calendar/presets": (Case("/api/calendar/presets", status=200),),
    "/api/calendar/accounts": (Case("/api/calendar/accounts", status=200),),
    "/api/calendar/accounts/{account_id}": (Case("/api/calendar/accounts/999", status=404),),
    "/api/calendar/accounts/{account_id}/calendars": (
        Case("/api/calendar/accounts/999/calendars", status=404),
    ),
    "/api/meetings/upcoming": (Case("/api/meetings/upcoming", status=200),),
    "/api/meetings/{meeting_id}": (Case("/api/meetings/999", status=404),),
    "/api/contacts/{contact_id}/meetings": (Case("/api/contacts/{ann}/meetings", status=200),),
    "/api/leads/{lead_id}/meetings": (Case("/api/leads/{lead}/meetings", status=200),),
    "/api/deals/{deal_id}/meetings": (Case("/api/deals/{deal}/meetings", status=200),),
    # mail and meetings interleaved: the mail part follows the timeline's rule
    "/api/contacts/{contact_id}/activity": (
        Case("/api/contacts/{ann}/activity", shows=LINKED_SUBJECT),
        Case("/api/contacts/{bob}/activity", status=200),
    ),
    "/api/leads/{lead_id}/activity": (Case("/api/leads/{lead}/activity", shows=LINKED_SUBJECT),),
    "/api/deals/{deal_id}/activity": (Case("/api/deals/{deal}/activity", shows=LINKED_SUBJECT),),
    # the API's own documentation
    "/openapi.json": (Case("/openapi.json", status=200),),
    "/docs": (Case("/docs", status=200),),
    "/docs/oauth2-redirect": (Case("/docs/oauth2-redirect", status=200),),
    "/redoc": (Case("/redoc", status=200),),
    # web pages
    "/signin": (Case("/signin"),),
    "/": (Case("/", status=303),),
    "/inbox": (
        Case("/inbox", status=200),
        Case("/inbox?view={owner}", shows=LINKED_SUBJECT),
        Case("/inbox?view=all", shows=LINKED_SUBJECT),
    ),
    "/threads/{thread_id}": (
        Case("/threads/{linked_thread}", shows=LINKED_SUBJECT),
        Case("/threads/{private_thread}", status=404),
        Case("/threads/{unlinked_thread}", status=404),
    ),
    "/messages/{message_id}": (
        Case("/messages/{linked}", status=303),
        Case("/messages/{private}", status=404),
        Case("/messages/{unlinked}", status=404),
    ),
    "/messages/{message_id}/body": (
        Case("/messages/{linked}/body", shows=LINKED_BODY),
        Case("/messages/{private}/body", status=404),
        Case("/messages/{unlinked}/body", status=404),
    ),
    "/messages/{message_id}/attachments/{attachment_id}": (
        Case("/messages/{linked}/attachments/{linked_att}", shows=LINKED_ATTACHMENT),
        Case("/messages/{private}/attachments/{private_att}", status=404),
        Case("/messages/{unlinked}/attachments/{unlinked_att}", status=404),
    ),
    # {cid:...} is replaced by a link signed for the caller (as the body page makes it)
    "/messages/{message_id}/cid/{content_id:path}": (
        Case("{cid:linked}", status=200),
        Case("{cid:private}", status=404),
        Case("{cid:unlinked}", status=404),
    ),
    "/compose": (
        Case("/compose", status=200),
        Case("/compose?reply_to={linked}", shows="Re: " + LINKED_SUBJECT),
        Case("/compose?reply_to={private}", status=404),
        Case("/compose?reply_to={unlinked}", status=404),
    ),
    "/contacts": (Case("/contacts", status=200),),
    "/contacts/new": (Case("/contacts/new", status=200),),
    "/contacts/{contact_id}": (
        Case("/contacts/{ann}", shows=LINKED_SUBJECT),
        Case("/contacts/{bob}", status=200),
    ),
    "/leads": (Case("/leads", status=200),),
    "/leads/new": (Case("/leads/new", status=200),),
    "/leads/{lead_id}": (Case("/leads/{lead}", shows=LINKED_SUBJECT),),
    "/deals": (Case("/deals", status=200),),
    "/deals/new": (Case("/deals/new", status=200),),
    "/deals/{deal_id}": (Case("/deals/{deal}", shows=LINKED_SUBJECT),),
    "/settings/email": (Case("/settings/email", status=200),),
    "/oauth/{provider}/callback": (Case("/oauth/google/callback?state=forged&code=x"),),
    "/settings/security": (Case("/settings/security", status=200),),
    "/settings/calendar": (Case("/settings/calendar", status=200),),
    "/settings/users": (Case("/settings/users"),),
    "/settings/email/accounts/{account_id}": (Case("/settings/email/accounts/{account}"),),
    "/settings/email/accounts/{account_id}/health": (
        Case("/settings/email/accounts/{account}/health"),
        Case("/settings/email/accounts/{account}/health?fragment=1"),
    ),
    "/settings/email/accounts/{account_id}/delete": (
        Case("/settings/email/accounts/{account}/delete"),
    ),
}


def get_routes(client: TestClient) -> set[str]:
    """Every path the app answers GET on: the API, its docs and the web pages."""
    return {
        r.path
        for r in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if r.path is not None and r.methods is not None and "GET" in r.methods
    }


def test_every_get_route_has_cases(world: World) -> None:
    routes = get_routes(world.client)
    assert routes - set(CASES) == set(), "GET routes without a visibility case"
    assert set(CASES) - routes == set(), "cases for routes that do not exist"


@pytest.fixture
def signed_in(world: World) -> Iterator[dict[str, TestClient]]:
    """A client per actor, signed in to the web app, that also sends the actor's API token."""

    def setpw(s: Session) -> None:
        for a in (world.teammate, world.admin):
            web_store.set_password(s, a.id, PASSWORD)

    world.services.db.run(setpw)
    clients: dict[str, TestClient] = {}
    for name in ("teammate", "admin"):
        actor: Actor = getattr(world, name)
        client = TestClient(create_app(world.services), headers=actor.headers)
        client.__enter__()
        assert sign_in(client, actor.email).status_code == 303
        clients[name] = client
    yield clients
    for client in clients.values():
        client.__exit__(None, None, None)


def cid_url(world: World, client: TestClient, viewer: Actor, message_id: int) -> str:
    """The inline image's link, signed for ``viewer``'s session as the body page signs it."""
    key = web_mail._cid_key(world.services.settings.secret_keys[0])
    exp = int(time.time()) + 3600
    session = web_store.session_hash(client.cookies[SESSION_COOKIE])
    sig = web_mail._cid_sig(key, viewer.id, message_id, "logo@x", exp, session)
    return (
        f"/messages/{message_id}/cid/{quote('logo@x', safe='')}?u={viewer.id}&exp={exp}&sig={sig}"
    )


@pytest.mark.parametrize("who", ["teammate", "admin"])
def test_no_get_route_shows_a_teammate_private_mail(
    world: World, scene: Scene, signed_in: dict[str, TestClient], who: str
) -> None:
    viewer: Actor = getattr(world, who)
    client = signed_in[who]
    assert get_routes(client) <= set(CASES)
    failures: list[str] = []
    for route, cases in CASES.items():
        for case in cases:
            if case.url.startswith("{cid:"):
                url = cid_url(world, client, viewer, scene.ids[case.url[5:-1]])
            else:
                url = case.url.format(**scene.ids)
            resp = client.get(url, follow_redirects=False)
            seen = resp.text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
            # An id the caller sent may come back ("message 7700001 not found"): not a leak.
            leaked = [m for m in PRIVATE_MARKERS + UNLINKED_MARKERS if m in seen and m not in url]
            if leaked:
                failures.append(f"{route}: GET {url} shows {leaked}")
            if resp.status_code >= 500 or resp.status_code == 401:
                failures.append(f"{route}: GET {url} answered {resp.status_code}")
            elif resp.headers.get("location", "").startswith("/signin"):
                failures.append(f"{route}: GET {url} asked to sign in")
            elif case.status is not None and resp.status_code != case.status:
                failures.append(
                    f"{route}: GET {url} answered {resp.status_code}, not {case.status}"
                )
            elif case.shows is not None and (resp.status_code != 200 or case.shows not in seen):
                failures.append(f"{route}: GET {url} ({resp.status_code}) lacks {case.shows!r}")
    assert failures == []
