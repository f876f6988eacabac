"""Inbound sync benchmark: crmail against a minimal raw IMAP client, in one run.

Prints, side by side with a baseline measured in the same run (ratios, not absolute
times, are what to compare across machines):

1. import throughput of a 10,000-message mailbox: a minimal imaplib client pulling every
   message (BODY.PEEK[] in chunks) vs. crmail's full initial import (headers, scope
   decision, bodies, parse, store) — target ratio >= 0.5;
2. the cost of a no-change resync round on a 1k and a 100k folder — target: flat;
3. mailbox -> CRM latency for 100 deliveries while the worker follows the mailbox (IDLE)
   — target p99 < 1 s.

With ``--postgres`` the same mailbox is also imported into PostgreSQL (a throwaway local
cluster, as the tests start it), alternating with SQLite, and the ratio PostgreSQL /
SQLite is printed (target >= 0.8, issue 10).

Usage: .venv/bin/python bench/sync_bench.py [--messages 10000] [--big 100000] [--deliveries 100]
       [--import-only] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import ssl
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from sqlalchemy import func, select

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.demo.dovecot import Dovecot
from crmail.providers.imap import ImapClient
from crmail.services import Services
from crmail.storage import accounts, crm, mail
from crmail.storage.db import Database
from crmail.storage.models import Message
from crmail.sync.inbound import FolderSync, SyncOptions
from crmail.sync.worker import AccountWorker, WorkerOptions, imap_settings

BODY = ("Hello, this is a realistic business email body line. " * 40 + "\n") * 4  # ~9 KB


def make_message(i: int, sender: str, to: str) -> bytes:
    m = EmailMessage()
    m["From"] = f"Contact {i % 50} <{sender}>"
    m["To"] = to
    m["Subject"] = f"Proposal #{i}"
    m["Date"] = format_datetime(datetime.now(UTC))
    m["Message-ID"] = f"<bench-{i}-{time.time_ns()}@client.example>"
    m.set_content(BODY)
    return m.as_bytes()


def raw_fetch(dovecot: Dovecot, user: str, password: str, ca: str, port: int) -> tuple[int, float]:
    """The baseline: a minimal synchronous client that pulls every message once."""
    ctx = ssl.create_default_context(cafile=ca)
    t0 = time.perf_counter()
    imap = imaplib.IMAP4_SSL(dovecot.host, port, ssl_context=ctx)
    imap.login(user, password)
    imap.select("INBOX", readonly=True)
    _, data = imap.uid("SEARCH", "ALL")
    uids = data[0].split()
    n = 0
    for i in range(0, len(uids), 500):
        chunk = b",".join(uids[i : i + 500]).decode()
        _, resp = imap.uid("FETCH", chunk, "(BODY.PEEK[])")
        n += sum(1 for part in resp if isinstance(part, tuple))
    imap.logout()
    return n, time.perf_counter() - t0


def setup_world(services: Services, box_email: str, contact: str) -> tuple[int, int]:
    def make(s):  # type: ignore[no-untyped-def]
        ws = crm.create_workspace(s, "Bench").id
        new = crm.create_user(s, ws, box_email, name="Bench", role="admin")
        crm.create_contact(s, ws, name="Client", emails=[contact])
        return ws, new.user.id

    return services.db.run(make)  # type: ignore[no-any-return]


def connect_account(services: Services, ws: int, uid: int, box) -> int:  # type: ignore[no-untyped-def]
    secret = services.box.seal({"password": box.password})
    return services.db.run(
        lambda s: accounts.create_account(
            s,
            workspace_id=ws,
            user_id=uid,
            email=box.email,
            provider="imap",
            settings={
                "imap_host": box.host,
                "imap_port": box.tls_port,
                "imap_security": "tls",
                "ca_file": box.ca_file,
            },
            secret=secret,
        )
    )


class WriterClock:
    """CPU seconds the single database writer spends in its transactions."""

    def __init__(self, db: Database) -> None:
        self.seconds = 0.0
        inner = db.run

        def timed(fn):  # type: ignore[no-untyped-def]
            if not threading.current_thread().name.startswith("db-writer"):
                return inner(fn)
            t0 = time.thread_time()
            try:
                return inner(fn)
            finally:
                self.seconds += time.thread_time() - t0

        db.run = timed  # type: ignore[method-assign]


async def import_stages(box, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds per message of each import stage measured alone, one after another."""
    from crmail.mime import parse_head, parse_message
    from crmail.providers.imap import ImapSettings

    client = await ImapClient.connect(
        ImapSettings(box.host, box.tls_port, "tls", box.email, box.password, ca_file=box.ca_file)
    )
    await client.select("INBOX", readonly=True)
    uids = await client.uid_search("ALL")
    t0 = time.perf_counter()
    heads = [
        h for i in range(0, len(uids), 500) for h in await client.fetch_headers(uids[i : i + 500])
    ]
    t1 = time.perf_counter()
    bodies = [
        m for i in range(0, len(uids), 500) for m in await client.fetch_messages(uids[i : i + 500])
    ]
    t2 = time.perf_counter()
    await client.logout()
    c0 = time.process_time()
    parsed_heads = [parse_head(h.header) for h in heads]
    c1 = time.process_time()
    for m, h in zip(bodies, parsed_heads, strict=True):
        parse_message(m.raw, head=h)
    c2 = time.process_time()
    return {
        "header fetch (crmail client, wall)": (t1 - t0) / n,
        "body fetch (crmail client, wall)": (t2 - t1) / n,
        "header parse (CPU)": (c1 - c0) / n,
        "body parse, header reused (CPU)": (c2 - c1) / n,
    }


TYPICAL_HEADER = (
    "".join(
        f"Received: from mx{i}.relay.example (mx{i}.relay.example [192.0.2.{i}])\r\n"
        f"\tby mx{i + 1}.relay.example with ESMTPS id abc{i}def\r\n"
        f"\tfor <me@bench.test>; Mon, 23 Nov 2026 10:0{i}:00 +0000\r\n"
        for i in range(4)
    )
    + "ARC-Seal: i=1; a=rsa-sha256; t=1700000000; cv=none; d=relay.example; s=arc;\r\n"
    + "".join(f"\tb={'Qk' * 36}\r\n" for _ in range(5))
    + "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=client.example; s=s1;\r\n"
    + "\th=from:to:subject:date:message-id; bh="
    + "A" * 44
    + ";\r\n"
    + "".join(f"\tb={'Zm' * 36}\r\n" for _ in range(5))
    + "X-Mailer: Bench Mail 1.0\r\nX-Spam-Score: 0.1\r\nThread-Index: AQHZ"
    + "x" * 40
    + "\r\n"
).encode()


async def header_judgement(dovecot: Dovecot, n: int) -> tuple[float, float, int, int]:
    """Seconds per message to fetch and parse the header a message is judged on, for mail
    with a typical header (relays, DKIM and ARC signatures): the whole header vs the
    envelope's fields only; and the header bytes of each."""
    from crmail.mime import ENVELOPE_FIELDS, parse_head
    from crmail.providers.imap import ImapSettings

    box = dovecot.add_user("headers@bench.test", "pw-headers")
    dovecot.seed_maildir(
        box.email,
        "INBOX",
        (TYPICAL_HEADER + make_message(i, "c@client.example", box.email) for i in range(n)),
    )
    dovecot.doveadm("mailbox", "status", "-u", box.email, "messages", "INBOX")
    client = await ImapClient.connect(
        ImapSettings(box.host, box.tls_port, "tls", box.email, box.password, ca_file=box.ca_file)
    )
    await client.select("INBOX", readonly=True)
    uids = await client.uid_search("ALL")
    timings: list[float] = []
    sizes: list[int] = []
    # Twice each, alternating, keeping the second: Dovecot's caches warm for both.
    for fields in (None, ENVELOPE_FIELDS, None, ENVELOPE_FIELDS):
        t0 = time.perf_counter()
        heads = []
        for i in range(0, len(uids), 500):
            heads += await client.fetch_headers(uids[i : i + 500], fields)
        for h in heads:
            parse_head(h.header)
        timings.append((time.perf_counter() - t0) / n)
        sizes.append(sum(len(h.header) for h in heads) // n)
    await client.logout()
    return timings[2], timings[3], sizes[2], sizes[3]


def seed_import_box(dovecot: Dovecot, n: int):  # type: ignore[no-untyped-def]
    box = dovecot.add_user("importer@bench.test", "pw-import")
    dovecot.seed_maildir(
        box.email, "INBOX", (make_message(i, "client@client.example", box.email) for i in range(n))
    )
    # warm Dovecot's index so neither side pays for the first indexing
    dovecot.doveadm("mailbox", "status", "-u", box.email, "messages", "INBOX")
    return box


async def timed_import(services: Services, account_id: int) -> float:
    """Seconds of crmail's initial import of the account's mailbox: the real sync engine
    (headers, scope decision, bodies, parse, store), as ``crmail sync --once`` runs it."""
    t0 = time.perf_counter()
    await AccountWorker(
        services.db, services.box, account_id, WorkerOptions(sync=SyncOptions(batch_size=500))
    ).run_once()
    return time.perf_counter() - t0


async def crm_import(box, data_dir: Path, n: int, database_url: str = "") -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """crmail's initial import of the box into a fresh database: (msg/s, the single
    writer's CPU seconds)."""
    services = Services.open(
        Settings(data_dir=data_dir, secret_keys=(new_key(),), database_url=database_url)
    )
    ws, uid = setup_world(services, box.email, "client@client.example")
    acc = connect_account(services, ws, uid, box)
    writer = WriterClock(services.db)
    crm_s = await timed_import(services, acc)
    stored = services.db.run(lambda s: s.scalar(select(func.count()).select_from(Message)))
    assert stored == n, (stored, n)
    services.close()
    return n / crm_s, writer.seconds


async def bench_import(
    dovecot: Dovecot,
    box,
    root: Path,
    n: int,  # type: ignore[no-untyped-def]
) -> tuple[float, float, dict[str, float]]:
    got, raw_s = raw_fetch(dovecot, box.email, box.password, box.ca_file, box.tls_port)
    assert got == n, (got, n)
    crm_rate, writer_s = await crm_import(box, root / "import", n)
    stages = await import_stages(box, n)
    stages["store: the writer's transactions (CPU)"] = writer_s / n
    stages["raw imaplib fetch of the whole message (wall)"] = raw_s / n
    return n / raw_s, crm_rate, stages


async def bench_postgres_import(box, root: Path, n: int, rounds: int) -> None:  # type: ignore[no-untyped-def]
    """The same mailbox imported into SQLite and into PostgreSQL, alternating, each into
    a fresh database; prints the rates and the ratio PostgreSQL / SQLite."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' cluster
    from tests.servers.postgres import Postgres

    cluster = Postgres().start()
    rates: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    try:
        for r in range(rounds):
            for kind in rates:
                url = cluster.new_database() if kind == "postgresql" else ""
                rate, _ = await crm_import(box, root / f"import-{kind}-{r}", n, url)
                rates[kind].append(rate)
    finally:
        cluster.stop()
    sqlite, pg = statistics.median(rates["sqlite"]), statistics.median(rates["postgresql"])
    print(f"import of the same {n} messages, SQLite vs PostgreSQL ({rounds} rounds, alternating)")
    for kind, values in rates.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {kind:<28} : {statistics.median(values):8.0f} msg/s (median of {shown})")
    print(f"  ratio PostgreSQL / SQLite    : {pg / sqlite:8.2f}   (target >= 0.8)")


async def no_change_round(
    dovecot: Dovecot, root: Path, n: int, tag: str, rounds: int = 100
) -> tuple[float, float, float]:
    """Seconds per no-change round: (server STATUS alone, server QRESYNC SELECT alone,
    crmail's whole round)."""
    box = dovecot.add_user(f"resync{tag}@bench.test", "pw-resync")
    # Headers only from strangers: a big folder whose import stores nothing and is quick.
    small = b"From: someone@else.example\r\nTo: x@y\r\nSubject: s\r\n\r\nbody\r\n"
    dovecot.seed_maildir(box.email, "INBOX", (small for _ in range(n)))
    services = Services.open(Settings(data_dir=root / f"resync{tag}", secret_keys=(new_key(),)))
    ws, uid = setup_world(services, box.email, "client@client.example")
    acc = connect_account(services, ws, uid, box)
    await AccountWorker(
        services.db, services.box, acc, WorkerOptions(sync=SyncOptions(batch_size=2000))
    ).run_once()
    account = services.db.run(lambda s: mail.account_info(s, acc))
    client = await ImapClient.connect(imap_settings(account, services.box))
    sync = FolderSync(services.db, account, client, SyncOptions())
    folder = next(f for f in services.db.run(lambda s: mail.folders(s, acc)) if f.name == "INBOX")
    folder = await sync.round(folder)  # warm
    t0 = time.perf_counter()
    for _ in range(rounds):
        folder = await sync.round(folder)
    per_round = (time.perf_counter() - t0) / rounds
    # The baseline: what the server needs to answer the same QRESYNC SELECT.
    assert folder.uidvalidity is not None and folder.highestmodseq is not None
    known = (folder.uidvalidity, folder.highestmodseq)
    t0 = time.perf_counter()
    for _ in range(rounds):
        await client.select("INBOX", readonly=True, qresync=known)
    per_select = (time.perf_counter() - t0) / rounds
    await client.unselect()
    t0 = time.perf_counter()
    for _ in range(rounds):
        await client.status("INBOX")
    per_status = (time.perf_counter() - t0) / rounds
    await client.logout()
    services.close()
    return per_status, per_select, per_round


async def bench_latency(dovecot: Dovecot, root: Path, deliveries: int) -> list[float]:
    box = dovecot.add_user("latency@bench.test", "pw-latency")
    services = Services.open(Settings(data_dir=root / "latency", secret_keys=(new_key(),)))
    ws, uid = setup_world(services, box.email, "client@client.example")
    acc = connect_account(services, ws, uid, box)
    worker = asyncio.create_task(
        AccountWorker(services.db, services.box, acc, WorkerOptions(poll_interval=1.0)).run()
    )
    # wait until live (import of the empty mailbox done, IDLE entered)
    while services.db.run(lambda s: accounts.status(s, acc).state) != "live":
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    samples = []
    for i in range(deliveries):
        raw = make_message(i, "client@client.example", box.email)
        msgid = raw.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()
        t0 = time.perf_counter()
        await asyncio.to_thread(dovecot.deliver, box.email, raw)
        while not services.db.run(
            lambda s, m=msgid: s.scalar(select(Message.id).where(Message.message_id == m))
        ):
            await asyncio.sleep(0.002)
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("message did not arrive within 10 s")
        samples.append(time.perf_counter() - t0)
        await asyncio.sleep(0.02)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    services.close()
    return samples


async def raw_idle_latency(dovecot: Dovecot, deliveries: int) -> list[float]:
    """Baseline: how soon the server tells an IDLE client about a delivery (no crmail)."""
    from crmail.providers.imap import ImapSettings

    box = dovecot.add_user("rawidle@bench.test", "pw-rawidle")
    client = await ImapClient.connect(
        ImapSettings(box.host, box.tls_port, "tls", box.email, box.password, ca_file=box.ca_file)
    )
    await client.select("INBOX")
    samples = []
    for i in range(deliveries):
        raw = make_message(i, "client@client.example", box.email)
        waiter = asyncio.ensure_future(client.idle(timeout=10))
        await asyncio.sleep(0.02)  # IDLE is entered
        t0 = time.perf_counter()
        await asyncio.to_thread(dovecot.deliver, box.email, raw)
        events = await waiter
        samples.append(time.perf_counter() - t0)
        assert events, "no IDLE event"
    await client.logout()
    return samples


async def bench_done_latency(dovecot: Dovecot, root: Path, count: int) -> list[float]:
    """CRM -> mailbox: from Done in the CRM to the server having the message read and
    archived (the outbox action completes only after the server answered the MOVE)."""
    from crmail.storage import actions as crm_actions
    from crmail.storage.models import OutboxAction

    box = dovecot.add_user("done@bench.test", "pw-done")
    dovecot.seed_maildir(
        box.email,
        "INBOX",
        (make_message(i, "client@client.example", box.email) for i in range(count)),
    )
    services = Services.open(Settings(data_dir=root / "done", secret_keys=(new_key(),)))
    ws, uid = setup_world(services, box.email, "client@client.example")
    acc = connect_account(services, ws, uid, box)
    worker = AccountWorker(services.db, services.box, acc, WorkerOptions(poll_interval=1.0))

    class Wake:
        def accounts_changed(self) -> None:
            pass

        def actions_queued(self, ids: object, default_provider: bool = False) -> None:
            worker.wake()

    services.sync = Wake()
    task = asyncio.create_task(worker.run())
    while services.db.run(lambda s: accounts.status(s, acc).state) != "live":
        await asyncio.sleep(0.01)
    user = services.db.run(lambda s: crm.get_user(s, ws, uid))
    threads = services.db.run(
        lambda s: list(s.scalars(select(Message.thread_id).order_by(Message.id)))
    )
    busy = (
        select(func.count())
        .select_from(OutboxAction)
        .where(OutboxAction.state.in_(["pending", "running"]))
    )
    samples = []
    for tid in threads[:count]:
        t0 = time.perf_counter()
        await services.act(lambda s, t=tid: crm_actions.done(s, user, t))
        while services.db.run(lambda s: s.scalar(busy)):
            await asyncio.sleep(0.002)
            if time.perf_counter() - t0 > 10:
                raise RuntimeError("Done did not reach the server within 10 s")
        samples.append(time.perf_counter() - t0)
    archived = dovecot.doveadm("mailbox", "status", "-u", box.email, "messages", "Archive")
    assert f"messages={len(samples)}" in archived, archived
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    services.close()
    return samples


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--deliveries", type=int, default=100)
    ap.add_argument("--import-only", action="store_true", help="stop after the import figures")
    ap.add_argument(
        "--postgres", action="store_true", help="also import into PostgreSQL (ratio to SQLite)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="imports per database with --postgres")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crmail-bench-"))
    with Dovecot() as dovecot:
        box = seed_import_box(dovecot, args.messages)
        raw_rate, crm_rate, stages = await bench_import(dovecot, box, root, args.messages)
        print(f"import of {args.messages} messages (~9 KB each)")
        print(f"  raw IMAP fetch (imaplib)     : {raw_rate:8.0f} msg/s")
        print(f"  crmail initial import        : {crm_rate:8.0f} msg/s")
        print(f"  ratio crmail / raw           : {crm_rate / raw_rate:8.2f}   (target >= 0.5)")
        print("  where an imported message's time goes, each stage measured alone (us/msg):")
        baseline = stages.pop("raw imaplib fetch of the whole message (wall)")
        for name, seconds in stages.items():
            print(f"    {name:<42}: {seconds * 1e6:7.1f}")
        total = sum(stages.values())
        print(f"    {'sum of the stages':<42}: {total * 1e6:7.1f}")
        print(f"    {'raw imaplib fetch of the whole message':<42}: {baseline * 1e6:7.1f}")
        if args.postgres:
            await bench_postgres_import(box, root, args.messages, args.rounds)
        whole, fields, whole_b, fields_b = await header_judgement(dovecot, 2_000)
        print("judging mail with a typical header (4 relays, DKIM, ARC), fetch + parse (us/msg)")
        print(f"  whole header ({whole_b:,} bytes)          : {whole * 1e6:8.1f}")
        print(f"  envelope fields only ({fields_b:,} bytes)    : {fields * 1e6:8.1f}")
        print(f"  ratio fields / whole         : {fields / whole:8.2f}")
        if args.import_only:
            return
        st_s, sel_s, small = await no_change_round(dovecot, root, args.small, "small")
        st_b, sel_b, big = await no_change_round(dovecot, root, args.big, "big")
        print("no-change resync round, per round (crmail: one STATUS + a heartbeat commit)")
        print("                                 server STATUS   server SELECT   crmail round")
        for n, st, sel, whole in ((args.small, st_s, sel_s, small), (args.big, st_b, sel_b, big)):
            print(
                f"  {n:>7} messages            : {st * 1000:8.2f} ms     {sel * 1000:8.2f} ms"
                f"     {whole * 1000:8.2f} ms"
            )
        print(
            f"  ratio big / small            : {st_b / st_s:8.2f}        {sel_b / sel_s:8.2f}"
            f"        {big / small:8.2f}   (target: flat, ~1)"
        )
        raw_lat = await raw_idle_latency(dovecot, args.deliveries)
        lat = await bench_latency(dovecot, root, args.deliveries)
        print(f"mailbox -> CRM latency over {len(lat)} deliveries (LMTP -> IDLE -> stored)")
        print("                                 raw IDLE client   crmail")
        for label, p in (("p50", 50), ("p99", 99)):
            print(
                f"  {label}                          : {pct(raw_lat, p) * 1000:8.1f} ms   {pct(lat, p) * 1000:8.1f} ms"
            )
        print("                                 (target: crmail p99 < 1000 ms)")
        done = await bench_done_latency(dovecot, root, args.deliveries)
        print(
            f"CRM -> mailbox latency over {len(done)} Done actions (read + archived on the server)"
        )
        print(f"  p50                          : {pct(done, 50) * 1000:8.1f} ms")
        print(
            f"  p99                          : {pct(done, 99) * 1000:8.1f} ms   (target < 1000 ms)"
        )
        print(f"  mean                         : {statistics.mean(done) * 1000:8.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
