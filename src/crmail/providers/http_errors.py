"""A mail API's final HTTP failure as a :mod:`crmail.errors` exception, in a user's words.

Gmail and Microsoft Graph answer alike (401: the token; 403: access refused or a
permission missing; 404: gone; 5xx: trouble); only their names and what marks
throttling or a missing permission differ, which each provider's ``to_error`` decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from crmail.errors import (
    AuthFailed,
    ProtocolError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from crmail.providers import OAUTH2_REFUSED_HINT
from crmail.providers.http import NotFoundFactory


class SaidFailure(Protocol):
    """One non-2xx answer with the provider's own words."""

    @property
    def status(self) -> int: ...

    @property
    def message(self) -> str: ...

    @property
    def retry_after(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ProviderWords:
    #: who grants and refuses access ("Google", "Microsoft")
    company: str
    #: the API ("Gmail", "Microsoft Graph")
    service: str
    #: who limits and speaks in error messages ("Gmail", "Microsoft")
    speaker: str
    #: the message and hint when a permission crmail needs was not granted
    scope_refused: str
    scope_hint: str


def final_error(
    failure: SaidFailure,
    words: ProviderWords,
    *,
    throttled: bool,
    scope_missing: bool,
    not_found: NotFoundFactory | None,
) -> ProviderError:
    """The exception for ``failure`` once the client has stopped retrying."""
    status = failure.status
    said = f" {words.speaker} said: {failure.message}" if failure.message else ""
    if status == 401:
        return AuthFailed(
            f"{words.company} no longer accepts crmail's access to this mailbox.",
            hint=OAUTH2_REFUSED_HINT,
        )
    if throttled:
        return ProviderRateLimited(
            f"{words.speaker} is limiting how fast crmail may work on this mailbox; sync "
            "goes on by itself a little later.",
            retry_after=failure.retry_after,
        )
    if status == 403 and scope_missing:
        return AuthFailed(words.scope_refused, hint=words.scope_hint)
    if status == 403:
        return ProviderRejected(f"{words.company} refused crmail access to this mailbox.{said}")
    if status == 404 and not_found is not None:
        return not_found(failure.message)
    if status == 404:
        return ProviderRejected(f"{words.service} does not know what crmail asked for.{said}")
    if status >= 500:
        return ProviderUnavailable(
            f"{words.service} is having trouble (HTTP {status}) and did not recover after "
            "several tries; sync goes on by itself later."
        )
    if 400 <= status < 500:
        return ProviderRejected(f"{words.service} refused the request.{said}")
    return ProtocolError(f"{words.service} answered something unexpected (HTTP {status}).")
