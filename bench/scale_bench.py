"""Many IMAP accounts in one crmail process: what each idle account costs, in one run.

For each N (100 and 300; 1,000 with --thousand), a fresh process (so memory figures do
not carry over) runs the sync service over N accounts on one Dovecot (a static passdb
serves any load user) and reports:

- RSS per account over the same process before its accounts started;
- IMAP sessions per account once idle, as the server counts them (``doveadm who``);
- time from the service's start until every account is live;
- CPU time per account spent starting (a figure that does not depend on how busy the
  machine is, unlike the time to all-live);
- CPU at idle: the process's CPU time over ``--idle`` seconds, as % of one core, and
  the database commits made meanwhile;
- delivery → stored p50/p99 for deliveries to random accounts, next to a raw IDLE
  client's delivery → EXISTS on the same server, interleaved in the same run;
- a restart: a new sync service over the same, imported accounts (a process taking
  them over): the time and CPU until every worker made its first round.

Each N also prints the floor of the same run: a raw client (TLS, LOGIN, ENABLE, SELECT
INBOX, nothing stored) bringing N sessions up with crmail's login concurrency, so the
time to all-live reads as a ratio to what the server and the machine allow right now.

Targets (issue 10): <= 0.5 MiB and 1 connection per idle account, all live within 30 s,
idle CPU <= 5 % of a core, p99 <= 1 s (or within 100 ms of the raw IDLE client).

``--cluster 2,3`` then runs, for each process count, that many ``crmail run --role sync``
processes on one throwaway PostgreSQL sharing ``--cluster-accounts`` accounts (300 by
default; 1,000 is possible but slow on two shared cores) and prints: time until every
account is live, accounts per process once balanced, the takeover time after a SIGKILL
of one process (until each of its accounts is leased by another, has an IMAP session
again and is live), with the default lease TTL and with ``--short-ttl`` (or the TTLs
of ``--ttls``), and the hand-over time after a SIGTERM. Under each row, the takeover
taken apart on the database's clock: when the killed process's leases ran out, when the
survivors had claimed them all, the restart until all were live; and how late the lease
renewals committed during the start-up (from the processes' logs).

Usage: .venv/bin/python bench/scale_bench.py [--sizes 100,300] [--thousand]
       [--idle 30] [--deliveries 40] [--cluster 2,3] [--cluster-accounts 300]
       [--short-ttl 6 | --ttls 15,24,6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

LOAD_PASSWORD = "loadpw"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def mail(to: str, n: int) -> tuple[bytes, str]:
    m = EmailMessage()
    m["From"] = "Ivy <ivy@client.test>"
    m["To"] = to
    m["Subject"] = f"news {n}"
    msgid = f"scale-{n}-{time.time_ns()}@client.test"
    m["Message-ID"] = f"<{msgid}>"
    m.set_content("Hello, a short business email.\n" * 20)
    return m.as_bytes(), msgid


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the server ------------------------------------------------------------------------


def start_dovecot():  # type: ignore[no-untyped-def]
    from crmail.demo.dovecot import Dovecot

    class LoadDovecot(Dovecot):
        """The fixture server, plus any ``load*@load.test`` user with one password, and
        login processes that each serve many TLS clients (one process per client
        otherwise: thousands of them)."""

        def _render_config(self, cert: Path, key: Path) -> str:
            conf = super()._render_config(cert, key)
            static = (
                "passdb {\n  driver = static\n"
                f"  args = password={LOAD_PASSWORD}\n"
                "  username_filter = load*@load.test\n}\n"
            )
            conf = conf.replace("passdb {", static + "passdb {", 1)
            conf = conf.replace(
                "  process_min_avail = 1\n",
                "  process_min_avail = 2\n  service_count = 0\n"
                "  client_limit = 4000\n  process_limit = 8\n",
                1,
            )
            return conf + "service imap {\n  process_limit = 5000\n}\n"

    # Dovecot's IDLE uses an inotify instance per session; not root: the config's
    # mailbox_idle_check_interval (1 s) covers the sessions past the limit.
    with contextlib.suppress(OSError):
        Path("/proc/sys/fs/inotify/max_user_instances").write_text("8192\n")
    raise_fd_limit()
    return LoadDovecot().start()


# --- one N, in a process of its own ----------------------------------------------------


async def measure(n: int, server: dict[str, object], idle: float, deliveries: int) -> dict:  # type: ignore[type-arg]
    from sqlalchemy import event, func, select

    from crmail.config import Settings
    from crmail.crypto import new_key
    from crmail.providers.imap import ImapClient, ImapSettings
    from crmail.services import Services
    from crmail.storage import accounts, crm
    from crmail.storage.models import MailAccount, Message
    from crmail.sync.service import SyncService
    from crmail.sync.worker import WorkerOptions

    raise_fd_limit()
    host, tls_port, ca = str(server["host"]), int(str(server["tls_port"])), str(server["ca"])
    root = Path(tempfile.mkdtemp(prefix=f"crmail-scale-{n}-"))
    # CRMAIL_LEASE_TTL as crmail reads it, so runs can compare TTLs on one process too.
    settings = Settings(data_dir=root, secret_keys=(new_key(),))
    if "CRMAIL_LEASE_TTL" in os.environ:
        settings = dataclasses.replace(settings, lease_ttl=float(os.environ["CRMAIL_LEASE_TTL"]))
    services = Services.open(settings)
    tag = f"{n}x{os.getpid()}"
    emails = [f"load{tag}-{i}@load.test" for i in range(n)]

    def populate(s):  # type: ignore[no-untyped-def]
        ws = crm.create_workspace(s, "Scale").id
        crm.create_contact(s, ws, name="Ivy", emails=["ivy@client.test"])
        secret = services.box.seal({"password": LOAD_PASSWORD})
        ids = []
        for email in emails:
            uid = crm.create_user(s, ws, email, name=email).user.id
            ids.append(
                accounts.create_account(
                    s,
                    workspace_id=ws,
                    user_id=uid,
                    email=email,
                    provider="imap",
                    settings={
                        "imap_host": host,
                        "imap_port": tls_port,
                        "imap_security": "tls",
                        "ca_file": ca,
                    },
                    secret=secret,
                )
            )
        return ids

    ids = services.db.run(populate)
    # The empty process: everything loaded, the service running, no account started.
    service = SyncService(services.db, services.box, WorkerOptions())
    base_rss = rss_mib()

    def live() -> int:
        return int(
            services.db.run(
                lambda s: s.scalar(
                    select(func.count(MailAccount.id)).where(MailAccount.state == "live")
                )
            )
            or 0
        )

    commits = [0]

    def counted(conn: object) -> None:
        commits[0] += 1

    event.listen(services.db.engine, "commit", counted)
    tracing = bool(os.environ.get("SCALE_TRACEMALLOC"))
    if tracing:
        import tracemalloc

        tracemalloc.start(8)
    started, started_cpu = time.perf_counter(), cpu_seconds()
    service.start()
    while live() < n:
        await asyncio.sleep(0.1)
        if time.perf_counter() - started > 600:
            raise RuntimeError(f"only {live()} of {n} accounts live after 10 minutes")
    all_live = time.perf_counter() - started
    startup_cpu = cpu_seconds() - started_cpu
    startup_commits = commits[0]
    await asyncio.sleep(5)  # import connections close, first heartbeats written

    who = subprocess.run(
        [str(server["doveadm"]), "-c", str(server["conf"]), "who", "-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    sessions = sum(1 for line in who if line.split()[0].startswith(f"load{tag}-"))
    rss = rss_mib()
    if tracing:
        snap = tracemalloc.take_snapshot()
        total = sum(st.size for st in snap.statistics("filename"))
        print(f"python heap traced: {total / n / 1024:.0f} KiB per account", file=sys.stderr)
        for st in snap.statistics("traceback")[:12]:
            print(f"{st.size / n / 1024:8.1f} KiB/acct {st.count / n:6.1f}/acct", file=sys.stderr)
            for line in st.traceback.format()[-6:]:
                print("    " + line, file=sys.stderr)
        tracemalloc.stop()

    cpu0, t0, commits0 = cpu_seconds(), time.perf_counter(), commits[0]
    await asyncio.sleep(idle)
    idle_cpu = (cpu_seconds() - cpu0) / (time.perf_counter() - t0) * 100
    idle_commits = commits[0] - commits0

    # Delivery -> stored, next to a raw IDLE client on the same server.
    raw_box = f"load{tag}-raw@load.test"
    raw = await ImapClient.connect(
        ImapSettings(host, tls_port, "tls", raw_box, LOAD_PASSWORD, ca_file=ca)
    )
    await raw.select("INBOX")
    lmtp = int(str(server["lmtp_port"]))
    crmail_ms: list[float] = []
    raw_ms: list[float] = []
    for k in range(deliveries):
        to = random.choice(emails)
        body, msgid = mail(to, k)
        t = time.perf_counter()
        await asyncio.to_thread(lmtp_deliver, host, lmtp, to, body)
        while not services.db.run(
            lambda s, m=msgid: s.scalar(select(Message.id).where(Message.message_id == m))
        ):
            await asyncio.sleep(0.002)
            if time.perf_counter() - t > 30:
                raise RuntimeError("a delivery was not stored within 30 s")
        crmail_ms.append((time.perf_counter() - t) * 1000)

        body, _ = mail(raw_box, k)
        waiter = asyncio.ensure_future(raw.idle(timeout=30))
        await asyncio.sleep(0.02)  # IDLE is entered
        t = time.perf_counter()
        await asyncio.to_thread(lmtp_deliver, host, lmtp, raw_box, body)
        await waiter
        raw_ms.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.05)
    await raw.close()
    await service.stop()

    # A restart (a new process taking the accounts over, a rolling restart): every
    # account imported already, each worker is live after its first watch round.
    commits0 = commits[0]
    service = SyncService(services.db, services.box, WorkerOptions())
    started, started_cpu = time.perf_counter(), cpu_seconds()
    service.start()

    def following() -> int:
        # healthy_rounds: 1 once connected and the folders listed, 2 after a first round
        return sum(1 for w in service._workers.values() if w.healthy_rounds >= 2)

    while following() < n:
        await asyncio.sleep(0.05)
        if time.perf_counter() - started > 600:
            raise RuntimeError(f"only {following()} of {n} accounts following after a restart")
    restart_live = time.perf_counter() - started
    restart_cpu = cpu_seconds() - started_cpu
    restart_commits = commits[0] - commits0
    await service.stop()
    services.close()
    # The floor, last (its clients' memory must not count in the figures above): its own
    # mailboxes, new (as crmail's first start met its accounts'), then again, existing
    # (as the restart met them).
    floor_users = [f"load{tag}-floor-{i}@load.test" for i in range(n)]
    pacing = WorkerOptions().connect_concurrency
    floor_s = await raw_floor(floor_users, host, tls_port, ca, pacing)
    restart_floor_s = await raw_floor(floor_users, host, tls_port, ca, pacing)
    assert len(ids) == n
    return {
        "n": n,
        "rss_per_account_mib": (rss - base_rss) / n,
        "base_rss_mib": base_rss,
        "sessions_per_account": sessions / n,
        "all_live_s": all_live,
        "raw_floor_s": floor_s,
        "idle_cpu_pct": idle_cpu,
        "idle_commits": idle_commits,
        "startup_cpu_ms_per_account": startup_cpu / n * 1000,
        "startup_commits_per_account": startup_commits / n,
        "restart_live_s": restart_live,
        "restart_floor_s": restart_floor_s,
        "restart_cpu_ms_per_account": restart_cpu / n * 1000,
        "restart_commits_per_account": restart_commits / n,
        "p50_ms": statistics.median(crmail_ms),
        "p99_ms": pct(crmail_ms, 99),
        "raw_p50_ms": statistics.median(raw_ms),
        "raw_p99_ms": pct(raw_ms, 99),
    }


async def raw_floor(emails: list[str], host: str, port: int, ca: str, concurrency: int) -> float:
    """Seconds for a bare client to bring one session per mailbox up to a selected INBOX,
    ``concurrency`` logins at a time (crmail's pacing): the server's and machine's floor."""
    from crmail.providers.imap import ImapClient, ImapSettings

    gate = asyncio.Semaphore(concurrency)
    clients: list[ImapClient] = []

    async def one(user: str) -> None:
        async with gate:
            c = await ImapClient.connect(
                ImapSettings(host, port, "tls", user, LOAD_PASSWORD, ca_file=ca)
            )
        clients.append(c)
        await c.select("INBOX")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(u) for u in emails))
        return time.perf_counter() - started
    finally:
        for c in clients:
            await c.close()


def lmtp_deliver(host: str, port: int, rcpt: str, raw: bytes) -> None:
    import smtplib

    with smtplib.LMTP(host, port) as lmtp:
        lmtp.sendmail("ivy@client.test", [rcpt], raw)


# --- several processes on one PostgreSQL ------------------------------------------------

#: the production default (config.py); the bench also runs a short one
DEFAULT_TTL = 15.0


class SyncCluster:
    """``crmail run --role sync`` processes over one database, watched from outside."""

    def __init__(self, url: str, key: str, data_dir: Path, server: dict[str, object]) -> None:
        self.url, self.key, self.data_dir, self.server = url, key, data_dir, server
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, ttl: float) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            CRMAIL_DATABASE_URL=self.url,
            CRMAIL_SECRET_KEY=self.key,
            CRMAIL_DATA_DIR=str(self.data_dir),
            CRMAIL_MAIL_ALLOWED_NETWORKS="127.0.0.1",
            CRMAIL_LEASE_TTL=str(ttl),
        )
        path = self.data_dir / f"proc{len(self.logs)}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "crmail.cli", "-v", "run", "--role", "sync"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        self.logs[proc.pid] = path
        return proc

    def worst_renewal(self, procs: list[subprocess.Popen[bytes]]) -> float:
        """The latest renewal commit (s after due) these processes logged so far."""
        worst = 0.0
        for p in procs:
            for line in self.logs[p.pid].read_text(errors="replace").splitlines():
                if "lease renewal committed" in line:
                    late = line.split("lease renewal committed ")[1].split("s after due")[0]
                    worst = max(worst, float(late))
        return worst

    def stop(self) -> None:
        """SIGTERM (the leases are given back: the next run does not wait them out)."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def cluster_look(db, server: dict[str, object], ids: list[int]):  # type: ignore[no-untyped-def]
    """(account -> owner pid, the live accounts, users with an IMAP session) right now."""
    from sqlalchemy import select

    from crmail.storage import leases
    from crmail.storage.models import MailAccount, utcnow

    now = utcnow()
    owners = {
        r.account_id: int(r.owner.split(":")[-2])
        for r in db.run(leases.owners)
        if r.owner is not None and r.expires_at > now
    }
    live = set(
        db.run(
            lambda s: s.scalars(
                select(MailAccount.id).where(MailAccount.state == "live", MailAccount.id.in_(ids))
            )
        )
    )
    who = subprocess.run(
        [str(server["doveadm"]), "-c", str(server["conf"]), "who", "-1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    sessions = {line.split()[0] for line in who if line.strip()}
    return owners, live, sessions


def lease_stamps(db, accounts: list[int]):  # type: ignore[no-untyped-def]
    """(the database's now, account -> (owner pid, lease expiry)), on the database's clock."""
    from sqlalchemy import func, select

    from crmail.storage.models import AccountLease

    def read(s):  # type: ignore[no-untyped-def]
        now = s.scalar(select(func.now()))
        rows = s.execute(
            select(AccountLease.account_id, AccountLease.owner, AccountLease.expires_at).where(
                AccountLease.account_id.in_(accounts)
            )
        ).all()
        return now, {a: (int(o.split(":")[-2]) if o else None, e) for a, o, e in rows}

    return db.run(read)


def wait_cluster(what: str, cond, timeout: float = 900.0) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    while not cond():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)
    return time.perf_counter() - started


class ClusterWatch:
    """What the cluster does, as seen from the database and the IMAP server."""

    def __init__(self, look, user_of: dict[int, str], db) -> None:  # type: ignore[no-untyped-def]
        self.look = look
        self.user_of = user_of
        self.db = db

    def everyone_live(self) -> bool:
        # A session too: the state another run left "live" is stale.
        owners, live, sessions = self.look()
        n = len(self.user_of)
        return len(owners) == n and len(live) == n and set(self.user_of.values()) <= sessions

    def shares(self, procs: list[subprocess.Popen[bytes]]) -> list[int]:
        owners = self.look()[0]
        return [sum(1 for o in owners.values() if o == q.pid) for q in procs]

    def balanced(self, procs: list[subprocess.Popen[bytes]]) -> bool:
        # Each process claims up to its fair share, rounded up: 1,000 over 3 settles
        # at 334 / 334 / 332.
        c = self.shares(procs)
        return max(c) <= -(-len(self.user_of) // len(procs)) and sum(c) == len(self.user_of)

    def accounts_of(self, proc: subprocess.Popen[bytes]) -> list[int]:
        return [a for a, o in self.look()[0].items() if o == proc.pid]

    def elsewhere(self, gone: subprocess.Popen[bytes], accounts: list[int]) -> bool:
        """Each account leased by another process, live, with an IMAP session again."""
        owners, live, sessions = self.look()
        return all(
            owners.get(a) not in (None, gone.pid) and a in live and self.user_of[a] in sessions
            for a in accounts
        )


def cluster_run(cluster: SyncCluster, watch: ClusterWatch, p: int, ttl: float) -> str:
    """One row: ``p`` processes with lease ``ttl``: all live, balance, SIGKILL takeover,
    then a process joins and another leaves by SIGTERM (its hand-over)."""
    procs = [cluster.start(ttl) for _ in range(p)]
    all_live = wait_cluster("all live", watch.everyone_live)
    balanced = all_live + wait_cluster("balanced", lambda: watch.balanced(procs))
    shares = watch.shares(procs)
    wait_cluster("all live after balancing", watch.everyone_live)

    late = cluster.worst_renewal(procs)

    victim = procs.pop(0)
    mine = watch.accounts_of(victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    kill_at, before = lease_stamps(watch.db, mine)
    claimed: list[float] = []

    def taken_over() -> bool:
        if not claimed:
            _, after = lease_stamps(watch.db, mine)
            if all(after[a][0] not in (None, victim.pid) for a in mine):
                # A claim stamps now + TTL; a renewal since would only make this later.
                claimed.append(max((e - kill_at).total_seconds() - ttl for _, e in after.values()))
        return bool(claimed) and watch.elsewhere(victim, mine)

    killed = wait_cluster("taken over", taken_over)
    expiry = max((e - kill_at).total_seconds() for _, e in before.values())
    decomposition = (
        f"SIGKILL of {len(mine)} accounts' owner: leases ran out {expiry:.1f}s after the kill,"
        f" all claimed by {claimed[0]:.1f}s ({claimed[0] - expiry:+.1f}s after the expiry),"
        f" all live with a session by {killed:.1f}s ({killed - claimed[0]:.1f}s of restart,"
        f" {1000 * (killed - claimed[0]) / max(1, len(mine)) * (p - 1):.0f} ms per account"
        f" per survivor); renewals at start-up committed up to {late:.2f}s after due"
        f" (given up at {ttl / 2:g}s)"
    )

    # A replacement joins (its share comes from the others' surplus), then one leaves.
    procs.append(cluster.start(ttl))
    joined = wait_cluster("balanced after a join", lambda: watch.balanced(procs))
    wait_cluster("all live after the join", watch.everyone_live)
    leaving = procs.pop(0)
    mine = watch.accounts_of(leaving)
    leaving.send_signal(signal.SIGTERM)
    handed = wait_cluster("handed over", lambda: watch.elsewhere(leaving, mine))
    leaving.wait(timeout=60)
    return (
        f"{p:>5} {ttl:>4g}s {all_live:>8.1f}s {balanced:>8.1f}s"
        f" {'/'.join(map(str, shares)):>21} {killed:>16.1f}s {joined:>12.1f}s {handed:>17.1f}s"
        f"\n      {decomposition}"
    )


def cluster_bench(counts: list[int], n: int, ttls: list[float], server: dict[str, object]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.servers.postgres import Postgres

    from crmail.config import Settings
    from crmail.crypto import new_key
    from crmail.services import Services
    from crmail.storage import accounts, crm

    pg = Postgres().start()
    root = Path(tempfile.mkdtemp(prefix="crmail-cluster-"))
    try:
        url, key = pg.new_database(), new_key()
        services = Services.open(Settings(data_dir=root, database_url=url, secret_keys=(key,)))
        emails = [f"loadcl{os.getpid()}-{i}@load.test" for i in range(n)]

        def populate(s):  # type: ignore[no-untyped-def]
            ws = crm.create_workspace(s, "Cluster").id
            secret = services.box.seal({"password": LOAD_PASSWORD})
            by_user = {}
            for email in emails:
                uid = crm.create_user(s, ws, email, name=email).user.id
                by_user[email] = accounts.create_account(
                    s,
                    workspace_id=ws,
                    user_id=uid,
                    email=email,
                    provider="imap",
                    settings={
                        "imap_host": server["host"],
                        "imap_port": server["tls_port"],
                        "imap_security": "tls",
                        "ca_file": server["ca"],
                    },
                    secret=secret,
                )
            return by_user

        by_user = services.db.run(populate)
        ids = sorted(by_user.values())
        user_of = {a: u for u, a in by_user.items()}
        print(
            f"\n{n} accounts shared by several `crmail run --role sync` on one PostgreSQL"
            f" (lease TTLs {', '.join(f'{t:g} s' for t in ttls)}; {DEFAULT_TTL:g} s by default)"
        )
        print(
            f"{'procs':>5} {'TTL':>5} {'all live':>9} {'balanced':>9} {'accounts per process':>21}"
            f" {'SIGKILL takeover':>17} {'join: balanced':>13} {'SIGTERM hand-over':>18}"
        )
        cluster = SyncCluster(url, key, root, server)
        watch = ClusterWatch(
            functools.partial(cluster_look, services.db, server, ids), user_of, services.db
        )
        for p in counts:
            for ttl in ttls:
                try:
                    print(cluster_run(cluster, watch, p, ttl), flush=True)
                finally:
                    cluster.stop()
        services.close()
    finally:
        pg.stop()


# --- the run -----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,300")
    ap.add_argument("--thousand", action="store_true", help="also N = 1,000")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    ap.add_argument("--deliveries", type=int, default=40)
    ap.add_argument("--cluster", default="", help="process counts, e.g. 2,3 (PostgreSQL)")
    ap.add_argument("--cluster-accounts", type=int, default=300)
    ap.add_argument("--short-ttl", type=float, default=6.0, help="the short lease TTL, s")
    ap.add_argument(
        "--ttls", default="", help="the lease TTLs to run, s (default: the default and --short-ttl)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)  # JSON: one N, in this process
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        result = asyncio.run(measure(spec["n"], spec["server"], args.idle, args.deliveries))
        print(json.dumps(result))
        return

    from crmail.demo.dovecot import DOVEADM

    sizes = [int(x) for x in args.sizes.split(",") if x]
    if args.thousand:
        sizes.append(1000)
    dovecot = start_dovecot()
    try:
        server = {
            "host": dovecot.host,
            "tls_port": dovecot.imaps_port,
            "lmtp_port": dovecot.lmtp_port,
            "ca": dovecot.ca_file,
            "conf": str(dovecot.conf),
            "doveadm": DOVEADM,
        }
        print(
            f"{'N':>5} {'RSS/acct':>9} {'conn/acct':>9} {'all live':>9} {'floor':>6} {'CPU/start':>9}"
            f" {'writes/start':>12}"
            f" {'idle CPU':>9} {'commits':>7} {'p50':>7} {'p99':>7} {'raw p50':>8} {'raw p99':>8}"
        )
        results = []
        for n in sizes:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    json.dumps({"n": n, "server": server}),
                    "--idle",
                    str(args.idle),
                    "--deliveries",
                    str(args.deliveries),
                ],
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"N={n} failed")
            if os.environ.get("SCALE_TRACEMALLOC"):
                print(out.stderr, file=sys.stderr)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            print(
                f"{n:>5} {r['rss_per_account_mib']:>6.2f}MiB {r['sessions_per_account']:>9.2f}"
                f" {r['all_live_s']:>8.1f}s {r['raw_floor_s']:>5.1f}s"
                f" {r['startup_cpu_ms_per_account']:>7.0f}ms"
                f" {r['startup_commits_per_account']:>12.1f}"
                f" {r['idle_cpu_pct']:>8.1f}% {r['idle_commits']:>7}"
                f" {r['p50_ms']:>5.0f}ms {r['p99_ms']:>5.0f}ms"
                f" {r['raw_p50_ms']:>6.0f}ms {r['raw_p99_ms']:>6.0f}ms",
                flush=True,
            )
        print(
            f"\n{'N':>5} {'restart: all live':>18} {'floor':>6} {'CPU/acct':>9} {'writes/acct':>12}"
        )
        for r in results:
            print(
                f"{r['n']:>5} {r['restart_live_s']:>17.1f}s {r['restart_floor_s']:>5.1f}s"
                f" {r['restart_cpu_ms_per_account']:>7.0f}ms"
                f" {r['restart_commits_per_account']:>12.1f}"
            )
        counts = [int(x) for x in args.cluster.split(",") if x]
        if counts:
            ttls = [float(t) for t in args.ttls.split(",") if t] or [DEFAULT_TTL, args.short_ttl]
            cluster_bench(counts, args.cluster_accounts, ttls, server)
    finally:
        dovecot.close()


if __name__ == "__main__":
    main()
