"""Gmail's HTTP error answers translated into :mod:`crmail.errors`, in a user's words.

Gmail answers errors as ``{"error": {"code", "message", "errors": [{"reason"}],
"status"}}``. What the client does with each (retry, refresh the token, give up) is
decided by :func:`classify`; the exception raised when it gives up by :func:`to_error`.
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
    "RULES",
    "GmailFailure",
    "Retry",
    "classify",
    "history_expired",
    "message_missing",
    "parse_retry_after",
    "to_error",
]

_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})


@dataclass(frozen=True, slots=True)
class GmailFailure:
    """One non-2xx answer, read."""

    status: int
    message: str
    reasons: tuple[str, ...]
    retry_after: float | None

    @classmethod
    def read(
        cls, status: int, body: bytes, headers: Mapping[str, str], *, now: float | None = None
    ) -> GmailFailure:
        message, reasons = "", tuple[str, ...]()
        try:
            data = json.loads(body or b"{}")
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                message = str(error.get("message") or "")
                reasons = tuple(
                    str(e.get("reason", ""))
                    for e in error.get("errors") or ()
                    if isinstance(e, dict)
                )
                if error.get("status"):
                    reasons += (str(error["status"]),)
        except (ValueError, UnicodeDecodeError):
            pass
        return cls(status, message, reasons, parse_retry_after(headers.get("retry-after"), now))


def classify(failure: GmailFailure) -> Retry:
    if failure.status == 401:
        return Retry.REFRESH_TOKEN
    if failure.status == 429 or (
        failure.status == 403 and _RATE_REASONS.intersection(failure.reasons)
    ):
        return Retry.THROTTLED
    if failure.status >= 500:
        return Retry.SERVER
    return Retry.NO


WORDS = ProviderWords(
    company="Google",
    service="Gmail",
    speaker="Gmail",
    scope_refused="crmail was not given the Gmail permissions it needs for this mailbox.",
    scope_hint="Reconnect the account with Google and allow every permission asked for.",
)


def to_error(failure: GmailFailure, not_found: NotFoundFactory | None = None) -> ProviderError:
    """The exception for ``failure`` once the client has stopped retrying."""
    return final_error(
        failure,
        WORDS,
        throttled=classify(failure) is Retry.THROTTLED,
        scope_missing=bool(_SCOPE_REASONS.intersection(failure.reasons)),
        not_found=not_found,
    )


def message_missing(message_id: str) -> NotFoundFactory:
    def make(_: str) -> ProviderError:
        return MessageNotInMailbox(
            f"The Gmail message {message_id} no longer exists in the mailbox "
            "(deleted for good in Gmail)."
        )

    return make


def history_expired(start_history_id: int) -> NotFoundFactory:
    def make(_: str) -> ProviderError:
        return HistoryExpired(
            f"Gmail no longer keeps the changes since history {start_history_id}: "
            "the mailbox is read again in full (nothing is duplicated)."
        )

    return make


RULES: ErrorRules[GmailFailure] = ErrorRules(
    service="Gmail",
    read=GmailFailure.read,
    classify=classify,
    to_error=to_error,
    unreachable="crmail could not reach Gmail (the network or Google is down); sync goes "
    "on by itself later.",
)
