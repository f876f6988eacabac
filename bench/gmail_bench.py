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
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes

import _api_bench as common
from tests.fakes.gmail import FakeGmail
from tests.fakes.server import LoopbackServer

from crmail.api.app import create_app
from crmail.providers.gmail import GmailClient
from crmail.sync.gmail.options import GmailOptions
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.inbound import SyncOptions
from crmail.sync.worker import WorkerOptions

PUSH_TOKEN = "bench-push-token"
TAG = "gbench"


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
    common.fill_mailbox(
        n, box.address, TAG, lambda i, raw, when: box.deliver(raw, internal_date=when)
    )
    got, base_s = await baseline(url, "import-token")
    services = common.open_services(root, "import")
    account = common.connect(services, box.address, "import-token", "gmail")
    options = WorkerOptions(sync=SyncOptions(batch_size=100), gmail=GmailOptions(base_url=url))
    worker = GmailWorker(services.db, services.box, account, options)
    stored, crm_s = await common.timed_import(services, worker)
    raw = worker.ingest.raw_fetched if worker.ingest else 0
    common.print_import(n, "list + raw batch", got, base_s, stored, raw, crm_s)
    services.close()


async def bench_push(root: Path, fake: FakeGmail, url: str, deliveries: int) -> None:
    box = fake.add_mailbox("push@gmail.example", token="push-token")
    services = common.open_services(root, "push", gmail_push_token=PUSH_TOKEN)
    account = common.connect(services, box.address, "push-token", "gmail")
    options = WorkerOptions(
        poll_interval=3600.0,
        gmail=GmailOptions(base_url=url, push_topic="projects/bench/topics/gmail"),
    )
    worker = GmailWorker(services.db, services.box, account, options)
    services.sync = common.Wakes(worker, asyncio.get_running_loop())  # type: ignore[assignment]
    latencies: list[float] = []
    with LoopbackServer(create_app(services)) as api:
        fake.push_url = f"{api.url}/api/push/gmail/{PUSH_TOKEN}"
        task = asyncio.create_task(worker.run())
        try:
            await common.until_live(services, account, lambda: box.watch is not None)
            for i in range(deliveries):
                raw = common.make_message(
                    i, common.CONTACT, box.address, datetime.now(UTC), tag=TAG
                )
                t0 = time.perf_counter()
                box.deliver(raw)
                await common.until_stored(services, common.message_id(raw), 0.002)
                latencies.append(time.perf_counter() - t0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            fake.push_url = None
    common.print_latencies("push → stored", latencies)
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
