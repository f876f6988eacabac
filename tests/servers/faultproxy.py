"""A TCP proxy that breaks the network on demand, between crmail and a real server.

It runs its own event loop in a thread, so it keeps forwarding while the test's loop is
busy (and the other way round). Faults:

- :meth:`drop_all` cuts every open connection at once (both sides, no goodbye), as a
  NAT timeout, a Wi-Fi switch or a server restart does; :meth:`drop_oldest` cuts one;
- :meth:`refuse` (while on) closes new connections as soon as they are accepted: the
  server is unreachable;
- :meth:`stall` (while on) holds every byte in both directions without closing
  anything: a black-holed route;
- :meth:`delay` adds latency to each connect and to every chunk forwarded;
- :meth:`cut_after` cuts each connection once the server has sent it so many bytes: a
  link that never lasts long enough for a big transfer.

TLS passes through untouched (crmail still checks the server's certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class FaultProxy:
    host = "127.0.0.1"

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: connections accepted since the start (refused ones included)
        self.accepted = 0
        #: the most connections that were being set up at the same time
        self.peak_connecting = 0
        self._connecting = 0
        self._budget: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        #: open connections, oldest first: (client side, server side)
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._refusing = False
        self._latency = 0.0
        self._flowing: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start)
        return self

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults --------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return self._call(self._count)

    async def _count(self) -> int:
        return len(self._pairs)

    def drop_all(self) -> None:
        """Cut every open connection now."""
        self._call(self._drop_all)

    async def _drop_all(self) -> None:
        self._abort_all()

    def drop_oldest(self) -> None:
        """Cut the connection open the longest (and only that one)."""
        self._call(self._drop_oldest)

    async def _drop_oldest(self) -> None:
        if self._pairs:
            for w in self._pairs.pop(0):
                w.transport.abort()

    def refuse(self, on: bool = True) -> None:
        """While on, new connections are closed as soon as they are accepted."""
        self._refusing = on

    def stall(self, on: bool = True) -> None:
        """While on, nothing is forwarded either way; connections stay open."""
        self._call(self._set_flowing, not on)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def cut_after(self, server_bytes: int | None) -> None:
        """Cut each new connection once the server has sent it this many bytes (None: never)."""
        self._budget = server_bytes

    def delay(self, seconds: float) -> None:
        """Latency added to each connect and to every chunk forwarded (0: none)."""
        self._latency = seconds

    # --- forwarding ----------------------------------------------------------------------

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            client_w.transport.abort()
            return
        self._connecting += 1
        self.peak_connecting = max(self.peak_connecting, self._connecting)
        try:
            if self._latency:
                await asyncio.sleep(self._latency)
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        finally:
            self._connecting -= 1
        pair = (client_w, server_w)
        self._pairs.append(pair)
        try:
            await asyncio.gather(
                self._pump(client_r, server_w, None),
                self._pump(server_r, client_w, self._budget),
                return_exceptions=True,
            )
        finally:
            if pair in self._pairs:
                self._pairs.remove(pair)
            for w in pair:
                w.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None
    ) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                if budget is not None:
                    budget -= len(data)
                    if budget < 0:
                        break
                await self._flowing.wait()
                if self._latency:
                    await asyncio.sleep(self._latency)
                writer.write(data)
                await writer.drain()
        finally:
            # One side gone: the other goes too (no half-open connections to confuse).
            writer.transport.abort()

    def _abort_all(self) -> None:
        pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for w in pair:
                with contextlib.suppress(Exception):
                    w.transport.abort()

    def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(timeout=10)
