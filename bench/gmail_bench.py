"""Gmail API sync benchmark against the fake Gmail (tests/fakes/gmail.py) on loopback.

Prints, beside a baseline measured in the same run:

1. import throughput: a minimal client listing every message and fetching every raw
   body through the batch endpoint vs. crmail's import (list, metadata batch, judging,
   raw bodies of the mail that enters only, parse, store); half the mailbox is a
   contact's mail, half private;
2. push latency: Gmail change → Pub/Sub-style POST to /api/push/gmail/<token> → the
   worker reads history → message stored; the safety poll is an hour, so only the push
   can bring mail in time (target p99 < 1 s).

The fake runs in this process (a thread), so figures include its own cost; compare
ratios, not absolute times. Nothing here was measured against Google.

Usage: .venv/bin/python bench/gmail_bench.py [--messages 2000] [--deliveries 100]
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
from tests.fakes.gmail import FakeGmail, Mailbox
from tests.fakes.server import LoopbackServer

from crmail.api.app import create_app
from crmail.config import Settings
from crmail.crypto import new_key
from crmail.providers.gmail import GmailClient
from crmail.services import Services
from crmail.storage import accounts, crm
from crmail.storage.models import MailAccount, Message
from crmail.sync.gmail.options import GmailOptions
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.inbound import SyncOptions
from crmail.sync.worker import WorkerOptions

BODY = ("Hello, this is a realistic business email body line. " * 40 + "\n") * 4  # ~9 KB
CONTACT, STRANGER = "client@customer.example", "friend@private.example"
PUSH_TOKEN = "bench-push-token"


def make_message(i: int, sender: str, to: str, when: datetime) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = f"Proposal #{i}"
    m["Date"] = format_datetime(when)
    m["Message-ID"] = f"<gbench-{i}-{time.time_ns()}@client.example>"
    m.set_content(BODY)
    return m.as_bytes()


def open_services(root: Path, name: str, **settings: object) -> Services:
    return Services.open(
        Settings(data_dir=root / name, secret_keys=(new_key(),), **settings)  # type: ignore[arg-type]
    )


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
            provider="gmail",
            settings={"history_days": 365},
            secret=services.box.seal({"oauth2_token": token}),
        )

    return int(services.db.run(make))


async def baseline(url: str, token: str) -> tuple[int, float]:
    """List everything, fetch every raw body in batches: no judging, no storing."""

    async def access() -> str:
        return token

    t0 = time.perf_counter()
    async with GmailClient(access, base_url=url) as client:
        ids = [ref.id async for ref in client.iter_messages()]
        n = 0
        for i in range(0, len(ids), 100):
            got = await client.batch_get_messages(ids[i : i + 100], format="raw")
            n += sum(1 for m in got.values() if getattr(m, "raw", None))
    return n, time.perf_counter() - t0


async def bench_import(root: Path, fake: FakeGmail, url: str, n: int) -> None:
    box = fake.add_mailbox("import@gmail.example", token="import-token")
    now = datetime.now(UTC)
    for i in range(n):
        when = now - timedelta(minutes=i + 1)
        sender = CONTACT if i % 2 == 0 else STRANGER
        box.deliver(make_message(i, sender, box.address, when), internal_date=when)
    got, base_s = await baseline(url, "import-token")
    services = open_services(root, "import")
    account = connect(services, box, "import-token")
    options = WorkerOptions(sync=SyncOptions(batch_size=100), gmail=GmailOptions(base_url=url))
    worker = GmailWorker(services.db, services.box, account, options)
    t0 = time.perf_counter()
    await worker.run_once()
    crm_s = time.perf_counter() - t0
    stored = services.db.run(lambda s: len(s.scalars(select(Message.id)).all()))
    raw = worker.ingest.raw_fetched if worker.ingest else 0
    print(f"import of {n} messages ({n // 2} a contact's, {n - n // 2} private):")
    print(f"  baseline list + raw batch: {got} bodies in {base_s:.2f}s = {got / base_s:.0f} msg/s")
    print(
        f"  crmail import: {n} judged, {stored} stored, {raw} bodies fetched in {crm_s:.2f}s"
        f" = {n / crm_s:.0f} msg/s examined, {stored / crm_s:.0f} stored/s"
    )
    print(f"  ratio (examined / baseline): {(n / crm_s) / (got / base_s):.2f}")
    services.close()


class Wakes:
    def __init__(self, worker: GmailWorker, loop: asyncio.AbstractEventLoop) -> None:
        self.worker, self.loop = worker, loop

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, ids: object, default_provider: bool = False) -> None:
        self.loop.call_soon_threadsafe(self.worker.wake)


async def bench_push(root: Path, fake: FakeGmail, url: str, deliveries: int) -> None:
    box = fake.add_mailbox("push@gmail.example", token="push-token")
    services = open_services(root, "push", gmail_push_token=PUSH_TOKEN)
    account = connect(services, box, "push-token")
    options = WorkerOptions(
        poll_interval=3600.0,
        gmail=GmailOptions(base_url=url, push_topic="projects/bench/topics/gmail"),
    )
    worker = GmailWorker(services.db, services.box, account, options)
    services.sync = Wakes(worker, asyncio.get_running_loop())  # type: ignore[assignment]
    latencies: list[float] = []
    with LoopbackServer(create_app(services)) as api:
        fake.push_url = f"{api.url}/api/push/gmail/{PUSH_TOKEN}"
        task = asyncio.create_task(worker.run())
        try:
            while not (
                box.watch is not None
                and services.db.run(lambda s: s.get_one(MailAccount, account).state) == "live"
            ):
                await asyncio.sleep(0.01)
            for i in range(deliveries):
                raw = make_message(i, CONTACT, box.address, datetime.now(UTC))
                msgid = raw.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()
                t0 = time.perf_counter()
                box.deliver(raw)
                while not services.db.run(
                    lambda s, m=msgid: s.scalar(select(Message.id).where(Message.message_id == m))
                ):
                    await asyncio.sleep(0.002)
                latencies.append(time.perf_counter() - t0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            fake.push_url = None
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"push → stored, {deliveries} deliveries (safety poll 1 h):")
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
    root = Path(tempfile.mkdtemp(prefix="crmail-gmail-bench-"))
    fake = FakeGmail(seed=3)
    with LoopbackServer(fake.app) as server:
        await bench_import(root, fake, server.url, args.messages)
        await bench_push(root, fake, server.url, args.deliveries)


if __name__ == "__main__":
    asyncio.run(main())
