"""A stateful fake of the Gmail API (v1) as a Starlette app, for tests on loopback.

It follows Google's documented semantics, the ones crmail's sync depends on:

- ids are opaque hex strings; ``internalDate`` epoch-ms strings; ``historyId`` grows
  with random gaps, one history record per change (messagesAdded, messagesDeleted,
  labelsAdded, labelsRemoved), no ``history`` key when nothing changed, 404 for a
  start id older than the retained window (:meth:`Mailbox.expire_history`);
- messages.list answers ids + threadId only, newest first by internalDate, without
  SPAM/TRASH unless includeSpamTrash, every labelIds must match, ``q`` understands
  ``after:``/``before:`` (epoch seconds or YYYY/MM/DD, read as UTC here), ``in:``,
  ``label:``, ``is:unread|starred``, and answers 400 on any other term so a test
  never silently relies on search the fake does not do;
- SENT and DRAFT cannot be added by modify (400); trash adds TRASH (other labels stay,
  trashed mail leaves the lists); messages.send files the SENT copy itself and threads
  it with ``threadId`` only when References/In-Reply-To name a message of that thread
  and the subject matches; messages.insert is IMAP APPEND;
- the batch endpoint ``POST /batch/gmail/v1`` (multipart/mixed of HTTP requests, at
  most 100, answered in any order with ``Content-ID: <response-…>``);
- bearer tokens from a configurable set (:meth:`FakeGmail.grant`, :meth:`revoke`);
  401 otherwise, so the OAuth fake can hand out the tokens later;
- injectable faults (:meth:`FakeGmail.fail`: 429/403/5xx with Retry-After) and a log of
  every request (:attr:`FakeGmail.requests`) so tests count calls instead of timing.

Every route is declared in :data:`ROUTES` with the discovery document's path template;
``tests/providers/gmail/test_fake_shapes.py`` checks them and the answers against the
document google-api-python-client ships.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.policy
import email.utils
import itertools
import json
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.pubsub import CERTS_PATH, PushSigner

SYSTEM_LABELS = ("INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "UNREAD", "STARRED", "IMPORTANT")
NOT_ADDABLE = frozenset({"SENT", "DRAFT"})
HIDDEN_FROM_LISTS = frozenset({"SPAM", "TRASH"})
WATCH_LIFETIME_MS = 7 * 24 * 3600 * 1000
_PARSER = BytesParser(policy=email.policy.default)


class GmailHTTPError(Exception):
    def __init__(
        self, status: int, message: str, reason: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        statuses = {
            400: ("INVALID_ARGUMENT", "invalidArgument"),
            401: ("UNAUTHENTICATED", "authError"),
            403: ("PERMISSION_DENIED", "forbidden"),
            404: ("NOT_FOUND", "notFound"),
            409: ("ALREADY_EXISTS", "duplicate"),
            429: ("RESOURCE_EXHAUSTED", "rateLimitExceeded"),
        }
        status_name, default_reason = statuses.get(self.status, ("UNAVAILABLE", "backendError"))
        body = {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [
                    {
                        "message": self.message,
                        "domain": "global",
                        "reason": self.reason or default_reason,
                    }
                ],
                "status": status_name,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _normalized_subject(subject: str) -> str:
    subject = subject.strip()
    while True:
        stripped = re.sub(r"^(re|fwd?|aw|wg)\s*:\s*", "", subject, flags=re.IGNORECASE)
        if stripped == subject:
            return subject.lower()
        subject = stripped


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    labels: set[str]
    internal_date: int  # epoch ms
    history_id: int

    @property
    def parsed(self) -> EmailMessage:
        return _PARSER.parsebytes(self.raw)  # type: ignore[return-value]

    def ref(self) -> dict[str, Any]:
        return {"id": self.id, "threadId": self.thread_id}

    def ref_with_labels(self) -> dict[str, Any]:
        return {**self.ref(), "labelIds": sorted(self.labels)}

    def snippet(self) -> str:
        body = self.parsed.get_body(("plain", "html"))
        text = body.get_content() if body is not None else ""
        return " ".join(str(text).split())[:100]

    def minimal(self) -> dict[str, Any]:
        return {
            **self.ref_with_labels(),
            "snippet": self.snippet(),
            "historyId": str(self.history_id),
            "internalDate": str(self.internal_date),
            "sizeEstimate": len(self.raw),
        }


def _part(part: EmailMessage, part_id: str, wanted: Iterable[str] | None) -> dict[str, Any]:
    names = None if wanted is None else {w.lower() for w in wanted}
    headers = [
        {"name": k, "value": str(v)} for k, v in part.items() if names is None or k.lower() in names
    ]
    result: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": headers,
    }
    if part.is_multipart():
        result["body"] = {"size": 0}
        result["parts"] = [
            _part(sub, f"{part_id}.{n}" if part_id else str(n), None)  # type: ignore[arg-type]
            for n, sub in enumerate(part.iter_parts())
        ]
    else:
        data = part.get_payload(decode=True) or b""
        result["body"] = {"size": len(data), "data": _b64url(data)}  # type: ignore[arg-type]
    return result


class Mailbox:
    """One Gmail account's state. Mutators are the test's hands on "the server"."""

    def __init__(self, fake: FakeGmail, address: str) -> None:
        self.fake = fake
        self.address = address
        self.messages: dict[str, StoredMessage] = {}
        self.user_labels: dict[str, str] = {}  # id -> name
        self.history: list[dict[str, Any]] = []
        self.history_id = fake.rng.randint(1000, 50_000)
        self.history_floor = self.history_id  # the oldest start id still answered
        self.watch: dict[str, Any] | None = None
        self._label_numbers = itertools.count(1)

    # --- ids and history ----------------------------------------------------------

    def _next_history_id(self) -> int:
        self.history_id += self.fake.rng.randint(1, 9)
        return self.history_id

    def _record(self, kind: str, msg: StoredMessage, label_ids: Iterable[str] = ()) -> None:
        hid = self._next_history_id()
        msg.history_id = hid
        entry: dict[str, Any] = {"message": msg.ref_with_labels()}
        if kind in ("labelsAdded", "labelsRemoved"):
            entry["labelIds"] = sorted(label_ids)
        self.history.append({"id": str(hid), "messages": [msg.ref()], kind: [entry]})
        if self.watch is not None:
            self.fake.publish(self.address, hid)

    def expire_history(self) -> None:
        """Forget every change so far: a start id from before now answers 404."""
        with self.fake.lock:
            self.history.clear()
            self.history_floor = self.history_id

    # --- messages -----------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self.fake.rng.getrandbits(60):016x}"

    def label_ids(self) -> set[str]:
        return set(SYSTEM_LABELS) | set(self.user_labels)

    def _thread_for(self, parsed: EmailMessage, wanted: str | None) -> str | None:
        """Gmail's rule: join a thread only when a reference names one of its messages
        and the subject (less Re:/Fwd:) is the same."""
        refs = set(
            re.findall(
                r"<[^>]+>", f"{parsed.get('References', '')} {parsed.get('In-Reply-To', '')}"
            )
        )
        if not refs:
            return None
        subject = _normalized_subject(str(parsed.get("Subject", "")))
        for other in self.messages.values():
            if wanted is not None and other.thread_id != wanted:
                continue
            other_parsed = other.parsed
            if str(other_parsed.get("Message-ID", "")).strip() in refs and (
                _normalized_subject(str(other_parsed.get("Subject", ""))) == subject
            ):
                return other.thread_id
        return None

    def _add(
        self,
        raw: bytes,
        labels: Iterable[str],
        *,
        internal_date: int | None = None,
        thread_id: str | None = None,
        use_date_header: bool = False,
    ) -> StoredMessage:
        parsed = _PARSER.parsebytes(raw)
        if internal_date is None and use_date_header and parsed.get("Date"):
            try:
                internal_date = int(
                    email.utils.parsedate_to_datetime(str(parsed["Date"])).timestamp() * 1000
                )
            except (TypeError, ValueError):
                internal_date = None
        if internal_date is None:
            internal_date = int(time.time() * 1000)
        mid = self._new_id()
        thread = self._thread_for(parsed, thread_id) or mid  # type: ignore[arg-type]
        msg = StoredMessage(mid, thread, raw, set(labels), internal_date, 0)
        self.messages[mid] = msg
        self._record("messagesAdded", msg)
        return msg

    def deliver(
        self,
        raw: bytes,
        *,
        labels: Iterable[str] = ("INBOX", "UNREAD"),
        internal_date: dt.datetime | None = None,
    ) -> StoredMessage:
        """Mail arriving from outside (threaded by Gmail's rule)."""
        with self.fake.lock:
            ms = None if internal_date is None else int(internal_date.timestamp() * 1000)
            return self._add(raw, labels, internal_date=ms)

    def insert(
        self, raw: bytes, labels: Iterable[str], thread_id: str | None, use_date_header: bool
    ) -> StoredMessage:
        with self.fake.lock:
            self._check_labels(labels, adding=False)
            return self._add(raw, labels, thread_id=thread_id, use_date_header=use_date_header)

    def send(self, raw: bytes, thread_id: str | None) -> StoredMessage:
        with self.fake.lock:
            parsed = _PARSER.parsebytes(raw)
            if not any(parsed.get(h) for h in ("To", "Cc", "Bcc")):
                raise GmailHTTPError(400, "Invalid To header")
            if thread_id is not None and not any(
                m.thread_id == thread_id for m in self.messages.values()
            ):
                raise GmailHTTPError(404, "Requested entity was not found.")
            return self._add(raw, ("SENT",), thread_id=thread_id)

    def get(self, message_id: str) -> StoredMessage:
        msg = self.messages.get(message_id)
        if msg is None:
            raise GmailHTTPError(404, "Requested entity was not found.")
        return msg

    def _check_labels(self, labels: Iterable[str], *, adding: bool) -> None:
        known = self.label_ids()
        for label in labels:
            if label not in known or (adding and label in NOT_ADDABLE):
                raise GmailHTTPError(400, f"Invalid label: {label}")

    def modify(
        self, message_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> StoredMessage:
        with self.fake.lock:
            msg = self.get(message_id)
            add, remove = list(add), list(remove)
            self._check_labels(add, adding=True)
            self._check_labels(remove, adding=False)
            added = set(add) - msg.labels
            removed = (set(remove) - set(add)) & msg.labels
            msg.labels |= added
            msg.labels -= removed
            if added:
                self._record("labelsAdded", msg, added)
            if removed:
                self._record("labelsRemoved", msg, removed)
            return msg

    def trash(self, message_id: str) -> StoredMessage:
        return self.modify(message_id, add=("TRASH",))

    def untrash(self, message_id: str) -> StoredMessage:
        return self.modify(message_id, remove=("TRASH",))

    def delete(self, message_id: str) -> None:
        """Delete for good (not the trash): a messagesDeleted record."""
        with self.fake.lock:
            msg = self.get(message_id)
            del self.messages[message_id]
            self._record("messagesDeleted", msg)

    def create_label(self, name: str) -> dict[str, Any]:
        with self.fake.lock:
            taken = {n.lower() for n in (*SYSTEM_LABELS, *self.user_labels.values())}
            if not name.strip():
                raise GmailHTTPError(400, "Invalid label name")
            if name.lower() in taken:
                raise GmailHTTPError(409, "Label name exists or conflicts")
            label_id = f"Label_{next(self._label_numbers)}"
            self.user_labels[label_id] = name
            return self.label_json(label_id)

    def label_json(self, label_id: str) -> dict[str, Any]:
        if label_id in self.user_labels:
            return {
                "id": label_id,
                "name": self.user_labels[label_id],
                "type": "user",
                "labelListVisibility": "labelShow",
                "messageListVisibility": "show",
            }
        return {"id": label_id, "name": label_id, "type": "system"}

    # --- queries ------------------------------------------------------------------

    def search(self, q: str, label_ids: list[str], include_spam_trash: bool) -> list[StoredMessage]:
        predicates: list[Callable[[StoredMessage], bool]] = [
            lambda m, label=label: label in m.labels  # type: ignore[misc]
            for label in label_ids
        ]
        anywhere = include_spam_trash
        for term in q.split():
            key, _, value = term.partition(":")
            key, value = key.lower(), value.lower()
            if key in ("after", "before") and value:
                ms = _query_date_ms(value)
                if key == "after":
                    predicates.append(lambda m, ms=ms: m.internal_date >= ms)  # type: ignore[misc]
                else:
                    predicates.append(lambda m, ms=ms: m.internal_date < ms)  # type: ignore[misc]
            elif key == "in" and value == "anywhere":
                anywhere = True
            elif key in ("in", "label") and value:
                label = self._label_by_name(value)
                anywhere = anywhere or label in HIDDEN_FROM_LISTS
                predicates.append(lambda m, label=label: label in m.labels)  # type: ignore[misc]
            elif key == "rfc822msgid" and value:
                wanted = value.strip("<>")
                predicates.append(
                    lambda m, wanted=wanted: (  # type: ignore[misc]
                        str(m.parsed.get("Message-ID", "")).strip().strip("<>").lower() == wanted
                    )
                )
            elif key == "is" and value in ("unread", "starred"):
                label = value.upper()
                predicates.append(lambda m, label=label: label in m.labels)  # type: ignore[misc]
            else:
                raise GmailHTTPError(400, f"The fake Gmail does not understand the term {term!r}")
        anywhere = anywhere or bool(HIDDEN_FROM_LISTS.intersection(label_ids))
        found = [
            m
            for m in self.messages.values()
            if (anywhere or not (m.labels & HIDDEN_FROM_LISTS)) and all(p(m) for p in predicates)
        ]
        return sorted(found, key=lambda m: (m.internal_date, m.id), reverse=True)

    def _label_by_name(self, name: str) -> str:
        if name.upper() in SYSTEM_LABELS:
            return name.upper()
        for label_id, label_name in self.user_labels.items():
            if label_name.lower() == name:
                return label_id
        return f"no such label {name}"


def _query_date_ms(value: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    try:
        day = dt.datetime.strptime(value, "%Y/%m/%d").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise GmailHTTPError(400, f"Invalid date in query: {value}") from exc
    return int(day.timestamp() * 1000)


@dataclass
class Fault:
    status: int
    times: int
    method: str | None
    path_contains: str | None
    retry_after: str | None
    reason: str | None
    #: matching requests let through before the fault starts
    after: int = 0
    path_ends: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.path_contains is None or self.path_contains in path)
            and (self.path_ends is None or path.endswith(self.path_ends))
        )


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    in_batch: bool


@dataclass(frozen=True)
class Answer:
    """A successful answer, kept for the shape test against the discovery document."""

    method: str
    template: str
    body: Any


Handler = Callable[["FakeGmail", Mailbox, Request, dict[str, str]], Awaitable[Any]]


@dataclass
class FakeGmail:
    seed: int = 0
    rng: random.Random = field(init=False)
    lock: threading.RLock = field(default_factory=threading.RLock)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # bearer token -> address
    faults: list[Fault] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    #: asked about a bearer token the fake did not grant: the mailbox address it opens,
    #: or None (a test's OAuth fake decides, as Google's token service would)
    authorize: Callable[[str], str | None] | None = None
    #: where Pub/Sub would push notifications for watched mailboxes (a crmail URL)
    push_url: str | None = None
    #: notifications pushed: (address, historyId, HTTP status or the error)
    pushed: list[tuple[str, int, object]] = field(default_factory=list)
    #: Google's push-token signer; pushes carry its token when its audience is set
    pubsub: PushSigner = field(default_factory=PushSigner)
    _push_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.app = Starlette(
            routes=[
                *(
                    Route(f"/{template}", self._endpoint(template, handler), methods=[method])
                    for method, template, handler in ROUTES
                ),
                Route("/batch/gmail/v1", self._batch, methods=["POST"]),
                Route(CERTS_PATH, self.pubsub.certs),
            ]
        )

    # --- test controls -------------------------------------------------------------

    def add_mailbox(self, address: str, token: str | None = None) -> Mailbox:
        with self.lock:
            box = self.mailboxes[address] = Mailbox(self, address)
            if token:
                self.grant(token, address)
            return box

    def grant(self, token: str, address: str) -> None:
        self.tokens[token] = address

    def revoke(self, token: str) -> None:
        """The token expires or is revoked: requests with it answer 401."""
        self.tokens.pop(token, None)

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
        retry_after: int | str | None = None,
        reason: str | None = None,
        after: int = 0,
        path_ends: str | None = None,
    ) -> None:
        """The next ``times`` matching requests (after ``after`` of them went through)
        answer ``status`` instead."""
        self.faults.append(
            Fault(
                status,
                times,
                method,
                path_contains,
                None if retry_after is None else str(retry_after),
                reason,
                after,
                path_ends,
            )
        )

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and path_contains in r.path
        )

    def publish(self, address: str, history_id: int) -> None:
        """What Pub/Sub does for a watched mailbox: POST the notification to the push
        endpoint (in the background, like Google: the change does not wait for it)."""
        url = self.push_url
        if not url:
            return
        data = json.dumps({"emailAddress": address, "historyId": history_id}).encode()
        body = {
            "message": {
                "data": base64.b64encode(data).decode("ascii"),
                "messageId": str(next(self._push_numbers)),
                "publishTime": dt.datetime.now(dt.UTC).isoformat(),
            },
            "subscription": "projects/fake/subscriptions/crmail-gmail",
        }

        headers = {}
        if self.pubsub.audience is not None:
            headers["Authorization"] = f"Bearer {self.pubsub.sign()}"

        def post() -> None:
            outcome: object
            try:
                outcome = httpx.post(url, json=body, headers=headers, timeout=10).status_code
            except httpx.HTTPError as exc:
                outcome = exc
            with self.lock:
                self.pushed.append((address, history_id, outcome))

        threading.Thread(target=post, daemon=True).start()

    # --- plumbing ------------------------------------------------------------------

    def _inject_fault(self, method: str, path: str) -> None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.times -= 1
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    message = {
                        429: "Too many concurrent requests for user.",
                        403: "User-rate limit exceeded.",
                    }.get(fault.status, "Backend Error")
                    raise GmailHTTPError(fault.status, message, fault.reason or "", headers)

    def _mailbox(self, request: Request, user_id: str) -> Mailbox:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        address = self.tokens.get(token)
        if address is None and token and self.authorize is not None:
            address = self.authorize(token)
        if address is None:
            raise GmailHTTPError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        if user_id not in ("me", address):
            raise GmailHTTPError(403, "Delegation denied for " + address)
        return self.mailboxes[address]

    def _endpoint(
        self, template: str, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            in_batch = request.headers.get("x-fake-batch") == "1"
            self.requests.append(
                RequestRecord(request.method, request.url.path, request.url.query, in_batch)
            )
            try:
                self._inject_fault(request.method, request.url.path)
                params = dict(request.path_params)
                box = self._mailbox(request, params.pop("userId"))
                body = await handler(self, box, request, params)
            except GmailHTTPError as exc:
                return exc.response()
            if body is None:
                return Response(status_code=204)
            self.answers.append(Answer(request.method, template, body))
            return JSONResponse(body)

        return endpoint

    async def _batch(self, request: Request) -> Response:
        self.requests.append(RequestRecord("POST", request.url.path, "", False))
        try:
            self._inject_fault("POST", request.url.path)
        except GmailHTTPError as exc:
            return exc.response()
        content_type = request.headers.get("content-type", "")
        raw = await request.body()
        outer = _PARSER.parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        if not outer.is_multipart():
            return GmailHTTPError(400, "Batch requests must be multipart/mixed").response()
        parts = list(outer.iter_parts())
        if len(parts) > 100:
            return GmailHTTPError(400, "A batch may hold at most 100 requests").response()
        answers = []
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            for part in parts:
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                request_line, _, rest = payload.partition(b"\n")
                method, target, *_ = request_line.decode().split()
                headers = {"x-fake-batch": "1"}
                if auth := request.headers.get("authorization"):
                    headers["authorization"] = auth
                inner_head = rest.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
                for line in inner_head.decode().splitlines():
                    name, colon, value = line.partition(":")
                    if colon:
                        headers[name.strip().lower()] = value.strip()
                response = await client.request(method, target, headers=headers)
                answers.append((str(part.get("Content-ID", "")).strip("<> "), response))
        self.rng.shuffle(answers)  # Google answers parts in any order
        boundary = f"batch_{self.rng.getrandbits(48):012x}"
        chunks = []
        for content_id, response in answers:
            extra = "".join(
                f"{k}: {v}\r\n" for k, v in response.headers.items() if k.lower() == "retry-after"
            )
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{content_id}>\r\n\r\n"
                f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
                f"Content-Type: application/json; charset=UTF-8\r\n{extra}\r\n".encode()
                + response.content
                + b"\r\n"
            )
        body = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
        body += f"--{boundary}--\r\n".encode()
        return Response(body, media_type=f"multipart/mixed; boundary={boundary}")


# --- handlers (one per discovery method) ----------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise GmailHTTPError(400, "Invalid JSON payload received.") from exc
    if not isinstance(data, dict):
        raise GmailHTTPError(400, "Invalid JSON payload received.")
    return data


def _raw_of(data: dict[str, Any]) -> bytes:
    raw = data.get("raw")
    if not isinstance(raw, str) or not raw:
        raise GmailHTTPError(
            400,
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        )
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError as exc:
        raise GmailHTTPError(400, "Invalid value for ByteString") from exc


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise GmailHTTPError(400, f"Invalid value for {name}: {value}")
    return max(1, min(int(value), maximum))


async def get_profile(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        return {
            "emailAddress": box.address,
            "messagesTotal": len(box.messages),
            "threadsTotal": len({m.thread_id for m in box.messages.values()}),
            "historyId": str(box.history_id),
        }


async def list_messages(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    size = _int_param(r, "maxResults", 100, 500)
    offset = r.query_params.get("pageToken") or "0"
    if not offset.isdigit():
        raise GmailHTTPError(400, "Invalid pageToken")
    with fake.lock:
        found = box.search(
            r.query_params.get("q", ""),
            r.query_params.getlist("labelIds"),
            r.query_params.get("includeSpamTrash", "false") == "true",
        )
    start = int(offset)
    page = found[start : start + size]
    body: dict[str, Any] = {"resultSizeEstimate": len(found)}
    if page:
        body["messages"] = [m.ref() for m in page]
    if start + size < len(found):
        body["nextPageToken"] = str(start + size)
    return body


async def get_message(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    fmt = r.query_params.get("format", "full")
    if fmt not in ("minimal", "full", "raw", "metadata"):
        raise GmailHTTPError(400, f"Invalid value at 'format': {fmt}")
    with fake.lock:
        msg = box.get(p["id"])
        body = msg.minimal()
        if fmt == "raw":
            body["raw"] = _b64url(msg.raw)
        elif fmt == "metadata":
            wanted = r.query_params.getlist("metadataHeaders") or None
            payload = _part(msg.parsed, "", wanted)
            body["payload"] = {
                "mimeType": payload["mimeType"],
                "headers": payload["headers"],
            }
        elif fmt == "full":
            body["payload"] = _part(msg.parsed, "", None)
        return body


async def delete_message(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    box.delete(p["id"])
    return None


async def modify_message(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    msg = box.modify(p["id"], data.get("addLabelIds") or (), data.get("removeLabelIds") or ())
    return msg.ref_with_labels()


async def batch_modify(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    ids = data.get("ids") or []
    if len(ids) > 1000:
        raise GmailHTTPError(400, "Too many ids: at most 1000")
    with fake.lock:
        box._check_labels(data.get("addLabelIds") or (), adding=True)
        for mid in ids:
            if mid in box.messages:  # Gmail ignores ids it does not know here
                box.modify(mid, data.get("addLabelIds") or (), data.get("removeLabelIds") or ())
    return None


async def trash_message(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    return box.trash(p["id"]).ref_with_labels()


async def untrash_message(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    return box.untrash(p["id"]).ref_with_labels()


async def send_message(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    return box.send(_raw_of(data), data.get("threadId")).ref_with_labels()


async def insert_message(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    use_date = r.query_params.get("internalDateSource") == "dateHeader"
    msg = box.insert(_raw_of(data), data.get("labelIds") or (), data.get("threadId"), use_date)
    return msg.ref_with_labels()


async def list_history(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    start_text = r.query_params.get("startHistoryId", "")
    if not start_text.isdigit():
        raise GmailHTTPError(400, "Invalid startHistoryId")
    start = int(start_text)
    size = _int_param(r, "maxResults", 100, 500)
    types = set(r.query_params.getlist("historyTypes"))
    label = r.query_params.get("labelId")
    with fake.lock:
        if start < box.history_floor:
            raise GmailHTTPError(404, "Requested entity was not found.")
        records = []
        for record in box.history:
            if int(record["id"]) <= start:
                continue
            kept = {
                k: v
                for k, v in record.items()
                if k in ("id", "messages") or not types or k in _history_types(types)
            }
            if len(kept) == 2:
                continue
            if label and not any(
                label in entry["message"].get("labelIds", ())
                for k, v in kept.items()
                if k not in ("id", "messages")
                for entry in v
            ):
                continue
            records.append(kept)
        offset_text = r.query_params.get("pageToken") or "0"
        if not offset_text.isdigit():
            raise GmailHTTPError(400, "Invalid pageToken")
        offset = int(offset_text)
        page = records[offset : offset + size]
        body: dict[str, Any] = {"historyId": str(box.history_id)}
        if page:
            body["history"] = page
        if offset + size < len(records):
            body["nextPageToken"] = str(offset + size)
        return body


_HISTORY_KEYS = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}


def _history_types(types: set[str]) -> set[str]:
    unknown = types - set(_HISTORY_KEYS)
    if unknown:
        raise GmailHTTPError(400, f"Invalid value for historyTypes: {sorted(unknown)[0]}")
    return {_HISTORY_KEYS[t] for t in types}


async def list_labels(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    with fake.lock:
        return {"labels": [box.label_json(label) for label in (*SYSTEM_LABELS, *box.user_labels)]}


async def create_label(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    return box.create_label(str(data.get("name", "")))


async def watch(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    data = await _json_body(r)
    if not data.get("topicName"):
        raise GmailHTTPError(400, "Invalid topicName")
    with fake.lock:
        expiration = int(time.time() * 1000) + WATCH_LIFETIME_MS
        box.watch = {"topicName": data["topicName"], "expiration": expiration}
        return {"historyId": str(box.history_id), "expiration": str(expiration)}


async def stop(fake: FakeGmail, box: Mailbox, r: Request, p: dict[str, str]) -> Any:
    box.watch = None
    return None


U = "gmail/v1/users/{userId}"
#: (HTTP method, the discovery document's path template, handler).
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", f"{U}/profile", get_profile),
    ("GET", f"{U}/messages", list_messages),
    ("POST", f"{U}/messages", insert_message),
    ("POST", f"{U}/messages/send", send_message),
    ("POST", f"{U}/messages/batchModify", batch_modify),
    ("GET", f"{U}/messages/{{id}}", get_message),
    ("DELETE", f"{U}/messages/{{id}}", delete_message),
    ("POST", f"{U}/messages/{{id}}/modify", modify_message),
    ("POST", f"{U}/messages/{{id}}/trash", trash_message),
    ("POST", f"{U}/messages/{{id}}/untrash", untrash_message),
    ("GET", f"{U}/history", list_history),
    ("GET", f"{U}/labels", list_labels),
    ("POST", f"{U}/labels", create_label),
    ("POST", f"{U}/watch", watch),
    ("POST", f"{U}/stop", stop),
)
