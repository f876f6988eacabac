"""A typed, capability-aware asyncio IMAP client for syncing mailboxes.

Wire handling lives in :mod:`.connection`; the IMAP grammar (FETCH items, LIST,
STATUS...) is parsed by imapclient's pure parser. This module turns those into
frozen dataclasses and maps every failure into :mod:`crmail.errors`.

Every optional extension has a fallback so the client works against minimal
servers; ``ImapSettings.disabled_caps`` hides capabilities so the fallbacks can be
tested against a full-featured server.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import re
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from typing import Literal as TypingLiteral

from imapclient import imap_utf7
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.exceptions import IMAPClientError
from imapclient.response_parser import parse_fetch_response, parse_response

from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import (
    AppPasswordRequired,
    AuthFailed,
    ConnectFailed,
    CrmailError,
    FolderMissing,
    InvalidInput,
    MessageTooLarge,
    ProtocolError,
    TLSFailed,
)
from crmail.providers import OAUTH2_REFUSED_HINT
from crmail.providers.imap.connection import (
    Arg,
    ImapConnection,
    Literal,
    Record,
    Response,
    Security,
    TaggedResult,
    quoted,
)
from crmail.providers.netcheck import allowed_addresses
from crmail.providers.tls import client_context

log = logging.getLogger(__name__)

#: Keep command lines under this many bytes (servers commonly cap at 8 KiB+).
MAX_SET_CHARS = 7000
#: Messages per FETCH command: bounds memory per round trip without costing
#: throughput (one round trip per chunk is negligible next to the data).
FETCH_CHUNK = 500
#: Burst coalescing window after the first IDLE event.
IDLE_COALESCE = 0.02
#: Polling period when the server has no IDLE.
NOOP_POLL_INTERVAL = 1.0

_SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
_SPECIAL_USE_BY_LOWER = {s.lower(): s for s in _SPECIAL_USES}
# Name heuristics for servers without SPECIAL-USE, checked against the full name
# and the last path component, case-insensitively.
_HEURISTICS: dict[str, str] = {
    "sent": "\\Sent",
    "sent items": "\\Sent",
    "sent messages": "\\Sent",
    "sent mail": "\\Sent",
    "[gmail]/sent mail": "\\Sent",
    "[google mail]/sent mail": "\\Sent",
    "archive": "\\Archive",
    "archives": "\\Archive",
    "[gmail]/all mail": "\\All",
    "[google mail]/all mail": "\\All",
    "trash": "\\Trash",
    "deleted items": "\\Trash",
    "deleted messages": "\\Trash",
    "[gmail]/trash": "\\Trash",
    "junk": "\\Junk",
    "junk e-mail": "\\Junk",
    "junk email": "\\Junk",
    "spam": "\\Junk",
    "[gmail]/spam": "\\Junk",
    "drafts": "\\Drafts",
    "draft": "\\Drafts",
    "[gmail]/drafts": "\\Drafts",
}
_APP_PASSWORD = re.compile(
    r"application[- ]specific|app[- ]password|app[- ]specific|web ?login required|"
    r"please log ?in via your web browser",
    re.IGNORECASE,
)
_MISSING = re.compile(
    r"doesn't exist|does not exist|no such (mailbox|folder)|unknown (mailbox|folder)",
    re.IGNORECASE,
)
_FLAG_OK = re.compile(r"\\?[^\s()\"\\{}%*\]\x00-\x1f\x7f]+\Z")


# --- typed results -----------------------------------------------------------------


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str  # "tls" | "starttls" | "none"
    username: str
    password: str | None = field(default=None, repr=False)
    oauth2_token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 30.0
    #: Capabilities to pretend the server lacks (tests of fallbacks, buggy servers).
    disabled_caps: frozenset[str] = frozenset()
    #: where the server may be (SSRF guard): checked on every connect, and the checked
    #: address is the one connected to; None for servers the operator chose (tests, CLI)
    address_policy: AddressPolicy | None = None


@dataclass(frozen=True)
class FolderInfo:
    name: str  # decoded (mUTF-7 -> str)
    raw_name: bytes  # exactly as on the wire; pass back to select() etc. to avoid re-encoding
    delimiter: str | None
    flags: frozenset[str]
    special_use: str | None  # "\\Inbox", "\\Sent", "\\Archive", "\\All", "\\Trash", ...

    @property
    def selectable(self) -> bool:
        low = {f.lower() for f in self.flags}
        return "\\noselect" not in low and "\\nonexistent" not in low


@dataclass(frozen=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    highestmodseq: int | None


@dataclass(frozen=True)
class FlagUpdate:
    uid: int
    flags: frozenset[str]
    modseq: int | None


@dataclass(frozen=True)
class SelectResult:
    uidvalidity: int
    uidnext: int
    exists: int
    highestmodseq: int | None
    vanished: frozenset[int] = frozenset()
    changed: tuple[FlagUpdate, ...] = ()
    readonly: bool = True
    #: True when QRESYNC data (vanished/changed) is complete for the known state.
    #: False when QRESYNC was not asked for, not available, or UIDVALIDITY changed:
    #: then ``vanished`` is unknown and the caller must do a full resync.
    resynced: bool = False


@dataclass(frozen=True)
class FlagFetch:
    updates: tuple[FlagUpdate, ...]
    vanished: frozenset[int]


@dataclass(frozen=True)
class HeaderFetch:
    uid: int
    flags: frozenset[str]
    internaldate: dt.datetime
    size: int
    modseq: int | None
    header: bytes


@dataclass(frozen=True)
class MessageFetch:
    uid: int
    flags: frozenset[str]
    internaldate: dt.datetime
    size: int
    modseq: int | None
    raw: bytes


EventKind = TypingLiteral["exists", "expunge", "fetch", "vanished"]


@dataclass(frozen=True)
class ServerEvent:
    """A change in the selected mailbox reported by the server.

    ``number`` is the message count for ``exists`` and the sequence number for
    ``expunge``/``fetch``; ``uids`` is set for ``vanished``. Treat events as hints
    to resync (CHANGEDSINCE / VANISHED), not as the full truth.
    """

    kind: EventKind
    number: int | None = None
    uid: int | None = None
    flags: frozenset[str] | None = None
    modseq: int | None = None
    uids: frozenset[int] = frozenset()


# --- uid sets ------------------------------------------------------------------------


def _runs(uids: Iterable[int]) -> Iterator[tuple[int, int]]:
    ordered = sorted(set(uids))
    if not ordered:
        return
    start = prev = ordered[0]
    for u in ordered[1:]:
        if u == prev + 1:
            prev = u
            continue
        yield start, prev
        start = prev = u
    yield start, prev


def _run_text(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}:{b}"


def uid_set(uids: Iterable[int]) -> str:
    """Compact IMAP sequence set: ``[1,2,3,4,5,7,9,10]`` -> ``"1:5,7,9:10"``."""
    text = ",".join(_run_text(a, b) for a, b in _runs(uids))
    if not text:
        raise ValueError("empty uid set")
    return text


def parse_uid_set(text: str | bytes) -> list[int]:
    """Expand ``1:3,7`` to ``[1, 2, 3, 7]`` (in the given order; ``a:b`` may be reversed)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        a, sep, b = part.partition(":")
        if sep:
            lo, hi = int(a), int(b)
            step = 1 if hi >= lo else -1
            out.extend(range(lo, hi + step, step))
        else:
            out.append(int(a))
    return out


def uid_set_chunks(
    uids: Iterable[int], *, max_count: int = FETCH_CHUNK, max_chars: int = MAX_SET_CHARS
) -> Iterator[tuple[str, int]]:
    """Split uids into compact sets of at most ``max_count`` uids / ``max_chars`` chars.

    Yields ``(set_text, count)``.
    """
    parts: list[str] = []
    chars = count = 0
    for a, b in _runs(uids):
        while a <= b:
            take = min(b - a + 1, max_count - count)
            text = _run_text(a, a + take - 1)
            if parts and chars + len(text) + 1 > max_chars:
                yield ",".join(parts), count
                parts, chars, count = [], 0, 0
                continue
            parts.append(text)
            chars += len(text) + 1
            count += take
            a += take
            if count >= max_count:
                yield ",".join(parts), count
                parts, chars, count = [], 0, 0
    if parts:
        yield ",".join(parts), count


# --- helpers -------------------------------------------------------------------------


def _mailbox_arg(folder: str | bytes) -> bytes | Literal:
    # str names are encoded to modified UTF-7; bytes are sent as given (raw_name).
    raw = imap_utf7.encode(folder) if isinstance(folder, str) else folder
    return quoted(raw)


def _folder_text(folder: str | bytes) -> str:
    return imap_utf7.decode(folder) if isinstance(folder, bytes) else folder


def _flags_arg(flags: Iterable[str]) -> str:
    items = list(flags)
    for f in items:
        if not _FLAG_OK.match(f):
            raise InvalidInput(f"invalid IMAP flag {f!r}")
    return "(" + " ".join(items) + ")"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _flagset(value: object) -> frozenset[str]:
    if not isinstance(value, tuple):
        return frozenset()
    # \Recent is per-session state (RFC 9051 dropped it): keeping it would make the
    # same message's flags differ between two connections and look like changes.
    return frozenset(_text(f) for f in value) - {"\\Recent"}


def _modseq(value: object) -> int | None:
    if isinstance(value, tuple) and value:
        value = value[0]
    return value if isinstance(value, int) else None


def _aware(value: object) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ProtocolError(f"bad INTERNALDATE {value!r}")
    off = value.utcoffset()
    # imapclient's FixedOffset -> stdlib timezone: plain, picklable, comparable.
    return value.replace(tzinfo=dt.timezone(off if off is not None else dt.timedelta(0)))


def _records(responses: Iterable[Response]) -> list[Record]:
    out: list[Record] = []
    for r in responses:
        out.extend(r.records)
    return out


# --- FETCH parsing: a fast path for the common shape, imapclient for the rest ---------
#
# imapclient's lexer walks every byte in Python; on a bulk import that was ~80% of the
# CPU time. Almost every FETCH response we ask for is a flat list of
# ``NAME value`` pairs (numbers, flag lists, a quoted INTERNALDATE, NIL, one literal
# per record), which one regex per item handles. Anything else (nested lists,
# escapes, BODY[HEADER.FIELDS (...)]) falls back to imapclient's full grammar.

_SEQ_OPEN = re.compile(rb"(\d+) \(")
_FAST_ITEM = re.compile(
    rb" ?([A-Za-z0-9.-]+(?:\[[A-Za-z0-9. ()-]*\](?:<\d+>)?)?) "
    rb'(?:(\d+)|\(([^()"{}]*)\)|"([^"\\]*)"|(NIL)|\{(\d+)\}\Z)'
)
_INTERNALDATE = re.compile(
    rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        (
            b"jan",
            b"feb",
            b"mar",
            b"apr",
            b"may",
            b"jun",
            b"jul",
            b"aug",
            b"sep",
            b"oct",
            b"nov",
            b"dec",
        ),
        start=1,
    )
}
_TZ_CACHE: dict[int, dt.timezone] = {}


def _internaldate(text: bytes) -> dt.datetime | None:
    m = _INTERNALDATE.match(text)
    if m is None:
        return None
    day, mon, year, hh, mm, ss, sign, tzh, tzm = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    offset = (int(tzh) * 60 + int(tzm)) * (-1 if sign == b"-" else 1)
    tz = _TZ_CACHE.get(offset)
    if tz is None:
        tz = _TZ_CACHE[offset] = dt.timezone(dt.timedelta(minutes=offset))
    try:
        return dt.datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
    except ValueError:
        return None


def _fast_fetch(resp: Response) -> tuple[int, dict[bytes, Any]] | None:
    """Parse one FETCH response of the common flat shape, or None to fall back."""
    recs = resp.records
    items: dict[bytes, Any] = {}
    seq = -1
    last = len(recs) - 1
    for idx, rec in enumerate(recs):
        text, lit = rec if isinstance(rec, tuple) else (rec, None)
        pos = 0
        end = len(text)
        if idx == 0:
            m0 = _SEQ_OPEN.match(text)
            if m0 is None:
                return None
            seq = int(m0.group(1))
            items[b"SEQ"] = seq
            pos = m0.end()
        if idx == last:
            if lit is not None or not text.endswith(b")"):
                return None
            end -= 1
        while pos < end:
            m = _FAST_ITEM.match(text, pos, end)
            if m is None:
                return None
            name = m.group(1).upper()
            number, inner, quoted_text, nil, lit_size = m.group(2, 3, 4, 5, 6)
            value: Any
            if number is not None:
                value = int(number)
            elif inner is not None:
                value = tuple(int(x) if x.isdigit() else x for x in inner.split())
            elif quoted_text is not None:
                if name == b"INTERNALDATE":
                    value = _internaldate(quoted_text)
                    if value is None:
                        return None
                else:
                    value = quoted_text
            elif nil is not None:
                value = None
            else:
                if lit is None or int(lit_size) != len(lit):
                    return None
                value = lit
            items[name] = value
            pos = m.end()
        if lit is not None and pos != end:
            return None
    return (seq, items) if seq >= 0 else None


_FIELD_NAME = re.compile(r"[A-Za-z0-9-]+")


def _item_starting(data: dict[bytes, Any], prefix: bytes) -> bytes | None:
    return next((k for k in data if k.startswith(prefix)), None)


def _parse_fetch(responses: Sequence[Response]) -> dict[int, dict[bytes, Any]]:
    """seq -> {ITEM: value}, like imapclient's ``parse_fetch_response(uid_is_key=False)``."""
    out: dict[int, dict[bytes, Any]] = {}
    slow: list[Response] = []
    for r in responses:
        fast = _fast_fetch(r)
        if fast is None:
            slow.append(r)
            continue
        seq, items = fast
        if seq in out:
            out[seq].update(items)
        else:
            out[seq] = items
    if slow:
        try:
            parsed = parse_fetch_response(_records(slow), normalise_times=False, uid_is_key=False)
        except (IMAPClientError, ValueError, IndexError, TypeError) as e:
            raise ProtocolError(f"could not parse FETCH response: {e}") from e
        for seq, items in cast(dict[int, dict[bytes, Any]], parsed).items():
            out.setdefault(seq, {}).update(items)
    return out


def _parse_generic(records: list[Record]) -> tuple[Any, ...]:
    try:
        return tuple(parse_response(records))
    except (IMAPClientError, ValueError, IndexError, TypeError) as e:
        raise ProtocolError(f"could not parse IMAP response: {e}") from e


def _caps_from(text: bytes | str) -> set[str]:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    return {c.upper() for c in text.split()}


def _login_error(result: TaggedResult, *, host: str, oauth2: bool = False) -> CrmailError:
    text = result.text
    code = (result.code or "").upper()
    if code == "UNAVAILABLE":
        return ConnectFailed(
            f"{host} cannot log in right now: {text}",
            hint="The mail server is temporarily unavailable; try again later.",
        )
    if oauth2 and result.status == "NO":
        return AuthFailed(
            f"{host} refused the OAuth2 sign-in: {text}",
            hint=OAUTH2_REFUSED_HINT,
        )
    if _APP_PASSWORD.search(text):
        return AppPasswordRequired(
            f"{host} refused the password: {text}",
            hint="Your account uses two-factor authentication: create an app password "
            "at your mail provider and use it instead of your normal password.",
        )
    if code == "WEBALERT":
        return AppPasswordRequired(
            f"{host} requires a web login first: {text}",
            hint="Log in once in your provider's web mail, then create an app password.",
        )
    if code == "PRIVACYREQUIRED":
        return AuthFailed(
            f"{host} refuses to log in without TLS: {text}",
            hint="Use TLS (port 993) or STARTTLS for this server.",
        )
    if result.status == "BAD":
        return ProtocolError(f"{host} rejected the login command: {text}")
    return AuthFailed(
        f"{host} refused the login: {text}",
        hint="Check the user name and password (some providers require an app password).",
    )


def _check(result: TaggedResult, what: str, *, folder: str | bytes | None = None) -> None:
    if result.ok:
        return
    code = (result.code or "").upper()
    # Dovecot answers SELECT of a missing mailbox without [NONEXISTENT].
    if folder is not None and (
        code in ("NONEXISTENT", "TRYCREATE") or _MISSING.search(result.text)
    ):
        raise FolderMissing(f"folder {_folder_text(folder)!r} does not exist: {result.text}")
    if code == "UNAVAILABLE":
        raise ConnectFailed(f"{what}: server unavailable: {result.text}")
    raise ProtocolError(f"{what} failed ({result.status}): {result.text}")


def _name_of(value: object) -> str:
    """A mailbox name as a response carries it (mUTF-7 bytes, or an atom), decoded."""
    if isinstance(value, bytes):
        return str(imap_utf7.decode(value))
    return str(value)


def _event(resp: Response) -> ServerEvent | None:
    if resp.kind == b"EXISTS":
        return ServerEvent("exists", number=resp.number)
    if resp.kind == b"EXPUNGE":
        return ServerEvent("expunge", number=resp.number)
    if resp.kind == b"VANISHED":
        text = resp.text
        if text[:9].upper() == b"(EARLIER)":
            text = text[9:]
        return ServerEvent("vanished", uids=frozenset(parse_uid_set(text)))
    if resp.kind == b"FETCH":
        data = _parse_fetch([resp])
        for seq, items in data.items():
            uid = items.get(b"UID")
            return ServerEvent(
                "fetch",
                number=seq,
                uid=uid if isinstance(uid, int) else None,
                flags=_flagset(items[b"FLAGS"]) if b"FLAGS" in items else None,
                modseq=_modseq(items.get(b"MODSEQ")),
            )
    return None


async def _open(s: ImapSettings, security: Security, ctx: ssl.SSLContext | None) -> ImapConnection:
    if s.address_policy is None:
        return await ImapConnection.open(s.host, s.port, security, ctx, s.timeout)
    addresses = await allowed_addresses(s.host, s.port, s.address_policy)
    for address in addresses[:-1]:
        try:
            return await ImapConnection.open(
                s.host, s.port, security, ctx, s.timeout, address=address
            )
        except TLSFailed:
            raise
        except ConnectFailed:
            continue  # like the resolver's own loop: the next address may answer
    return await ImapConnection.open(
        s.host, s.port, security, ctx, s.timeout, address=addresses[-1]
    )


# --- the client ------------------------------------------------------------------------


class ImapClient:
    """One logged-in IMAP session. Methods are serialised by an internal lock."""

    def __init__(self, conn: ImapConnection, settings: ImapSettings) -> None:
        self._conn = conn
        self.settings = settings
        self.capabilities: frozenset[str] = frozenset()
        self.qresync_enabled = False
        self.selected: str | bytes | None = None
        self._lock = asyncio.Lock()

    # --- connecting ------------------------------------------------------------------

    @classmethod
    async def connect(cls, s: ImapSettings) -> ImapClient:
        if s.security not in ("tls", "starttls", "none"):
            raise InvalidInput(f"unknown IMAP security {s.security!r}")
        security = cast(Security, s.security)
        # Shared by every connection with the same trust (built once, off the loop).
        ctx = await client_context(s.ca_file) if security != "none" else None
        conn = await _open(s, security, ctx)
        client = cls(conn, s)
        try:
            await client._setup()
        except BaseException:
            await client.close()
            raise
        return client

    async def _setup(self) -> None:
        conn, s = self._conn, self.settings
        greeting = conn.greeting
        caps: set[str] | None = None
        # Greeting capabilities are only trustworthy before any TLS upgrade.
        if s.security != "starttls" and greeting is not None and greeting.code == b"CAPABILITY":
            caps = _caps_from(greeting.code_args)
        if caps is None:
            caps = await self._fetch_capabilities()
        self._set_caps(caps)
        if greeting is None or greeting.kind != b"PREAUTH":
            await self._login()
        if not self.has("ENABLE"):
            pass
        elif self.has("QRESYNC"):
            res = await conn.command("ENABLE", "QRESYNC")
            enabled = set()
            for r in res.of_kind(b"ENABLED"):
                enabled |= _caps_from(r.text)
            self.qresync_enabled = res.ok and "QRESYNC" in enabled
        elif self.has("CONDSTORE"):
            # CONDSTORE also gets enabled by the first (CONDSTORE) SELECT; ENABLE
            # just makes MODSEQ show up in unsolicited FETCH responses right away.
            await conn.command("ENABLE", "CONDSTORE")

    async def _fetch_capabilities(self) -> set[str]:
        res = await self._conn.command("CAPABILITY")
        _check(res, "CAPABILITY")
        caps: set[str] = set()
        for r in res.of_kind(b"CAPABILITY"):
            caps |= _caps_from(r.text)
        return caps

    def _set_caps(self, caps: set[str]) -> None:
        disabled = {c.upper() for c in self.settings.disabled_caps}
        self.capabilities = frozenset(caps - disabled)
        self._conn.literal_plus = "LITERAL+" in self.capabilities

    async def _login(self) -> None:
        conn, s = self._conn, self.settings
        if s.oauth2_token is not None:
            if not self.has("AUTH=XOAUTH2"):
                raise AuthFailed(
                    f"{s.host} does not offer OAuth2 (XOAUTH2) login",
                    hint="Use password login (app password) for this server.",
                )
            sasl = f"user={s.username}\x01auth=Bearer {s.oauth2_token}\x01\x01"
            res = await conn.authenticate(
                "XOAUTH2", base64.b64encode(sasl.encode()), sasl_ir=self.has("SASL-IR")
            )
        else:
            if s.password is None:
                raise InvalidInput("IMAP settings need a password or an OAuth2 token")
            if self.has("LOGINDISABLED"):
                raise AuthFailed(
                    f"{s.host} does not allow password login on an unencrypted connection",
                    hint="Use TLS (usually port 993) or STARTTLS for this server.",
                )
            res = await conn.command("LOGIN", quoted(s.username), quoted(s.password), redact=True)
        if not res.ok:
            raise _login_error(res, host=s.host, oauth2=s.oauth2_token is not None)
        if (res.code or "").upper() == "CAPABILITY":
            caps = _caps_from(res.code_args)
        else:
            caps = await self._fetch_capabilities()
        self._set_caps(caps)

    # --- capabilities ------------------------------------------------------------------

    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    @property
    def condstore(self) -> bool:
        return self.qresync_enabled or self.has("CONDSTORE")

    # --- plumbing ------------------------------------------------------------------------

    async def _cmd(
        self, name: str, *args: Arg, owns: Iterable[bytes] = (), what: str | None = None
    ) -> TaggedResult:
        # Raw command without status check; parser/foreign errors are already mapped
        # by the connection.
        return await self._conn.command(name, *args, owns=frozenset(owns))

    def _drain_events(self) -> list[ServerEvent]:
        out: list[ServerEvent] = []
        q = self._conn.events
        while q:
            ev = _event(q.popleft())
            if ev is not None:
                out.append(ev)
        return out

    # --- folders --------------------------------------------------------------------------

    async def list_folders(self) -> list[FolderInfo]:
        async with self._lock:
            if self.has("SPECIAL-USE") and self.has("LIST-EXTENDED"):
                res = await self._cmd("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
            else:
                res = await self._cmd("LIST", '""', '"*"')
            _check(res, "LIST")
        use_flags = self.has("SPECIAL-USE")
        folders: list[tuple[str, bytes, str | None, frozenset[str]]] = []
        for r in res.of_kind(b"LIST"):
            parsed = _parse_generic(r.records)
            if len(parsed) < 3:
                raise ProtocolError(f"bad LIST response {r.text!r}")
            flags_raw, delim, name = parsed[0], parsed[1], parsed[2]
            # imapclient turns all-digit names into ints; the wire form is the digits.
            raw = str(name).encode() if isinstance(name, int) else cast(bytes, name)
            folders.append(
                (
                    imap_utf7.decode(raw),
                    raw,
                    _text(delim) if delim is not None else None,
                    _flagset(flags_raw),
                )
            )
        roles: dict[str, str | None] = {}
        taken: set[str] = set()
        for name, _raw, _d, flags in folders:
            role = None
            if name.upper() == "INBOX":
                role = "\\Inbox"
            elif use_flags:
                role = next(
                    (
                        _SPECIAL_USE_BY_LOWER[f.lower()]
                        for f in flags
                        if f.lower() in _SPECIAL_USE_BY_LOWER
                    ),
                    None,
                )
            roles[name] = role
            if role:
                taken.add(role)
        # Name heuristics only fill roles the server did not announce, first match wins,
        # top-level folders before nested ones.
        for name, _raw, delim, flags in sorted(
            folders, key=lambda f: (f[0].count(f[2] or "/"), f[0])
        ):
            if roles[name] is not None or "\\noselect" in {f.lower() for f in flags}:
                continue
            leaf = name.rsplit(delim, 1)[-1] if delim else name
            role = _HEURISTICS.get(name.lower()) or _HEURISTICS.get(leaf.lower())
            if role and role not in taken:
                roles[name] = role
                taken.add(role)
        return [
            FolderInfo(name=n, raw_name=raw, delimiter=d, flags=f, special_use=roles[n])
            for n, raw, d, f in folders
        ]

    async def status(self, folder: str | bytes) -> FolderStatus:
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
        if self.condstore:
            items.append("HIGHESTMODSEQ")
        async with self._lock:
            res = await self._cmd(
                "STATUS", _mailbox_arg(folder), "(" + " ".join(items) + ")", owns=(b"STATUS",)
            )
        _check(res, f"STATUS {_folder_text(folder)}", folder=folder)
        values: dict[str, int] = {}
        for r in res.of_kind(b"STATUS"):
            parsed = _parse_generic(r.records)
            if len(parsed) < 2 or not isinstance(parsed[-1], tuple):
                raise ProtocolError(f"bad STATUS response {r.text!r}")
            if _name_of(parsed[0]) != _folder_text(folder):
                # NOTIFY news of another mailbox that came with the answer: keep it.
                self._conn.notices.append(r)
                continue
            pairs = parsed[-1]
            for i in range(0, len(pairs) - 1, 2):
                values[_text(pairs[i]).upper()] = int(pairs[i + 1])
        try:
            return FolderStatus(
                uidvalidity=values["UIDVALIDITY"],
                uidnext=values["UIDNEXT"],
                messages=values["MESSAGES"],
                unseen=values["UNSEEN"],
                highestmodseq=values.get("HIGHESTMODSEQ") or None,
            )
        except KeyError as e:
            raise ProtocolError(f"STATUS response lacks {e.args[0]}") from e

    async def select(
        self,
        folder: str | bytes,
        *,
        readonly: bool = True,
        qresync: tuple[int, int] | None = None,
    ) -> SelectResult:
        verb = "EXAMINE" if readonly else "SELECT"
        args: list[Arg] = [_mailbox_arg(folder)]
        use_qresync = qresync is not None and self.qresync_enabled
        if use_qresync:
            assert qresync is not None
            args.append(f"(QRESYNC ({qresync[0]} {qresync[1]}))")
        elif self.has("CONDSTORE"):
            args.append("(CONDSTORE)")
        async with self._lock:
            self.selected = None
            res = await self._cmd(verb, *args, owns=(b"EXISTS", b"FETCH", b"VANISHED"))
            _check(res, f"{verb} {_folder_text(folder)}", folder=folder)
            self.selected = folder
            # Queued events were about the previously selected mailbox.
            self._conn.events.clear()
        codes: dict[str, bytes] = {}
        exists = 0
        vanished: set[int] = set()
        fetches: list[Response] = []
        for r in res.untagged:
            if r.kind == b"OK" and r.code:
                codes[r.code.decode()] = r.code_args
            elif r.kind == b"EXISTS" and r.number is not None:
                exists = r.number
            elif r.kind == b"VANISHED":
                ev = _event(r)
                if ev is not None:
                    vanished |= ev.uids
            elif r.kind == b"FETCH":
                fetches.append(r)
        try:
            uidvalidity = int(codes["UIDVALIDITY"])
            uidnext = int(codes.get("UIDNEXT", b"0") or 0)
            modseq_text = codes.get("HIGHESTMODSEQ")
            highestmodseq = int(modseq_text) if modseq_text and "NOMODSEQ" not in codes else None
        except (KeyError, ValueError) as e:
            raise ProtocolError(f"{verb} response lacks UIDVALIDITY/UIDNEXT: {e}") from e
        changed = tuple(self._flag_updates(fetches))
        resynced = use_qresync and qresync is not None and qresync[0] == uidvalidity
        if (
            qresync is not None
            and not use_qresync
            and qresync[0] == uidvalidity
            and highestmodseq is not None
            and exists
        ):
            # No QRESYNC: CONDSTORE still tells which flags changed; VANISHED stays
            # unknown (resynced=False), the caller compares UID lists for that.
            ff = await self.fetch_flags("1:*", changed_since=qresync[1])
            changed = ff.updates
        return SelectResult(
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            exists=exists,
            highestmodseq=highestmodseq,
            vanished=frozenset(vanished),
            changed=changed,
            readonly=(res.code or "").upper() == "READ-ONLY" or readonly,
            resynced=resynced,
        )

    # --- searching and fetching ----------------------------------------------------------

    async def uid_search(self, criteria: str) -> list[int]:
        """UID SEARCH with raw IMAP criteria (e.g. ``"SINCE 01-Jan-2025"``)."""
        async with self._lock:
            if self.has("ESEARCH"):
                res = await self._cmd("UID SEARCH", "RETURN (ALL)", criteria)
            else:
                res = await self._cmd("UID SEARCH", criteria)
        _check(res, "UID SEARCH")
        uids: list[int] = []
        for r in res.untagged:
            if r.kind == b"SEARCH":
                uids.extend(int(x) for x in r.text.split() if x.isdigit())
            elif r.kind == b"ESEARCH":
                # * ESEARCH (TAG "C0005") UID ALL 1:3,7  -- ALL is absent when empty.
                words = r.text.split()
                for i, w in enumerate(words[:-1]):
                    if w.upper() == b"ALL":
                        uids.extend(parse_uid_set(words[i + 1]))
        return sorted(set(uids))

    def _flag_updates(self, responses: Sequence[Response]) -> Iterator[FlagUpdate]:
        for _seq, items in _parse_fetch(responses).items():
            uid = items.get(b"UID")
            if isinstance(uid, int):
                yield FlagUpdate(uid, _flagset(items.get(b"FLAGS")), _modseq(items.get(b"MODSEQ")))

    async def fetch_flags(
        self, uids: str, *, changed_since: int | None = None, vanished: bool = False
    ) -> FlagFetch:
        items = "(UID FLAGS MODSEQ)" if self.condstore else "(UID FLAGS)"
        args: list[Arg] = [uids, items]
        if vanished and not self.qresync_enabled:
            raise InvalidInput("VANISHED needs QRESYNC; check ImapClient.qresync_enabled")
        if changed_since is not None and self.condstore:
            args.append(f"(CHANGEDSINCE {changed_since}{' VANISHED' if vanished else ''})")
        # Without CONDSTORE, changed_since is dropped: all flags is a correct superset.
        async with self._lock:
            res = await self._cmd("UID FETCH", *args, owns=(b"FETCH", b"VANISHED"))
        _check(res, "UID FETCH FLAGS")
        fetches = res.of_kind(b"FETCH")
        gone: set[int] = set()
        for r in res.of_kind(b"VANISHED"):
            ev = _event(r)
            if ev is not None:
                gone |= ev.uids
        return FlagFetch(tuple(self._flag_updates(fetches)), frozenset(gone))

    async def fetch_sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each message still there, by UID."""
        fetched = await self._uid_fetch(
            uids, "(UID RFC822.SIZE)", lambda d: isinstance(d.get(b"RFC822.SIZE"), int)
        )
        return {uid: d[b"RFC822.SIZE"] for uid, d in fetched}

    async def _fetch_bodies(
        self, uids: Sequence[int], section: bytes, peek: str
    ) -> Iterator[tuple[int, dict[bytes, Any], bytes]]:
        """(uid, items, body section) of each message; ``section`` is the item's name, or
        its start when servers differ in how they echo it (``BODY[HEADER.FIELDS``)."""
        items = f"(UID FLAGS INTERNALDATE RFC822.SIZE{' MODSEQ' if self.condstore else ''} {peek})"

        def key(d: dict[bytes, Any]) -> bytes:
            return section if section in d else _item_starting(d, section) or section

        fetched = await self._uid_fetch(uids, items, lambda d: key(d) in d)
        return iter([(uid, d, d[key(d)] or b"") for uid, d in fetched])

    async def _uid_fetch(
        self, uids: Sequence[int], items: str, asked: Callable[[dict[bytes, Any]], bool]
    ) -> list[tuple[int, dict[bytes, Any]]]:
        """``UID FETCH uids items`` in chunks: (uid, items) of each message, by UID. A FETCH
        without what was ``asked`` is a change by another client: it becomes an event."""
        out: list[tuple[int, dict[bytes, Any]]] = []
        for chunk, _n in uid_set_chunks(uids):
            async with self._lock:
                res = await self._cmd("UID FETCH", chunk, items, owns=(b"FETCH",))
            _check(res, "UID FETCH")
            for seq, data in _parse_fetch(res.of_kind(b"FETCH")).items():
                uid = data.get(b"UID")
                if not isinstance(uid, int) or not asked(data):
                    self._conn.events.append(_fetch_event_response(seq, data))
                    continue
                out.append((uid, data))
        out.sort(key=lambda x: x[0])
        return out

    async def fetch_headers(
        self, uids: Sequence[int], fields: Sequence[str] | None = None
    ) -> list[HeaderFetch]:
        """Header blocks with flags and size; ``fields``: only these header fields
        (``HEADER.FIELDS``), when the rest (Received chains, DKIM and ARC signatures, often
        most of the bytes) is not needed."""
        if fields:
            if not all(_FIELD_NAME.fullmatch(f) for f in fields):
                raise InvalidInput(f"not header field names: {list(fields)}")
            section, peek = b"BODY[HEADER.FIELDS", f"BODY.PEEK[HEADER.FIELDS ({' '.join(fields)})]"
        else:
            section, peek = b"BODY[HEADER]", "BODY.PEEK[HEADER]"
        out = []
        for uid, d, header in await self._fetch_bodies(uids, section, peek):
            out.append(
                HeaderFetch(
                    uid=uid,
                    flags=_flagset(d.get(b"FLAGS")),
                    internaldate=_aware(d.get(b"INTERNALDATE")),
                    size=int(d.get(b"RFC822.SIZE") or 0),
                    modseq=_modseq(d.get(b"MODSEQ")),
                    header=header,
                )
            )
        return out

    async def fetch_messages(self, uids: Sequence[int]) -> list[MessageFetch]:
        # BODY.PEEK: fetching for sync must never mark mail as read for the user.
        out = []
        for uid, d, raw in await self._fetch_bodies(uids, b"BODY[]", "BODY.PEEK[]"):
            out.append(
                MessageFetch(
                    uid=uid,
                    flags=_flagset(d.get(b"FLAGS")),
                    internaldate=_aware(d.get(b"INTERNALDATE")),
                    size=int(d.get(b"RFC822.SIZE") or 0),
                    modseq=_modseq(d.get(b"MODSEQ")),
                    raw=raw,
                )
            )
        return out

    # --- waiting for changes ------------------------------------------------------------

    async def idle(self, timeout: float) -> list[ServerEvent]:
        """Wait up to ``timeout`` s for mailbox changes; returns them (empty on timeout)."""
        async with self._lock:
            events = self._drain_events()
            if events or self._conn.notices:
                return events
            if not self.has("IDLE"):
                return await self._poll(timeout)
            conn = self._conn
            await conn.idle_start()
            try:
                if await conn.idle_wait(timeout):
                    # Deliveries come in bursts (EXISTS + RECENT + FETCH): gather them.
                    await conn.idle_wait_more(IDLE_COALESCE)
            finally:
                if not conn.closed:
                    done = await conn.idle_done()
                    _check(done, "IDLE")
            return self._drain_events()

    async def _poll(self, timeout: float) -> list[ServerEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            res = await self._cmd("NOOP")
            _check(res, "NOOP")
            events = self._drain_events()
            remaining = deadline - loop.time()
            if events or self._conn.notices or remaining <= 0:
                return events
            await asyncio.sleep(min(NOOP_POLL_INTERVAL, remaining))

    async def notify(self, folders: Sequence[str | bytes]) -> bool:
        """Be told of changes in ``folders`` too, not only in the selected mailbox
        (RFC 5465 NOTIFY): one connection idling in INBOX then watches them all. News
        of them ends :meth:`idle` and is read with :meth:`notified`. False when the
        server has no NOTIFY (or refused it): the caller looks with STATUS instead."""
        if not folders or not self.has("NOTIFY"):
            return False
        names = [_mailbox_arg(f) for f in folders]
        if any(isinstance(n, Literal) for n in names):
            return False  # a name that needs a literal: not worth the syntax
        events = "(MessageNew MessageExpunge FlagChange)"
        watched = b"(MAILBOXES (" + b" ".join(cast(list[bytes], names)) + b") " + events.encode()
        async with self._lock:
            res = await self._cmd("NOTIFY", "SET", f"(SELECTED {events})", watched + b")")
        if not res.ok:
            log.info("%s refused NOTIFY: %s", self.settings.host, res.text)
        return res.ok

    def notified(self) -> set[str]:
        """The mailboxes (other than the selected one) the server said changed since
        the last call, by NOTIFY."""
        names: set[str] = set()
        q = self._conn.notices
        while q:
            resp = q.popleft()
            try:
                parsed = _parse_generic(resp.records)
            except ProtocolError:
                continue
            if parsed:
                names.add(_name_of(parsed[0]))
        return names

    async def unselect(self) -> None:
        """Leave the selected mailbox without expunging anything (UNSELECT, RFC 3691;
        else CLOSE, which expunges nothing in a mailbox opened with EXAMINE)."""
        if self.selected is None:
            return
        async with self._lock:
            if self.has("UNSELECT"):
                res = await self._cmd("UNSELECT")
            else:
                # CLOSE would expunge \Deleted messages of a read-write mailbox: reopen
                # it read-only first so that it never does.
                await self._cmd("EXAMINE", _mailbox_arg(self.selected))
                res = await self._cmd("CLOSE")
            _check(res, "UNSELECT")
            self.selected = None
            self._conn.events.clear()

    async def noop(self) -> list[ServerEvent]:
        async with self._lock:
            res = await self._cmd("NOOP")
            _check(res, "NOOP")
            return self._drain_events()

    # --- writing ------------------------------------------------------------------------

    async def store_flags(
        self, uids: Sequence[int], *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        add_arg = _flags_arg(add)
        remove_arg = _flags_arg(remove)
        async with self._lock:
            for chunk, _n in uid_set_chunks(uids, max_count=10_000):
                for op, arg in (("+FLAGS.SILENT", add_arg), ("-FLAGS.SILENT", remove_arg)):
                    if arg == "()":
                        continue
                    # CONDSTORE servers still answer .SILENT stores with FETCH (MODSEQ);
                    # that is our own change, not news.
                    res = await self._cmd("UID STORE", chunk, op, arg, owns=(b"FETCH",))
                    _check(res, "UID STORE")

    async def move(self, uids: Sequence[int], dest: str | bytes) -> dict[int, int]:
        mapping: dict[int, int] = {}
        async with self._lock:
            for chunk, _n in uid_set_chunks(uids, max_count=10_000):
                if self.has("MOVE"):
                    res = await self._cmd("UID MOVE", chunk, _mailbox_arg(dest))
                    _check(res, f"MOVE to {_folder_text(dest)}", folder=dest)
                else:
                    res = await self._cmd("UID COPY", chunk, _mailbox_arg(dest))
                    _check(res, f"COPY to {_folder_text(dest)}", folder=dest)
                    await self._delete_and_expunge(chunk)
                mapping.update(_copyuid(res) if self.has("UIDPLUS") else {})
        return mapping

    async def _delete_and_expunge(self, chunk: str) -> None:
        res = await self._cmd("UID STORE", chunk, "+FLAGS.SILENT", "(\\Deleted)", owns=(b"FETCH",))
        _check(res, "UID STORE \\Deleted")
        if self.has("UIDPLUS"):
            res = await self._cmd("UID EXPUNGE", chunk)
        else:
            # Without UIDPLUS this also removes other messages already marked
            # \Deleted by the user; there is no narrower standard command.
            res = await self._cmd("EXPUNGE")
        _check(res, "EXPUNGE")

    async def expunge(self, uids: Sequence[int]) -> None:
        async with self._lock:
            for chunk, _n in uid_set_chunks(uids, max_count=10_000):
                await self._delete_and_expunge(chunk)

    async def append(
        self,
        folder: str | bytes,
        raw: bytes,
        flags: Iterable[str] = (),
        when: dt.datetime | None = None,
    ) -> int | None:
        args: list[Arg] = [_mailbox_arg(folder), _flags_arg(flags)]
        if when is not None:
            args.append('"' + datetime_to_INTERNALDATE(when) + '"')
        args.append(Literal(raw))
        async with self._lock:
            res = await self._cmd("APPEND", *args)
        if not res.ok and (res.code or "").upper() == "TOOBIG":
            raise MessageTooLarge(f"the server refused a {len(raw)}-byte message: {res.text}")
        _check(res, f"APPEND to {_folder_text(folder)}", folder=folder)
        if self.has("UIDPLUS") and (res.code or "").upper() == "APPENDUID":
            parts = res.code_args.split()
            if len(parts) == 2 and parts[1].isdigit():
                return int(parts[1])
        return None

    @property
    def dropped(self) -> bool:
        """The connection is known to be gone (see :attr:`ImapConnection.dropped`)."""
        return self._conn.dropped

    async def create_folder(self, name: str | bytes, special_use: str | None = None) -> None:
        args: list[Arg] = [_mailbox_arg(name)]
        if special_use is not None and self.has("CREATE-SPECIAL-USE"):
            use = _SPECIAL_USE_BY_LOWER.get(special_use.lower())
            if use is None:
                raise InvalidInput(f"unknown special-use {special_use!r}")
            args.append(f"(USE ({use}))")
        async with self._lock:
            res = await self._cmd("CREATE", *args)
        if not res.ok and (res.code or "").upper() == "ALREADYEXISTS":
            return
        _check(res, f"CREATE {_folder_text(name)}")

    # --- ending -------------------------------------------------------------------------

    async def logout(self) -> None:
        try:
            async with self._lock:
                await self._cmd("LOGOUT")
        except ConnectFailed:
            pass  # the server may close before we read its OK; we are done anyway
        finally:
            await self._conn.close()

    async def close(self) -> None:
        """Drop the connection. Never raises."""
        await self._conn.close()

    async def __aenter__(self) -> ImapClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _copyuid(res: TaggedResult) -> dict[int, int]:
    """old uid -> new uid from COPYUID (tagged for COPY, untagged OK for MOVE)."""
    sources: list[tuple[bytes | None, bytes]] = [
        (res.code.encode() if res.code else None, res.code_args)
    ]
    sources += [(r.code, r.code_args) for r in res.untagged if r.kind == b"OK"]
    out: dict[int, int] = {}
    for code, args in sources:
        if code is None or code.upper() != b"COPYUID":
            continue
        parts = args.split()
        if len(parts) != 3:
            continue
        src, dst = parse_uid_set(parts[1]), parse_uid_set(parts[2])
        if len(src) == len(dst):
            out.update(zip(src, dst, strict=True))
    return out


def _fetch_event_response(seq: int, data: dict[bytes, Any]) -> Response:
    # Rebuild a minimal FETCH response so unsolicited updates seen inside our own
    # FETCH travel through the same event path as all others.
    parts = []
    if isinstance(data.get(b"UID"), int):
        parts.append(b"UID %d" % data[b"UID"])
    if b"FLAGS" in data and isinstance(data[b"FLAGS"], tuple):
        parts.append(b"FLAGS (" + b" ".join(data[b"FLAGS"]) + b")")
    ms = _modseq(data.get(b"MODSEQ"))
    if ms is not None:
        parts.append(b"MODSEQ (%d)" % ms)
    return Response(b"*", b"FETCH", seq, [b"%d (" % seq + b" ".join(parts) + b")"])
