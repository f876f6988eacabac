"""A stateful fake of Microsoft Graph mail (v1.0) as a Starlette app, for tests on loopback.

It follows the documented semantics crmail's Graph sync depends on
(docs/providers/microsoft-graph.md, learn.microsoft.com delta-query-messages):

- folders with well-known names (inbox, sentitems, drafts, deleteditems, junkemail and,
  unless the mailbox is made without one, archive), usable in place of ids; folder
  delta with ``@removed`` for deleted folders;
- per-folder message delta: opaque ``$skiptoken``/``$deltatoken`` links (query options
  are refused on them: only the first request takes $select/$filter), pages of
  ``Prefer: odata.maxpagesize`` (default :attr:`FakeGraph.page_size`), optional empty
  pages (:attr:`Mailbox.empty_pages`), new items in full, changed ones as id + changed
  properties, ``@removed`` with reason "deleted" (deleted for good, or moved out of
  the folder) or "changed" (soft-deleted), replays of a round's changes in the next
  round (:attr:`Mailbox.replay_rounds`), an expired token answering 410 Gone with a
  Location (or a 400 ``syncStateNotFound``/``resyncRequired``) after
  :meth:`Mailbox.expire_delta`;
- ids: immutable ids (never change on move) when the request says
  ``Prefer: IdType="ImmutableId"``, otherwise mutable ids that change on every move
  (the old one answers 404 ErrorItemNotFound). The documented A→B→A edge: a message
  moved out and back between two rounds is reported ``@removed`` from A and is never
  re-added to A's delta (a fresh initial round lists it again);
- ``$value`` MIME, PATCH isRead, move, create folder, sendMail (JSON or base64 MIME),
  createReply/createReplyAll + send filing the Sent Items copy in the conversation
  (a sent draft gets a new id, as with real immutable ids);
- drafts from MIME (``POST /me/messages``, base64, headers kept), found in a folder by
  ``$filter=internetMessageId eq '…'``; attachments listed (``size`` a little over the
  file's, as Graph's counts metadata), added inline (3 MB at most) or through upload
  sessions (``createUploadSession``, 150 MB at most): the ``uploadUrl`` is PUT to
  without a bearer token (one is refused), in ``Content-Range`` pieces of multiples of
  320 KiB but the last, each answered with the next expected ranges (200) and the last
  with 201; a piece not starting where expected, of a wrong size or beyond the file
  answers 416; a session past :attr:`FakeGraph.upload_life` (or expired by
  :meth:`FakeGraph.expire_uploads`) answers 404. Sending a draft sends its attachments;
- subscriptions: the validation handshake (the fake POSTs ``?validationToken=`` to the
  notification and lifecycle URLs and requires the echo within
  :attr:`FakeGraph.validation_timeout`), expiry (at most 10080 minutes for mail),
  change notifications carrying clientState (queued; :meth:`FakeGraph.flush` POSTs
  them), lifecycle notifications (:meth:`FakeGraph.lifecycle`);
- bearer tokens from a configurable set (:meth:`FakeGraph.grant`/:meth:`revoke`);
  injectable faults (:meth:`FakeGraph.fail`: 429/503/504 with Retry-After); per-mailbox
  concurrency: more than :attr:`FakeGraph.concurrency_limit` requests in flight answer
  429 MailboxConcurrency, and :attr:`Mailbox.max_in_flight` records the most seen.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import email.policy
import email.utils
import itertools
import json
import random
import re
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_PARSER = BytesParser(policy=email.policy.default)
MAX_SUBSCRIPTION_MINUTES = 10080
#: attachments in one request (sendMail, createReply, POST .../attachments)
INLINE_ATTACHMENT_MAX = 3 * 1024 * 1024
#: an upload session's largest file
UPLOAD_MAX = 150 * 1024 * 1024
#: every piece PUT to an upload session but the last is a multiple of this
UPLOAD_PIECE_UNIT = 320 * 1024
#: what Graph's attachment ``size`` counts beyond the file (its metadata)
ATTACHMENT_OVERHEAD = 180
PREFIX = "/v1.0"
WELL_KNOWN = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
}
FULL_PROPERTIES = (
    "id",
    "conversationId",
    "parentFolderId",
    "internetMessageId",
    "subject",
    "isRead",
    "isDraft",
    "receivedDateTime",
    "sentDateTime",
    "from",
    "toRecipients",
    "ccRecipients",
    "hasAttachments",
    "bodyPreview",
)


class GraphHTTPError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {"request-id": str(uuid.uuid4())},
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def not_found(what: str = "The specified object was not found in the store.") -> GraphHTTPError:
    return GraphHTTPError(404, "ErrorItemNotFound", what)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: object) -> dt.datetime:
    if not isinstance(text, str):
        raise GraphHTTPError(400, "InvalidRequest", "A date and time is required.")
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphHTTPError(400, "InvalidRequest", f"Invalid date: {text}") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _address(value: str) -> dict[str, Any]:
    name, addr = email.utils.parseaddr(value)
    return {"emailAddress": {"name": name or addr, "address": addr}}


def _addresses(value: str | None) -> list[dict[str, Any]]:
    if not value:
        return []
    return [_address(email.utils.formataddr(pair)) for pair in email.utils.getaddresses([value])]


def _format(recipients: Iterable[dict[str, Any]]) -> str:
    out = []
    for r in recipients:
        inner = r.get("emailAddress") or {}
        out.append(email.utils.formataddr((inner.get("name") or "", inner.get("address") or "")))
    return ", ".join(out)


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str
    well_known: str | None = None

    def to_json(self, box: Mailbox) -> dict[str, Any]:
        inside = [m for m in box.messages.values() if m.folder_id == self.id]
        return {
            "id": self.id,
            "displayName": self.display_name,
            "parentFolderId": self.parent_id,
            "childFolderCount": sum(1 for f in box.folders.values() if f.parent_id == self.id),
            "totalItemCount": len(inside),
            "unreadItemCount": sum(1 for m in inside if not m.is_read),
        }


@dataclass
class StoredMessage:
    id: str  # immutable
    mutable_id: str
    folder_id: str
    conversation_id: str
    mime: bytes
    is_read: bool
    is_draft: bool
    received: dt.datetime
    #: files attached to a draft: (name, content type, bytes)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)

    @property
    def parsed(self) -> EmailMessage:
        return _PARSER.parsebytes(self.mime)  # type: ignore[return-value]

    def to_json(self, box: Mailbox, immutable: bool, select: set[str] | None) -> dict[str, Any]:
        parsed = self.parsed
        body = parsed.get_body(("plain", "html"))
        preview = " ".join(str(body.get_content() if body is not None else "").split())[:255]
        date = parsed.get("Date")
        sent = email.utils.parsedate_to_datetime(str(date)) if date else self.received
        full: dict[str, Any] = {
            "id": self.id if immutable else self.mutable_id,
            "conversationId": self.conversation_id,
            "parentFolderId": self.folder_id,
            "internetMessageId": str(parsed.get("Message-ID", "")).strip(),
            "subject": str(parsed.get("Subject", "")),
            "isRead": self.is_read,
            "isDraft": self.is_draft,
            "receivedDateTime": _iso(self.received),
            "sentDateTime": _iso(sent),
            "from": _address(str(parsed.get("From", ""))),
            "toRecipients": _addresses(parsed.get("To")),
            "ccRecipients": _addresses(parsed.get("Cc")),
            "hasAttachments": any(True for _ in parsed.iter_attachments()),
            "bodyPreview": preview,
        }
        if select is None:
            return full
        if "internetMessageHeaders" in select:
            full["internetMessageHeaders"] = [
                {"name": k, "value": str(v)} for k, v in parsed.items()
            ]
        return {k: v for k, v in full.items() if k in select or k == "id"}


@dataclass(frozen=True)
class Event:
    seq: int
    message_id: str
    before: str | None  # folder before the change (None: created)
    after: str | None  # folder after it (None: deleted)
    props: frozenset[str] = frozenset()
    reason: str = "deleted"


@dataclass
class DeltaState:
    folder_id: str
    seq: int  # changes after this are the next round's
    select: set[str] | None


@dataclass
class PendingRound:
    pages: list[list[dict[str, Any]]]
    next_state: DeltaState


class Mailbox:
    """One Outlook mailbox's state. Mutators are the test's hands on "the server"."""

    def __init__(self, fake: FakeGraph, address: str, *, with_archive: bool) -> None:
        self.fake = fake
        self.address = address
        self.user_id = str(uuid.UUID(int=fake.rng.getrandbits(128)))
        self.folders: dict[str, Folder] = {}
        self.messages: dict[str, StoredMessage] = {}
        self.events: list[Event] = []
        self.folder_events: list[tuple[int, str, bool]] = []  # (seq, folder id, removed)
        self._seq = itertools.count(1)
        self.seq = 0
        self.delta_tokens: dict[str, DeltaState] = {}
        self.skip_tokens: dict[str, PendingRound] = {}
        self.folder_tokens: dict[str, int] = {}
        self.expired: tuple[int, str] | None = None  # (status, code) for unknown tokens
        self.ghosts: set[tuple[str, str]] = set()  # (folder, message): the A→B→A edge
        self.empty_pages = 0
        self.replay_rounds = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.root = self._new_id("AAMkRoot")
        for name, display in WELL_KNOWN.items():
            if name == "archive" and not with_archive:
                continue
            self._add_folder(display, self.root, name)

    # --- ids ----------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        raw = self.fake.rng.getrandbits(192).to_bytes(24, "big")
        return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _tick(self) -> int:
        self.seq = next(self._seq)
        return self.seq

    def folder(self, name_or_id: str) -> Folder:
        for f in self.folders.values():
            if f.id == name_or_id or f.well_known == name_or_id.lower():
                return f
        raise not_found("The specified folder could not be found in the store.")

    def _add_folder(self, display: str, parent: str, well_known: str | None = None) -> Folder:
        f = Folder(self._new_id("AAMkF"), display, parent, well_known)
        self.folders[f.id] = f
        self.folder_events.append((self._tick(), f.id, False))
        return f

    def message(self, message_id: str) -> StoredMessage:
        for m in self.messages.values():
            if message_id in (m.id, m.mutable_id):
                return m
        raise not_found()

    def _record(
        self,
        msg: StoredMessage,
        before: str | None,
        after: str | None,
        props: Iterable[str] = (),
        reason: str = "deleted",
    ) -> None:
        self.events.append(Event(self._tick(), msg.id, before, after, frozenset(props), reason))
        self.fake.queue_notifications(self, msg, before, after)

    # --- mutators -----------------------------------------------------------------

    def deliver(
        self,
        raw: bytes,
        *,
        folder: str = "inbox",
        received: dt.datetime | None = None,
        is_read: bool = False,
        conversation_id: str | None = None,
    ) -> StoredMessage:
        """Mail arriving from outside."""
        with self.fake.lock:
            return self._store(raw, self.folder(folder).id, received, is_read, conversation_id)

    def _store(
        self,
        raw: bytes,
        folder_id: str,
        received: dt.datetime | None,
        is_read: bool,
        conversation_id: str | None,
        is_draft: bool = False,
    ) -> StoredMessage:
        parsed = _PARSER.parsebytes(raw)
        if conversation_id is None:
            refs = set(
                re.findall(
                    r"<[^>]+>", f"{parsed.get('In-Reply-To', '')} {parsed.get('References', '')}"
                )
            )
            conversation_id = next(
                (
                    m.conversation_id
                    for m in self.messages.values()
                    if str(m.parsed.get("Message-ID", "")).strip() in refs
                ),
                None,
            ) or self._new_id("AAQkC")
        msg = StoredMessage(
            self._new_id("AAkALgImm"),
            self._new_id("AQMkMut"),
            folder_id,
            conversation_id,
            raw,
            is_read,
            is_draft,
            received or dt.datetime.now(dt.UTC).replace(microsecond=0),
        )
        self.messages[msg.id] = msg
        self._record(msg, None, folder_id)
        return msg

    def mark_read(self, message_id: str, is_read: bool = True) -> StoredMessage:
        with self.fake.lock:
            msg = self.message(message_id)
            if msg.is_read != is_read:
                msg.is_read = is_read
                self._record(msg, msg.folder_id, msg.folder_id, ("isRead",))
            return msg

    def move(self, message_id: str, destination: str) -> StoredMessage:
        with self.fake.lock:
            msg = self.message(message_id)
            target = self.folder(destination).id
            if target != msg.folder_id:
                before = msg.folder_id
                msg.folder_id = target
                msg.mutable_id = self._new_id("AQMkMut")  # a mutable id changes on move
                self._record(msg, before, target, ("parentFolderId",))
            return msg

    def delete(self, message_id: str, *, soft: bool = False) -> None:
        """Delete for good (reason "deleted") or soft-delete into Recoverable Items
        (reason "changed")."""
        with self.fake.lock:
            msg = self.message(message_id)
            del self.messages[msg.id]
            self._record(msg, msg.folder_id, None, reason="changed" if soft else "deleted")

    def create_folder(self, display: str, parent: str | None = None) -> Folder:
        with self.fake.lock:
            parent_id = self.folder(parent).id if parent else self.root
            for f in self.folders.values():
                if f.parent_id == parent_id and f.display_name.lower() == display.lower():
                    raise GraphHTTPError(
                        409, "ErrorFolderExists", "A folder with the specified name already exists."
                    )
            return self._add_folder(display, parent_id)

    def delete_folder(self, name_or_id: str) -> None:
        with self.fake.lock:
            f = self.folder(name_or_id)
            del self.folders[f.id]
            self.folder_events.append((self._tick(), f.id, True))

    def expire_delta(self, status: int = 410, code: str = "") -> None:
        """Forget every delta and skip token: using one answers ``status`` (410 Gone
        with a Location to start over, or e.g. 400 syncStateNotFound)."""
        with self.fake.lock:
            self.delta_tokens.clear()
            self.skip_tokens.clear()
            self.folder_tokens.clear()
            self.expired = (status, code or ("syncStateNotFound" if status != 410 else ""))

    # --- delta ----------------------------------------------------------------------

    def _initial(self, folder_id: str, since: dt.datetime | None) -> list[StoredMessage]:
        found = [
            m
            for m in self.messages.values()
            if m.folder_id == folder_id and (since is None or m.received >= since)
        ]
        for m in found:
            self.ghosts.discard((folder_id, m.id))
        return sorted(found, key=lambda m: m.received, reverse=True)

    def _changes(self, state: DeltaState, immutable: bool) -> list[dict[str, Any]]:
        folder = state.folder_id
        touched: dict[str, list[Event]] = {}
        for e in self.events:
            if e.seq > state.seq and folder in (e.before, e.after):
                touched.setdefault(e.message_id, []).append(e)
        items: list[dict[str, Any]] = []
        for mid, events in touched.items():
            was_in = events[0].before == folder
            msg = self.messages.get(mid)
            now_in = msg is not None and msg.folder_id == folder
            left = any(e.before == folder and e.after != folder for e in events)
            ghost = (folder, mid) in self.ghosts
            shown_id = mid if immutable or msg is None else msg.mutable_id
            if was_in and now_in and left and not ghost:
                self.ghosts.add((folder, mid))  # Graph's documented A→B→A behaviour
                items.append({"id": shown_id, "@removed": {"reason": "deleted"}})
            elif ghost:
                continue
            elif was_in and now_in and msg is not None:
                props = set().union(*(e.props for e in events))
                full = msg.to_json(self, immutable, None)
                items.append({"id": shown_id, **{p: full[p] for p in sorted(props) if p in full}})
            elif was_in:
                items.append({"id": shown_id, "@removed": {"reason": events[-1].reason}})
            elif now_in and msg is not None:
                items.append(msg.to_json(self, immutable, state.select))
        return items

    def start_round(
        self,
        state: DeltaState,
        items: list[dict[str, Any]],
        page_size: int,
    ) -> PendingRound:
        pages = [items[i : i + page_size] for i in range(0, len(items), page_size)] or [[]]
        pages += [[] for _ in range(self.empty_pages)]
        seq = self.seq
        if self.replay_rounds > 0:
            self.replay_rounds -= 1
            seq = state.seq  # the next round reports these changes again
        return PendingRound(pages, DeltaState(state.folder_id, seq, state.select))


@dataclass
class Fault:
    status: int
    times: int
    method: str | None
    path_contains: str | None
    retry_after: str | None
    code: str | None
    query_contains: str | None = None

    def matches(self, method: str, path: str, query: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
            and (self.query_contains is None or self.query_contains in query)
        )


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    prefer: str
    status: int


@dataclass
class Upload:
    box: Mailbox
    message_id: str
    name: str
    content_type: str
    size: int
    expires: dt.datetime
    received: bytearray = field(default_factory=bytearray)


@dataclass
class Sub:
    id: str
    box: Mailbox
    resource: str
    change_types: set[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: dt.datetime


Handler = Callable[["FakeGraph", Mailbox, Request, dict[str, str]], Awaitable[Any]]


@dataclass
class FakeGraph:
    seed: int = 0
    page_size: int = 10
    concurrency_limit: int = 4
    latency: float = 0.0  # seconds each request stays in flight (to observe overlap)
    validation_timeout: float = 10.0
    rng: random.Random = field(init=False)
    lock: threading.RLock = field(default_factory=threading.RLock)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> address
    faults: list[Fault] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    subscriptions: dict[str, Sub] = field(default_factory=dict)
    pending: list[tuple[Sub, dict[str, Any]]] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)  # what left the fake as mail
    tenant_id: str = "00000000-0000-0000-0000-0000000000aa"
    #: tokens another fake issued (the identity platform's): token -> mailbox, or None
    issuer: Callable[[str], str | None] | None = None
    uploads: dict[str, Upload] = field(default_factory=dict)
    upload_life: dt.timedelta = dt.timedelta(minutes=15)
    #: upload-session PUTs: (token, Content-Range, status)
    upload_puts: list[tuple[str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        routes = [
            Route(PREFIX + path, self._endpoint(handler), methods=[method])
            for method, path, handler in ROUTES
        ]
        routes.append(Route("/upload/{token}", self._put_piece, methods=["PUT"]))
        self.app = Starlette(routes=routes)

    # --- test controls -------------------------------------------------------------

    def add_mailbox(
        self, address: str, token: str | None = None, *, with_archive: bool = True
    ) -> Mailbox:
        with self.lock:
            box = self.mailboxes[address] = Mailbox(self, address, with_archive=with_archive)
            if token:
                self.grant(token, address)
            return box

    def grant(self, token: str, address: str) -> None:
        self.tokens[token] = address

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int | str | None = None,
        code: str | None = None,
        query_contains: str | None = None,
    ) -> None:
        """The next ``times`` matching requests answer ``status`` instead."""
        self.faults.append(
            Fault(
                status,
                times,
                method,
                path_contains,
                None if retry_after is None else str(retry_after),
                code,
                query_contains,
            )
        )

    def count(
        self, method: str | None = None, path_contains: str = "", status: int | None = None
    ) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and path_contains in r.path
            and (status is None or r.status == status)
        )

    # --- notifications ---------------------------------------------------------------

    def _matches(self, sub: Sub, folder_id: str | None) -> bool:
        found = re.search(r"mailFolders\('([^']+)'\)", sub.resource)
        if not found:
            return "messages" in sub.resource.lower()
        try:
            return sub.box.folder(found.group(1)).id == folder_id
        except GraphHTTPError:
            return False

    def queue_notifications(
        self, box: Mailbox, msg: StoredMessage, before: str | None, after: str | None
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        for sub in self.subscriptions.values():
            if sub.box is not box or sub.expiration <= now:
                continue
            for change, folder in (
                ("created", after if before != after else None),
                ("updated", after if before == after else None),
                ("deleted", before if before != after else None),
            ):
                if (
                    folder is None
                    or change not in sub.change_types
                    or not self._matches(sub, folder)
                ):
                    continue
                self.pending.append(
                    (
                        sub,
                        {
                            "subscriptionId": sub.id,
                            "subscriptionExpirationDateTime": _iso(sub.expiration),
                            "changeType": change,
                            "resource": f"Users/{box.user_id}/Messages/{msg.id}",
                            "resourceData": {
                                "@odata.type": "#Microsoft.Graph.Message",
                                "@odata.id": f"Users/{box.user_id}/Messages/{msg.id}",
                                "id": msg.id,
                            },
                            "clientState": sub.client_state,
                            "tenantId": self.tenant_id,
                        },
                    )
                )

    def flush(self) -> list[int]:
        """POST the queued change notifications (one batch per subscription); the
        receivers' status codes."""
        with self.lock:
            pending, self.pending = self.pending, []
        batches: dict[str, tuple[Sub, list[dict[str, Any]]]] = {}
        for sub, entry in pending:
            batches.setdefault(sub.id, (sub, []))[1].append(entry)
        return [
            self._poster.post(sub.notification_url, json={"value": entries}).status_code
            for sub, entries in batches.values()
        ]

    @cached_property
    def _poster(self) -> httpx.Client:
        """One client for every notification POST, as Graph keeps its connections (a new
        httpx client per POST costs tens of milliseconds: an SSL context each)."""
        return httpx.Client(timeout=10)

    def lifecycle(
        self, subscription_id: str, event: str, *, client_state: str | None = None
    ) -> int:
        """POST a lifecycle notification; ``subscriptionRemoved`` also removes it."""
        sub = self.subscriptions[subscription_id]
        entry = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _iso(sub.expiration),
            "tenantId": self.tenant_id,
            "clientState": sub.client_state if client_state is None else client_state,
            "lifecycleEvent": event,
        }
        if event == "subscriptionRemoved":
            del self.subscriptions[sub.id]
        url = sub.lifecycle_url or sub.notification_url
        return httpx.post(url, json={"value": [entry]}, timeout=10).status_code

    def expire_uploads(self) -> None:
        """Every open upload session expires now."""
        with self.lock:
            for upload in self.uploads.values():
                upload.expires = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    async def _put_piece(self, request: Request) -> Response:
        """A PUT of one piece to an upload session's URL (no bearer token)."""
        token = request.path_params["token"]
        header = request.headers.get("content-range", "")
        body = await request.body()
        response = self._take_piece(token, header, body, request)
        self.upload_puts.append((token, header, response.status_code))
        return response

    def _take_piece(self, token: str, header: str, body: bytes, request: Request) -> Response:
        if request.headers.get("authorization"):
            return GraphHTTPError(
                401, "InvalidAuthenticationToken", "The upload URL takes no Authorization."
            ).response()
        with self.lock:
            upload = self.uploads.get(token)
            if upload is None or upload.expires <= dt.datetime.now(dt.UTC):
                self.uploads.pop(token, None)
                return not_found("The upload session was not found or has expired.").response()
            found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", header.strip())
            start, end, total = (int(g) for g in found.groups()) if found else (-1, -1, -1)
            expected = len(upload.received)
            last = end + 1 == upload.size
            if (
                start != expected
                or total != upload.size
                or end < start
                or end >= upload.size
                or len(body) != end - start + 1
                or (not last and len(body) % UPLOAD_PIECE_UNIT)
            ):
                return JSONResponse(
                    {
                        "error": {
                            "code": "InvalidRange",
                            "message": "The range is not the one expected.",
                        },
                        "nextExpectedRanges": [f"{expected}-{upload.size - 1}"],
                    },
                    status_code=416,
                )
            upload.received += body
            if not last:
                return JSONResponse(
                    {
                        "expirationDateTime": _iso(upload.expires),
                        "nextExpectedRanges": [f"{len(upload.received)}-{upload.size - 1}"],
                    }
                )
            del self.uploads[token]
            msg = upload.box.message(upload.message_id)
            msg.attachments.append((upload.name, upload.content_type, bytes(upload.received)))
            location = f"{PREFIX}/me/messages/{msg.id}/attachments/{uuid.uuid4()}"
            return Response(status_code=201, headers={"Location": location})

    def expire_subscription(self, subscription_id: str) -> None:
        self.subscriptions[subscription_id].expiration = dt.datetime.now(dt.UTC) - dt.timedelta(
            minutes=1
        )

    async def validate(self, url: str) -> bool:
        token = f"Validation: Testing client application reachability {uuid.uuid4()}"
        target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token)}"
        try:
            async with httpx.AsyncClient(timeout=self.validation_timeout) as client:
                answer = await client.post(target, headers={"Content-Type": "text/plain"})
        except httpx.HTTPError:
            return False
        return (
            answer.status_code == 200
            and answer.headers.get("content-type", "").startswith("text/plain")
            and answer.text == token
        )

    # --- plumbing ------------------------------------------------------------------

    def _inject_fault(self, method: str, path: str, query: str) -> None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path, query):
                    fault.times -= 1
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    code = fault.code or {
                        429: "TooManyRequests",
                        401: "InvalidAuthenticationToken",
                        503: "ServiceNotAvailable",
                        504: "GatewayTimeout",
                    }.get(fault.status, "generalException")
                    raise GraphHTTPError(fault.status, code, "Injected by the test.", headers)

    def _mailbox(self, request: Request) -> Mailbox:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        address = self.tokens.get(token)
        if address is None and token and self.issuer is not None:
            address = self.issuer(token)
        if address is None:
            raise GraphHTTPError(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        return self.mailboxes[address]

    def _endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            box: Mailbox | None = None
            try:
                try:
                    self._inject_fault(request.method, request.url.path, request.url.query)
                    box = self._mailbox(request)
                    box.in_flight += 1
                    box.max_in_flight = max(box.max_in_flight, box.in_flight)
                    if box.in_flight > self.concurrency_limit:
                        raise GraphHTTPError(
                            429,
                            "ApplicationThrottled",
                            "Application is over its MailboxConcurrency limit.",
                            {"Retry-After": "1"},
                        )
                    if self.latency:
                        await asyncio.sleep(self.latency)
                    answer = await handler(self, box, request, dict(request.path_params))
                    response = (
                        answer
                        if isinstance(answer, Response)
                        else Response(status_code=204)
                        if answer is None
                        else JSONResponse(answer)
                    )
                except GraphHTTPError as exc:
                    response = exc.response()
            finally:
                if box is not None:
                    box.in_flight -= 1
            self.requests.append(
                RequestRecord(
                    request.method,
                    request.url.path,
                    request.url.query,
                    request.headers.get("prefer", ""),
                    response.status_code,
                )
            )
            return response

        return endpoint


# --- handlers ---------------------------------------------------------------------------


def _immutable(r: Request) -> bool:
    return 'idtype="immutableid"' in r.headers.get("prefer", "").lower().replace(" ", "")


def _page_size(fake: FakeGraph, r: Request) -> int:
    found = re.search(r"odata\.maxpagesize=(\d+)", r.headers.get("prefer", ""))
    return max(1, int(found.group(1))) if found else fake.page_size


def _select(r: Request) -> set[str] | None:
    value = r.query_params.get("$select")
    return {s.strip() for s in value.split(",") if s.strip()} if value else None


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise GraphHTTPError(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(data, dict):
        raise GraphHTTPError(400, "BadRequest", "Unable to read JSON request payload.")
    return data


def _base(r: Request) -> str:
    return str(r.base_url).rstrip("/") + PREFIX


async def get_me(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    me = {
        "id": box.user_id,
        "displayName": box.address.split("@")[0].title(),
        "mail": box.address,
        "userPrincipalName": box.address,
    }
    chosen = _select(r)
    return me if chosen is None else {k: v for k, v in me.items() if k in chosen or k == "id"}


async def get_folder(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        return box.folder(p["folder"]).to_json(box)


async def list_folders(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    name = None
    if flt := r.query_params.get("$filter"):
        found = re.fullmatch(r"displayName eq '((?:[^']|'')*)'", flt.strip())
        if not found:
            raise GraphHTTPError(400, "BadRequest", f"Unsupported $filter: {flt}")
        name = found.group(1).replace("''", "'").lower()
    with fake.lock:
        return {
            "value": [
                f.to_json(box)
                for f in box.folders.values()
                if f.parent_id == box.root and (name is None or f.display_name.lower() == name)
            ]
        }


async def create_folder(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    name = str(data.get("displayName") or "").strip()
    if not name:
        raise GraphHTTPError(400, "ErrorInvalidRequest", "displayName is required.")
    folder = box.create_folder(name, p.get("folder"))
    return JSONResponse(folder.to_json(box), status_code=201)


async def folders_delta(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    token = r.query_params.get("$deltatoken")
    with fake.lock:
        if token is None:
            items = [f.to_json(box) for f in box.folders.values()]
        else:
            if token not in box.folder_tokens:
                _gone(box, f"{_base(r)}/me/mailFolders/delta")
            since = box.folder_tokens[token]
            changed: dict[str, bool] = {}
            for seq, folder_id, removed in box.folder_events:
                if seq > since:
                    changed[folder_id] = removed
            items = [
                {"id": fid, "@removed": {"reason": "deleted"}}
                if removed or fid not in box.folders
                else box.folders[fid].to_json(box)
                for fid, removed in changed.items()
            ]
        new = uuid.uuid4().hex
        box.folder_tokens[new] = box.seq
    return {
        "@odata.context": f"{_base(r)}/$metadata#Collection(mailFolder)",
        "value": items,
        "@odata.deltaLink": f"{_base(r)}/me/mailFolders/delta?$deltatoken={new}",
    }


def _gone(box: Mailbox, restart: str) -> None:
    status, code = box.expired or (410, "")
    if status == 410:
        raise GraphHTTPError(
            410, "SyncStateNotFound", "The sync state is gone.", {"Location": restart}
        )
    raise GraphHTTPError(status, code, "The sync state of this request is not found or invalid.")


async def messages_delta(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    skip = r.query_params.get("$skiptoken")
    delta = r.query_params.get("$deltatoken")
    options = [
        k for k in r.query_params if k.startswith("$") and k not in ("$skiptoken", "$deltatoken")
    ]
    if (skip or delta) and options:
        raise GraphHTTPError(
            400,
            "BadRequest",
            f"Query options ({', '.join(options)}) are only allowed on the first delta request.",
        )
    immutable = _immutable(r)
    base = _base(r)
    with fake.lock:
        folder = box.folder(p["folder"])
        path = f"{base}/me/mailFolders/{folder.id}/messages/delta"
        if skip is not None:
            pending = box.skip_tokens.pop(skip, None)
            if pending is None:
                _gone(box, path)
        elif delta is not None:
            state = box.delta_tokens.get(delta)
            if state is None or state.folder_id != folder.id:
                _gone(box, path)
            assert state is not None
            pending = box.start_round(state, box._changes(state, immutable), _page_size(fake, r))
        else:
            since = None
            if flt := r.query_params.get("$filter"):
                found = re.fullmatch(r"receivedDateTime ge (\S+)", flt.strip())
                if not found:
                    raise GraphHTTPError(400, "BadRequest", f"Unsupported $filter: {flt}")
                since = _parse_iso(found.group(1))
            state = DeltaState(folder.id, box.seq, _select(r))
            listed = [
                m.to_json(box, immutable, state.select) for m in box._initial(folder.id, since)
            ]
            pending = box.start_round(
                DeltaState(folder.id, box.seq, state.select), listed, _page_size(fake, r)
            )
            pending.next_state.seq = box.seq
        assert pending is not None
        page = pending.pages.pop(0)
        body: dict[str, Any] = {
            "@odata.context": f"{base}/$metadata#Collection(message)",
            "value": page,
        }
        if pending.pages:
            token = uuid.uuid4().hex
            box.skip_tokens[token] = pending
            body["@odata.nextLink"] = f"{path}?$skiptoken={token}"
        else:
            token = uuid.uuid4().hex
            box.delta_tokens[token] = pending.next_state
            body["@odata.deltaLink"] = f"{path}?$deltatoken={token}"
        return body


async def get_message(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        return box.message(p["id"]).to_json(box, _immutable(r), _select(r))


async def get_mime(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        return Response(box.message(p["id"]).mime, media_type="text/plain")


async def patch_message(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    unknown = set(data) - {"isRead", "subject", "body", "toRecipients", "categories"}
    if unknown:
        raise GraphHTTPError(400, "BadRequest", f"Unknown properties: {sorted(unknown)}")
    msg = box.message(p["id"])
    if "isRead" in data:
        if not isinstance(data["isRead"], bool):
            raise GraphHTTPError(400, "BadRequest", "isRead must be a boolean.")
        box.mark_read(msg.id, data["isRead"])
    return msg.to_json(box, _immutable(r), None)


async def move_message(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    destination = data.get("destinationId")
    if not isinstance(destination, str) or not destination:
        raise GraphHTTPError(400, "ErrorInvalidIdMalformed", "destinationId is required.")
    msg = box.move(p["id"], destination)
    return JSONResponse(msg.to_json(box, _immutable(r), None), status_code=201)


def _check_recipients(message: dict[str, Any]) -> None:
    if not any(message.get(k) for k in ("toRecipients", "ccRecipients", "bccRecipients")):
        raise GraphHTTPError(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")


def _compose(box: Mailbox, message: dict[str, Any], extra: dict[str, str] | None = None) -> bytes:
    out = EmailMessage()
    out["From"] = box.address
    for key, header in (("toRecipients", "To"), ("ccRecipients", "Cc")):
        if message.get(key):
            out[header] = _format(message[key])
    out["Subject"] = str(message.get("subject") or "")
    out["Date"] = email.utils.format_datetime(dt.datetime.now(dt.UTC))
    out["Message-ID"] = email.utils.make_msgid(domain="outlook.fake")
    for name, value in (extra or {}).items():
        out[name] = value
    for h in message.get("internetMessageHeaders") or ():
        out[str(h["name"])] = str(h["value"])
    body = message.get("body") or {}
    subtype = "html" if str(body.get("contentType", "")).lower() == "html" else "plain"
    out.set_content(str(body.get("content") or ""), subtype=subtype)
    for a in message.get("attachments") or ():
        content = base64.b64decode(a.get("contentBytes") or "")
        maintype, _, subtype = str(a.get("contentType") or "application/octet-stream").partition(
            "/"
        )
        out.add_attachment(content, maintype=maintype, subtype=subtype, filename=a.get("name"))
    return out.as_bytes()


async def send_mail(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    if r.headers.get("content-type", "").startswith("text/plain"):
        try:
            raw = base64.b64decode(await r.body(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise GraphHTTPError(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            ) from exc
        parsed = _PARSER.parsebytes(raw)
        if not any(parsed.get(h) for h in ("To", "Cc", "Bcc")):
            raise GraphHTTPError(
                400, "ErrorInvalidRecipients", "At least one recipient is not valid."
            )
        save = True
    else:
        data = await _json_body(r)
        message = data.get("message")
        if not isinstance(message, dict):
            raise GraphHTTPError(400, "ErrorInvalidRequest", "The message is required.")
        _check_recipients(message)
        raw = _compose(box, message)
        save = data.get("saveToSentItems", True) is not False
    with fake.lock:
        fake.sent.append(raw)
        if save:
            box._store(raw, box.folder("sentitems").id, None, True, None)
    return Response(status_code=202)


async def create_reply(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    reply_all = r.url.path.endswith("createReplyAll")
    with fake.lock:
        original = box.message(p["id"])
        parsed = original.parsed
        subject = str(parsed.get("Subject", ""))
        if not subject.lower().startswith("re:"):
            subject = f"RE: {subject}"
        to = _addresses(parsed.get("Reply-To") or parsed.get("From"))
        cc: list[dict[str, Any]] = []
        if reply_all:
            to += [
                a
                for a in _addresses(parsed.get("To"))
                if a["emailAddress"]["address"] != box.address
            ]
            cc = _addresses(parsed.get("Cc"))
        given = data.get("message") if isinstance(data.get("message"), dict) else {}
        comment = str(data.get("comment") or "")
        body = dict(given.get("body") or {"contentType": "Text", "content": comment})
        message = {
            "subject": subject,
            "toRecipients": given.get("toRecipients") or to,
            "ccRecipients": given.get("ccRecipients") or cc,
            "body": body,
            "attachments": given.get("attachments") or [],
        }
        mid = str(parsed.get("Message-ID", "")).strip()
        refs = f"{parsed.get('References', '')} {mid}".strip()
        raw = _compose(box, message, {"In-Reply-To": mid, "References": refs})
        draft = box._store(raw, box.folder("drafts").id, None, True, original.conversation_id, True)
        return JSONResponse(draft.to_json(box, _immutable(r), None), status_code=201)


async def send_draft(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        draft = box.message(p["id"])
        if not draft.is_draft:
            raise GraphHTTPError(400, "ErrorInvalidOperation", "Only drafts can be sent.")
        mime = _with_attachments(draft)
        fake.sent.append(mime)
        del box.messages[draft.id]
        box._record(draft, draft.folder_id, None)
        # A sent draft is a new item: even immutable ids change on send.
        box._store(mime, box.folder("sentitems").id, None, True, draft.conversation_id)
    return Response(status_code=202)


def _with_attachments(draft: StoredMessage) -> bytes:
    if not draft.attachments:
        return draft.mime
    parsed = draft.parsed
    for name, content_type, content in draft.attachments:
        maintype, _, subtype = content_type.partition("/")
        parsed.add_attachment(
            content, maintype=maintype, subtype=subtype or "octet-stream", filename=name
        )
    return parsed.as_bytes()


async def create_message(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    """A draft in Drafts; only the MIME form (base64 text/plain) is modelled."""
    if not r.headers.get("content-type", "").startswith("text/plain"):
        raise GraphHTTPError(400, "BadRequest", "The fake only creates drafts from MIME.")
    try:
        raw = base64.b64decode(await r.body(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GraphHTTPError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        ) from exc
    if len(raw) > 4 * 1024 * 1024:
        raise GraphHTTPError(413, "ErrorRequestEntityTooLarge", "The request is too large.")
    with fake.lock:
        draft = box._store(raw, box.folder("drafts").id, None, True, None, True)
        return JSONResponse(draft.to_json(box, _immutable(r), None), status_code=201)


async def list_messages(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    wanted = None
    if flt := r.query_params.get("$filter"):
        found = re.fullmatch(r"internetMessageId eq '((?:[^']|'')*)'", flt.strip())
        if not found:
            raise GraphHTTPError(400, "BadRequest", f"Unsupported $filter: {flt}")
        wanted = found.group(1).replace("''", "'")
    with fake.lock:
        folder = box.folder(p["folder"]).id
        return {
            "value": [
                m.to_json(box, _immutable(r), _select(r))
                for m in box.messages.values()
                if m.folder_id == folder
                and (wanted is None or str(m.parsed.get("Message-ID", "")).strip() == wanted)
            ]
        }


def _draft(box: Mailbox, message_id: str) -> StoredMessage:
    msg = box.message(message_id)
    if not msg.is_draft:
        raise GraphHTTPError(400, "ErrorInvalidOperation", "Only drafts take attachments.")
    return msg


async def list_attachments(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        msg = box.message(p["id"])
        return {
            "value": [
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": name,
                    "contentType": content_type,
                    "size": len(content) + ATTACHMENT_OVERHEAD,
                }
                for name, content_type, content in msg.attachments
            ]
        }


async def add_attachment(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    try:
        content = base64.b64decode(str(data.get("contentBytes") or ""), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GraphHTTPError(400, "BadRequest", "contentBytes is not base64.") from exc
    if len(content) > INLINE_ATTACHMENT_MAX:
        raise GraphHTTPError(
            413, "ErrorRequestEntityTooLarge", "Use an upload session for files over 3 MB."
        )
    with fake.lock:
        msg = _draft(box, p["id"])
        content_type = str(data.get("contentType") or "application/octet-stream")
        msg.attachments.append((str(data.get("name") or "attachment"), content_type, content))
    return JSONResponse({"id": str(uuid.uuid4()), "name": data.get("name")}, status_code=201)


async def create_upload_session(
    fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]
) -> Any:
    data = await _json_body(r)
    item = data.get("AttachmentItem")
    if not isinstance(item, dict) or item.get("attachmentType") != "file":
        raise GraphHTTPError(400, "BadRequest", "AttachmentItem of attachmentType file required.")
    size = item.get("size")
    if not isinstance(size, int) or size <= 0:
        raise GraphHTTPError(400, "BadRequest", "AttachmentItem.size is required.")
    if size > UPLOAD_MAX:
        raise GraphHTTPError(
            400, "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize", "Over 150 MB."
        )
    with fake.lock:
        msg = _draft(box, p["id"])
        token = uuid.uuid4().hex
        expires = dt.datetime.now(dt.UTC) + fake.upload_life
        fake.uploads[token] = Upload(
            box,
            msg.id,
            str(item.get("name") or "attachment"),
            str(item.get("contentType") or "application/octet-stream"),
            size,
            expires,
        )
    return JSONResponse(
        {
            "uploadUrl": str(r.base_url).rstrip("/") + f"/upload/{token}",
            "expirationDateTime": _iso(expires),
            "nextExpectedRanges": ["0-"],
        },
        status_code=201,
    )


def _sub_json(sub: Sub) -> dict[str, Any]:
    return {
        "id": sub.id,
        "resource": sub.resource,
        "changeType": ",".join(sorted(sub.change_types)),
        "notificationUrl": sub.notification_url,
        "lifecycleNotificationUrl": sub.lifecycle_url,
        "expirationDateTime": _iso(sub.expiration),
        "clientState": sub.client_state,
        "applicationId": "fake-app",
        "creatorId": sub.box.user_id,
    }


def _check_expiration(value: object) -> dt.datetime:
    when = _parse_iso(value)
    now = dt.datetime.now(dt.UTC)
    if when <= now or when > now + dt.timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
        raise GraphHTTPError(
            400,
            "ExtensionError",
            "Subscription expiration can only be 10070 minutes in the future.",
        )
    return when


async def create_subscription(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
        if not data.get(key):
            raise GraphHTTPError(400, "InvalidRequest", f"{key} is required.")
    change_types = {c.strip() for c in str(data["changeType"]).split(",")}
    if not change_types <= {"created", "updated", "deleted"}:
        raise GraphHTTPError(400, "InvalidRequest", "changeType is invalid.")
    expiration = _check_expiration(data["expirationDateTime"])
    client_state = data.get("clientState")
    if client_state is not None and len(str(client_state)) > 128:
        raise GraphHTTPError(400, "InvalidRequest", "clientState is longer than 128 characters.")
    urls = [str(data["notificationUrl"])]
    if data.get("lifecycleNotificationUrl"):
        urls.append(str(data["lifecycleNotificationUrl"]))
    for url in urls:
        if not await fake.validate(url):
            raise GraphHTTPError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Notification endpoint must respond "
                "with 200 OK to validation request.",
            )
    sub = Sub(
        str(uuid.uuid4()),
        box,
        str(data["resource"]),
        change_types,
        urls[0],
        urls[1] if len(urls) > 1 else None,
        None if client_state is None else str(client_state),
        expiration,
    )
    with fake.lock:
        fake.subscriptions[sub.id] = sub
    return JSONResponse(_sub_json(sub), status_code=201)


def _live_sub(fake: FakeGraph, box: Mailbox, sub_id: str) -> Sub:
    sub = fake.subscriptions.get(sub_id)
    if sub is None or sub.box is not box or sub.expiration <= dt.datetime.now(dt.UTC):
        raise GraphHTTPError(404, "ResourceNotFound", f"The object '{sub_id}' doesn't exist.")
    return sub


async def renew_subscription(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    with fake.lock:
        sub = _live_sub(fake, box, p["id"])
        sub.expiration = _check_expiration(data.get("expirationDateTime"))
        return _sub_json(sub)


async def delete_subscription(fake: FakeGraph, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        _live_sub(fake, box, p["id"])
        del fake.subscriptions[p["id"]]
    return None


#: (HTTP method, path under /v1.0, handler); delta routes come before {folder}.
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/me", get_me),
    ("GET", "/me/mailFolders/delta", folders_delta),
    ("GET", "/me/mailFolders", list_folders),
    ("POST", "/me/mailFolders", create_folder),
    ("GET", "/me/mailFolders/{folder}", get_folder),
    ("POST", "/me/mailFolders/{folder}/childFolders", create_folder),
    ("GET", "/me/mailFolders/{folder}/messages/delta", messages_delta),
    ("GET", "/me/mailFolders/{folder}/messages", list_messages),
    ("POST", "/me/messages", create_message),
    ("GET", "/me/messages/{id}/attachments", list_attachments),
    ("POST", "/me/messages/{id}/attachments", add_attachment),
    ("POST", "/me/messages/{id}/attachments/createUploadSession", create_upload_session),
    ("GET", "/me/messages/{id}", get_message),
    ("GET", "/me/messages/{id}/$value", get_mime),
    ("PATCH", "/me/messages/{id}", patch_message),
    ("POST", "/me/messages/{id}/move", move_message),
    ("POST", "/me/messages/{id}/createReply", create_reply),
    ("POST", "/me/messages/{id}/createReplyAll", create_reply),
    ("POST", "/me/messages/{id}/send", send_draft),
    ("POST", "/me/sendMail", send_mail),
    ("POST", "/subscriptions", create_subscription),
    ("PATCH", "/subscriptions/{id}", renew_subscription),
    ("DELETE", "/subscriptions/{id}", delete_subscription),
)
