"""TLS client contexts, built once per trust configuration and shared by every connection.

Building a context loads a trust store: the system's (tens of milliseconds of CPU and
about a megabyte per context) or an operator's CA file. Built per connection, a
thousand accounts paid for a thousand copies and blocked the event loop at every
connect. A context holds no per-connection state (that lives in each connection's
SSL object), so one per trust configuration serves them all; the first build runs in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading

from crmail.errors import InvalidInput

#: (ca file or None for the system store) -> (the file's stamp, its context)
_contexts: dict[str | None, tuple[tuple[int, int], ssl.SSLContext]] = {}
_building = threading.Lock()


def _stamp(ca_file: str | None) -> tuple[int, int]:
    """A CA file replaced on disk (a renewed private CA) gets a new context."""
    if ca_file is None:
        return (0, 0)
    try:
        st = os.stat(ca_file)
    except OSError as e:
        raise InvalidInput(f"cannot load CA file {ca_file!r}: {e}") from e
    return (st.st_mtime_ns, st.st_size)


def _cached(ca_file: str | None, stamp: tuple[int, int]) -> ssl.SSLContext | None:
    hit = _contexts.get(ca_file)
    return hit[1] if hit is not None and hit[0] == stamp else None


def client_context_blocking(ca_file: str | None = None) -> ssl.SSLContext:
    """The shared context verifying servers against ``ca_file`` (None: the system store)."""
    stamp = _stamp(ca_file)
    if (ctx := _cached(ca_file, stamp)) is not None:
        return ctx
    with _building:  # a thousand accounts starting together build it once
        if (ctx := _cached(ca_file, stamp)) is not None:
            return ctx
        try:
            ctx = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise InvalidInput(f"cannot load CA file {ca_file!r}: {e}") from e
        _contexts[ca_file] = (stamp, ctx)
        return ctx


async def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """:func:`client_context_blocking` for the event loop: a cache hit returns at once,
    a first build runs in a thread."""
    if (ctx := _cached(ca_file, _stamp(ca_file))) is not None:
        return ctx
    return await asyncio.to_thread(client_context_blocking, ca_file)
