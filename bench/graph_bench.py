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
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes

import _api_bench as common
from tests.fakes.graph import FakeGraph
from tests.fakes.server import LoopbackServer

from crmail.api.app import create_app
from crmail.providers.graph import GraphClient
from crmail.sync.graph.options import GraphOptions
from crmail.sync.graph.rounds import IMPORT_SELECT
from crmail.sync.graph.worker import GraphWorker
from crmail.sync.inbound import SyncOptions
from crmail.sync.worker import WorkerOptions

PAGE_SIZE = 100
TAG = "mbench"


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
    # A conversation id given: the fake's own lookup reads every stored message.
    common.fill_mailbox(
        n,
        box.address,
        TAG,
        lambda i, raw, when: box.deliver(raw, received=when, conversation_id=f"conv-{i}"),
    )
    got, base_s = await baseline(url, "import-token")
    services = common.open_services(root, "import")
    account = common.connect(services, box.address, "import-token", "graph")
    options = WorkerOptions(
        sync=SyncOptions(batch_size=PAGE_SIZE, history_days=365),
        graph=GraphOptions(base_url=url, page_size=PAGE_SIZE),
    )
    worker = GraphWorker(services.db, services.box, account, options)
    stored, crm_s = await common.timed_import(services, worker)
    mime = sum(1 for r in fake.requests if r.path.endswith("/$value")) - got
    common.print_import(n, "delta + $value", got, base_s, stored, mime, crm_s)
    services.close()


async def bench_push(root: Path, fake: FakeGraph, url: str, deliveries: int) -> None:
    box = fake.add_mailbox("push@contoso.example", token="push-token")
    services = common.open_services(root, "push")
    account = common.connect(services, box.address, "push-token", "graph")
    latencies: list[float] = []
    with LoopbackServer(create_app(services)) as api:
        options = WorkerOptions(
            poll_interval=3600.0,
            graph=GraphOptions(base_url=url, notification_url=f"{api.url}/api/push/graph"),
        )
        worker = GraphWorker(services.db, services.box, account, options)
        services.sync = common.Wakes(worker, asyncio.get_running_loop())  # type: ignore[assignment]
        task = asyncio.create_task(worker.run())
        try:
            await common.until_live(
                services, account, lambda: any(s.box is box for s in fake.subscriptions.values())
            )
            await asyncio.sleep(0.2)  # the round the new subscription asked for
            for i in range(deliveries):
                raw = common.make_message(
                    i, common.CONTACT, box.address, datetime.now(UTC), tag=TAG
                )
                t0 = time.perf_counter()
                box.deliver(raw, conversation_id=f"push-{i}")
                # Graph POSTs the notification; the fake does it when told.
                statuses = await asyncio.to_thread(fake.flush)
                assert statuses == [202], statuses
                await common.until_stored(services, common.message_id(raw), 0.005)
                latencies.append(time.perf_counter() - t0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    common.print_latencies("notification → stored", latencies)
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
