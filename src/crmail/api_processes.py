"""More than one process serving the API (``crmail run --api-workers N``).

One Python process runs one request's Python at a time, whatever the cores: on SQLite a
page's SQL is under a millisecond and the rest of a request is interpreter time, so
throughput stops at one core. ``N`` processes listen on the same port (SO_REUSEPORT: the
kernel spreads connections among them); the first also runs what ``--role`` asks for,
the others are ``--role api`` processes.

PostgreSQL only. The API processes keep no state of their own (a token check is cached
for seconds and emptied on any change in the same process; see storage.auth_cache), but
they wake the sync service after queueing an action by PostgreSQL NOTIFY; on SQLite a
wake-up does not leave its process, so an action queued in a second API process would
wait for the sync service's next scan. SQLite serves one process (storage.single).
"""

from __future__ import annotations

import multiprocessing
import socket
from multiprocessing.process import BaseProcess

from crmail.config import Settings
from crmail.errors import InvalidInput

#: how long a stopping API process gets to finish its requests before it is killed
STOP_GRACE = 10.0


def check_allowed(settings: Settings, workers: int, role: str) -> None:
    if workers < 1:
        raise InvalidInput("--api-workers: at least 1")
    if workers == 1:
        return
    if role == "sync":
        raise InvalidInput("--api-workers: the sync role serves no API")
    if settings.database_url.startswith("sqlite"):
        raise InvalidInput(
            "--api-workers: several API processes need PostgreSQL",
            hint="on SQLite run one process (docs/operations.md, Reads in big workspaces)",
        )


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket on ``host:port`` that other processes may bind too (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named, not left 0: accepted sockets inherit it, and asyncio turns
    # Nagle off (TCP_NODELAY) only on sockets whose proto is IPPROTO_TCP. Without it a
    # response's headers and body, two writes, waited for the client's delayed ACK:
    # 40 ms per request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def start(settings: Settings, count: int) -> list[BaseProcess]:
    """``count`` API processes on ``settings``' host and port, started fresh (spawn)."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[BaseProcess] = []
    for i in range(count):
        p = ctx.Process(target=_api_process, args=(settings,), name=f"crmail-api-{i + 2}")
        p.start()
        procs.append(p)
    return procs


def stop(procs: list[BaseProcess]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: run_until_stopped ends the server cleanly
    for p in procs:
        p.join(STOP_GRACE)
        if p.is_alive():
            p.kill()
            p.join()


def _api_process(settings: Settings) -> None:
    from crmail.runtime import run_until_stopped, serve
    from crmail.services import Services

    run_until_stopped(serve(Services.open(settings), role="api", reuse_port=True))
