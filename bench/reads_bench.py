"""Read-side benchmark: list pages and message reads at 10k, 100k (and 1M) messages.

For each workspace size, in one run:

1. p50/p99 of each list endpoint's first page and a deep page (90% down the list) and
   of a message read, through the real app (FastAPI in-process over ASGI, httpx);
2. the same SQL statements the endpoint issued, run alone on the same connection pool,
   as the baseline (ratio endpoint/SQL: what the app adds on top of the database);
3. the framework's floor: ``/healthz`` (no token, no database) through the same app and
   client, and each endpoint's ratio to it;
4. requests/s of the Inbox's first page at 1, 8 and 32 concurrent clients, in-process
   and over real HTTP with 1 and 2 uvicorn processes on one port;
5. import msg/s through the sync engine's write path into the workspace of that size.

``--imap-import`` measures instead what a user feels (SQLite): the real sync engine's
import of a new mailbox from a loopback Dovecot into each size's workspace, in
interleaved rounds beside the write path's import (keys as random as real mail's).

The workspace (5,000 contacts, one mailbox of N messages in threads of four, a contact
with a twentieth of the mail on their timeline, an Inbox with 60% open and 10% snoozed
items, twenty of them due) is generated directly through the storage layer's bulk path
(``insert_rows``).

Targets (issue 14): every page p99 <= 50 ms; deep page <= 1.2x first page; endpoint
<= 2x its SQL where SQL dominates; throughput grows with clients up to the cores.

Usage: .venv/bin/python bench/reads_bench.py [--sizes 10000,100000] [--million]
       [--postgres | --database-url postgresql+psycopg://...empty db] [--requests 200]
       .venv/bin/python bench/reads_bench.py --imap-import --sizes 10000 --million
       [--rounds 5] [--imap-messages 10000] [--no-storage]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from _sqlite_rounds import load_average, restore
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from crmail.api import create_app
from crmail.config import Settings
from crmail.domain.identity import dedup_key
from crmail.mime.keys import envelope_key
from crmail.services import Services
from crmail.storage import crm
from crmail.storage.bulk import insert_rows
from crmail.storage.models import (
    Contact,
    ContactEmail,
    Deal,
    InboxItem,
    Lead,
    Message,
    MessageRaw,
    MessageRef,
    Participant,
    Thread,
    TimelineEntry,
)
from crmail.storage.paging import encode_cursor

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)
CONTACTS = 5_000
BATCH = 5_000


#: --hashed-keys: the generated mail as spread over the indexes as real mail is, not
#: ordered or bunched: Message-IDs with a random part, not "m17@client.test" (dedup keys
#: are the real ones either way: threading finds messages by Message-ID through them;
#: without this flag the bench's ordered keys sorted in one corner of the index); and each
#: message from one of the contacts (not all from one address), on that contact's
#: timeline, answering its thread's first message (References), in a thread with a root
#: key. Without it, the import's random-keyed inserts into those indexes land in a small
#: region at any size, and the import into a big workspace looks cheaper than it is.
HASHED_KEYS = False


def _key(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest() if HASHED_KEYS else plain


def _msgid(plain: str) -> str:
    if HASHED_KEYS:
        return f"{hashlib.sha1(plain.encode()).hexdigest()[:16]}.{plain}@client.test"
    return f"{plain}@client.test"


def _raw(i: int) -> bytes:
    m = EmailMessage()
    m["From"] = "Ivy <ivy@client.test>"
    m["To"] = "me@acme.test"
    m["Subject"] = f"Project kiwi {i}"
    m["Message-ID"] = f"<m{i}@client.test>"
    m.set_content("Hello, a realistic business email body line.\n" * 20)
    return m.as_bytes()


class World:
    def __init__(self, services: Services, n: int) -> None:
        self.services = services
        self.n = n
        self.token = ""
        self.mate_token = ""
        self.ids: dict[str, int] = {}

    def build(self) -> None:
        db = self.services.db

        def setup(s: Session) -> None:
            ws = crm.create_workspace(s, "Acme").id
            me = crm.create_user(s, ws, "me@acme.test", name="Me")
            mate = crm.create_user(s, ws, "mate@acme.test", name="Mate")
            self.token, self.mate_token = me.token, mate.token
            lead = Lead(workspace_id=ws, name="Client Inc")
            s.add(lead)
            s.flush()
            contacts = [
                {"workspace_id": ws, "name": f"Contact {i}", "lead_id": lead.id if i < 50 else None}
                for i in range(CONTACTS)
            ]
            insert_rows(s, Contact, contacts)
            first = s.scalar(text("SELECT min(id) FROM contacts"))
            insert_rows(
                s,
                ContactEmail,
                [
                    {"workspace_id": ws, "contact_id": first + i, "email": f"c{i}@client.test"}
                    for i in range(CONTACTS)
                ],
            )
            insert_rows(
                s,
                Deal,
                [
                    {"workspace_id": ws, "title": f"Deal {i}", "lead_id": lead.id}
                    for i in range(1_000)
                ],
            )
            self.ids = {
                "ws": ws,
                "me": me.user.id,
                "mate": mate.user.id,
                "lead": lead.id,
                "contact": first,
            }

        db.run(setup)
        raw = _raw(0)
        for start in range(0, self.n, BATCH):
            db.run(lambda s, start=start: self._batch(s, start, min(BATCH, self.n - start), raw))
        if db.engine.dialect.name == "postgresql":
            # The ids above were given explicitly: move the sequences past them, or the
            # import's own inserts would collide with the generated rows.
            db.run(
                lambda s: [
                    s.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), {n})"))
                    for t, n in (("threads", (self.n + 3) // 4), ("messages", self.n))
                ]
            )

    def _batch(self, s: Session, start: int, count: int, raw: bytes) -> None:
        ws, me, contact = self.ids["ws"], self.ids["me"], self.ids["contact"]
        # Threads and messages as the sync engine stores them (subject key, last message
        # time, Message-ID without brackets): the import below finds them as it would.
        threads = [
            {
                "id": t + 1,
                "workspace_id": ws,
                "subject": f"Project kiwi {t}",
                "subject_key": f"project kiwi {t}",
                "last_message_at": T0 + timedelta(minutes=min(4 * t + 3, self.n - 1)),
                "root_key": _key(f"k{4 * t}") if HASHED_KEYS else None,
            }
            for t in range(start // 4, (start + count + 3) // 4)
        ]
        insert_rows(s, Thread, threads)
        msgs, raws, parts, entries, items, refs = [], [], [], [], [], []
        for i in range(start, start + count):
            mid = i + 1
            when = T0 + timedelta(minutes=i)
            # The contact with a twentieth of the mail; with spread keys the rest from
            # any of the others, as a real mailbox's correspondents are.
            spread = HASHED_KEYS and i % 20 != 0
            k = 1 + (i * 7919) % (CONTACTS - 1) if spread else 0
            sender = f"c{k}@client.test" if HASHED_KEYS else "ivy@client.test"
            if HASHED_KEYS and i % 4:
                refs.append({"message_id": mid, "ref": _msgid(f"m{i - i % 4}"), "workspace_id": ws})
            msgs.append(
                {
                    "id": mid,
                    "workspace_id": ws,
                    "thread_id": i // 4 + 1,
                    # The real key: the import finds stored messages by Message-ID
                    # through it (its first half is the Message-ID's digest).
                    "dedup_key": dedup_key(
                        _msgid(f"m{i}"), sender, date=None, subject="", recipients=()
                    ),
                    "message_id": _msgid(f"m{i}"),
                    "subject": f"Project kiwi {i // 4}",
                    "from_email": sender,
                    "from_name": "Ivy",
                    "sent_at": when,
                    "received_at": when,
                    "snippet": "Hello, a realistic business email body line.",
                    "size": len(raw),
                }
            )
            raws.append({"message_id": mid, "raw": raw})
            parts.append(
                {
                    "message_id": mid,
                    "role": "from",
                    "position": 0,
                    "email": sender,
                    "name": "Ivy",
                }
            )
            parts.append(
                {
                    "message_id": mid,
                    "role": "to",
                    "position": 0,
                    "email": "me@acme.test",
                    "name": "Me",
                }
            )
            if i % 20 == 0 or spread:
                entries.append(
                    {
                        "workspace_id": ws,
                        "message_id": mid,
                        "subject_type": "contact",
                        "subject_id": contact + k,
                        "reason": "from Ivy",
                        "message_date": when,
                    }
                )
            state = "open" if i % 10 < 6 else ("snoozed" if i % 10 == 6 else "done")
            items.append(
                {
                    "workspace_id": ws,
                    "user_id": me,
                    "message_id": mid,
                    "thread_id": i // 4 + 1,
                    "is_read": i % 3 == 0,
                    "state": state,
                    # Twenty are due and not woken yet, whatever the size: the sync
                    # service reopens due items on every scan. The rest wake later.
                    "snooze_until": (
                        (T0 if i % 1000 == 6 and i < 20_000 else FUTURE)
                        if state == "snoozed"
                        else None
                    ),
                    "received_at": when,
                    # On the contact's timeline: a teammate may see it.
                    "shared": i % 20 == 0 or spread,
                }
            )
        for model, rows in (
            (Message, msgs),
            (MessageRaw, raws),
            (Participant, parts),
            (TimelineEntry, entries),
            (InboxItem, items),
            (MessageRef, refs),
        ):
            insert_rows(s, model, rows)

    def deep_inbox_cursor(self) -> str:
        # The item 90% down the open Inbox: what paging there would hand back.
        def find(s: Session) -> str:
            row = s.execute(
                text(
                    "SELECT received_at, id FROM inbox_items WHERE user_id = :u AND state = 'open'"
                    " ORDER BY received_at DESC, id DESC LIMIT 1 OFFSET :o"
                ),
                {"u": self.ids["me"], "o": int(self.n * 0.6 * 0.9)},
            ).one()
            when = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
            return encode_cursor(when.replace(tzinfo=UTC) if when.tzinfo is None else when, row[1])

        return self.services.db.run(find)

    def deep_timeline_cursor(self) -> str:
        last = (self.n - 1) // 20 * 20
        target = last // 10  # 90% down a newest-first list
        when = T0 + timedelta(minutes=target)
        return encode_cursor(when, target + 1)


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def _timed(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], n: int
) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = await client.get(url, headers=headers)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return out


def _sql_alone(services: Services, statements: list[tuple[str, Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        with services.db.engine.connect() as conn:
            t = time.perf_counter()
            cursor = conn.connection.cursor()
            for sql, params in statements:
                if sql.lstrip().upper().startswith("SELECT"):
                    cursor.execute(sql, params)
                    cursor.fetchall()
            cursor.close()
            out.append((time.perf_counter() - t) * 1000)
    return out


async def _throughput(
    app: Any, url: str, headers: dict[str, str], clients: int, seconds: float
) -> float:
    transport = httpx.ASGITransport(app=app)
    done = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
            while time.perf_counter() < stop:
                r = await c.get(url, headers=headers)
                assert r.status_code == 200
                done += 1

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done / (time.perf_counter() - t)


async def measure(world: World, requests: int) -> None:
    services = world.services
    app = create_app(services)
    me = {"Authorization": f"Bearer {world.token}"}
    mate = {"Authorization": f"Bearer {world.mate_token}"}
    ids = world.ids
    deep_inbox = quote(world.deep_inbox_cursor())
    deep_tl = quote(world.deep_timeline_cursor())
    deep_contact = ids["contact"] + int(CONTACTS * 0.9)
    endpoints = {
        "inbox first": ("/api/inbox", me),
        "inbox deep": (f"/api/inbox?before={deep_inbox}", me),
        "teammate inbox first": (f"/api/inbox?user_id={ids['me']}", mate),
        "timeline first": (f"/api/contacts/{ids['contact']}/timeline", me),
        "timeline deep": (f"/api/contacts/{ids['contact']}/timeline?before={deep_tl}", me),
        "contacts first": ("/api/contacts", me),
        "contacts deep": (f"/api/contacts?after={deep_contact}", me),
        "deals first": ("/api/deals", me),
        "leads first": ("/api/leads", me),
        "message read": (f"/api/messages/{world.n // 2}", me),
    }
    print(f"\n== {world.n:,} messages ({services.db.engine.dialect.name}) ==")
    print(
        f"{'endpoint':24} {'p50 ms':>8} {'p99 ms':>8} {'SQL p50':>8} {'/SQL':>6}"
        f" {'/floor':>6} {'stmts':>6}"
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        # The framework's floor: a route with no token and no database, same app and client.
        await _timed(c, "/healthz", {}, 5)
        floor = _pct(await _timed(c, "/healthz", {}, requests), 0.5)
        print(f"{'floor (/healthz, no DB)':24} {floor:8.2f}")
        for name, (url, headers) in endpoints.items():
            await _timed(c, url, headers, 5)  # warm caches and the pool
            samples = await _timed(c, url, headers, requests)
            statements = await _capture_async(services, c, url, headers)
            sql = await asyncio.to_thread(_sql_alone, services, statements, requests)
            p50, p99, s50 = _pct(samples, 0.5), _pct(samples, 0.99), _pct(sql, 0.5)
            print(
                f"{name:24} {p50:8.2f} {p99:8.2f} {s50:8.2f} {p50 / s50 if s50 else 0:6.1f}"
                f" {p50 / floor:6.1f} {len(statements):6d}"
            )
    for clients in (1, 8, 32):
        rps = await _throughput(app, "/api/inbox", me, clients, 3.0)
        print(f"inbox first page, in-process, {clients:2d} clients: {rps:7.1f} requests/s")
    for workers in (1, 2):
        for clients in (1, 8, 32):
            rps = await asyncio.to_thread(_over_http, services, workers, me, clients)
            print(
                f"inbox first page, HTTP, {workers} server process(es), {clients:2d} clients:"
                f" {rps:7.1f} requests/s"
            )


def import_rate(
    world: World,
    count: int = 10_000,
    batch: int = 100,
    tag: str = "",
    profile: Profile | None = None,
) -> float:
    """msg/s of the sync engine's write path (``storage.mail.apply_step``, batches of
    ``batch`` as an import stores them) into this workspace: new mail from contacts, half
    replies to stored messages (thread lookups), every one deduplicated and linked.

    ``tag`` makes the mailbox new (its own user, account and Message-IDs), so the same
    workspace can take several imports; ``profile`` times each batch's phases."""
    from crmail.domain.folders import Role
    from crmail.domain.scope import decide
    from crmail.mime import parse_message
    from crmail.storage import accounts, mail

    db, ids, n = world.services.db, world.ids, world.n
    tag = tag or str(n)

    def account(s: Session) -> tuple[int, int]:
        user = ids["me"]
        email = "me@acme.test"
        if tag != str(n):
            email = f"me-{tag}@acme.test"
            user = crm.create_user(s, ids["ws"], email, name=f"Me {tag}").user.id
        aid = accounts.create_account(
            s,
            workspace_id=ids["ws"],
            user_id=user,
            email=email,
            provider="imap",
            settings={"imap_host": "imap.invalid"},
            secret=world.services.box.seal({"password": "x"}),
        )
        folders = mail.ensure_folders(s, aid, [("INBOX", Role.INBOX)])
        return aid, folders[0].id

    aid, folder = db.run(account)
    book = db.run(lambda s: mail.address_book(s, ids["ws"]))
    steps = []
    for start in range(0, count, batch):
        step = mail.FolderStep(folder_id=folder)
        for i in range(start, start + batch):
            m = EmailMessage()
            # With spread keys, correspondents spread as a mailbox's are.
            c = (i * 7919) % CONTACTS if HASHED_KEYS else i % CONTACTS
            m["From"] = f"C {i} <c{c}@client.test>"
            m["To"] = "me@acme.test"
            m["Subject"] = f"Re: Project kiwi {i}"
            m["Message-ID"] = f"<{_msgid(f'new{i}-{tag}')}>"
            if i % 2 == 0:  # a reply to a stored message spread over the mailbox
                m["In-Reply-To"] = f"<{_msgid(f'm{(i * 7919) % n}')}>"
            m["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
            m.set_content("A new business email body line.\n" * 20)
            raw = m.as_bytes()
            parsed = parse_message(raw)
            env = parsed.envelope
            roles = {"from": {a.email for a in env.from_}, "to": {a.email for a in env.to}}
            links = tuple(decide(roles, book).links)
            step.copies.append(
                mail.Copy(
                    uid=i + 1,
                    flags=frozenset(),
                    modseq=None,
                    dedup_key=envelope_key(env),
                    new=mail.NewMessage(envelope_key(env), parsed, raw, links),
                )
            )
        steps.append(step)
    if profile is not None:
        return profile.run(db, steps, lambda s, step: mail.apply_step(s, aid, step), count)
    t = time.perf_counter()
    for step in steps:
        db.run(lambda s, step=step: mail.apply_step(s, aid, step))
    return count / (time.perf_counter() - t)


class Profile:
    """Where an import's time goes, summed over its batches: each kind of SQL statement,
    each table's bulk INSERT, the COMMIT, and the Python around them (the rest)."""

    def __init__(self) -> None:
        self.ms: Counter[str] = Counter()
        self.imports = 0

    def run(
        self,
        db: Any,
        steps: list[Any],
        apply: Callable[[Session, Any], object],
        count: int,
    ) -> float:
        from crmail.storage import mail

        real_insert = mail.insert_rows
        started: list[float] = []

        def timed_insert(s: Session, model: Any, rows: Any) -> None:
            t = time.perf_counter()
            real_insert(s, model, rows)
            self.ms[f"INSERT {model.__tablename__} (bulk)"] += (time.perf_counter() - t) * 1000

        def before(*_a: Any) -> None:
            started.append(time.perf_counter())

        def after(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
            key = _statement_kind(statement) + (" (executemany)" if many else "")
            self.ms[key] += (time.perf_counter() - started.pop()) * 1000

        event.listen(db.engine, "before_cursor_execute", before)
        event.listen(db.engine, "after_cursor_execute", after)
        mail.insert_rows = timed_insert  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            for step in steps:
                with Session(db.engine, expire_on_commit=False) as s:
                    apply(s, step)
                    s.flush()
                    t = time.perf_counter()
                    s.commit()
                    self.ms["COMMIT"] += (time.perf_counter() - t) * 1000
            wall = time.perf_counter() - t0
            wal = Path(f"{db.url.removeprefix('sqlite:///')}-wal")
            if wal.exists():
                # Frames (pages) in the WAL at the end: with wal_autocheckpoint=0, every
                # page the import's commits wrote.
                self.ms["WAL pages at end (not ms)"] += (wal.stat().st_size - 32) / 4120
        finally:
            mail.insert_rows = real_insert  # type: ignore[assignment]
            event.remove(db.engine, "before_cursor_execute", before)
            event.remove(db.engine, "after_cursor_execute", after)
        self.ms["total (wall)"] += wall * 1000
        self.imports += 1
        return count / wall

    def per_import(self) -> dict[str, float]:
        out = {k: v / max(self.imports, 1) for k, v in self.ms.items()}
        measured = sum(v for k, v in out.items() if k != "total (wall)" and "not ms" not in k)
        out["Python, the rest"] = out.get("total (wall)", 0.0) - measured
        return out


def _statement_kind(sql: str) -> str:
    words = " ".join(sql.split())
    if "json_each" in words:
        return "SELECT threads by subject (json_each)"
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", words)
    head = words.split(" FROM ")[0][:48]
    return f"{head} [{table.group(1) if table else '?'}]"


#: workspaces smaller than this are reset to their generated state before each import
#: (a file copy); bigger ones grow by the imports, a negligible share of them
RESET_BELOW = 500_000


#: a variant item: checkpoints from another thread, not in the writer's commits (an
#: experiment: give it with wal_autocheckpoint=0)
BG_CHECKPOINT = "bgcheckpoint"


@contextmanager
def _background_checkpoints(db_file: Path, wanted: bool) -> Iterator[None]:
    """A PASSIVE checkpoint from its own connection whenever the WAL passes 1,000 pages:
    the copy into the database file and its sync overlap the writer's work."""
    if not wanted:
        yield
        return
    import sqlite3
    import threading

    stop = threading.Event()
    wal = Path(f"{db_file}-wal")

    def run() -> None:
        conn = sqlite3.connect(db_file)
        try:
            while not stop.wait(0.02):
                if wal.exists() and wal.stat().st_size > 1000 * 4120:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _open_sqlite(directory: Path, variant: str) -> Services:
    """The workspace's database, with the variant's extra PRAGMAs on every connection;
    its ``sql:`` items (e.g. ``sql:DROP INDEX …``) run once, before the import."""
    services = Services.open(
        Settings(data_dir=directory, database_url=f"sqlite:///{directory / 'bench.db'}")
    )
    items = [x.strip() for x in variant.split(",") if x.strip()]
    pragmas = ",".join(x for x in items if not x.startswith("sql:") and x != BG_CHECKPOINT)
    with services.db.engine.begin() as conn:
        for statement in (x[4:] for x in items if x.startswith("sql:")):
            conn.execute(text(statement))
    if pragmas:

        @event.listens_for(services.db.engine, "connect")
        def _extra(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            for pragma in pragmas.split(","):
                cur.execute(f"PRAGMA {pragma.strip()}")
            cur.close()

        services.db.engine.dispose()  # the connection of the migration check had none
    return services


def _generate(stack: ExitStack, sizes: list[int]) -> tuple[dict[int, Path], dict[int, World]]:
    """Each size's workspace in a directory of its own (SQLite), generated once; those
    below :data:`RESET_BELOW` also saved as ``base.db`` for :func:`_reset`."""
    dirs = {n: Path(stack.enter_context(tempfile.TemporaryDirectory())) for n in sizes}
    worlds = {}
    for n in sizes:
        services = _open_sqlite(dirs[n], "")
        world = World(services, n)
        t = time.perf_counter()
        world.build()
        services.close()
        print(f"generated {n:,} messages in {time.perf_counter() - t:.1f} s")
        if n < RESET_BELOW:
            shutil.copyfile(dirs[n] / "bench.db", dirs[n] / "base.db")
        worlds[n] = world
    return dirs, worlds


def _reset(directory: Path, n: int) -> None:
    """A small workspace back to its generated state before an import; a big one is left
    to grow by the imports (a negligible share of it)."""
    if n < RESET_BELOW:
        restore(directory / "base.db", directory / "bench.db")


def import_rounds(sizes: list[int], rounds: int, variants: list[str], profile: bool) -> None:
    """Interleaved import rounds on SQLite: each round imports a new 10,000-message mailbox
    into every size's workspace, under each variant of extra PRAGMAs (``""``: as
    ``storage/db.py`` sets them); per round the rate at each size and the ratio to the
    first size, then the median ratio of each variant."""
    print(f"load average at start (1/5/15 min): {load_average()}")
    base = sizes[0]
    rates: dict[tuple[str, int], list[float]] = defaultdict(list)
    profiles = {(v, n): Profile() for v in variants for n in sizes} if profile else {}
    with ExitStack() as stack:
        dirs, worlds = _generate(stack, sizes)
        for r in range(rounds):
            for vi, variant in enumerate(variants):
                figures = {}
                for n in sizes:
                    db_file = dirs[n] / "bench.db"
                    _reset(dirs[n], n)
                    services = _open_sqlite(dirs[n], variant)
                    worlds[n].services = services
                    try:
                        with _background_checkpoints(db_file, BG_CHECKPOINT in variant):
                            figures[n] = import_rate(
                                worlds[n], tag=f"r{r}v{vi}", profile=profiles.get((variant, n))
                            )
                    finally:
                        services.close()
                    rates[(variant, n)].append(figures[n])
                cells = "  ".join(f"{n:>9,}: {figures[n]:6.0f} msg/s" for n in sizes)
                ratios = "  ".join(f"{figures[n] / figures[base]:5.2f}" for n in sizes[1:])
                print(f"round {r + 1} [{variant or 'as configured'}]  {cells}  ratio {ratios}")
    print()
    for variant in variants:
        for n in sizes[1:]:
            ratios = [
                a / b for a, b in zip(rates[(variant, n)], rates[(variant, base)], strict=True)
            ]
            print(
                f"[{variant or 'as configured'}] import into {n:,} / into {base:,}:"
                f" median {statistics.median(ratios):.2f} over {len(ratios)} rounds"
                f" (range {min(ratios):.2f}-{max(ratios):.2f});"
                f" msg/s median {statistics.median(rates[(variant, n)]):.0f}"
                f" vs {statistics.median(rates[(variant, base)]):.0f}"
            )
    if profile:
        for variant in variants:
            print(f"\nms per 10,000-message import [{variant or 'as configured'}]")
            per = {n: profiles[(variant, n)].per_import() for n in sizes}
            keys = sorted(set().union(*per.values()), key=lambda k: -per[sizes[-1]].get(k, 0))
            print(f"{'phase':62}" + "".join(f"{n:>11,}" for n in sizes) + "   growth")
            for k in keys:
                vals = [per[n].get(k, 0.0) for n in sizes]
                print(
                    f"{k[:62]:62}"
                    + "".join(f"{v:11.1f}" for v in vals)
                    + f" {vals[-1] - vals[0]:+8.1f}"
                )
    print(f"\nload average at end (1/5/15 min): {load_average()}")


def _seed_import_box(dovecot: Any, world: World, tag: str, count: int) -> Any:
    """A new mailbox of ``count`` messages (~9 KB, as sync_bench's) from the workspace's
    contacts, so the contacts scope imports every one; Message-IDs random as real mail's,
    and half of them replies to a stored message picked at random (its thread found by
    In-Reply-To/References), as in :func:`import_rate`."""
    from email.utils import format_datetime

    from sync_bench import BODY

    box = dovecot.add_user(f"imap-{tag}@acme.test", f"pw-{tag}")
    pick = random.Random(tag)
    now = datetime.now(UTC)

    def message(i: int) -> bytes:
        m = EmailMessage()
        c = pick.randrange(CONTACTS)
        m["From"] = f"Contact {c} <c{c}@client.test>"
        m["To"] = box.email
        m["Date"] = format_datetime(now - timedelta(seconds=count - i))
        m["Message-ID"] = f"<{uuid.uuid4().hex}@client.test>"
        if i % 2 == 0:
            stored = pick.randrange(world.n)
            m["Subject"] = f"Re: Project kiwi {stored // 4}"
            m["In-Reply-To"] = m["References"] = f"<{_msgid(f'm{stored}')}>"
        else:
            m["Subject"] = f"Proposal {tag} {i}"
        m.set_content(BODY)
        return m.as_bytes()

    dovecot.seed_maildir(box.email, "INBOX", (message(i) for i in range(count)))
    # Dovecot indexes the new mail now, not during the timed import.
    dovecot.doveadm("mailbox", "status", "-u", box.email, "messages", "INBOX")
    return box


def _imap_import_rate(services: Services, world: World, box: Any, count: int) -> float:
    """msg/s of the real sync engine's initial import of ``box`` into an account of a new
    user of the generated workspace.

    The same workspace on purpose: a new workspace's rows would sort after every existing
    row in each index led by workspace_id, so its inserts would land in the indexes'
    last leaves at any size and hide the random-key cost that a real import into a big
    workspace pays."""
    from sync_bench import connect_account, timed_import

    ws = world.ids["ws"]
    uid = services.db.run(lambda s: crm.create_user(s, ws, box.email, name="Importer").user.id)
    account = connect_account(services, ws, uid, box)
    last = services.db.run(lambda s: s.scalar(text("SELECT max(id) FROM messages")))
    seconds = asyncio.run(timed_import(services, account))
    stored = services.db.run(
        lambda s: s.scalar(text("SELECT count(*) FROM messages WHERE id > :m"), {"m": last})
    )
    assert stored == count, (stored, count)
    # The replies joined the stored threads (generated with ids up to the world's).
    joined = services.db.run(
        lambda s: s.scalar(
            text("SELECT count(*) FROM messages WHERE id > :m AND thread_id <= :t"),
            {"m": last, "t": (world.n + 3) // 4},
        )
    )
    assert joined == (count + 1) // 2, (joined, count)
    return count / seconds


def imap_import_rounds(sizes: list[int], rounds: int, count: int, storage: bool) -> None:
    """Interleaved rounds on SQLite of what a user feels: each round seeds a new mailbox
    of ``count`` messages into a Dovecot on loopback and imports it with the sync engine
    (IMAP headers, scope decision, bodies, parse, store) into every size's workspace; with
    ``storage``, also the storage write path's import (:func:`import_rate`) in the same
    rounds. Prints each round, the median ratio to the first size and its range."""
    from crmail.demo.dovecot import Dovecot

    print(f"load average at start (1/5/15 min): {load_average()}")
    base = sizes[0]
    kinds = ["IMAP import", "storage path"] if storage else ["IMAP import"]
    rates: dict[tuple[str, int], list[float]] = defaultdict(list)
    with ExitStack() as stack:
        dirs, worlds = _generate(stack, sizes)
        dovecot = stack.enter_context(Dovecot())
        for r in range(rounds):
            figures: dict[tuple[str, int], float] = {}
            for n in sizes:
                box = _seed_import_box(dovecot, worlds[n], f"r{r}-{n}", count)
                for kind in kinds:
                    _reset(dirs[n], n)
                    services = _open_sqlite(dirs[n], "")
                    worlds[n].services = services
                    try:
                        figures[(kind, n)] = (
                            _imap_import_rate(services, worlds[n], box, count)
                            if kind == "IMAP import"
                            else import_rate(worlds[n], count=count, tag=f"s{r}")
                        )
                    finally:
                        services.close()
                    rates[(kind, n)].append(figures[(kind, n)])
            for kind in kinds:
                cells = "  ".join(f"{n:>9,}: {figures[(kind, n)]:6.0f} msg/s" for n in sizes)
                shown = "  ".join(
                    f"{figures[(kind, n)] / figures[(kind, base)]:5.2f}" for n in sizes[1:]
                )
                print(f"round {r + 1} [{kind}]  {cells}  ratio {shown}", flush=True)
    print()
    for kind in kinds:
        for n in sizes[1:]:
            ratios = [a / b for a, b in zip(rates[(kind, n)], rates[(kind, base)], strict=True)]
            print(
                f"[{kind}] into {n:,} / into {base:,}:"
                f" median {statistics.median(ratios):.2f} over {len(ratios)} rounds"
                f" (range {min(ratios):.2f}-{max(ratios):.2f});"
                f" msg/s median {statistics.median(rates[(kind, n)]):.0f}"
                f" vs {statistics.median(rates[(kind, base)]):.0f}"
            )
    print(f"\nload average at end (1/5/15 min): {load_average()}")


def _serve_process(settings: Settings, port: int) -> None:
    import uvicorn

    from crmail.api_processes import listening_socket

    app = create_app(Services.open(settings))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[listening_socket("127.0.0.1", port)])


def _over_http(
    services: Services, workers: int, headers: dict[str, str], clients: int, seconds: float = 3.0
) -> float:
    """Inbox requests/s over real HTTP against ``workers`` uvicorn processes on one port
    (SO_REUSEPORT, as ``crmail run --api-workers``); the load comes from separate client
    processes so the bench's own Python does not share the servers' interpreter."""
    import multiprocessing
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    servers = [
        ctx.Process(target=_serve_process, args=(services.settings, port)) for _ in range(workers)
    ]
    for p in servers:
        p.start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with ctx.Pool(2) as pool:
            counts = pool.starmap(
                _load,
                [(url, headers, clients // 2 or 1, seconds)] * (2 if clients > 1 else 1),
            )
        return sum(counts) / seconds
    finally:
        for p in servers:
            p.terminate()
            p.join()


def _load(url: str, headers: dict[str, str], clients: int, seconds: float) -> int:
    async def run() -> int:
        done = 0
        stop = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=clients)

        # A loaded machine may hold a request past httpx's 5 s default: count it, late.
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as c:

            async def one() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    r = await c.get("/api/inbox", headers=headers)
                    assert r.status_code == 200, r.text[:200]
                    done += 1

            await asyncio.gather(*(one() for _ in range(clients)))
        return done

    return asyncio.run(run())


async def _capture_async(
    services: Services, c: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        seen.append((statement, parameters))

    event.listen(services.db.engine, "before_cursor_execute", grab)
    try:
        await c.get(url, headers=headers)
    finally:
        event.remove(services.db.engine, "before_cursor_execute", grab)
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--million", action="store_true", help="also 1,000,000 messages")
    ap.add_argument(
        "--database-url", default="", help="an empty PostgreSQL database (default: SQLite)"
    )
    ap.add_argument(
        "--postgres", action="store_true", help="on a throwaway local PostgreSQL cluster"
    )
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--import-only", action="store_true", help="only the import rate at each size")
    ap.add_argument(
        "--rounds", type=int, default=5, help="--import-only on SQLite: interleaved rounds"
    )
    ap.add_argument(
        "--pragmas",
        default="",
        help="--import-only on SQLite: variants of extra PRAGMAs to compare in the same"
        " rounds, '|'-separated, each a comma-separated list ('' = as storage/db.py sets"
        " them), e.g. '|mmap_size=1073741824|cache_size=-65536'",
    )
    ap.add_argument(
        "--profile", action="store_true", help="--import-only: time each phase of the batches"
    )
    ap.add_argument(
        "--hashed-keys",
        action="store_true",
        help="generated mail spread over the indexes as real mail is: Message-IDs with a"
        " random part, correspondents, timelines, References and thread root keys spread"
        " (default: ordered Message-IDs, one correspondent, one contact's timeline)",
    )
    ap.add_argument(
        "--imap-import",
        action="store_true",
        help="SQLite: interleaved rounds of the real sync engine's import from a loopback"
        " Dovecot into each size's workspace, beside the storage path's (implies"
        " --hashed-keys)",
    )
    ap.add_argument(
        "--imap-messages", type=int, default=10_000, help="--imap-import: messages per mailbox"
    )
    ap.add_argument(
        "--no-storage", action="store_true", help="--imap-import: not the storage path alongside"
    )
    args = ap.parse_args()
    global HASHED_KEYS
    # The sync engine's dedup keys are sha256 hashes: against a workspace of ordered keys
    # ("k17") every one would sort into one corner of the index.
    HASHED_KEYS = args.hashed_keys or args.imap_import
    sizes = [int(x) for x in args.sizes.split(",") if x]
    if args.million:
        sizes.append(1_000_000)
    if args.imap_import:
        imap_import_rounds(sizes, args.rounds, args.imap_messages, not args.no_storage)
        return
    if args.import_only and not args.postgres and not args.database_url:
        import_rounds(sizes, args.rounds, args.pragmas.split("|"), args.profile)
        return
    cluster = None
    if args.postgres:
        # The tests' throwaway cluster (run from the repository's root).
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.servers.postgres import Postgres

        cluster = Postgres().start()
    rates = {}
    try:
        for n in sizes:
            rates[n] = _one_size(n, args.database_url, cluster, args.requests, args.import_only)
        first = sizes[0]
        for n in sizes[1:]:
            print(
                f"import into {n:,} / into {first:,}: {rates[n] / rates[first]:5.2f}"
                "   (target >= 0.8 at 1M against 10k)"
            )
    finally:
        if cluster is not None:
            cluster.stop()


def _one_size(
    n: int, database_url: str, cluster: Any, requests: int, import_only: bool = False
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        if cluster is not None:
            database_url = cluster.new_database()
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        services = Services.open(Settings(data_dir=Path(tmp), database_url=url))
        try:
            world = World(services, n)
            t = time.perf_counter()
            world.build()
            if services.db.engine.dialect.name == "postgresql":
                # What autovacuum does for a database that grew over time; the bulk load
                # here is too fast for it, and plans on empty statistics are not the
                # plans a live database gets.
                with services.db.engine.connect() as conn:
                    conn.execute(text("ANALYZE"))
                    conn.commit()
            print(f"\ngenerated {n:,} messages in {time.perf_counter() - t:.1f} s")
            if not import_only:
                asyncio.run(measure(world, requests))
            rate = import_rate(world)
            print(f"import into {n:,} messages: {rate:7.0f} msg/s (storage write path)")
            return rate
        finally:
            services.close()


if __name__ == "__main__":
    main()
