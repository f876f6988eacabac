"""The IMAP wire: a pure response framer and a small asyncio connection around it.

Split like h11: :class:`ResponseFramer` turns bytes into complete responses (lines,
``{n}``/``{n+}`` literals, tagged completions, ``+`` continuations) with no IO, so it
is unit-tested alone; :class:`ImapConnection` only moves bytes and matches tags.

Responses are kept in the record shape imaplib produces (a list of ``bytes`` or
``(text_ending_in_{n}, literal)`` tuples) because that is what imapclient's pure
parser (``parse_fetch_response``/``parse_response``) consumes, and we reuse it for
the grammar instead of writing our own.

Every foreign exception (OSError, ssl errors, timeouts, EOF) is translated here into
the crmail hierarchy; callers above this module never see socket errors.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from asyncio import sslproto
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final
from typing import Literal as TypingLiteral

from crmail.errors import ConnectFailed, ProtocolError, TLSFailed
from crmail.providers.tls import client_context_blocking

log = logging.getLogger(__name__)

Security = TypingLiteral["tls", "starttls", "none"]
Record = bytes | tuple[bytes, bytes]

#: Untagged response kinds that tell about changes in the selected mailbox.
EVENT_KINDS: Final = frozenset({b"EXISTS", b"EXPUNGE", b"FETCH", b"VANISHED"})
#: unsolicited news of *other* mailboxes (RFC 5465 NOTIFY sends STATUS responses)
NOTICE_KINDS: Final = frozenset({b"STATUS"})

_LITERAL_AT_END = re.compile(rb"\{(\d+)\+?\}\Z")
_CODE = re.compile(rb"\[([^\]\s]+)(?: ([^\]]*))?\] ?")
_UNREACHABLE_HINT = "Check the server name and port, and that the server is up."
_TLS_HINT = (
    "The server's TLS certificate could not be verified or TLS failed. Check the "
    "server name, the port's security setting (TLS vs STARTTLS) and the certificate."
)

# Reads feed the framer in chunks this big; also the StreamReader's buffer limit so
# the transport is not paused after every 64 KiB of a big FETCH.
_READ_SIZE = 1 << 18
# A pending literal at least this big is read with one readexactly() instead of
# being accumulated chunk by chunk.
_BIG_LITERAL = 1 << 16


@dataclass(slots=True)
class Response:
    """One complete server response.

    ``tag`` is ``b"*"`` (untagged), ``b"+"`` (continuation) or the command tag.
    ``kind`` is the upper-cased keyword (``OK``/``NO``/``BAD``/``BYE``/``PREAUTH``,
    ``FETCH``, ``EXISTS``, ``LIST``...; ``b""`` for continuations). ``number`` is the
    leading number of ``* 12 EXISTS``-style responses. ``records`` hold the rest of
    the response in imaplib's shape; for ``* 12 FETCH (...)`` it is ``12 (...)`` the
    way imaplib (and so imapclient's parser) expects.
    """

    tag: bytes
    kind: bytes
    number: int | None
    records: list[Record]

    @property
    def text(self) -> bytes:
        """The first line after the keyword (without any literal)."""
        first = self.records[0] if self.records else b""
        return first[0] if isinstance(first, tuple) else first

    @property
    def code(self) -> bytes | None:
        """Upper-cased response code of a status response, e.g. ``AUTHENTICATIONFAILED``."""
        m = _CODE.match(self.text)
        return m.group(1).upper() if m else None

    @property
    def code_args(self) -> bytes:
        m = _CODE.match(self.text)
        return (m.group(2) or b"") if m else b""

    @property
    def human_text(self) -> str:
        """The text of a status response without its response code."""
        text = _CODE.sub(b"", self.text, count=1) if self.text.startswith(b"[") else self.text
        return text.decode("utf-8", "replace").strip()


def _split_first_line(line: bytes) -> tuple[bytes, bytes, int | None, bytes]:
    """``* 12 FETCH (..`` -> (tag, kind, number, rest-as-imaplib-wants)."""
    tag, _, rest = line.partition(b" ")
    if tag == b"+":
        return tag, b"", None, rest
    word, _, after = rest.partition(b" ")
    if tag == b"*" and word.isdigit():
        kind, _, tail = after.partition(b" ")
        # imaplib keeps the number in front: "12 (UID 5 ...)".
        return tag, kind.upper(), int(word), word + b" " + tail if tail else word
    return tag, word.upper(), None, after


class ResponseFramer:
    """Bytes in, :class:`Response` objects out. No IO.

    ``feed()`` appends received bytes; ``next_response()`` returns the next complete
    response or ``None`` when more bytes are needed. Scanning uses ``bytes.find``
    and slicing only (no per-byte Python loops); consumed bytes are dropped from
    the front of a ``bytearray``, which CPython does in O(1), so a large FETCH with
    thousands of literals stays linear.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._records: list[Record] = []
        self._pending_text: bytes | None = None  # line that announced a literal
        self._need = 0  # size of the literal being waited for
        self._scan_from = 0  # where to resume looking for CRLF

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def literal_remaining(self) -> int:
        """Bytes still missing of the literal being read (0 when not in a literal)."""
        if self._pending_text is None:
            return 0
        return max(0, self._need - len(self._buf))

    def in_progress(self) -> bool:
        """True when a partial response is buffered (used to detect junk after STARTTLS)."""
        return bool(self._buf) or bool(self._records) or self._pending_text is not None

    def next_response(self) -> Response | None:
        buf = self._buf
        while True:
            if self._pending_text is not None:
                need = self._need
                if len(buf) < need:
                    return None
                literal = bytes(buf[:need])
                del buf[:need]
                self._records.append((self._pending_text, literal))
                self._pending_text = None
                self._scan_from = 0
                continue
            end = buf.find(b"\r\n", self._scan_from)
            if end < 0:
                # Resume where we stopped; a CR at the very end may pair with the next LF.
                self._scan_from = max(0, len(buf) - 1)
                return None
            line = bytes(buf[:end])
            del buf[: end + 2]
            self._scan_from = 0
            m = _LITERAL_AT_END.search(line) if line.endswith(b"}") else None
            if m is not None:
                self._pending_text = line
                self._need = int(m.group(1))
                continue
            self._records.append(line)
            return self._finish()

    def _finish(self) -> Response:
        records, self._records = self._records, []
        first = records[0]
        first_text = first[0] if isinstance(first, tuple) else first
        tag, kind, number, rest = _split_first_line(first_text)
        records[0] = (rest, first[1]) if isinstance(first, tuple) else rest
        return Response(tag, kind, number, records)


# --- command arguments -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    """An argument sent as an IMAP literal (``{n}`` or ``{n+}``)."""

    data: bytes


Arg = str | bytes | Literal

_QUOTABLE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")


def quoted(value: str | bytes) -> bytes | Literal:
    """An astring argument: a quoted string when safe, else a literal.

    Quoted strings cannot hold CR, LF, NUL or 8-bit bytes; those (odd passwords,
    UTF-8 names) go as literals.
    """
    data = value.encode("utf-8") if isinstance(value, str) else value
    if _QUOTABLE.match(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return Literal(data)


@dataclass(slots=True)
class TaggedResult:
    """Outcome of one command: status, text, response code and untagged data."""

    status: str  # "OK" | "NO" | "BAD"
    text: str
    code: str | None
    code_args: bytes
    untagged: list[Response] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def of_kind(self, kind: bytes) -> list[Response]:
        return [r for r in self.untagged if r.kind == kind]


# --- the asyncio connection --------------------------------------------------------


class ImapConnection:
    """One IMAP connection. Not safe for concurrent commands (callers serialise).

    Untagged EXISTS/EXPUNGE/VANISHED and FETCH responses that the running command
    did not ask for are queued in :attr:`events` (and passed to ``on_event``), also
    when they arrive in the middle of another command or during IDLE.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        host: str,
        timeout: float,
        on_event: Callable[[Response], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.host = host
        self.timeout = timeout
        self.on_event = on_event
        self.framer = ResponseFramer()
        self.events: deque[Response] = deque()
        #: unsolicited STATUS responses (NOTIFY): kept apart from :attr:`events`, which
        #: describe the selected mailbox and are dropped when another one is selected
        self.notices: deque[Response] = deque()
        self.greeting: Response | None = None
        self.literal_plus = False  # set by the client once capabilities are known
        self._tag_prefix = "C"
        self._tag_counter = 0
        self._closed = False
        self._bye: Response | None = None
        self._idle_tag: bytes | None = None

    # --- opening ---------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        security: Security,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        *,
        address: str | None = None,
    ) -> ImapConnection:
        """Connect, read the greeting and (for ``starttls``) upgrade to TLS.

        ``address``: connect there rather than to what ``host`` resolves to now (an
        address already checked); TLS still verifies the certificate against ``host``.
        """
        if security not in ("tls", "starttls", "none"):
            raise ValueError(f"unknown security {security!r}")
        if security != "none" and ssl_context is None:
            ssl_context = client_context_blocking()
        try:
            async with asyncio.timeout(timeout):
                if security == "tls":
                    assert ssl_context is not None
                    reader, writer = await _open_tls(address or host, port, host, ssl_context)
                else:
                    reader, writer = await asyncio.open_connection(
                        address or host, port, limit=_READ_SIZE
                    )
        except ssl.SSLError as e:
            raise _tls_error(host, port, e) from e
        except (OSError, TimeoutError) as e:
            raise ConnectFailed(
                f"IMAP server {host}:{port} is unreachable: {_describe(e)}",
                hint=_UNREACHABLE_HINT,
            ) from e
        conn = cls(reader, writer, host=host, timeout=timeout)
        try:
            greeting = await conn._read_response()
            conn.greeting = greeting
            if greeting.tag != b"*" or greeting.kind not in (b"OK", b"PREAUTH"):
                reason = greeting.human_text or "no greeting"
                err = ConnectFailed(
                    f"IMAP server {host}:{port} refused the connection: {reason}",
                    hint="The server may be overloaded or in maintenance; try again later.",
                )
                raise err
            if security == "starttls":
                assert ssl_context is not None
                await conn.starttls(ssl_context)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def starttls(self, ssl_context: ssl.SSLContext) -> None:
        result = await self.command("STARTTLS")
        if not result.ok:
            raise TLSFailed(
                f"STARTTLS was refused by {self.host}: {result.text}",
                hint="Use implicit TLS (usually port 993) or check the server's TLS setup.",
            )
        if self.framer.in_progress() or len(getattr(self._reader, "_buffer", b"")):
            # Plaintext bytes that arrived after the OK would be treated as if they
            # came over TLS: the classic STARTTLS response-injection attack.
            raise TLSFailed(
                f"{self.host} sent data after accepting STARTTLS; refusing to continue",
                hint=_TLS_HINT,
            )
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.start_tls(ssl_context, server_hostname=self.host)
        except ssl.SSLError as e:
            raise _tls_error(self.host, None, e) from e
        except (OSError, TimeoutError) as e:
            raise ConnectFailed(
                f"TLS negotiation with {self.host} failed: {_describe(e)}", hint=_TLS_HINT
            ) from e

    # --- commands ------------------------------------------------------------------

    def _next_tag(self) -> bytes:
        self._tag_counter += 1
        return f"{self._tag_prefix}{self._tag_counter:04d}".encode()

    async def command(
        self,
        name: str,
        *args: Arg,
        owns: Collection[bytes] = (),
        redact: bool = False,
    ) -> TaggedResult:
        """Send one command and collect its untagged responses until its completion.

        ``owns`` lists the untagged kinds (``EXISTS``, ``FETCH``...) that belong to
        this command's result rather than to the change-event queue.
        ``redact`` keeps the arguments (passwords, tokens) out of the debug log.
        """
        if self._closed:
            raise ConnectFailed(f"connection to {self.host} is closed", hint=_UNREACHABLE_HINT)
        tag = self._next_tag()
        if log.isEnabledFor(logging.DEBUG):
            shown = "<redacted>" if redact else _summarise(args)
            log.debug("C: %s %s %s", tag.decode(), name, shown)
        # Build the line in segments; each synchronizing literal ends a segment and
        # must wait for the server's "+" before its data may be sent.
        segment = bytearray(tag + b" " + name.encode("ascii"))
        untagged: list[Response] = []
        for arg in args:
            segment += b" "
            if isinstance(arg, Literal):
                n = len(arg.data)
                if self.literal_plus:
                    segment += b"{%d+}\r\n" % n
                    segment += arg.data
                    continue
                segment += b"{%d}\r\n" % n
                await self._send(bytes(segment))
                segment = bytearray()
                done = await self._wait_continuation(tag, untagged, owns)
                if done is not None:  # server rejected the command before the literal
                    return done
                segment += arg.data
            else:
                segment += arg.encode("utf-8") if isinstance(arg, str) else arg
        segment += b"\r\n"
        await self._send(bytes(segment))
        return await self._collect(tag, untagged, owns)

    async def authenticate(
        self, mechanism: str, initial_response: bytes, *, sasl_ir: bool
    ) -> TaggedResult:
        """``AUTHENTICATE`` with a single-step mechanism such as XOAUTH2.

        On failure XOAUTH2 servers send a ``+`` with an error document; the client
        must answer with an empty line to receive the tagged NO.
        """
        tag = self._next_tag()
        log.debug("C: %s AUTHENTICATE %s <redacted>", tag.decode(), mechanism)
        untagged: list[Response] = []
        line = tag + b" AUTHENTICATE " + mechanism.encode("ascii")
        if sasl_ir:
            await self._send(line + b" " + initial_response + b"\r\n")
        else:
            await self._send(line + b"\r\n")
            done = await self._wait_continuation(tag, untagged, ())
            if done is not None:
                return done
            await self._send(initial_response + b"\r\n")
        while True:
            resp = await self._read_response()
            if resp.tag == b"+":
                await self._send(b"\r\n")  # abort the exchange: we have nothing more
                continue
            if resp.tag == tag:
                return _result(resp, untagged)
            self._dispatch(resp, untagged, ())

    async def _wait_continuation(
        self, tag: bytes, untagged: list[Response], owns: Collection[bytes]
    ) -> TaggedResult | None:
        while True:
            resp = await self._read_response()
            if resp.tag == b"+":
                return None
            if resp.tag == tag:
                return _result(resp, untagged)
            self._dispatch(resp, untagged, owns)

    async def _collect(
        self, tag: bytes, untagged: list[Response], owns: Collection[bytes]
    ) -> TaggedResult:
        while True:
            resp = await self._read_response()
            if resp.tag == tag:
                return _result(resp, untagged)
            if resp.tag == b"+":
                raise self._protocol_error("unexpected continuation request")
            self._dispatch(resp, untagged, owns)

    def _dispatch(self, resp: Response, untagged: list[Response], owns: Collection[bytes]) -> None:
        if resp.tag != b"*":
            raise self._protocol_error(f"response with unknown tag {resp.tag!r}")
        kind = resp.kind
        if kind == b"BYE":
            self._bye = resp
        if kind in EVENT_KINDS and not (kind in owns or _is_earlier(resp)):
            self._push_event(resp)
        elif kind in NOTICE_KINDS and kind not in owns:
            self.notices.append(resp)
        else:
            untagged.append(resp)

    def _push_event(self, resp: Response) -> None:
        self.events.append(resp)
        if self.on_event is not None:
            self.on_event(resp)

    # --- IDLE ----------------------------------------------------------------------

    async def idle_start(self) -> None:
        """Send IDLE and wait for the server's ``+``."""
        tag = self._next_tag()
        log.debug("C: %s IDLE", tag.decode())
        await self._send(tag + b" IDLE\r\n")
        untagged: list[Response] = []
        done = await self._wait_continuation(tag, untagged, ())
        if done is not None:
            raise ProtocolError(f"IDLE was refused by {self.host}: {done.text}")
        self._idle_tag = tag

    async def idle_wait(self, timeout: float) -> bool:
        """Read while idling until an event is queued or ``timeout`` passes.

        Returns True when events are queued. Cancelling a read is safe here: the
        StreamReader keeps unread bytes and the framer keeps partial responses.
        """
        if self._idle_tag is None:
            raise RuntimeError("idle_wait() outside IDLE")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.events or self.notices):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                resp = await self._read_response(timeout=remaining, idle=True)
            except TimeoutError:
                return bool(self.events or self.notices)
            if resp.tag == self._idle_tag:
                # The server ended IDLE on its own (e.g. shutting down).
                self._idle_tag = None
                raise ConnectFailed(
                    f"{self.host} ended IDLE: {resp.human_text}", hint=_UNREACHABLE_HINT
                )
            self._dispatch(resp, [], ())
        return True

    async def idle_wait_more(self, duration: float) -> None:
        """Keep reading for ``duration`` s while idling, queueing whatever arrives.

        Used after the first event to batch a burst (EXISTS + FETCH ...) into one wake-up.
        """
        if self._idle_tag is None:
            raise RuntimeError("idle_wait_more() outside IDLE")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        while (remaining := deadline - loop.time()) > 0:
            try:
                resp = await self._read_response(timeout=remaining, idle=True)
            except TimeoutError:
                return
            if resp.tag == self._idle_tag:
                self._idle_tag = None
                raise ConnectFailed(
                    f"{self.host} ended IDLE: {resp.human_text}", hint=_UNREACHABLE_HINT
                )
            self._dispatch(resp, [], ())

    async def idle_done(self) -> TaggedResult:
        tag, self._idle_tag = self._idle_tag, None
        if tag is None:
            raise RuntimeError("idle_done() outside IDLE")
        await self._send(b"DONE\r\n")
        return await self._collect(tag, [], ())

    # --- IO ------------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except (OSError, TimeoutError) as e:
            self._closed = True
            raise self._lost(e) from e

    async def _read_response(self, timeout: float | None = None, idle: bool = False) -> Response:
        """The next complete response, reading as needed.

        A timeout while idling is re-raised as TimeoutError (the caller expects
        it); any other timeout, EOF or socket error means the connection is gone.
        """
        framer = self.framer
        while True:
            resp = framer.next_response()
            if resp is not None:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("S: %s %s %s", resp.tag.decode(), resp.kind.decode(), resp.text[:200])
                return resp
            remaining = framer.literal_remaining()
            try:
                async with asyncio.timeout(self.timeout if timeout is None else timeout):
                    if remaining >= _BIG_LITERAL:
                        data = await self._reader.readexactly(remaining)
                    else:
                        data = await self._reader.read(_READ_SIZE)
            except TimeoutError as e:
                if idle:
                    raise
                self._closed = True
                raise ConnectFailed(
                    f"{self.host} did not answer within {self.timeout:g}s",
                    hint=_UNREACHABLE_HINT,
                ) from e
            except asyncio.IncompleteReadError as e:
                self._closed = True
                raise self._lost(e) from e
            except ssl.SSLError as e:
                self._closed = True
                raise _tls_error(self.host, None, e) from e
            except OSError as e:
                self._closed = True
                raise self._lost(e) from e
            if not data:
                self._closed = True
                raise self._lost(None)
            framer.feed(data)

    def _lost(self, e: BaseException | None) -> ConnectFailed:
        if self._bye is not None:
            why = f"server said BYE: {self._bye.human_text}"
        else:
            why = _describe(e) if e is not None else "connection closed by server"
        return ConnectFailed(f"lost connection to {self.host}: {why}", hint=_UNREACHABLE_HINT)

    def _protocol_error(self, what: str) -> ProtocolError:
        return ProtocolError(f"IMAP protocol error from {self.host}: {what}")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> bool:
        """Closed, or the peer closed it while nobody was reading (a quiet connection
        learns of it from its transport without a round trip)."""
        return self._closed or self._reader.at_eof() or self._reader.exception() is not None

    async def close(self) -> None:
        """Close the socket. Never raises."""
        self._closed = True
        try:
            self._writer.close()
            async with asyncio.timeout(2):
                await self._writer.wait_closed()
        except (Exception, asyncio.CancelledError):  # closing is best effort
            pass


class _LeanTLS(sslproto.SSLProtocol):
    """asyncio's TLS layer with a 32 KiB receive buffer instead of 256 KiB.

    asyncio allocates (and zero-fills) ``max_size`` bytes per TLS connection up front: a
    quarter of a MiB of resident memory for every idle account. A TLS record is at most
    16 KiB, so 32 KiB still takes a whole record per read.
    """

    max_size = 32 * 1024


async def _open_tls(
    address: str, port: int, host: str, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection(ssl=...)`` over :class:`_LeanTLS`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
    app = asyncio.StreamReaderProtocol(reader, loop=loop)
    handshake: asyncio.Future[None] = loop.create_future()
    tls = _LeanTLS(loop, app, context, handshake, server_side=False, server_hostname=host)
    raw, _ = await loop.create_connection(lambda: tls, address, port)
    try:
        await handshake
    except BaseException:
        raw.abort()
        raise
    # What asyncio's own TLS connection hands to the stream (private in typeshed only).
    transport: asyncio.Transport = tls._get_app_transport()  # type: ignore[attr-defined]
    return reader, asyncio.StreamWriter(transport, app, reader, loop)


def _is_earlier(resp: Response) -> bool:
    # VANISHED (EARLIER) answers a QRESYNC SELECT or a CHANGEDSINCE...VANISHED
    # fetch: it is that command's data, not news about the mailbox.
    return resp.kind == b"VANISHED" and resp.text[:9].upper() == b"(EARLIER)"


def _result(resp: Response, untagged: list[Response]) -> TaggedResult:
    status = resp.kind.decode("ascii", "replace")
    if status not in ("OK", "NO", "BAD"):
        raise ProtocolError(f"unexpected tagged response {status!r}")
    code = resp.code
    return TaggedResult(
        status=status,
        text=resp.human_text,
        code=code.decode("ascii", "replace") if code else None,
        code_args=resp.code_args,
        untagged=untagged,
    )


def _describe(e: BaseException | None) -> str:
    if e is None:
        return "unknown error"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, asyncio.IncompleteReadError):
        return "connection closed by server"
    return str(e) or type(e).__name__


def _tls_error(host: str, port: int | None, e: ssl.SSLError) -> TLSFailed:
    where = f"{host}:{port}" if port is not None else host
    if isinstance(e, ssl.SSLCertVerificationError):
        what = f"the TLS certificate of {where} is not trusted: {e.verify_message}"
    else:
        what = f"TLS with {where} failed: {e.reason or e}"
    return TLSFailed(what, hint=_TLS_HINT)


def _summarise(args: tuple[Arg, ...]) -> str:
    parts = []
    for a in args:
        if isinstance(a, Literal):
            parts.append(f"{{{len(a.data)} bytes}}")
        else:
            text = a if isinstance(a, str) else a.decode("utf-8", "replace")
            parts.append(text if len(text) <= 200 else text[:200] + "...")
    return " ".join(parts)
