"""Recovery benchmark: how soon a CRM action reaches the server after a network fault ends,
fault after fault, beside the same action with no fault (measured in the same run).

A private Dovecot sits behind a fault-injecting TCP proxy (tests/servers/faultproxy.py).
The account's worker runs with the production backoff (1 s first, doubling, 5 min cap).
Each fault: every connection is cut and new ones are refused for ``--fault`` seconds;
when it ends a Done is queued at once, and the time until the server has the message
read and archived is measured. The figure must not grow from one fault to the next: the
backoff starts from the bottom again once the account is healthy.

Usage: .venv/bin/python bench/recovery_bench.py [--faults 6] [--fault 5] [--baseline 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fault proxy

from tests.servers.faultproxy import FaultProxy

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.demo.dovecot import Dovecot
from crmail.services import Services
from crmail.storage import accounts, crm
from crmail.storage import actions as crm_actions
from crmail.storage.models import Message, OutboxAction
from crmail.sync.worker import AccountWorker, WorkerOptions

CLIENT = "client@client.example"


def make_message(i: int, to: str) -> bytes:
    m = EmailMessage()
    m["From"] = f"Client <{CLIENT}>"
    m["To"] = to
    m["Subject"] = f"Question #{i}"
    m["Date"] = format_datetime(datetime.now(UTC))
    m["Message-ID"] = f"<recovery-{i}-{time.time_ns()}@client.example>"
    m.set_content("Could you have a look?\n")
    return m.as_bytes()


class Bench:
    def __init__(self, dovecot: Dovecot, proxy: FaultProxy, root: Path, messages: int) -> None:
        self.dovecot = dovecot
        self.proxy = proxy
        box = dovecot.add_user("recovery@bench.test", "pw-recovery")
        dovecot.seed_maildir(
            box.email, "INBOX", (make_message(i, box.email) for i in range(messages))
        )
        self.services = services = Services.open(Settings(data_dir=root, secret_keys=(new_key(),)))

        def make(s):  # type: ignore[no-untyped-def]
            ws = crm.create_workspace(s, "Bench").id
            user = crm.create_user(s, ws, box.email).user.id
            crm.create_contact(s, ws, name="Client", emails=[CLIENT])
            account = accounts.create_account(
                s,
                workspace_id=ws,
                user_id=user,
                email=box.email,
                provider="imap",
                settings={
                    "imap_host": proxy.host,
                    "imap_port": proxy.port,
                    "imap_security": "tls",
                    "ca_file": box.ca_file,
                    "username": box.email,
                },
                secret=services.box.seal({"password": box.password}),
            )
            return ws, user, account

        self.ws, self.user_id, self.account = services.db.run(make)
        self.worker = AccountWorker(
            services.db, services.box, self.account, WorkerOptions(poll_interval=5.0)
        )
        services.sync = self  # type: ignore[assignment]

    def accounts_changed(self) -> None:
        pass

    def actions_queued(self, ids: object, default_provider: bool = False) -> None:
        self.worker.wake()

    def state(self) -> str:
        return self.services.db.run(lambda s: accounts.status(s, self.account).state)

    async def until(self, cond: object, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise RuntimeError("not reached in time")
            await asyncio.sleep(0.005)

    async def done_latency(self, thread_id: int) -> float:
        """From Done in the CRM to the server having answered the MOVE (action done)."""
        user = self.services.db.run(lambda s: crm.get_user(s, self.ws, self.user_id))
        busy = (
            select(func.count())
            .select_from(OutboxAction)
            .where(OutboxAction.state.in_(["pending", "running"]))
        )
        t0 = time.perf_counter()
        await self.services.act(lambda s: crm_actions.done(s, user, thread_id))
        await self.until(lambda: not self.services.db.run(lambda s: s.scalar(busy)))
        return time.perf_counter() - t0

    def attempts(self) -> int:
        return max((b.attempt for b in self.worker.backoff.values()), default=0)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faults", type=int, default=6)
    ap.add_argument("--fault", type=float, default=5.0, help="seconds each fault lasts")
    ap.add_argument("--baseline", type=int, default=20, help="Done actions with no fault")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crmail-recovery-bench-"))
    with Dovecot() as dovecot, FaultProxy(dovecot.host, dovecot.imaps_port) as proxy:
        bench = Bench(dovecot, proxy, root, args.baseline + args.faults)
        task = asyncio.create_task(bench.worker.run())
        await bench.until(lambda: bench.state() == "live")
        threads = bench.services.db.run(
            lambda s: list(s.scalars(select(Message.thread_id).order_by(Message.id)))
        )
        baseline = [await bench.done_latency(t) for t in threads[: args.baseline]]
        print(f"Done -> on the server, no fault, {len(baseline)} actions (the baseline)")
        print(
            f"  p50 {statistics.median(baseline) * 1000:8.1f} ms   max {max(baseline) * 1000:8.1f} ms"
        )
        print(
            f"Done queued as a {args.fault:g} s outage ends (every connection cut, reconnects"
            " refused) -> on the server"
        )
        print("  fault   failures in a row at its end   fault end -> Done on the server")
        figures = []
        for k, thread_id in enumerate(threads[args.baseline :], 1):
            proxy.refuse()
            proxy.drop_all()
            await asyncio.sleep(args.fault)
            deepest = bench.attempts()
            proxy.refuse(False)
            took = await bench.done_latency(thread_id)
            figures.append(took)
            print(f"  {k:>5}   {deepest:>27}   {took * 1000:10.1f} ms")
            # Healthy again before the next fault (as with a blip an hour).
            await bench.until(lambda: bench.state() == "live" and bench.attempts() == 0)
        print(
            f"  first {figures[0] * 1000:.0f} ms, last {figures[-1] * 1000:.0f} ms,"
            f" max {max(figures) * 1000:.0f} ms; with no fault p50"
            f" {statistics.median(baseline) * 1000:.1f} ms"
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        bench.services.close()


if __name__ == "__main__":
    asyncio.run(main())
