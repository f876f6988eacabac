"""An account's life against the real Dovecot, through the API and the real sync service.

Revoked password → paused with a hint → reconnect resumes from the stored cursors;
disconnect → nothing syncs, queued changes wait → reconnect resumes; a new address or
password; delete keeps the CRM's data and never touches the server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from crmail.api import create_app
from crmail.services import Services
from crmail.storage import accounts, crm
from crmail.storage.models import (
    Contact,
    Folder,
    InboxItem,
    MailAccount,
    Message,
    OutboxAction,
    Placement,
    TimelineEntry,
)
from crmail.sync.service import SyncService
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.sync.test_inbound import FAST, count, server_flags, wait_for
from tests.sync.test_sending import smtp_settings
from tests.sync.test_two_way import folders_on_server


@dataclass
class Env:
    services: Services
    world: World
    service: SyncService
    client: TestClient
    headers: dict[str, str]
    me: int
    account: int

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        # In a thread: the sync service runs on this test's event loop and must keep going.
        return await asyncio.to_thread(
            self.client.request, method, path, json=body, headers=self.headers
        )

    def state(self) -> str:
        return str(self.services.db.run(lambda s: s.get_one(MailAccount, self.account).state))

    async def reach(self, state: str, timeout: float = 20.0) -> None:
        await wait_for(lambda: self.state() == state, timeout)

    def messages(self) -> int:
        return count(self.services, Message)

    def cursors(self) -> dict[str, tuple[Any, ...]]:
        def read(s: Any) -> dict[str, tuple[Any, ...]]:
            rows = s.scalars(select(Folder).where(Folder.account_id == self.account))
            return {
                f.name: (f.id, f.uidvalidity, f.import_floor, f.import_done, f.import_complete)
                for f in rows
            }

        return dict(self.services.db.run(read))

    def synced(self, folder: str = "INBOX") -> int:
        return int(
            self.services.db.run(
                lambda s: s.scalar(
                    select(Folder.synced).where(
                        Folder.account_id == self.account, Folder.name == folder
                    )
                )
            )
            or 0
        )


@pytest.fixture
def world(services: Services) -> World:
    return new_world(services)


@pytest.fixture
async def env(
    services: Services, world: World, dovecot: Dovecot, mailbox: MailboxAccount
) -> AsyncIterator[Env]:
    new = services.db.run(lambda s: crm.create_user(s, world.workspace_id, mailbox.email))
    me = new.user.id
    world.contact("ivy@client.test", name="Ivy")
    account = world.connect(me, mailbox)
    for i in range(2):
        dovecot.deliver(
            mailbox.email,
            message("ivy@client.test", mailbox.email, f"topic {i}", msgid=f"<t{i}@client.test>"),
        )
    service = SyncService(services.db, services.box, FAST, scan_interval=0.2)
    services.sync = service
    service.start()
    e = Env(
        services,
        world,
        service,
        TestClient(create_app(services)),
        {"Authorization": f"Bearer {new.token}"},
        me,
        account,
    )
    try:
        await e.reach("live")
        await wait_for(lambda: e.messages() == 2)
        yield e
    finally:
        await service.stop()


def mail_from_ivy(box: MailboxAccount, tag: str) -> bytes:
    return message("ivy@client.test", box.email, f"news {tag}", msgid=f"<{tag}@client.test>")


async def test_revoked_password_pauses_and_reconnect_resumes_without_reimport(
    env: Env, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    before = env.cursors()
    synced = env.synced()
    assert before["INBOX"][4] is True  # import complete

    # The password is reset at the provider, which ends the open sessions.
    dovecot.set_password(mailbox.email, "reset-pw-1")
    dovecot.doveadm("kick", mailbox.email)
    await env.reach("auth_error")

    r = await env.call("GET", f"/api/accounts/{env.account}/status")
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["state"] == "auth_error" and st["last_error_code"] == "auth_failed"
    assert st["last_error"]
    assert "application-specific password" in st["hint"]  # the "other" preset's advice
    # Paused: no worker, so nothing retries against the server.
    await wait_for(lambda: env.account not in env.service.running)
    dovecot.deliver(mailbox.email, mail_from_ivy(mailbox, "while-paused"))
    await asyncio.sleep(1.0)
    assert env.account not in env.service.running and env.state() == "auth_error"
    assert env.messages() == 2

    # The old password is refused by the login test; nothing changes.
    r = await env.call("POST", f"/api/accounts/{env.account}/reconnect", {"password": "nope"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "auth_failed"
    assert env.state() == "auth_error"

    r = await env.call("POST", f"/api/accounts/{env.account}/reconnect", {"password": "reset-pw-1"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "connecting"
    await env.reach("live")
    await wait_for(lambda: env.messages() == 3)
    # Resumed from the stored cursors: the same folders, nothing imported again; only
    # the message that arrived meanwhile was fetched.
    assert env.cursors() == before
    assert env.synced() == synced + 1
    assert count(env.services, Placement) == 3
    r = await env.call("GET", f"/api/accounts/{env.account}/status")
    assert r.json()["last_error"] is None and r.json()["hint"] is None


async def test_disconnect_stops_sync_and_queued_changes_wait_for_reconnect(
    env: Env, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    synced = env.synced()
    r = await env.call("POST", f"/api/accounts/{env.account}/disconnect")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "disconnected"
    await wait_for(lambda: env.account not in env.service.running, timeout=5)

    dovecot.deliver(mailbox.email, mail_from_ivy(mailbox, "after-disconnect"))
    thread = env.services.db.run(
        lambda s: s.scalar(select(Message.thread_id).where(Message.message_id == "t0@client.test"))
    )
    r = await env.call("POST", f"/api/threads/{thread}/read", {"read": True})
    assert r.status_code == 202, r.text
    await asyncio.sleep(1.0)
    assert env.messages() == 2 and env.state() == "disconnected"
    # the change waits in the outbox; the server has not been touched
    assert count(env.services, OutboxAction, OutboxAction.state == "pending") == 1
    assert "\\Seen" not in server_flags(dovecot, mailbox.email)["<t0@client.test>"]
    # all data kept
    assert count(env.services, InboxItem) == 2 and count(env.services, TimelineEntry) > 0

    # Reconnect without a body: the stored credentials, tested first.
    r = await env.call("POST", f"/api/accounts/{env.account}/reconnect", {})
    assert r.status_code == 200, r.text
    await env.reach("live")
    await wait_for(lambda: env.messages() == 3)
    await wait_for(lambda: "\\Seen" in server_flags(dovecot, mailbox.email)["<t0@client.test>"])
    assert env.synced() == synced + 1


async def test_new_password_keeps_cursors_new_address_restarts_import(
    env: Env, dovecot: Dovecot, mailbox: MailboxAccount, smtp_relay: SmtpRelay
) -> None:
    # Sending through the relay (no AUTH): kept across the address change.
    env.services.db.run(
        lambda s: setattr(
            s.get_one(MailAccount, env.account),
            "settings",
            {**s.get_one(MailAccount, env.account).settings, **smtp_settings(smtp_relay)},
        )
    )
    before = env.cursors()
    dovecot.set_password(mailbox.email, "changed-pw-2")
    r = await env.call("PATCH", f"/api/accounts/{env.account}", {"password": "changed-pw-2"})
    assert r.status_code == 200, r.text
    await env.reach("live")
    assert env.cursors() == before, "a new password alone must not restart the import"

    # Another mailbox on the same server: one message both mailboxes hold, one new.
    second = dovecot.add_user(f"second-{uuid.uuid4().hex[:6]}@example.test", "pw-second")
    shared = message("ivy@client.test", "team@client.test", "to both", msgid="<both@client.test>")
    dovecot.deliver(mailbox.email, shared)
    await wait_for(lambda: env.messages() == 3)
    dovecot.deliver(second.email, shared)
    dovecot.deliver(second.email, mail_from_ivy(second, "only-second"))
    dovecot.deliver(mailbox.email, mail_from_ivy(mailbox, "old-after-switch"))

    r = await env.call(
        "PATCH",
        f"/api/accounts/{env.account}",
        {"email": second.email, "password": second.password},
    )
    assert r.status_code == 200, r.text
    assert r.json()["email"] == second.email
    assert r.json()["settings"]["username"] == second.email  # the login followed the address
    await env.reach("live")
    await wait_for(lambda: count(env.services, Placement) == 2)
    # fresh folders: the old mailbox's cursors and copies are gone; the new INBOX was
    # imported from scratch (both its messages counted), the shared one not stored again
    assert env.synced() == 2
    # nothing lost, nothing stored twice, the old address's new mail not synced
    ids = {r[0] for r in env.services.db.run(lambda s: s.execute(select(Message.message_id)).all())}
    assert ids == {
        "t0@client.test",
        "t1@client.test",
        "both@client.test",
        "only-second@client.test",
    }
    assert count(env.services, InboxItem) == 4

    # New CRM email goes from the new address.
    r = await env.call("POST", "/api/messages", {"to": ["ivy@client.test"], "text": "hello"})
    assert r.status_code == 202, r.text
    await wait_for(lambda: len(smtp_relay.accepted) == 1)
    assert smtp_relay.accepted[0].mail_from == second.email
    assert b"From: " in smtp_relay.accepted[0].data
    assert second.email.encode() in smtp_relay.accepted[0].data.split(b"\r\n\r\n")[0]

    # The old address is still free to connect; the new one is now taken.
    r = await env.call("PATCH", f"/api/accounts/{env.account}", {"email": second.email})
    assert r.status_code == 200  # unchanged address: not a conflict with itself


async def test_delete_keeps_data_drops_queued_work_and_never_touches_the_server(
    env: Env, dovecot: Dovecot, mailbox: MailboxAccount, smtp_relay: SmtpRelay
) -> None:
    ivy = env.services.db.run(lambda s: s.scalars(select(Contact.id)).one())
    deal = env.world.deal("Big deal", ivy)
    first = env.services.db.run(
        lambda s: s.scalar(select(Message.id).where(Message.message_id == "t0@client.test"))
    )
    r = await env.call(
        "POST", f"/api/messages/{first}/links", {"subject_type": "deal", "subject_id": deal}
    )
    assert r.status_code == 201, r.text
    env.services.db.run(
        lambda s: setattr(
            s.get_one(MailAccount, env.account),
            "settings",
            {**s.get_one(MailAccount, env.account).settings, **smtp_settings(smtp_relay)},
        )
    )
    # Queue work with the sync service stopped, so nothing drains it before the delete.
    await env.service.stop()
    thread = env.services.db.run(lambda s: s.get_one(Message, first).thread_id)
    assert (
        await env.call("POST", f"/api/threads/{thread}/read", {"read": True})
    ).status_code == 202
    r = await env.call("POST", "/api/messages", {"to": ["ivy@client.test"], "text": "queued"})
    assert r.status_code == 202, r.text
    queued_send = r.json()["message_id"]

    def server_view() -> tuple[str, ...]:
        return (
            dovecot.doveadm("mailbox", "list", "-u", mailbox.email),
            dovecot.doveadm(
                "fetch", "-u", mailbox.email, "mailbox uid flags hdr.message-id", "all"
            ),
        )

    on_server = server_view()
    messages = env.messages()
    links = count(env.services, TimelineEntry)

    r = await env.call("DELETE", f"/api/accounts/{env.account}")
    assert r.status_code == 204, r.text
    await asyncio.sleep(0.5)
    assert env.services.db.run(lambda s: s.get(MailAccount, env.account)) is None
    # the CRM keeps every message and link
    assert env.messages() == messages and count(env.services, TimelineEntry) == links
    deal_timeline = await env.call("GET", f"/api/deals/{deal}/timeline")
    # the synced message, and the unsent reply (linked when it was written)
    assert {i["message"]["id"] for i in deal_timeline.json()["items"]} == {first, queued_send}
    # queued work is gone with the account: never sent later, never synced back
    assert count(env.services, OutboxAction) == 0
    assert env.services.db.run(lambda s: s.get_one(Message, queued_send).send_state) == "failed"
    assert env.services.db.run(lambda s: s.get_one(Message, queued_send).send_error) == (
        accounts.REMOVED_SEND_ERROR
    )
    # mail kept, but out of the Inbox (its only INBOX copy was in this mailbox)
    states = {
        st for (st,) in env.services.db.run(lambda s: s.execute(select(InboxItem.state)).all())
    }
    assert states == {"archived"}
    r = await env.call("GET", f"/api/messages/{first}")
    assert r.status_code == 200  # still readable by its owner
    await asyncio.sleep(0.5)
    assert smtp_relay.accepted == []
    assert server_view() == on_server
    assert folders_on_server(dovecot, mailbox.email, "<t1@client.test>") == ["INBOX"]
