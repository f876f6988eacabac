"""Attachments over 3 MB through Microsoft Graph upload sessions.

Graph takes at most 3 MB of attachments inline (``sendMail``, a POST of a
fileAttachment). Larger files go onto a draft through an upload session
(learn.microsoft.com, attachment-createuploadsession): ``POST
/me/messages/{id}/attachments/createUploadSession`` answers an ``uploadUrl`` (opaque,
pre-authorized: it must be PUT to *without* the bearer token) and the ranges expected
next; the bytes go up in ``Content-Range`` pieces, each a multiple of 320 KiB but the
last; the answer to a piece says the next expected ranges (200), the last one 201.
A range the session did not expect answers 416; an expired session 404. Files may be
up to 150 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from crmail.domain.attachments import UPLOAD_SESSION_LIMIT
from crmail.errors import MessageTooLarge, ProviderRejected, ProviderUnavailable

__all__ = ["PIECE", "UPLOAD_SESSION_LIMIT", "UploadSession", "upload"]

#: Graph wants every piece but the last to be a multiple of 320 KiB; ten of them
#: (3.125 MiB) keep each PUT under the 4 MB a single request may carry
PIECE = 10 * 320 * 1024


@dataclass(frozen=True, slots=True)
class UploadSession:
    upload_url: str
    #: where the next piece starts ("0-": from the beginning)
    next_expected: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadSession:
        url = data.get("uploadUrl")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ProviderRejected("Microsoft Graph answered an upload session without a URL.")
        ranges = data.get("nextExpectedRanges")
        return cls(url, tuple(str(r) for r in ranges) if isinstance(ranges, list) else ("0-",))


def _start(ranges: tuple[str, ...] | list[Any] | None) -> int | None:
    """Where the first expected range starts; None: nothing more is expected."""
    if not ranges:
        return None
    first = str(ranges[0]).split("-", 1)[0]
    try:
        return int(first)
    except ValueError as exc:
        raise ProviderRejected(f"Microsoft Graph expects an unreadable range {first!r}.") from exc


async def upload(http: httpx.AsyncClient, session: UploadSession, content: bytes) -> None:
    """PUT ``content`` into the session, piece by piece, from where it expects.

    :raises ProviderRejected: a range refused (416) or the session gone (404: expired).
    :raises ProviderUnavailable: the upload host could not be reached.
    """
    size = len(content)
    if size > UPLOAD_SESSION_LIMIT:
        raise MessageTooLarge(f"An attachment of {size:,} bytes is over Outlook's 150 MB.")
    offset = _start(session.next_expected)
    while offset is not None and offset < size:
        end = min(offset + PIECE, size)
        try:
            answer = await http.put(
                session.upload_url,
                content=content[offset:end],
                headers={
                    "Content-Range": f"bytes {offset}-{end - 1}/{size}",
                    "Content-Type": "application/octet-stream",
                },
            )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                "crmail could not reach Microsoft's attachment upload; it is tried again later."
            ) from exc
        if answer.status_code == 201:
            return
        if answer.status_code == 416:
            raise ProviderRejected(
                f"Microsoft refused the attachment piece at bytes {offset}-{end - 1} "
                "(not the range it expected)."
            )
        if answer.status_code == 404:
            raise ProviderRejected("The attachment upload session expired before it finished.")
        if answer.status_code >= 500:
            raise ProviderUnavailable(
                f"Microsoft's attachment upload answered {answer.status_code}; it is tried "
                "again later."
            )
        if answer.status_code != 200:
            raise ProviderRejected(
                f"Microsoft's attachment upload answered {answer.status_code}: {answer.text[:200]}"
            )
        data = answer.json()
        offset = _start(data.get("nextExpectedRanges") if isinstance(data, dict) else None)
    if offset is not None:
        raise ProviderRejected("Microsoft's attachment upload expected more than the file holds.")
