"""``crmail run --api-workers N``: N processes serve the API on one port (PostgreSQL);
SQLite refuses it with a clear message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from crmail.config import Settings
from crmail.services import Services
from crmail.storage import crm
from tests.db_fixtures import BACKEND


def _env(settings: Settings, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CRMAIL_DATABASE_URL=url,
        CRMAIL_SECRET_KEY=",".join(settings.secret_keys),
        CRMAIL_DATA_DIR=str(settings.data_dir),
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # multiprocessing's own resource tracker is a child too: not an API process
            ours = b"spawn_main" in cmd and b"resource_tracker" not in cmd
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and ours:
                out.append(int(entry.name))
    return out


def test_sqlite_refuses_several_api_processes(settings: Settings, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "crmail.cli", "run", "--api-workers", "2", "--port", "0"],
        env=_env(settings, url),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert b"several API processes need PostgreSQL" in done.stdout + done.stderr


@pytest.mark.skipif(BACKEND != "postgres", reason="several API processes on PostgreSQL only")
def test_two_api_processes_answer_on_one_port(settings: Settings, services: Services) -> None:
    def setup(s):  # type: ignore[no-untyped-def]
        ws = crm.create_workspace(s, "Acme").id
        return crm.create_user(s, ws, "me@acme.test", name="Me").token

    token = services.db.run(setup)
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crmail.cli",
            "run",
            "--role",
            "api",
            "--api-workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=_env(settings, settings.database_url),
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.2)
        children = _children(proc.pid)
        assert len(children) >= 1, "no second API process"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(20):  # fresh connections: the kernel spreads them over both
            assert httpx.get(f"{base}/api/me", headers=headers).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert all(not Path(f"/proc/{c}").exists() for c in children)


def test_the_shared_port_sends_responses_without_waiting_for_acks() -> None:
    """Connections accepted on the ``--api-workers`` socket have Nagle off, as uvicorn's
    own sockets do: otherwise a response's headers and body (two writes) waited for the
    client's delayed ACK, 40 ms per request on a kept-alive connection."""
    import asyncio

    from crmail.api_processes import listening_socket

    async def accepted_nodelay() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        sock = listening_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            try:
                return await asyncio.wait_for(accepted, 10)
            finally:
                writer.close()

    assert asyncio.run(accepted_nodelay()) == 1
