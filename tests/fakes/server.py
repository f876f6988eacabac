"""Serve an ASGI app (a fake provider) with uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn


class LoopbackServer:
    """``with LoopbackServer(app) as server: server.url`` -- stopped on exit."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        for _ in range(750):
            if self._server.started:
                return self
            self._thread.join(0.02)
        raise RuntimeError("the fake server did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()
