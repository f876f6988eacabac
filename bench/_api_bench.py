"""What bench/gmail_bench.py and bench/graph_bench.py share: the generated mail, the
crmail side (its services, the connected account, a worker woken by the push route)
and how their figures are printed."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.services import Services
from crmail.storage import accounts, crm
from crmail.storage.models import MailAccount, Message

BODY = ("Hello, this is a realistic business email body line. " * 40 + "\n") * 4  # ~9 KB
CONTACT, STRANGER = "client@customer.example", "friend@private.example"


class Worker(Protocol):
    def wake(self) -> None: ...

    async def run_once(self) -> Any: ...


def make_message(i: int, sender: str, to: str, when: datetime, *, tag: str) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = f"Proposal #{i}"
    m["Date"] = format_datetime(when)
    m["Message-ID"] = f"<{tag}-{i}-{time.time_ns()}@client.example>"
    m.set_content(BODY)
    return m.as_bytes()


def message_id(raw: bytes) -> str:
    return raw.split(b"Message-ID: <", 1)[1].split(b">", 1)[0].decode()


def fill_mailbox(
    n: int, to: str, tag: str, deliver: Callable[[int, bytes, datetime], None]
) -> None:
    """``n`` messages a minute apart, newest first: every other one from the contact."""
    now = datetime.now(UTC)
    for i in range(n):
        when = now - timedelta(minutes=i + 1)
        sender = CONTACT if i % 2 == 0 else STRANGER
        deliver(i, make_message(i, sender, to, when, tag=tag), when)


def open_services(root: Path, name: str, **settings: object) -> Services:
    return Services.open(
        Settings(data_dir=root / name, secret_keys=(new_key(),), **settings)  # type: ignore[arg-type]
    )


def connect(services: Services, address: str, token: str, provider: str) -> int:
    def make(s):  # type: ignore[no-untyped-def]
        ws = crm.create_workspace(s, "Bench").id
        user = crm.create_user(s, ws, address, name="Bench", role="admin")
        crm.create_contact(s, ws, name="Client", emails=[CONTACT])
        return accounts.create_account(
            s,
            workspace_id=ws,
            user_id=user.user.id,
            email=address,
            provider=provider,
            settings={"history_days": 365},
            secret=services.box.seal({"oauth2_token": token}),
        )

    return int(services.db.run(make))


async def timed_import(services: Services, worker: Worker) -> tuple[int, float]:
    """One import round: messages stored, seconds taken."""
    t0 = time.perf_counter()
    await worker.run_once()
    seconds = time.perf_counter() - t0
    return services.db.run(lambda s: len(s.scalars(select(Message.id)).all())), seconds


def print_import(
    n: int, baseline: str, got: int, base_s: float, stored: int, fetched: int, crm_s: float
) -> None:
    print(f"import of {n} messages ({n // 2} a contact's, {n - n // 2} private):")
    print(f"  baseline {baseline}: {got} bodies in {base_s:.2f}s = {got / base_s:.0f} msg/s")
    print(
        f"  crmail import: {n} judged, {stored} stored, {fetched} bodies fetched in {crm_s:.2f}s"
        f" = {n / crm_s:.0f} msg/s examined, {stored / crm_s:.0f} stored/s"
    )
    print(f"  ratio (examined / baseline): {(n / crm_s) / (got / base_s):.2f}")


class Wakes:
    """The services' sync handle: an action queued by the push route wakes the worker."""

    def __init__(self, worker: Worker, loop: asyncio.AbstractEventLoop) -> None:
        self.worker, self.loop = worker, loop

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, ids: object, default_provider: bool = False) -> None:
        self.loop.call_soon_threadsafe(self.worker.wake)


async def until_live(services: Services, account: int, watched: Callable[[], bool]) -> None:
    """Until the provider has the account's push and the account is live."""
    while not (
        watched() and services.db.run(lambda s: s.get_one(MailAccount, account).state) == "live"
    ):
        await asyncio.sleep(0.01)


async def until_stored(services: Services, msgid: str, pause: float) -> None:
    # Looked for off the event loop: the worker shares it.
    while not await services.db.read(
        lambda s: s.scalar(select(Message.id).where(Message.message_id == msgid))
    ):
        await asyncio.sleep(pause)


def print_latencies(title: str, latencies: list[float]) -> None:
    latencies = sorted(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{title}, {len(latencies)} deliveries (safety poll 1 h):")
    print(
        f"  p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
        f" max {latencies[-1] * 1000:.0f} ms"
    )
