"""An asyncio Microsoft Graph mail client over httpx: the calls crmail's sync needs.

Every request says ``Prefer: IdType="ImmutableId"`` so a message keeps its id when it
moves between folders (crmail's stable id). Tokens, retries and backoff are the shared
:mod:`crmail.providers.http` rules (401 → one refresh; 429 and 503/504 honour
Retry-After); at most :data:`MAILBOX_CONCURRENCY` requests are in flight per client,
as Graph allows per mailbox. Failures become :mod:`crmail.errors` (see :mod:`.errors`).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from crmail.domain.attachments import check_attachments, check_message_size, policy_for
from crmail.errors import FolderMissing, InvalidInput, ProtocolError, ProviderRejected
from crmail.providers.graph.errors import RULES, GraphFailure, delta_expired, message_missing
from crmail.providers.graph.resources import (
    Address,
    DeltaPage,
    FolderDelta,
    MailFolder,
    Message,
    MessageDelta,
    Removal,
    Subscription,
    User,
)
from crmail.providers.graph.uploads import UploadSession, upload
from crmail.providers.http import (
    AccessTokenSource,
    ApiClient,
    AuthorizedHttp,
    HttpOptions,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_SELECT",
    "MAILBOX_CONCURRENCY",
    "Attachment",
    "GraphClient",
    "OutgoingMail",
    "check_outlook_attachments",
]

DEFAULT_BASE_URL = "https://graph.microsoft.com/v1.0"
#: Graph's documented limit of concurrent requests per app per mailbox.
MAILBOX_CONCURRENCY = 4
IMMUTABLE_IDS = 'IdType="ImmutableId"'
#: What crmail reads of a message in a delta round: enough to judge it before its body.
DEFAULT_SELECT = (
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
)
#: Attachments at most this big go inline in sendMail / createReply (Graph's limit for
#: one request); larger ones go onto a draft through upload sessions (:mod:`.uploads`).
INLINE_ATTACHMENT_LIMIT = 3 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content: bytes
    content_type: str = "application/octet-stream"

    def to_json(self) -> dict[str, Any]:
        return {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.content).decode("ascii"),
        }


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    subject: str
    body: str
    to: Sequence[Address]
    cc: Sequence[Address] = ()
    bcc: Sequence[Address] = ()
    html: bool = False
    attachments: Sequence[Attachment] = ()
    #: Extra ``X-`` headers (Graph accepts only custom headers here).
    headers: Sequence[tuple[str, str]] = field(default=())

    def to_json(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "subject": self.subject,
            "body": {"contentType": "HTML" if self.html else "Text", "content": self.body},
            "toRecipients": [a.to_json() for a in self.to],
        }
        if self.cc:
            message["ccRecipients"] = [a.to_json() for a in self.cc]
        if self.bcc:
            message["bccRecipients"] = [a.to_json() for a in self.bcc]
        if self.attachments:
            message["attachments"] = [a.to_json() for a in self.attachments]
        if self.headers:
            message["internetMessageHeaders"] = [{"name": k, "value": v} for k, v in self.headers]
        return message


def check_outlook_attachments(attachments: Iterable[Attachment]) -> None:
    """Outlook's attachment policy, before anything is sent: the file-type allow-list
    and 3 MB in all (:mod:`crmail.domain.attachments`).

    :raises AttachmentTypeNotAllowed: a file type outside the allow-list.
    :raises MessageTooLarge: over 3 MB together.
    """
    files = [(a.name, len(a.content)) for a in attachments]
    if files:
        check_attachments(policy_for("microsoft365", None), files)


def _q(value: str) -> str:
    return quote(value, safe="")


def _iso(when: dt.datetime) -> str:
    if when.tzinfo is None:
        raise InvalidInput("A time sent to Microsoft Graph must carry its time zone.")
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GraphClient(ApiClient):
    """One mailbox's Microsoft Graph mail (``/me``: the token's own mailbox)."""

    def __init__(
        self,
        access_token: AccessTokenSource,
        *,
        base_url: str = DEFAULT_BASE_URL,
        concurrency: int = MAILBOX_CONCURRENCY,
        **options: Unpack[HttpOptions],
    ) -> None:
        self._http: AuthorizedHttp[GraphFailure] = AuthorizedHttp(
            RULES,
            access_token,
            base_url=base_url,
            headers={"Prefer": IMMUTABLE_IDS},
            concurrency=concurrency,
            **options,
        )
        #: for upload-session PUTs, which must not carry the bearer token (made on use)
        self._uploads: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        uploads, self._uploads = self._uploads, None
        if uploads is not None:
            await uploads.aclose()
        await super().aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self._http.json(method, path, **kwargs)

    # --- account and folders ---------------------------------------------------------

    async def me(self) -> User:
        params = [("$select", "id,displayName,mail,userPrincipalName")]
        return User.from_json(await self._json("GET", "/me", params=params))

    async def folder(self, name_or_id: str) -> MailFolder:
        """A folder by well-known name (inbox, sentitems, archive, deleteditems...) or id.

        :raises FolderMissing: no such folder (e.g. no Archive yet).
        """

        def missing(_: str) -> FolderMissing:
            return FolderMissing(f"The Outlook folder {name_or_id!r} does not exist.")

        data = await self._json("GET", f"/me/mailFolders/{_q(name_or_id)}", not_found=missing)
        return MailFolder.from_json(data)

    async def create_folder(self, display_name: str, parent_id: str | None = None) -> MailFolder:
        path = f"/me/mailFolders/{_q(parent_id)}/childFolders" if parent_id else "/me/mailFolders"
        body = {"displayName": display_name}
        return MailFolder.from_json(await self._json("POST", path, json=body))

    async def find_folder(self, display_name: str) -> MailFolder | None:
        """The top-level folder called ``display_name`` (Outlook's names are
        case-insensitive), or None."""
        escaped = display_name.replace("'", "''")
        data = await self._json(
            "GET",
            "/me/mailFolders",
            params=[("$filter", f"displayName eq '{escaped}'")],
        )
        for item in data.get("value", ()):
            folder = MailFolder.from_json(item)
            if folder.display_name.lower() == display_name.lower():
                return folder
        return None

    async def archive_folder(self) -> MailFolder:
        """The well-known Archive folder or, when the mailbox has none, a top-level
        "Archive" folder (created the first time)."""
        try:
            return await self.folder("archive")
        except FolderMissing:
            pass
        return await self.find_folder("Archive") or await self.create_folder("Archive")

    async def _rounds(
        self,
        first: str,
        params: Sequence[tuple[str, str]],
        *,
        expired: bool,
        headers: dict[str, str] | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Every page of one delta round: (items, deltaLink). Query options go on the
        first request only; the links Graph hands out are followed as given."""
        items: list[dict[str, Any]] = []
        url, query = first, list(params)
        while True:
            data = await self._json(
                "GET",
                url,
                params=query,
                headers=headers,
                not_found=delta_expired if expired else None,
            )
            value = data.get("value", [])
            if not isinstance(value, list):
                raise ProtocolError("Microsoft Graph's delta page holds no list of items.")
            items.extend(v for v in value if isinstance(v, dict))
            next_link, delta_link = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
            if isinstance(next_link, str) and next_link:
                url, query = next_link, []
            elif isinstance(delta_link, str) and delta_link:
                return items, delta_link
            else:
                raise ProtocolError(
                    "Microsoft Graph's delta page has neither a next nor a delta link."
                )

    @staticmethod
    def _split(items: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Removal]]:
        present, removed = [], []
        for item in items:
            gone = item.get("@removed")
            if isinstance(gone, dict):
                removed.append(Removal(str(item.get("id", "")), str(gone.get("reason", ""))))
            else:
                present.append(item)
        return present, removed

    async def folders_delta(self, delta_link: str | None = None) -> FolderDelta:
        """Every mail folder (first round) or the folders changed since ``delta_link``.

        :raises HistoryExpired: Graph no longer knows ``delta_link``: start over.
        """
        first = delta_link or "/me/mailFolders/delta"
        items, link = await self._rounds(first, [], expired=delta_link is not None)
        present, removed = self._split(items)
        return FolderDelta(tuple(MailFolder.from_json(f) for f in present), tuple(removed), link)

    async def messages_delta(
        self,
        folder_id: str,
        delta_link: str | None = None,
        *,
        since: dt.datetime | None = None,
        select: Iterable[str] = DEFAULT_SELECT,
        page_size: int | None = None,
    ) -> MessageDelta:
        """One complete delta round of a folder (all pages, empty ones included).

        Without ``delta_link`` the round lists the folder (received ``since`` when
        given); with it, the changes since that round: new messages in full, changed
        ones with the changed properties, ``@removed`` entries (deleted, or moved out of
        the folder) as :class:`Removal`. Graph may report a change again in a later
        round. The returned ``delta_link`` is the folder's new cursor: store it only
        once the round is applied (an error mid-round returns nothing).

        :raises HistoryExpired: 410 Gone / syncStateNotFound / resyncRequired: the
            folder must be read again in full.
        """
        headers = (
            {"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={page_size}"} if page_size else None
        )
        if delta_link:
            items, link = await self._rounds(delta_link, [], expired=True, headers=headers)
        else:
            params = [("$select", ",".join(dict.fromkeys(("id", *select))))]
            if since is not None:
                params.append(("$filter", f"receivedDateTime ge {_iso(since)}"))
            first = f"/me/mailFolders/{_q(folder_id)}/messages/delta"
            items, link = await self._rounds(first, params, expired=False, headers=headers)
        present, removed = self._split(items)
        return MessageDelta(tuple(Message.from_json(m) for m in present), tuple(removed), link)

    async def messages_delta_page(
        self,
        folder_id: str,
        link: str | None = None,
        *,
        since: dt.datetime | None = None,
        select: Iterable[str] = DEFAULT_SELECT,
        page_size: int | None = None,
    ) -> DeltaPage:
        """One page of a folder's delta round: the first (``link`` None, with the query
        options) or the one ``link`` names (a nextLink, or a deltaLink to start the next
        round). For a caller that commits page by page (a resumable import): store
        ``next_link`` with what the page held, and ``delta_link`` when it comes.

        :raises HistoryExpired: Graph no longer knows ``link``: start the round over.
        """
        headers = (
            {"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={page_size}"} if page_size else None
        )
        params: list[tuple[str, str]] = []
        if link:
            url = link
        else:
            url = f"/me/mailFolders/{_q(folder_id)}/messages/delta"
            params = [("$select", ",".join(dict.fromkeys(("id", *select))))]
            if since is not None:
                params.append(("$filter", f"receivedDateTime ge {_iso(since)}"))
        data = await self._json(
            "GET", url, params=params, headers=headers, not_found=delta_expired if link else None
        )
        value = data.get("value", [])
        if not isinstance(value, list):
            raise ProtocolError("Microsoft Graph's delta page holds no list of items.")
        present, removed = self._split(v for v in value if isinstance(v, dict))
        next_link, delta_link = data.get("@odata.nextLink"), data.get("@odata.deltaLink")
        if not (isinstance(next_link, str) and next_link) and not (
            isinstance(delta_link, str) and delta_link
        ):
            raise ProtocolError("Microsoft Graph's delta page has neither a next nor a delta link.")
        return DeltaPage(
            tuple(Message.from_json(m) for m in present),
            tuple(removed),
            next_link if isinstance(next_link, str) and next_link else None,
            delta_link if isinstance(delta_link, str) and delta_link else None,
        )

    # --- messages --------------------------------------------------------------------

    async def get_message(
        self, message_id: str, *, select: Iterable[str] = DEFAULT_SELECT, headers: bool = True
    ) -> Message:
        """A message's metadata, with its internet headers when ``headers``.

        :raises MessageNotInMailbox: no such message (deleted, or a stale id).
        """
        fields = list(dict.fromkeys(("id", *select)))
        if headers:
            fields.append("internetMessageHeaders")
        data = await self._json(
            "GET",
            f"/me/messages/{_q(message_id)}",
            params=[("$select", ",".join(fields))],
            not_found=message_missing(message_id),
        )
        return Message.from_json(data)

    async def get_mime(self, message_id: str) -> bytes:
        """The message's RFC 5322 bytes, as Exchange gives them."""
        response = await self._http.send(
            "GET", f"/me/messages/{_q(message_id)}/$value", not_found=message_missing(message_id)
        )
        return response.content

    async def update_message(self, message_id: str, *, is_read: bool) -> Message:
        data = await self._json(
            "PATCH",
            f"/me/messages/{_q(message_id)}",
            json={"isRead": is_read},
            not_found=message_missing(message_id),
        )
        return Message.from_json(data)

    async def move_message(self, message_id: str, destination_id: str) -> Message:
        """Move to a folder (id or well-known name); with immutable ids the id stays."""
        data = await self._json(
            "POST",
            f"/me/messages/{_q(message_id)}/move",
            json={"destinationId": destination_id},
            not_found=message_missing(message_id),
        )
        return Message.from_json(data)

    async def delete_message(self, message_id: str) -> Message:
        """crmail's delete: into Deleted Items, where Outlook users can still find it."""
        return await self.move_message(message_id, "deleteditems")

    async def archive_message(self, message_id: str) -> Message:
        """crmail's Done: read, then into Archive (created when missing)."""
        await self.update_message(message_id, is_read=True)
        archive = await self.archive_folder()
        return await self.move_message(message_id, archive.id)

    # --- sending ---------------------------------------------------------------------

    async def send_mail(self, mail: OutgoingMail, *, save_to_sent_items: bool = True) -> None:
        """Send a new message; Outlook files the Sent Items copy itself.

        :raises AttachmentTypeNotAllowed, MessageTooLarge: Outlook's attachment policy,
            checked before anything is sent.
        """
        check_outlook_attachments(mail.attachments)
        body = {"message": mail.to_json(), "saveToSentItems": save_to_sent_items}
        await self._http.send("POST", "/me/sendMail", json=body)

    async def send_mime(self, raw: bytes) -> None:
        """Send RFC 5322 bytes as they are (sendMail with a base64 text/plain body);
        Outlook files the Sent Items copy itself."""
        check_message_size(policy_for("microsoft365", None), len(raw))
        await self._http.send(
            "POST",
            "/me/sendMail",
            content=base64.b64encode(raw),
            headers={"Content-Type": "text/plain"},
        )

    # --- drafts and large attachments (upload sessions) ----------------------------

    async def create_draft_mime(self, raw: bytes) -> Message:
        """A draft in Drafts from RFC 5322 bytes (``POST /me/messages``, base64 MIME):
        its headers, the Message-ID included, are kept."""
        data = await self._json(
            "POST",
            "/me/messages",
            content=base64.b64encode(raw),
            headers={"Content-Type": "text/plain"},
        )
        return Message.from_json(data)

    async def _by_message_id(self, folder: str, internet_message_id: str) -> list[Message]:
        """The messages of a folder whose Message-ID is ``internet_message_id``."""
        # An OData string literal doubles its quotes; httpx percent-encodes the rest
        # (the angle brackets, "@", "+", "/" a Message-ID may hold).
        quoted = internet_message_id.replace("'", "''")
        params = [
            ("$filter", f"internetMessageId eq '{quoted}'"),
            ("$select", "id,isDraft,internetMessageId"),
        ]
        data = await self._json("GET", f"/me/mailFolders/{_q(folder)}/messages", params=params)
        return [Message.from_json(m) for m in data.get("value") or () if isinstance(m, dict)]

    async def find_draft(self, internet_message_id: str) -> Message | None:
        """The draft in Drafts whose Message-ID is ``internet_message_id``, if any."""
        found = await self._by_message_id("drafts", internet_message_id)
        return next((m for m in found if m.is_draft is not False), None)

    async def find_sent(self, internet_message_id: str) -> Message | None:
        """The sent copy in Sent Items whose Message-ID is ``internet_message_id``, if
        any: how an interrupted send is told from one that never went out."""
        found = await self._by_message_id("sentitems", internet_message_id)
        return next((m for m in found if m.is_draft is not True), None)

    async def attachments_of(self, message_id: str) -> list[tuple[str, int]]:
        """(name, size) of a message's attachments."""
        data = await self._json(
            "GET",
            f"/me/messages/{_q(message_id)}/attachments",
            params=[("$select", "name,size")],
            not_found=message_missing(message_id),
        )
        return [
            (str(a.get("name") or ""), int(a.get("size") or 0))
            for a in data.get("value") or ()
            if isinstance(a, dict)
        ]

    async def add_attachment(self, message_id: str, attachment: Attachment) -> None:
        """Attach a file to a draft: inline up to 3 MB, through an upload session above."""
        if len(attachment.content) <= INLINE_ATTACHMENT_LIMIT:
            await self._json(
                "POST",
                f"/me/messages/{_q(message_id)}/attachments",
                json=attachment.to_json(),
                not_found=message_missing(message_id),
            )
            return
        item = {
            "attachmentType": "file",
            "name": attachment.name,
            "size": len(attachment.content),
            "contentType": attachment.content_type,
        }
        data = await self._json(
            "POST",
            f"/me/messages/{_q(message_id)}/attachments/createUploadSession",
            json={"AttachmentItem": item},
            not_found=message_missing(message_id),
        )
        if self._uploads is None:
            self._uploads = httpx.AsyncClient(timeout=self._http.timeout)
        await upload(self._uploads, UploadSession.from_json(data), attachment.content)

    async def send_draft(self, message_id: str) -> None:
        """Send a draft; Outlook files the Sent Items copy (under a new id).

        :raises MessageNotInMailbox: no such draft (sent already, or deleted).
        """
        await self._http.send(
            "POST", f"/me/messages/{_q(message_id)}/send", not_found=message_missing(message_id)
        )

    async def reply(
        self,
        message_id: str,
        body: str,
        *,
        reply_all: bool = False,
        attachments: Sequence[Attachment] = (),
        html: bool = False,
    ) -> Message:
        """Reply in the message's conversation: createReply, then send the draft, so
        Outlook threads it and files the Sent Items copy. Returns the draft as created.

        :raises MessageNotInMailbox: the message replied to is gone.
        :raises AttachmentTypeNotAllowed, MessageTooLarge: before anything is sent.
        """
        check_outlook_attachments(attachments)
        action = "createReplyAll" if reply_all else "createReply"
        message: dict[str, Any] = {
            "body": {"contentType": "HTML" if html else "Text", "content": body}
        }
        if attachments:
            message["attachments"] = [a.to_json() for a in attachments]
        draft = Message.from_json(
            await self._json(
                "POST",
                f"/me/messages/{_q(message_id)}/{action}",
                json={"message": message},
                not_found=message_missing(message_id),
            )
        )
        await self._http.send(
            "POST", f"/me/messages/{_q(draft.id)}/send", not_found=message_missing(draft.id)
        )
        return draft

    # --- subscriptions (push) --------------------------------------------------------

    async def create_subscription(
        self,
        *,
        notification_url: str,
        resource: str,
        expiration: dt.datetime,
        client_state: str,
        change_type: str = "created,updated,deleted",
        lifecycle_notification_url: str | None = None,
    ) -> Subscription:
        """Ask Graph to POST changes of ``resource`` (e.g. "me/mailFolders('inbox')/
        messages") to ``notification_url``. Graph validates the URL first (the
        endpoint must echo ``validationToken``); renew before ``expiration``.

        :raises ProviderRejected: the validation failed or the expiry is out of range.
        """
        body: dict[str, Any] = {
            "changeType": change_type,
            "notificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": _iso(expiration),
            "clientState": client_state,
        }
        if lifecycle_notification_url:
            body["lifecycleNotificationUrl"] = lifecycle_notification_url
        return Subscription.from_json(await self._json("POST", "/subscriptions", json=body))

    async def renew_subscription(
        self, subscription_id: str, expiration: dt.datetime
    ) -> Subscription:
        def gone(_: str) -> ProviderRejected:
            return ProviderRejected(
                f"The Microsoft Graph subscription {subscription_id} no longer exists: "
                "create a new one."
            )

        data = await self._json(
            "PATCH",
            f"/subscriptions/{_q(subscription_id)}",
            json={"expirationDateTime": _iso(expiration)},
            not_found=gone,
        )
        return Subscription.from_json(data)

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Stop a subscription's notifications: False when Graph no longer had it
        (expired or removed: nothing left to stop)."""

        def gone(_: str) -> ProviderRejected:
            return SubscriptionGone(f"The Microsoft Graph subscription {subscription_id} is gone.")

        try:
            await self._http.send("DELETE", f"/subscriptions/{_q(subscription_id)}", not_found=gone)
        except SubscriptionGone:
            return False
        return True


class SubscriptionGone(ProviderRejected):
    """404 on a subscription: Graph no longer has it."""
