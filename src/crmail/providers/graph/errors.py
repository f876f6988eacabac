"""Microsoft Graph's HTTP error answers translated into :mod:`crmail.errors`.

Graph answers errors as ``{"error": {"code", "message", "innerError"}}``. Throttling is
429 (and 503/504, which are retried like server errors, honouring Retry-After); a delta
token Graph no longer knows is 410 Gone, or a 4xx whose code is ``syncStateNotFound``
or ``resyncRequired``: only a full resync continues from there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from crmail.errors import (
    HistoryExpired,
    MessageNotInMailbox,
    ProviderError,
)
from crmail.providers.http import ErrorRules, NotFoundFactory, Retry, parse_retry_after
from crmail.providers.http_errors import ProviderWords, final_error

__all__ = [
    "RESYNC_CODES",
    "RULES",
    "GraphFailure",
    "classify",
    "delta_expired",
    "message_missing",
    "to_error",
]

#: Error codes that mean "this delta token is no good: start over" (lowercased).
RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
_ITEM_NOT_FOUND = frozenset({"erroritemnotfound", "itemnotfound", "resourcenotfound"})
_SCOPE_CODES = frozenset({"erroraccessdenied", "accessdenied", "authorization_requestdenied"})


@dataclass(frozen=True, slots=True)
class GraphFailure:
    """One non-2xx answer, read."""

    status: int
    code: str
    message: str
    retry_after: float | None

    @classmethod
    def read(
        cls, status: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> GraphFailure:
        code = message = ""
        try:
            data = json.loads(body or b"{}")
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                code = str(error.get("code") or "")
                message = str(error.get("message") or "")
        except (ValueError, UnicodeDecodeError):
            pass
        return cls(status, code, message, parse_retry_after(headers.get("retry-after"), now))

    @property
    def needs_resync(self) -> bool:
        return self.status == 410 or self.code.lower() in RESYNC_CODES


def classify(failure: GraphFailure) -> Retry:
    if failure.status == 401:
        return Retry.REFRESH_TOKEN
    if failure.status == 429:
        return Retry.THROTTLED
    if failure.status >= 500:
        return Retry.SERVER
    return Retry.NO


WORDS = ProviderWords(
    company="Microsoft",
    service="Microsoft Graph",
    speaker="Microsoft",
    scope_refused="crmail was not given the Microsoft 365 mail permissions it needs for "
    "this mailbox.",
    scope_hint="Reconnect the account with Microsoft and allow every permission asked "
    "for (your administrator may have to consent).",
)


def to_error(failure: GraphFailure, not_found: NotFoundFactory | None = None) -> ProviderError:
    """The exception for ``failure`` once the client has stopped retrying."""
    if failure.needs_resync:
        return HistoryExpired(
            "Microsoft no longer keeps the changes since crmail's last sync of this "
            "folder: the folder is read again in full (nothing is duplicated)."
        )
    return final_error(
        failure,
        WORDS,
        throttled=failure.status == 429,
        scope_missing=failure.code.lower() in _SCOPE_CODES,
        not_found=not_found,
    )


def message_missing(message_id: str) -> NotFoundFactory:
    def make(_: str) -> ProviderError:
        return MessageNotInMailbox(
            f"The Outlook message {message_id} is no longer in the mailbox (deleted in "
            "Outlook, or its id is stale)."
        )

    return make


def delta_expired(_: str) -> ProviderError:
    return HistoryExpired(
        "Microsoft does not know crmail's sync position for this folder any more: the "
        "folder is read again in full (nothing is duplicated)."
    )


RULES: ErrorRules[GraphFailure] = ErrorRules(
    service="Microsoft Graph",
    read=GraphFailure.read,
    classify=classify,
    to_error=to_error,
    unreachable="crmail could not reach Microsoft Graph (the network or Microsoft is "
    "down); sync goes on by itself later.",
)
