"""Microsoft Graph sync benchmark against the fake Graph (tests/fakes/graph.py) on loopback.

Prints, beside a baseline measured in the same run:

1. import throughput: a minimal client listing the Inbox through its delta (the same
   pages and $select crmail asks for) and fetching every message's MIME ($value, four
   requests in flight, as Graph allows per mailbox) vs. crmail's import (delta pages,
   judging on metadata, MIME of the mail that enters only, parse, store); half the
   mailbox is a contact's mail, half private;
2. push latency: a message created in the fake → its change notification POSTed to
   /api/push/graph (clientState checked) → the worker's delta round → message stored;
   the safety poll is an hour, so only the notification can bring mail in time (target
   p99 < 1 s).

The fake runs in this process (a thread), so figures include its own cost; compare
ratios, not absolute times. Nothing here was measured against Microsoft.

Usage: .venv/bin/python bench/graph_bench.py [--messages 2000] [--deliveries 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes

from sqlalchemy import select
from tests.fakes.graph import FakeGraph, Mailbox
from tests.fakes.server import LoopbackServer

from crmail.api.app import create_app
from crmail.config import Settings
from crmail.crypto import new_key
from crmail.providers.graph import GraphClient
from crmail.services import Services
from crmail.storage import accounts, crm
from crmail.storage.models import MailAccount, Message
from crmail.sync.graph.options import GraphOptions
from crmail.sync.graph.rounds import IMPORT_SELECT
from crmail.sync.graph.worker import GraphWorker
from crmail.sync.inbound import SyncOptions
from crmail.sync.worker import WorkerOptions

BODY = ("Hello, this is a realistic business email body line. " * 40 + "\n") * 4  # ~9 KB
CONTACT, STRANGER = "client@customer.example", "friend@private.example"
PAGE_SIZE = 100


def make_message(i: int, sender: str, to: str, when: datetime) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = f"Proposal #{i}"
    m["Date"] = format_datetime(when)
    m["Message-ID"] = f"<mbench-{i}-{time.time_ns()}@client.example>"
    m.set_content(BODY)
    return m.as_bytes()


def open_services(root: Path, name: str) -> Services:
    return Services.open(Settings(data_dir=root / name, secret_keys=(new_key(),)))


def connect(services: Services, box: Mailbox, token: str) -> int:
    def make(s):  # type: ignore[no-untyped-def]
        ws = crm.create_workspace(s, "Bench").id
        user = crm.create_user(s, ws, box.address, name="Bench", role="admin")
        crm.create_contact(s, ws, name="Client", emails=[CONTACT])
        return accounts.create_account(
            s,
            workspace_id=ws,
            user_id=user.user.id,
            email=box.address,
            provider="graph",
            settings={"history_days": 365},
            secret=services.box.seal({"oauth2_token": token}),
        )

    return int(services.db.run(make))


async def baseline(url: str, token: str) -> tuple[int, float]:
    """List the Inbox, fetch every MIME: no judging, no storing."""

    async def access() -> str:
        return token

    t0 = time.perf_counter()
    async with GraphClient(access, base_url=url) as client:
        listed = await client.messages_delta("inbox", select=IMPORT_SELECT, page_size=PAGE_SIZE)
        bodies = await asyncio.gather(*(client.get_mime(m.id) for m in listed.messages))
    return sum(1 for b in bodies if b), time.perf_counter() - t0


async def bench_import(root: Path, fake: FakeGraph, url: str, n: int) -> None:
    box = fake.add_mailbox("import@contoso.example", token="import-token")
    now = datetime.now(UTC)
    for i in range(n):
        when = now - timedelta(minutes=i + 1)
        sender = CONTACT if i % 2 == 0 else STRANGER
        # A conversation id given: the fake's own lookup reads every stored message.
        raw = make_message(i, sender, box.address, when)
        box.deliver(raw, received=when, conversation_id=f"conv-{i}")
    got, base_s = await baseline(url, "import-token")
    services = open_services(root, "import")
    account = connect(services, box, "import-token")
    options = WorkerOptions(
        sync=SyncOptions(batch_size=PAGE_SIZE, history_days=365),
        graph=GraphOptions(base_url=url, page_size=PAGE_SIZE),
    )
    worker = GraphWorker(services.db, services.box, account, options)
    t0 = time.perf_counter()
    await worker.run_once()
    crm_s = time.perf_counter() - t0
    stored = services.db.run(lambda s: len(s.scalars(select(Message.id)).all()))
    mime = sum(1 for r in fake.requests if r.path.endswith("/$value")) - got
    print(f"import of {n} messages ({n // 2} a contact's, {n - n // 2} private):")
    print(f"  baseline delta + $value: {got} bodies in {base_s:.2f}s = {got / base_s:.0f} msg/s")
    print(
        f"  crmail import: {n} judged, {stored} stored, {mime} bodies fetched in {crm_s:.2f}s"
        f" = {n / crm_s:.0f} msg/s examined, {stored / crm_s:.0f} stored/s"
    )
    print(f"  ratio (examined / baseline): {(n / crm_s) / (got / base_s):.2f}")
    services.close()


class Wakes:
    def __init__(self, worker: GraphWorker, loop: asyncio.AbstractEventLoop) -> None:
        self.worker, self.loop = worker, loop

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, ids: object, default_provider: bool = False) -> None:
        self.loop.call_soon_threadsafe(self.worker.wake)


async def bench_push(root: Path, fake: FakeGraph, url: str, deliveries: int) -> None:
    box = fake.add_mailbox("push@contoso.example", token="push-token")
    services = open_services(root, "push")
    account = connect(services, box, "push-token")
    latencies: list[float] = []
    with LoopbackServer(create_app(services)) as api:
        options = WorkerOptions(
            poll_interval=3600.0,
            graph=GraphOptions(base_url=url, notification_url=f"{api.url}/api/push/graph"),
        )
        worker = GraphWorker(services.db, services.box, account, options)
        services.sync = Wakes(worker, asyncio.get_running_loop())  # type: ignore[assignment]
        task = asyncio.create_task(worker.run())
        try:
            while not (
                any(s.box is box for s in fake.subscriptions.values())
                and services.db.run(lambda s: s.get_one(MailAccount, account).state) == "live"
            ):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # the round the new subscription asked for
            for i in range(deliveries):
                raw = make_message(i, CONTACT, box.address, datetime.now(UTC))
                msgid = raw.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()
                t0 = time.perf_counter()
                box.deliver(raw, conversation_id=f"push-{i}")
                # Graph POSTs the notification; the fake does it when told.
                statuses = await asyncio.to_thread(fake.flush)
                assert statuses == [202], statuses
                # Looked for off the event loop: the worker shares it.
                while not await services.db.read(
                    lambda s, m=msgid: s.scalar(select(Message.id).where(Message.message_id == m))
                ):
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - t0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"notification → stored, {deliveries} deliveries (safety poll 1 h):")
    print(
        f"  p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
        f" max {latencies[-1] * 1000:.0f} ms"
    )
    services.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--deliveries", type=int, default=100)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crmail-graph-bench-"))
    fake = FakeGraph(seed=3)
    with LoopbackServer(fake.app) as server:
        url = server.url + "/v1.0"
        await bench_import(root, fake, url, args.messages)
        await bench_push(root, fake, url, args.deliveries)


if __name__ == "__main__":
    asyncio.run(main())
