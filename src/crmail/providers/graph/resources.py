"""Microsoft Graph answers as frozen dataclasses: only what crmail reads, in its types.

A delta round reports new items in full but changed items with only the properties
that changed, so every message field except ``id`` may be None ("not reported").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from crmail.errors import ProtocolError

__all__ = [
    "WELL_KNOWN_FOLDERS",
    "Address",
    "DeltaPage",
    "FolderDelta",
    "MailFolder",
    "Message",
    "MessageDelta",
    "Removal",
    "Subscription",
    "User",
    "parse_datetime",
]

#: The well-known folder names crmail uses (Graph accepts them in place of an id).
WELL_KNOWN_FOLDERS = ("inbox", "sentitems", "archive", "deleteditems", "drafts", "junkemail")


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"Microsoft Graph's answer lacks its {key!r}.")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def parse_datetime(value: object) -> dt.datetime | None:
    """Graph's ISO 8601 times ("2026-12-01T10:00:00Z", sometimes with 7 decimals)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python takes at most 6 fraction digits
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProtocolError(f"Microsoft Graph sent a time it cannot mean: {value!r}.") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    display_name: str
    mail: str | None  # None for some personal accounts: use user_principal_name
    user_principal_name: str

    @property
    def address(self) -> str:
        return self.mail or self.user_principal_name

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> User:
        return cls(
            _str(data, "id"),
            str(data.get("displayName") or ""),
            _opt_str(data, "mail"),
            str(data.get("userPrincipalName") or ""),
        )


@dataclass(frozen=True, slots=True)
class MailFolder:
    id: str
    display_name: str
    parent_folder_id: str | None = None
    total_item_count: int | None = None
    unread_item_count: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MailFolder:
        def count(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) else None

        return cls(
            _str(data, "id"),
            str(data.get("displayName") or ""),
            _opt_str(data, "parentFolderId"),
            count("totalItemCount"),
            count("unreadItemCount"),
        )


@dataclass(frozen=True, slots=True)
class Removal:
    """An ``@removed`` delta entry: the item left the folder. ``reason`` "deleted"
    (gone for good, or moved out) or "changed" (soft-deleted, may come back)."""

    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class FolderDelta:
    folders: tuple[MailFolder, ...]
    removed: tuple[Removal, ...]
    delta_link: str  # the cursor for the next round


@dataclass(frozen=True, slots=True)
class Address:
    address: str
    name: str = ""

    @classmethod
    def from_json(cls, data: object) -> Address | None:
        if not isinstance(data, Mapping):
            return None
        inner = data.get("emailAddress")
        if not isinstance(inner, Mapping):
            return None
        return cls(str(inner.get("address") or ""), str(inner.get("name") or ""))

    def to_json(self) -> dict[str, Any]:
        inner = {"address": self.address}
        if self.name:
            inner["name"] = self.name
        return {"emailAddress": inner}


def _addresses(value: object) -> tuple[Address, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(a for a in (Address.from_json(v) for v in value) if a is not None)


@dataclass(frozen=True, slots=True)
class Message:
    """One Outlook message, as far as the answer reported it (None = not reported).

    With ``Prefer: IdType="ImmutableId"`` the ``id`` survives moves between folders;
    ``conversation_id`` groups a conversation (crmail's thread)."""

    id: str
    conversation_id: str | None = None
    parent_folder_id: str | None = None
    internet_message_id: str | None = None
    subject: str | None = None
    is_read: bool | None = None
    is_draft: bool | None = None
    received: dt.datetime | None = None
    sent: dt.datetime | None = None
    sender: Address | None = None
    to: tuple[Address, ...] | None = None
    cc: tuple[Address, ...] | None = None
    has_attachments: bool | None = None
    headers: tuple[tuple[str, str], ...] | None = None  # internetMessageHeaders

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers or () if k.lower() == wanted), None)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        def flag(key: str) -> bool | None:
            value = data.get(key)
            return value if isinstance(value, bool) else None

        raw_headers = data.get("internetMessageHeaders")
        headers = (
            tuple(
                (str(h.get("name", "")), str(h.get("value", "")))
                for h in raw_headers
                if isinstance(h, Mapping)
            )
            if isinstance(raw_headers, list)
            else None
        )
        return cls(
            id=_str(data, "id"),
            conversation_id=_opt_str(data, "conversationId"),
            parent_folder_id=_opt_str(data, "parentFolderId"),
            internet_message_id=_opt_str(data, "internetMessageId"),
            subject=_opt_str(data, "subject"),
            is_read=flag("isRead"),
            is_draft=flag("isDraft"),
            received=parse_datetime(data.get("receivedDateTime")),
            sent=parse_datetime(data.get("sentDateTime")),
            sender=Address.from_json(data.get("from")),
            to=_addresses(data.get("toRecipients")),
            cc=_addresses(data.get("ccRecipients")),
            has_attachments=flag("hasAttachments"),
            headers=headers,
        )


@dataclass(frozen=True, slots=True)
class MessageDelta:
    """One complete delta round of a folder: what changed since the last round's link,
    and the ``delta_link`` to store as the folder's cursor once these are applied."""

    messages: tuple[Message, ...]
    removed: tuple[Removal, ...]
    delta_link: str


@dataclass(frozen=True, slots=True)
class DeltaPage:
    """One page of a delta round: ``next_link`` while the round goes on, ``delta_link``
    on its last page (the cursor for the next round)."""

    messages: tuple[Message, ...]
    removed: tuple[Removal, ...]
    next_link: str | None
    delta_link: str | None


ChangeType = Literal["created", "updated", "deleted"]


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    resource: str
    change_type: str  # comma-separated, e.g. "created,updated,deleted"
    notification_url: str
    expiration: dt.datetime
    client_state: str | None = None
    lifecycle_notification_url: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subscription:
        expiration = parse_datetime(data.get("expirationDateTime"))
        if expiration is None:
            raise ProtocolError("Microsoft Graph's subscription lacks its expirationDateTime.")
        return cls(
            _str(data, "id"),
            str(data.get("resource") or ""),
            str(data.get("changeType") or ""),
            str(data.get("notificationUrl") or ""),
            expiration,
            _opt_str(data, "clientState"),
            _opt_str(data, "lifecycleNotificationUrl"),
        )
