"""Unit tests of the pure IMAP wire pieces: framer, uid sets, argument quoting.

Plus ImapConnection against tiny scripted asyncio servers, for wire behaviour that
Dovecot will not produce on demand (split reads, synchronizing literals, junk).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from crmail.errors import ConnectFailed, ProtocolError
from crmail.providers.imap.connection import (
    ImapConnection,
    Literal,
    ResponseFramer,
    quoted,
)
from crmail.providers.imap.uidsets import parse_uid_set, uid_set, uid_set_chunks


def frame_all(*chunks: bytes) -> list[object]:
    f = ResponseFramer()
    out = []
    for c in chunks:
        f.feed(c)
        while (r := f.next_response()) is not None:
            out.append(r)
    return out


def test_simple_lines() -> None:
    rs = frame_all(b"* 3 EXISTS\r\n* OK [UIDVALIDITY 42] UIDs valid\r\nA1 OK done\r\n")
    assert [(r.tag, r.kind, r.number) for r in rs] == [  # type: ignore[attr-defined]
        (b"*", b"EXISTS", 3),
        (b"*", b"OK", None),
        (b"A1", b"OK", None),
    ]
    ok = rs[1]
    assert ok.code == b"UIDVALIDITY"  # type: ignore[attr-defined]
    assert ok.code_args == b"42"  # type: ignore[attr-defined]
    assert ok.human_text == "UIDs valid"  # type: ignore[attr-defined]


def test_fetch_literal_records_shape_is_imaplib_like() -> None:
    (r,) = frame_all(b"* 12 FETCH (UID 5 BODY[] {5}\r\nhello)\r\n")
    assert r.kind == b"FETCH" and r.number == 12  # type: ignore[attr-defined]
    assert r.records == [(b"12 (UID 5 BODY[] {5}", b"hello"), b")"]  # type: ignore[attr-defined]


def test_literal_split_across_every_byte_boundary() -> None:
    wire = b"* 1 FETCH (UID 9 BODY[HEADER] {7}\r\nab\r\ncd\r BODY[TEXT] {0}\r\n)\r\nT OK x\r\n"
    expected = frame_all(wire)
    for cut in range(1, len(wire)):
        assert frame_all(wire[:cut], wire[cut:]) == expected
    # one byte at a time too
    assert frame_all(*[wire[i : i + 1] for i in range(len(wire))]) == expected
    fetch = expected[0]
    assert fetch.records == [  # type: ignore[attr-defined]
        (b"1 (UID 9 BODY[HEADER] {7}", b"ab\r\ncd\r"),
        (b" BODY[TEXT] {0}", b""),
        b")",
    ]


def test_literal_with_crlf_nul_and_fake_tag_inside() -> None:
    body = b"line\r\nT OK not a completion\r\n\x00\xff{3}\r\n"
    wire = b"* 2 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\nT OK done\r\n"
    rs = frame_all(wire)
    assert len(rs) == 2
    assert rs[0].records[0][1] == body  # type: ignore[attr-defined]
    assert rs[1].tag == b"T"  # type: ignore[attr-defined]


def test_continuation_and_partial_state() -> None:
    f = ResponseFramer()
    f.feed(b"+ go ahead\r\n* 1 FETCH (BODY[] {10}\r\n0123")
    r = f.next_response()
    assert r is not None and r.tag == b"+" and r.text == b"go ahead"
    assert f.next_response() is None
    assert f.literal_remaining() == 6
    f.feed(b"456789)\r")
    assert f.next_response() is None
    f.feed(b"\n")
    r = f.next_response()
    assert r is not None and r.records[0] == (b"1 (BODY[] {10}", b"0123456789")
    assert not f.in_progress()


def test_many_literals_are_linear() -> None:
    # 20k responses fed in 64 KiB slices: quadratic buffering would take minutes.
    one = b"* %d FETCH (UID %d BODY[] {200}\r\n" + b"x" * 200 + b")\r\n"
    wire = b"".join(one % (i, i) for i in range(1, 20_001))
    f = ResponseFramer()
    n = 0
    for i in range(0, len(wire), 65536):
        f.feed(wire[i : i + 65536])
        while f.next_response() is not None:
            n += 1
    assert n == 20_000


def test_uid_set_compacts_and_roundtrips() -> None:
    assert uid_set([9, 1, 2, 3, 4, 5, 7, 10, 11, 12, 3]) == "1:5,7,9:12"
    assert uid_set([42]) == "42"
    assert parse_uid_set("1:3,7,10:8") == [1, 2, 3, 7, 10, 9, 8]
    with pytest.raises(ValueError):
        uid_set([])


def test_uid_set_chunks_respect_count_and_length() -> None:
    uids = list(range(1, 50_000, 2))  # no runs: worst case for length
    chunks = list(uid_set_chunks(uids, max_count=1000, max_chars=7000))
    assert sum(n for _, n in chunks) == len(uids)
    assert all(len(text) <= 7000 and n <= 1000 for text, n in chunks)
    assert [u for text, _ in chunks for u in parse_uid_set(text)] == uids
    runs = list(uid_set_chunks(range(1, 2501), max_count=1000))
    assert runs == [("1:1000", 1000), ("1001:2000", 1000), ("2001:2500", 500)]


def test_quoted_uses_literals_for_unsafe_strings() -> None:
    assert quoted("plain") == b'"plain"'
    assert quoted('a"b\\c') == b'"a\\"b\\\\c"'
    assert quoted("pässword") == Literal("pässword".encode())
    assert quoted("a\r\nb") == Literal(b"a\r\nb")


# --- ImapConnection against scripted servers ------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> int:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await script(r, w)
            except (asyncio.CancelledError, ConnectionError):
                pass  # test over: the loop is shutting the handler down
            finally:
                w.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        port: int = srv.sockets[0].getsockname()[1]
        return port

    yield start
    for srv in servers:
        srv.close()


async def test_untagged_during_command_and_split_writes(
    scripted: Callable[[Script], Awaitable[int]],
) -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"* OK ready\r\n")
        line = await r.readline()
        tag = line.split()[0]
        # An unsolicited EXISTS (another client delivered mail) arrives mid-FETCH,
        # and the literal is written in pieces with pauses.
        for piece in (
            b"* 1 FETCH (UID 4 BODY[] {1",
            b"2}\r\nhello",
            b"\r\nwor",
            b"ld)\r\n* 7 EXISTS\r\n",
            tag + b" OK done\r\n",
        ):
            w.write(piece)
            await w.drain()
            await asyncio.sleep(0.01)
        await r.readline()

    port = await scripted(script)
    conn = await ImapConnection.open("127.0.0.1", port, "none", timeout=5)
    res = await conn.command("UID FETCH", "4", "(BODY.PEEK[])", owns=(b"FETCH",))
    assert res.ok and res.text == "done"
    (fetch,) = res.of_kind(b"FETCH")
    assert fetch.records[0][1] == b"hello\r\nworld"
    assert [(e.kind, e.number) for e in conn.events] == [(b"EXISTS", 7)]
    await conn.close()


async def test_synchronizing_literal_waits_for_continuation(
    scripted: Callable[[Script], Awaitable[int]],
) -> None:
    got: list[bytes] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"* OK ready\r\n")
        line = await r.readline()
        got.append(line)
        assert line.endswith(b"{4}\r\n")
        # Nothing else may arrive before our "+".
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.read(1), 0.1)
        w.write(b"+ send it\r\n")
        data = await r.readexactly(4 + 2)
        got.append(data)
        w.write(line.split()[0] + b" OK [AUTHENTICATIONFAILED] nope\r\n")
        await r.read()

    port = await scripted(script)
    conn = await ImapConnection.open("127.0.0.1", port, "none", timeout=5)
    res = await conn.command("LOGIN", quoted("me"), Literal(b"p\r\nw"), redact=True)
    assert res.status == "OK" and res.code == "AUTHENTICATIONFAILED"
    assert got[1] == b"p\r\nw\r\n"
    await conn.close()


async def test_connection_loss_and_bye_greeting(
    scripted: Callable[[Script], Awaitable[int]],
) -> None:
    async def drop(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"* OK ready\r\n")
        await r.readline()
        w.write(b"* 1 FETCH (BODY[] {100}\r\nonly a part")

    conn = await ImapConnection.open("127.0.0.1", await scripted(drop), "none", timeout=5)
    with pytest.raises(ConnectFailed, match="lost connection"):
        await conn.command("FETCH", "1", "BODY[]")
    await conn.close()

    async def bye(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"* BYE [UNAVAILABLE] too busy\r\n")

    with pytest.raises(ConnectFailed, match="too busy"):
        await ImapConnection.open("127.0.0.1", await scripted(bye), "none", timeout=5)


async def test_silent_server_times_out_as_connect_failed(
    scripted: Callable[[Script], Awaitable[int]],
) -> None:
    async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    with pytest.raises(ConnectFailed, match="did not answer"):
        await ImapConnection.open("127.0.0.1", await scripted(silent), "none", timeout=0.2)


async def test_garbage_tag_is_protocol_error(
    scripted: Callable[[Script], Awaitable[int]],
) -> None:
    async def junk(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"* OK ready\r\n")
        await r.readline()
        w.write(b"ZZZ OK who am I\r\n")
        await r.read()

    conn = await ImapConnection.open("127.0.0.1", await scripted(junk), "none", timeout=5)
    with pytest.raises(ProtocolError):
        await conn.command("NOOP")
    await conn.close()


@pytest.mark.parametrize(
    "wire",
    [
        b'* 3 FETCH (UID 7 FLAGS (\\Seen $Crm) INTERNALDATE "01-Feb-2024 10:11:12 -0130" '
        b"RFC822.SIZE 5 MODSEQ (99) BODY[] {5}\r\nhello)\r\n",
        b"* 4 FETCH (UID 8 FLAGS ())\r\n",
        b"* 5 FETCH (BODY[HEADER] {3}\r\na\r\n BODY[TEXT] {0}\r\n UID 9)\r\n",
        b'* 6 FETCH (UID 1 ENVELOPE (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n',  # fallback
        b"* 7 FETCH (BODY[HEADER.FIELDS (FROM)] {2}\r\nab UID 3)\r\n",  # fallback
        b'* 8 FETCH (UID 2 INTERNALDATE " 1-Jan-2024 00:00:00 +0000" X-GM-LABELS ("a\\"b"))\r\n',
    ],
)
def test_fast_fetch_parser_agrees_with_imapclient(wire: bytes) -> None:
    from imapclient.response_parser import parse_fetch_response

    from crmail.providers.imap.fetch_parser import aware, parse_fetch

    (resp,) = frame_all(wire)
    ours = parse_fetch([resp])  # type: ignore[list-item]
    ref = parse_fetch_response(
        resp.records,  # type: ignore[attr-defined]
        normalise_times=False,
        uid_is_key=False,
    )
    assert ours.keys() == ref.keys()
    for seq, items in ref.items():
        if b"INTERNALDATE" in items:
            items[b"INTERNALDATE"] = aware(items[b"INTERNALDATE"])
            ours[seq][b"INTERNALDATE"] = aware(ours[seq][b"INTERNALDATE"])
        assert ours[seq] == items
