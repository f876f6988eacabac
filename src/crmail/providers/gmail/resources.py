"""Gmail API answers as frozen dataclasses: only what crmail reads, in its own types.

Gmail sends 64-bit ids (historyId) and epoch-ms dates (internalDate) as JSON strings;
they become ``int`` and aware ``datetime`` here so callers never parse them again.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crmail.errors import ProtocolError

__all__ = [
    "History",
    "HistoryRecord",
    "Label",
    "LabelChange",
    "Message",
    "MessagePage",
    "MessageRef",
    "Profile",
    "Watch",
    "b64url_decode",
    "b64url_encode",
]

#: Gmail's system labels, the ones every mailbox has (user labels are ``Label_<n>``).
SYSTEM_LABELS = ("INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "UNREAD", "STARRED", "IMPORTANT")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Gmail's base64url, padded or not."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ProtocolError("Gmail sent message content that is not valid base64.") from exc


def _int(value: object, what: str) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise ProtocolError(f"Gmail sent a {what} that is not a number: {value!r}.") from exc


def _opt_int(value: object, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _epoch_ms(value: object) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(_int(value, "date") / 1000, dt.UTC)


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"Gmail's answer lacks its {key!r}.")
    return value


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    return tuple(str(v) for v in value)


@dataclass(frozen=True, slots=True)
class Profile:
    email_address: str
    messages_total: int
    threads_total: int
    history_id: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            _str(data, "emailAddress"),
            int(data.get("messagesTotal", 0)),
            int(data.get("threadsTotal", 0)),
            _int(data.get("historyId"), "historyId"),
        )


@dataclass(frozen=True, slots=True)
class MessageRef:
    """A message as lists and history name it: ids, and labels where Gmail gives them."""

    id: str
    thread_id: str
    label_ids: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MessageRef:
        return cls(_str(data, "id"), str(data.get("threadId", "")), _strings(data.get("labelIds")))


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: tuple[MessageRef, ...]
    next_page_token: str | None
    result_size_estimate: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MessagePage:
        return cls(
            tuple(MessageRef.from_json(m) for m in data.get("messages", ())),
            data.get("nextPageToken") or None,
            int(data.get("resultSizeEstimate", 0)),
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One Gmail message. ``headers`` are filled by format=metadata (the names asked
    for, in message order), ``raw`` by format=raw (the RFC 5322 bytes, exactly)."""

    id: str
    thread_id: str
    label_ids: tuple[str, ...]
    snippet: str = ""
    history_id: int | None = None
    internal_date: dt.datetime | None = None
    size_estimate: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        payload = data.get("payload") or {}
        headers = tuple(
            (str(h.get("name", "")), str(h.get("value", ""))) for h in payload.get("headers", ())
        )
        raw = data.get("raw")
        return cls(
            id=_str(data, "id"),
            thread_id=str(data.get("threadId", "")),
            label_ids=_strings(data.get("labelIds")),
            snippet=str(data.get("snippet", "")),
            history_id=_opt_int(data.get("historyId"), "historyId"),
            internal_date=_epoch_ms(data.get("internalDate")),
            size_estimate=_opt_int(data.get("sizeEstimate"), "sizeEstimate"),
            headers=headers,
            raw=b64url_decode(raw) if isinstance(raw, str) else None,
        )


@dataclass(frozen=True, slots=True)
class LabelChange:
    message: MessageRef  # with the message's labels after the change
    label_ids: tuple[str, ...]  # the labels added or removed

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabelChange:
        return cls(MessageRef.from_json(data["message"]), _strings(data.get("labelIds")))


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    id: int
    messages_added: tuple[MessageRef, ...] = ()
    messages_deleted: tuple[MessageRef, ...] = ()
    labels_added: tuple[LabelChange, ...] = ()
    labels_removed: tuple[LabelChange, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HistoryRecord:
        def refs(key: str) -> tuple[MessageRef, ...]:
            return tuple(MessageRef.from_json(r["message"]) for r in data.get(key, ()))

        def changes(key: str) -> tuple[LabelChange, ...]:
            return tuple(LabelChange.from_json(r) for r in data.get(key, ()))

        return cls(
            _int(data.get("id"), "history id"),
            refs("messagesAdded"),
            refs("messagesDeleted"),
            changes("labelsAdded"),
            changes("labelsRemoved"),
        )


@dataclass(frozen=True, slots=True)
class History:
    """Every change after a start id (all pages), and the mailbox's current historyId:
    the cursor to store once the records are applied."""

    records: tuple[HistoryRecord, ...]
    history_id: int


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    name: str
    type: str  # "system" | "user"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Label:
        return cls(_str(data, "id"), _str(data, "name"), str(data.get("type", "user")))


@dataclass(frozen=True, slots=True)
class Watch:
    history_id: int
    expiration: dt.datetime

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Watch:
        expiration = _epoch_ms(data.get("expiration"))
        if expiration is None:
            raise ProtocolError("Gmail's watch answer lacks its expiration.")
        return cls(_int(data.get("historyId"), "historyId"), expiration)
