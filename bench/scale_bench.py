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

Targets (issue 10): <= 0.5 MiB and 1 connection per idle account, all live within 30 s,
idle CPU <= 5 % of a core, p99 <= 1 s (or within 100 ms of the raw IDLE client).

Usage: .venv/bin/python bench/scale_bench.py [--sizes 100,300] [--thousand]
       [--idle 30] [--deliveries 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
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
    services = Services.open(Settings(data_dir=root, secret_keys=(new_key(),)))
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
    assert len(ids) == n
    return {
        "n": n,
        "rss_per_account_mib": (rss - base_rss) / n,
        "base_rss_mib": base_rss,
        "sessions_per_account": sessions / n,
        "all_live_s": all_live,
        "idle_cpu_pct": idle_cpu,
        "idle_commits": idle_commits,
        "startup_cpu_ms_per_account": startup_cpu / n * 1000,
        "startup_commits_per_account": startup_commits / n,
        "restart_live_s": restart_live,
        "restart_cpu_ms_per_account": restart_cpu / n * 1000,
        "restart_commits_per_account": restart_commits / n,
        "p50_ms": statistics.median(crmail_ms),
        "p99_ms": pct(crmail_ms, 99),
        "raw_p50_ms": statistics.median(raw_ms),
        "raw_p99_ms": pct(raw_ms, 99),
    }


def lmtp_deliver(host: str, port: int, rcpt: str, raw: bytes) -> None:
    import smtplib

    with smtplib.LMTP(host, port) as lmtp:
        lmtp.sendmail("ivy@client.test", [rcpt], raw)


# --- the run -----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,300")
    ap.add_argument("--thousand", action="store_true", help="also N = 1,000")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    ap.add_argument("--deliveries", type=int, default=40)
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
            f"{'N':>5} {'RSS/acct':>9} {'conn/acct':>9} {'all live':>9} {'CPU/start':>9}"
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
                f" {r['all_live_s']:>8.1f}s {r['startup_cpu_ms_per_account']:>7.0f}ms"
                f" {r['startup_commits_per_account']:>12.1f}"
                f" {r['idle_cpu_pct']:>8.1f}% {r['idle_commits']:>7}"
                f" {r['p50_ms']:>5.0f}ms {r['p99_ms']:>5.0f}ms"
                f" {r['raw_p50_ms']:>6.0f}ms {r['raw_p99_ms']:>6.0f}ms",
                flush=True,
            )
        print(f"\n{'N':>5} {'restart: all live':>18} {'CPU/acct':>9} {'writes/acct':>12}")
        for r in results:
            print(
                f"{r['n']:>5} {r['restart_live_s']:>17.1f}s"
                f" {r['restart_cpu_ms_per_account']:>7.0f}ms"
                f" {r['restart_commits_per_account']:>12.1f}"
            )
    finally:
        dovecot.close()


if __name__ == "__main__":
    main()
