"""A full disk under crmail's data directory (a size-limited tmpfs, filled with a ballast
file): refused writes are said in words, nothing acknowledged is lost, nothing is stored
twice, and work resumes by itself once space is freed. SQLite only: the database file and
its write-ahead log live in the data directory (a PostgreSQL server's disk is its own).

- API writes answer 503 in the one error shape ("database disk is full"), reads go on;
- the CLI prints one line and exits 1;
- the database passes SQLite's integrity check after every episode.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crmail.api import create_app
from crmail.config import Settings
from crmail.crypto import new_key
from crmail.services import Services
from crmail.storage import crm
from crmail.storage.models import Contact, Message, OutboxAction, Placement
from crmail.sync import sending
from crmail.sync.inbound import SyncOptions
from crmail.sync.worker import WorkerOptions
from tests.db_fixtures import LOOPBACK
from tests.factories import World, message, new_world
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.servers.small_disk import SmallDisk
from tests.sync.test_inbound import wait_for
from tests.sync.test_recovery import Running
from tests.sync.test_sending import header_of, sent_copies, smtp_settings

KEY = new_key()


def disk_settings(disk: SmallDisk) -> Settings:
    return Settings(
        data_dir=disk.root,
        database_url=f"sqlite:///{disk.root / 'crmail.db'}",
        secret_keys=(KEY,),
        mail_allowed_networks=LOOPBACK,
    )


@pytest.fixture
def on_small_disk(small_disk: SmallDisk) -> Iterator[Services]:
    svc = Services.open(disk_settings(small_disk))
    try:
        yield svc
    finally:
        small_disk.free()
        svc.close()


@dataclass
class Api:
    client: TestClient
    headers: dict[str, str]
    world: World


@pytest.fixture
def api(on_small_disk: Services, mailbox: MailboxAccount) -> Iterator[Api]:
    world = new_world(on_small_disk)
    new = on_small_disk.db.run(lambda s: crm.create_user(s, world.workspace_id, mailbox.email))
    world.connect(new.user.id, mailbox, smtp_host="127.0.0.1", smtp_port=1, smtp_auth=False)
    with TestClient(create_app(on_small_disk)) as client:
        yield Api(client, {"Authorization": f"Bearer {new.token}"}, world)


def assert_disk_full(r: httpx.Response) -> None:
    body = r.json()
    assert r.status_code == 503, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "hint"}, body
    assert body["error"]["code"] == "database_error", body
    assert body["error"]["message"].startswith("database disk is full"), body
    assert body["error"]["hint"], body


def count(services: Services, model: type) -> int:
    return int(services.db.run(lambda s: s.scalar(select(func.count()).select_from(model))))


def test_api_writes_on_a_full_disk_are_refused_in_words_and_reads_go_on(
    api: Api, on_small_disk: Services, small_disk: SmallDisk
) -> None:
    services, client, h = on_small_disk, api.client, api.headers
    ok = client.post("/api/contacts", json={"name": "Before", "emails": ["b@x.test"]}, headers=h)
    assert ok.status_code == 201, ok.json()
    attachment = {
        "filename": "quote.pdf",
        "content_type": "application/pdf",
        "data_base64": base64.b64encode(os.urandom(64 * 1024)).decode(),
    }
    send = {"to": ["b@x.test"], "subject": "Quote", "text": "Here", "attachments": [attachment]}

    small_disk.fill()
    r = client.post("/api/contacts", json={"name": "During", "emails": ["d@x.test"]}, headers=h)
    assert_disk_full(r)
    assert_disk_full(client.post("/api/messages", json=send, headers=h))
    # Reads go on, and show that nothing refused was stored.
    listed = client.get("/api/contacts", headers=h)
    assert listed.status_code == 200, listed.json()
    assert [c["name"] for c in listed.json()] == ["Before"]
    assert client.get("/api/accounts", headers=h).status_code == 200
    assert count(services, Message) == 0 and count(services, OutboxAction) == 0

    small_disk.free()
    assert small_disk.integrity() == "ok"
    again = client.post("/api/contacts", json={"name": "During", "emails": ["d@x.test"]}, headers=h)
    assert again.status_code == 201, again.json()
    queued = client.post("/api/messages", json=send, headers=h)
    assert queued.status_code == 202, queued.json()
    assert count(services, Contact) == 2
    assert count(services, Message) == 1 and count(services, OutboxAction) == 1
    assert small_disk.integrity() == "ok"


def crmail(disk: SmallDisk, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CRMAIL_DATA_DIR": str(disk.root),
        "CRMAIL_DATABASE_URL": f"sqlite:///{disk.root / 'crmail.db'}",
        "CRMAIL_SECRET_KEY": KEY,
    }
    return cli(env, *args)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmail.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_on_a_full_disk_says_so_in_words_without_a_traceback(
    small_disk: SmallDisk,
) -> None:
    assert crmail(small_disk, "migrate").returncode == 0
    small_disk.fill()
    try:
        add = crmail(
            small_disk,
            "user",
            "add",
            "--workspace-name",
            "Acme",
            "--email",
            "a@x.test",
            "--no-password",
        )
        assert add.returncode == 1, add.stderr
        assert "Traceback" not in add.stderr, add.stderr
        first = add.stderr.splitlines()[0]
        assert first.startswith("error: database disk is full — "), add.stderr
        # A new process cannot even size SQLite's shared-memory index: said alike.
        status = crmail(small_disk, "status")
        assert status.returncode == 1, status.stderr
        assert "Traceback" not in status.stderr, status.stderr
        assert status.stderr.startswith("error: database disk is full — "), status.stderr
    finally:
        small_disk.free()
    assert small_disk.integrity() == "ok"
    added = crmail(
        small_disk,
        "user",
        "add",
        "--workspace-name",
        "Acme",
        "--email",
        "a@x.test",
        "--no-password",
    )
    assert added.returncode == 0, added.stderr


# --- sync ----------------------------------------------------------------------------------

OPTIONS = WorkerOptions(
    sync=SyncOptions(batch_size=5),
    poll_interval=0.2,
    idle_timeout=5,
    min_backoff=0.05,
    max_backoff=1.0,
)


def client_mail(box: MailboxAccount, tag: str) -> bytes:
    body = f"about {tag}\n" + "x" * 2000
    return message("ivy@client.test", box.email, f"about {tag}", body, msgid=f"<{tag}@client.test>")


@dataclass
class Seller:
    """A user whose mailbox is connected, and an API client signed in as them."""

    account: int
    token: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def status(self) -> dict[str, object]:
        r = self.client.get(f"/api/accounts/{self.account}/status", headers=self.headers)
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    def says_disk_full(self) -> bool:
        return str(self.status()["last_error"]).startswith("database disk is full")

    def queue_send(self, to: str, text: str) -> int:
        queued = self.client.post(
            "/api/messages", json={"to": [to], "text": text}, headers=self.headers
        )
        assert queued.status_code == 202, queued.json()
        return int(queued.json()["message_id"])

    def send_state(self, mid: int) -> str:
        r = self.client.get(f"/api/messages/{mid}", headers=self.headers)
        assert r.status_code == 200, r.json()
        return str(r.json()["send_state"])


def seller(services: Services, mailbox: MailboxAccount, contact: str, **connect: Any) -> Seller:
    world = new_world(services)
    new = services.db.run(lambda s: crm.create_user(s, world.workspace_id, mailbox.email))
    world.contact(contact)
    account = world.connect(new.user.id, mailbox, **connect)
    return Seller(account, new.token, TestClient(create_app(services)))


def stored_tags(services: Services) -> list[str]:
    return sorted(
        services.db.run(lambda s: [str(m) for m in s.scalars(select(Message.message_id))])
    )


async def test_sync_on_a_full_disk_says_so_stores_nothing_half_and_resumes_by_itself(
    on_small_disk: Services, small_disk: SmallDisk, dovecot: Dovecot, mailbox: MailboxAccount
) -> None:
    services = on_small_disk
    me = seller(services, mailbox, "ivy@client.test")
    client = me.client
    for i in range(3):
        dovecot.deliver(mailbox.email, client_mail(mailbox, f"before{i}"))
    run = Running(services, me.account, OPTIONS)
    try:
        await wait_for(lambda: run.state() == "live" and len(stored_tags(services)) == 3, 30)
        assert me.status()["state"] == "live"
        small_disk.fill()
        for i in range(12):
            dovecot.deliver(mailbox.email, client_mail(mailbox, f"during{i}"))

        def retrying_on_a_full_disk() -> bool:
            st = me.status()
            return (
                st["state"] == "retrying"
                and st["last_error_code"] == "database_error"
                and me.says_disk_full()
            )

        await wait_for(retrying_on_a_full_disk, 30)
        assert len(stored_tags(services)) == 3
        assert not run.task.done()  # retrying, not dead
        small_disk.free()
        expected = sorted(
            [f"before{i}@client.test" for i in range(3)]
            + [f"during{i}@client.test" for i in range(12)]
        )
        await wait_for(lambda: stored_tags(services) == expected, 30)
        await wait_for(lambda: me.status()["last_error"] is None, 30)
        assert me.status()["state"] == "live"
        assert count(services, Placement) == 15

        # Done on a full disk: refused in words, the Inbox still reads, then it works.
        h = me.headers
        inbox = client.get("/api/inbox", headers=h)
        assert inbox.status_code == 200, inbox.json()
        thread = inbox.json()["items"][0]["message"]["thread_id"]
        small_disk.fill()
        assert_disk_full(client.post(f"/api/threads/{thread}/done", headers=h))
        still = client.get("/api/inbox", headers=h)
        assert still.status_code == 200 and len(still.json()["items"]) == 15, still.json()
        small_disk.free()
        done = client.post(f"/api/threads/{thread}/done", headers=h)
        assert done.status_code == 202, done.json()
        after = client.get("/api/inbox", headers=h).json()["items"]
        assert thread not in [i["message"]["thread_id"] for i in after]
    finally:
        await run.stop()
    assert small_disk.integrity() == "ok"


# --- sending -------------------------------------------------------------------------------


async def test_a_send_whose_sent_stage_meets_a_full_disk_goes_out_once_and_is_recorded(
    on_small_disk: Services,
    small_disk: SmallDisk,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = on_small_disk
    me = seller(services, mailbox, "cto@client.test", **smtp_settings(smtp_relay))
    mid = me.queue_send("cto@client.test", "the quote")

    real_send = sending.smtp.send

    async def send_then_fill(*args: Any, **kwargs: Any) -> Any:
        # The disk fills the moment the server has taken the message: "sent" cannot be
        # recorded.
        result = await real_send(*args, **kwargs)
        small_disk.fill()
        return result

    monkeypatch.setattr(sending.smtp, "send", send_then_fill)
    run = Running(services, me.account, OPTIONS)
    try:
        await wait_for(lambda: len(smtp_relay.accepted) == 1, 30)
        await wait_for(me.says_disk_full, 30)
        small_disk.free()
        await wait_for(lambda: me.send_state(mid) == "sent", 30)
        msgid = header_of(services, mid)
        await wait_for(lambda: sent_copies(dovecot, mailbox.email, msgid) == 1, 30)
        await wait_for(lambda: count(services, OutboxAction) == 0 or outbox_done(services), 30)
    finally:
        await run.stop()
    assert len(smtp_relay.accepted) == 1, "sent twice"
    assert sent_copies(dovecot, mailbox.email, msgid) == 1
    assert small_disk.integrity() == "ok"


def outbox_done(services: Services) -> bool:
    return services.db.run(
        lambda s: all(a.state == "done" for a in s.scalars(select(OutboxAction)))
    )


async def test_a_send_queued_before_the_disk_filled_waits_and_goes_out_once(
    on_small_disk: Services,
    small_disk: SmallDisk,
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    smtp_relay: SmtpRelay,
) -> None:
    services = on_small_disk
    me = seller(services, mailbox, "cfo@client.test", **smtp_settings(smtp_relay))
    mid = me.queue_send("cfo@client.test", "the terms")
    small_disk.fill()
    run = Running(services, me.account, OPTIONS)
    try:
        # "sending" cannot be recorded before the handoff: nothing goes out yet.
        await wait_for(me.says_disk_full, 30)
        assert smtp_relay.accepted == []
        small_disk.free()
        await wait_for(lambda: me.send_state(mid) == "sent", 30)
        await wait_for(lambda: outbox_done(services), 30)
    finally:
        await run.stop()
    assert len(smtp_relay.accepted) == 1
    assert sent_copies(dovecot, mailbox.email, header_of(services, mid)) == 1
    assert small_disk.integrity() == "ok"


def test_a_first_start_on_a_full_disk_leaves_no_empty_secret_key_behind(
    small_disk: SmallDisk,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CRMAIL_SECRET_KEY"}
    env["CRMAIL_DATA_DIR"] = str(small_disk.root / "fresh")
    small_disk.fill()
    try:
        first = cli(env, "status")
        assert first.returncode == 1, first.stderr
        assert "Traceback" not in first.stderr, first.stderr
        assert first.stderr.startswith("error: cannot create or read the secret key "), first.stderr
        # Neither the key nor its spare is left half-written for the next start to trust.
        fresh = small_disk.root / "fresh"
        assert not fresh.exists() or sorted(p.name for p in fresh.iterdir()) == []
    finally:
        small_disk.free()
    again = cli(env, "migrate")
    assert again.returncode == 0, again.stderr
    assert len((small_disk.root / "fresh" / "secret.key").read_text().strip()) == 44
