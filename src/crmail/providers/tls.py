"""TLS client contexts, built once per trust configuration and shared by every connection.

Building a context loads a trust store: the system's (tens of milliseconds of CPU and
about a megabyte per context) or an operator's CA file. Built per connection, a
thousand accounts paid for a thousand copies and blocked the event loop at every
connect. A context holds no per-connection state (that lives in each connection's
SSL object), so one per trust configuration serves them all; the first build runs in
a worker thread, never on the event loop.

A trust configuration is a CA file or none, and whether the system store is trusted
beside it: IMAP trusts an account's CA file alone, SMTP the system store plus the CA
file (see security.md, "TLS trust"). Without a CA file it is the system store.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading

from crmail.errors import InvalidInput

#: (ca file or None, system store trusted too) -> (the file's stamp, its context)
_Key = tuple[str | None, bool]
_contexts: dict[_Key, tuple[tuple[int, int], ssl.SSLContext]] = {}
_building = threading.Lock()


def _key(ca_file: str | None, with_system_store: bool) -> _Key:
    # Without a CA file the system store is the trust, however the caller asked.
    return (ca_file, with_system_store or ca_file is None)


def _stamp(ca_file: str | None) -> tuple[int, int]:
    """A CA file replaced on disk (a renewed private CA) gets a new context."""
    if ca_file is None:
        return (0, 0)
    try:
        st = os.stat(ca_file)
    except OSError as e:
        raise InvalidInput(f"cannot load CA file {ca_file!r}: {e}") from e
    return (st.st_mtime_ns, st.st_size)


def _cached(key: _Key, stamp: tuple[int, int]) -> ssl.SSLContext | None:
    hit = _contexts.get(key)
    return hit[1] if hit is not None and hit[0] == stamp else None


def _build(ca_file: str | None, with_system_store: bool) -> ssl.SSLContext:
    if ca_file is None or not with_system_store:
        # create_default_context loads the system store only when given no CA file.
        return ssl.create_default_context(cafile=ca_file)
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


def client_context_blocking(
    ca_file: str | None = None, *, with_system_store: bool = False
) -> ssl.SSLContext:
    """The shared context verifying servers against ``ca_file`` (None: the system store),
    and against the system store too when ``with_system_store``."""
    key = _key(ca_file, with_system_store)
    stamp = _stamp(ca_file)
    if (ctx := _cached(key, stamp)) is not None:
        return ctx
    with _building:  # a thousand accounts starting together build it once
        if (ctx := _cached(key, stamp)) is not None:
            return ctx
        try:
            ctx = _build(*key)
        except (OSError, ssl.SSLError) as e:
            raise InvalidInput(f"cannot load CA file {ca_file!r}: {e}") from e
        _contexts[key] = (stamp, ctx)
        return ctx


async def client_context(
    ca_file: str | None = None, *, with_system_store: bool = False
) -> ssl.SSLContext:
    """:func:`client_context_blocking` for the event loop: a cache hit returns at once,
    a first build runs in a thread."""
    if (ctx := _cached(_key(ca_file, with_system_store), _stamp(ca_file))) is not None:
        return ctx
    return await asyncio.to_thread(
        client_context_blocking, ca_file, with_system_store=with_system_store
    )
