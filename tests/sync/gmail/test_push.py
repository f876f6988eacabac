"""Gmail push: users.watch at the start, Pub/Sub's POST to /api/push/gmail/{token}
wakes the account's worker, and the change is stored without waiting for the poll."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace

import httpx
import pytest

from crmail.api.app import create_app
from crmail.services import Services
from crmail.storage.models import MailAccount
from crmail.sync.gmail.worker import GmailWorker
from tests.fakes.pubsub import CERTS_PATH
from tests.fakes.server import LoopbackServer
from tests.sync.gmail.conftest import Google
from tests.sync.test_inbound import wait_for

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"
TOKEN = "push-secret-4f9a"


class Wakes:
    """Stands in for the sync service: wake-ups reach the worker on its own loop."""

    def __init__(self, worker: GmailWorker, loop: asyncio.AbstractEventLoop) -> None:
        self.worker, self.loop = worker, loop
        self.woken: list[list[int]] = []

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, account_ids: Iterable[int], default_provider: bool = False) -> None:
        ids = list(account_ids)
        self.woken.append(ids)
        if self.worker.account_id in ids:
            self.loop.call_soon_threadsafe(self.worker.wake)


@pytest.fixture
def api(google: Google) -> Iterator[str]:
    services: Services = google.services
    services.settings = replace(services.settings, gmail_push_token=TOKEN)
    with LoopbackServer(create_app(services)) as server:
        yield server.url


AUDIENCE = "https://crm.example.test/api/push/gmail"


@pytest.fixture
def signed_api(google: Google) -> Iterator[str]:
    """Push tokens configured (the fake's keys stand in for Google's); the path token too."""
    services: Services = google.services
    services.settings = replace(
        services.settings,
        gmail_push_token=TOKEN,
        gmail_push_service_account=google.fake.pubsub.service_account,
        gmail_push_audience=AUDIENCE,
        google_certs_url=google.url + CERTS_PATH,
    )
    google.fake.pubsub.audience = AUDIENCE
    with LoopbackServer(create_app(services)) as server:
        yield server.url


def notification(address: str, history_id: int = 1) -> dict[str, object]:
    data = json.dumps({"emailAddress": address, "historyId": history_id}).encode()
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": "1"}}


@pytest.mark.parametrize("signed", [False, True], ids=["path-token", "push-token"])
async def test_a_push_stores_new_mail_without_waiting_for_the_poll(
    google: Google, request: pytest.FixtureRequest, signed: bool
) -> None:
    api = request.getfixturevalue("signed_api" if signed else "api")
    google.world.contact(CUSTOMER)
    # The safety poll would take an hour: only the push can bring the message in time.
    worker = google.worker(
        poll_interval=3600.0,
        gmail=replace(google.options.gmail, push_topic="projects/crm/topics/gmail"),
    )
    wakes = Wakes(worker, asyncio.get_running_loop())
    google.services.sync = wakes  # type: ignore[assignment]
    google.fake.push_url = f"{api}/api/push/gmail" + ("" if signed else f"/{TOKEN}")
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(
            lambda: (
                google.services.db.run(lambda s: s.get_one(MailAccount, google.account_id).state)
                == "live"
                and google.box.watch is not None
            )
        )
        assert google.box.watch is not None
        assert google.box.watch["topicName"] == "projects/crm/topics/gmail"
        rounds = worker.rounds
        gid = google.deliver(CUSTOMER, "Pushed to us")
        # Stored by a round after the one that finished the import: the push's.
        await wait_for(lambda: google.message_id_of(gid) is not None and worker.rounds > rounds)
        assert [ids for ids in wakes.woken if google.account_id in ids]
        assert any(status == 204 for _, _, status in google.fake.pushed)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_push_endpoint_wants_its_token_and_a_notification(
    google: Google, api: str
) -> None:
    woken: list[list[int]] = []

    class Record:
        def accounts_changed(self) -> None:
            pass

        def actions_queued(self, ids: Iterable[int], default_provider: bool = False) -> None:
            woken.append(list(ids))

    google.services.sync = Record()  # type: ignore[assignment]
    async with httpx.AsyncClient(base_url=api) as c:
        wrong = await c.post("/api/push/gmail/guess", json=notification(google.address))
        assert wrong.status_code == 404 and wrong.json()["error"]["code"]
        assert woken == []
        bad = await c.post(f"/api/push/gmail/{TOKEN}", json={"message": {"data": "%%%"}})
        assert bad.status_code == 422 and bad.json()["error"]["code"]
        unknown = await c.post(f"/api/push/gmail/{TOKEN}", json=notification("no@one.test"))
        assert unknown.status_code == 204 and woken == []  # acknowledged, nobody woken
        ok = await c.post(f"/api/push/gmail/{TOKEN}", json=notification(google.address.upper(), 99))
        assert ok.status_code == 204
    assert woken == [[google.account_id]]


class Record:
    def __init__(self) -> None:
        self.woken: list[list[int]] = []

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, ids: Iterable[int], default_provider: bool = False) -> None:
        self.woken.append(list(ids))


async def test_with_push_tokens_configured_a_push_needs_a_valid_one(
    google: Google, signed_api: str
) -> None:
    record = Record()
    google.services.sync = record  # type: ignore[assignment]
    pubsub = google.fake.pubsub
    note = notification(google.address)
    async with httpx.AsyncClient(base_url=signed_api) as c:
        refused = [
            await c.post("/api/push/gmail", json=note),
            await c.post("/api/push/gmail", json=note, headers={"Authorization": "Bearer x.y.z"}),
            await c.post(
                "/api/push/gmail",
                json=note,
                headers={"Authorization": f"Bearer {pubsub.sign(aud='https://other.test/')}"},
            ),
            await c.post(
                "/api/push/gmail",
                json={"not": "a notification"},
                headers={"Authorization": f"Bearer {pubsub.sign(email='x@evil.test')}"},
            ),
            # The path token alone is not enough any more.
            await c.post(f"/api/push/gmail/{TOKEN}", json=note),
        ]
        for answer in refused:
            assert answer.status_code == 401, answer.text
            error = answer.json()["error"]
            assert error["code"] == "push_unauthenticated" and error["message"]
        assert record.woken == []
        good = {"Authorization": f"Bearer {pubsub.sign()}"}
        ok = await c.post("/api/push/gmail", json=note, headers=good)
        assert ok.status_code == 204
        both = await c.post(f"/api/push/gmail/{TOKEN}", json=note, headers=good)
        assert both.status_code == 204
    assert record.woken == [[google.account_id], [google.account_id]]


async def test_the_signed_endpoint_is_off_without_push_tokens(google: Google, api: str) -> None:
    google.services.sync = Record()  # type: ignore[assignment]
    async with httpx.AsyncClient(base_url=api) as c:
        off = await c.post("/api/push/gmail", json=notification(google.address))
    assert off.status_code == 404 and off.json()["error"]["code"] == "not_found"


async def test_a_refused_push_token_is_not_logged(
    google: Google, signed_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = google.fake.pubsub.sign(aud="https://other.test/")
    async with httpx.AsyncClient(base_url=signed_api) as c:
        answer = await c.post(
            "/api/push/gmail",
            json=notification(google.address),
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 401
    assert "Gmail push refused" in caplog.text
    assert token not in caplog.text and token.split(".")[1] not in caplog.text
