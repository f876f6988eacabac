"""An asyncio Gmail API client over httpx: the calls crmail's sync needs, with retries.

Tokens, retries and backoff are the shared :mod:`crmail.providers.http` rules: a bearer
token per request, one refresh after a 401, throttling (429, 403
rateLimitExceeded/userRateLimitExceeded) retried with jittered backoff that honours
Retry-After, server errors (5xx, dropped connections) a bounded number of times. Every
other failure is raised at once as a :mod:`crmail.errors` exception (see
:mod:`.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal, Unpack
from urllib.parse import quote, urlencode

from crmail.domain.attachments import check_message_size, policy_for
from crmail.errors import ProtocolError, ProviderError
from crmail.providers.gmail import batch as wire
from crmail.providers.gmail.errors import (
    RULES,
    GmailFailure,
    classify,
    history_expired,
    message_missing,
    to_error,
)
from crmail.providers.gmail.resources import (
    History,
    HistoryRecord,
    Label,
    Message,
    MessagePage,
    MessageRef,
    Profile,
    Watch,
    b64url_encode,
)
from crmail.providers.http import (
    AccessTokenSource,
    ApiClient,
    AuthorizedHttp,
    HttpOptions,
    Retry,
    RetryPolicy,
)

__all__ = ["DEFAULT_BASE_URL", "AccessTokenSource", "GmailClient", "RetryPolicy"]


DEFAULT_BASE_URL = "https://gmail.googleapis.com"

Format = Literal["minimal", "metadata", "raw"]

#: Gmail's batchModify takes at most 1000 ids per call.
MAX_MODIFY_IDS = 1000


class GmailClient(ApiClient):
    """One mailbox's Gmail API. ``user_id`` "me" is the token's own mailbox."""

    def __init__(
        self,
        access_token: AccessTokenSource,
        *,
        base_url: str = DEFAULT_BASE_URL,
        user_id: str = "me",
        **options: Unpack[HttpOptions],
    ) -> None:
        self._users = f"/gmail/v1/users/{quote(user_id, safe='@')}"
        self._http = AuthorizedHttp(RULES, access_token, base_url=base_url, **options)

    # --- transport -------------------------------------------------------------------

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return await self._http.json(method, self._users + path, **kwargs)

    # --- reading ---------------------------------------------------------------------

    async def get_profile(self) -> Profile:
        return Profile.from_json(await self._json("GET", "/profile"))

    async def list_messages(
        self,
        *,
        q: str | None = None,
        label_ids: Iterable[str] = (),
        page_token: str | None = None,
        max_results: int | None = None,
        include_spam_trash: bool = False,
    ) -> MessagePage:
        """One page of message ids, newest first (Gmail's order). Every label in
        ``label_ids`` must be on a message for it to be listed."""
        params = [("labelIds", label) for label in label_ids]
        if q:
            params.append(("q", q))
        if page_token:
            params.append(("pageToken", page_token))
        if max_results is not None:
            params.append(("maxResults", str(max_results)))
        if include_spam_trash:
            params.append(("includeSpamTrash", "true"))
        return MessagePage.from_json(await self._json("GET", "/messages", params=params))

    async def iter_messages(
        self,
        *,
        q: str | None = None,
        label_ids: Iterable[str] = (),
        page_size: int = 500,
        include_spam_trash: bool = False,
    ) -> AsyncIterator[MessageRef]:
        """Every matching message id, newest first, page after page."""
        labels = tuple(label_ids)
        token: str | None = None
        while True:
            page = await self.list_messages(
                q=q,
                label_ids=labels,
                page_token=token,
                max_results=page_size,
                include_spam_trash=include_spam_trash,
            )
            for ref in page.messages:
                yield ref
            if not page.next_page_token:
                return
            token = page.next_page_token

    def _get_params(self, fmt: Format, metadata_headers: Iterable[str]) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = [("format", fmt)]
        if fmt == "metadata":
            params += [("metadataHeaders", h) for h in metadata_headers]
        return params

    async def get_message(
        self, message_id: str, *, format: Format = "minimal", metadata_headers: Iterable[str] = ()
    ) -> Message:
        """One message; ``format="raw"`` gives its exact bytes in ``Message.raw``.

        :raises MessageNotInMailbox: the message was deleted for good.
        """
        data = await self._json(
            "GET",
            f"/messages/{quote(message_id, safe='')}",
            params=self._get_params(format, metadata_headers),
            not_found=message_missing(message_id),
        )
        return Message.from_json(data)

    async def batch_get_messages(
        self,
        message_ids: Sequence[str],
        *,
        format: Format = "metadata",
        metadata_headers: Iterable[str] = (),
    ) -> dict[str, Message | ProviderError]:
        """Many messages through the batch endpoint, up to 100 per HTTP request.

        The answer maps every id, in the order asked, to its message or to the error of
        that one message (:class:`MessageNotInMailbox` when deleted): one bad message
        never fails the others. Throttled or failed parts are retried like single calls.
        """
        params = urlencode(self._get_params(format, metadata_headers))
        results: dict[str, Message | ProviderError] = {}
        for start in range(0, len(message_ids), wire.MAX_BATCH):
            chunk = list(dict.fromkeys(message_ids[start : start + wire.MAX_BATCH]))
            requests = {
                f"item{n}": wire.BatchRequest(
                    f"item{n}",
                    "GET",
                    f"{self._users}/messages/{quote(mid, safe='')}?{params}",
                )
                for n, mid in enumerate(chunk)
            }
            ids = {f"item{n}": mid for n, mid in enumerate(chunk)}
            results.update(await self._run_batch(requests, ids))
        return {mid: results[mid] for mid in message_ids}

    async def batch_get_metadata(
        self, message_ids: Sequence[str], headers: Iterable[str] = ()
    ) -> dict[str, Message | ProviderError]:
        """Headers and labels of many messages (bodies stay at Google)."""
        return await self.batch_get_messages(
            message_ids, format="metadata", metadata_headers=headers
        )

    async def _run_batch(
        self, requests: dict[str, wire.BatchRequest], ids: Mapping[str, str]
    ) -> dict[str, Message | ProviderError]:
        results: dict[str, Message | ProviderError] = {}
        pending = dict(requests)
        throttled = server = 0
        refreshed = False
        refresh = self._http.refresh_access_token
        while pending:
            content_type, body = wire.encode_requests(list(pending.values()))
            response = await self._http.send(
                "POST", "/batch/gmail/v1", content=body, headers={"Content-Type": content_type}
            )
            parts = wire.parse_responses(response.headers.get("content-type", ""), response.content)
            again: dict[str, GmailFailure] = {}
            for part in parts:
                request = pending.get(part.content_id)
                if request is None:
                    continue
                mid = ids[part.content_id]
                if 200 <= part.status < 300:
                    results[mid] = Message.from_json(part.json())
                    del pending[part.content_id]
                    continue
                failure = GmailFailure.read(part.status, part.body, part.headers)
                kind = classify(failure)
                if (
                    (kind is Retry.REFRESH_TOKEN and not refreshed and refresh is not None)
                    or (
                        kind is Retry.THROTTLED
                        and self._http.may_wait(throttled, failure.retry_after)
                    )
                    or (kind is Retry.SERVER and server < self.retry.server_attempts)
                ):
                    again[part.content_id] = failure
                else:
                    results[mid] = to_error(failure, message_missing(mid))
                    del pending[part.content_id]
            missing = set(pending) - {p.content_id for p in parts}
            if missing:
                raise ProtocolError("Gmail's batch answer left out some of the messages asked for.")
            if not pending:
                break
            kinds = {classify(f) for f in again.values()}
            if Retry.REFRESH_TOKEN in kinds and refresh is not None:
                refreshed = True
                await refresh()
            if Retry.THROTTLED in kinds:
                throttled += 1
                waits = [f.retry_after for f in again.values() if f.retry_after is not None]
                await self._http.sleep(self._http.backoff(throttled, max(waits) if waits else None))
            elif Retry.SERVER in kinds:
                server += 1
                await self._http.sleep(self._http.backoff(server, None))
        return results

    async def list_history(
        self,
        start_history_id: int,
        *,
        history_types: Iterable[str] = (),
        label_id: str | None = None,
        page_size: int = 500,
    ) -> History:
        """Every change after ``start_history_id``, all pages, oldest first.

        :raises HistoryExpired: Gmail no longer has changes that old (or never had that
            id): the caller must resync in full, not retry.
        """
        base = [("startHistoryId", str(start_history_id)), ("maxResults", str(page_size))]
        base += [("historyTypes", t) for t in history_types]
        if label_id:
            base.append(("labelId", label_id))
        records: list[HistoryRecord] = []
        token: str | None = None
        while True:
            params = [*base, ("pageToken", token)] if token else base
            data = await self._json(
                "GET", "/history", params=params, not_found=history_expired(start_history_id)
            )
            records.extend(HistoryRecord.from_json(r) for r in data.get("history", ()))
            token = data.get("nextPageToken") or None
            if not token:
                history_id = data.get("historyId")
                if history_id is None:
                    raise ProtocolError("Gmail's history answer lacks its historyId.")
                return History(tuple(records), int(history_id))

    async def list_labels(self) -> tuple[Label, ...]:
        data = await self._json("GET", "/labels")
        return tuple(Label.from_json(label) for label in data.get("labels", ()))

    # --- changing --------------------------------------------------------------------

    async def create_label(self, name: str) -> Label:
        body = {"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"}
        return Label.from_json(await self._json("POST", "/labels", json=body))

    async def modify_message(
        self, message_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> Message:
        """Add and remove labels: archive = remove INBOX, read = remove UNREAD.

        :raises ProviderRejected: a label that cannot be set (SENT, DRAFT, unknown).
        :raises MessageNotInMailbox: the message was deleted for good.
        """
        body = {"addLabelIds": list(add), "removeLabelIds": list(remove)}
        data = await self._json(
            "POST",
            f"/messages/{quote(message_id, safe='')}/modify",
            json=body,
            not_found=message_missing(message_id),
        )
        return Message.from_json(data)

    async def batch_modify(
        self, message_ids: Sequence[str], *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        added, removed = list(add), list(remove)
        for start in range(0, len(message_ids), MAX_MODIFY_IDS):
            body = {
                "ids": list(message_ids[start : start + MAX_MODIFY_IDS]),
                "addLabelIds": added,
                "removeLabelIds": removed,
            }
            await self._json("POST", "/messages/batchModify", json=body)

    async def trash(self, message_id: str) -> Message:
        return Message.from_json(
            await self._json(
                "POST",
                f"/messages/{quote(message_id, safe='')}/trash",
                not_found=message_missing(message_id),
            )
        )

    async def untrash(self, message_id: str) -> Message:
        return Message.from_json(
            await self._json(
                "POST",
                f"/messages/{quote(message_id, safe='')}/untrash",
                not_found=message_missing(message_id),
            )
        )

    async def send_message(self, raw: bytes, *, thread_id: str | None = None) -> Message:
        """Send ``raw`` (RFC 5322 bytes); Gmail files the SENT copy itself, so never
        append one. ``thread_id`` keeps a reply in its conversation (Gmail also needs
        References/In-Reply-To and the same Subject).

        :raises MessageTooLarge: over Gmail's 25 MB limit, checked before sending.
        """
        check_message_size(policy_for("gmail", None), len(raw))
        body: dict[str, str] = {"raw": b64url_encode(raw)}
        if thread_id:
            body["threadId"] = thread_id
        return Message.from_json(await self._json("POST", "/messages/send", json=body))

    async def insert_message(
        self, raw: bytes, *, label_ids: Iterable[str] = (), thread_id: str | None = None
    ) -> Message:
        """Put ``raw`` into the mailbox without sending it (like IMAP APPEND)."""
        body: dict[str, Any] = {"raw": b64url_encode(raw), "labelIds": list(label_ids)}
        if thread_id:
            body["threadId"] = thread_id
        return Message.from_json(await self._json("POST", "/messages", json=body))

    async def watch(
        self, topic_name: str, *, label_ids: Iterable[str] = (), label_filter: str = "include"
    ) -> Watch:
        """Ask Gmail to push changes to a Pub/Sub topic; renew before ``expiration``."""
        body: dict[str, Any] = {"topicName": topic_name}
        labels = list(label_ids)
        if labels:
            body["labelIds"] = labels
            body["labelFilterBehavior"] = label_filter
        return Watch.from_json(await self._json("POST", "/watch", json=body))

    async def stop(self) -> None:
        await self._json("POST", "/stop")
