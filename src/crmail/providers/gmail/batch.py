"""Gmail's batch endpoint wire format: one multipart/mixed request of HTTP requests,
one multipart/mixed answer of HTTP responses (Google's "Batching requests" guide).

Each part is ``Content-Type: application/http`` with a ``Content-ID``; Google answers
part ``<x>`` with ``<response-x>``, in any order.
"""

from __future__ import annotations

import email.message
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any

from crmail.errors import ProtocolError

__all__ = ["MAX_BATCH", "BatchRequest", "BatchResponse", "encode_requests", "parse_responses"]

#: Gmail accepts at most 100 calls in one batch.
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class BatchRequest:
    content_id: str
    method: str
    path_and_query: str  # absolute path, e.g. /gmail/v1/users/me/messages/1?format=raw


@dataclass(frozen=True, slots=True)
class BatchResponse:
    content_id: str  # the request's id, without Google's "response-" prefix
    status: int
    headers: Mapping[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ProtocolError("Gmail's batch answer holds a part that is not JSON.") from exc


def encode_requests(requests: Sequence[BatchRequest]) -> tuple[str, bytes]:
    """The Content-Type (with its boundary) and the body of one batch request."""
    boundary = "crmail_batch_" + secrets.token_hex(12)
    chunks = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{r.content_id}>\r\n\r\n"
        f"{r.method} {r.path_and_query} HTTP/1.1\r\n\r\n"
        for r in requests
    ]
    body = "".join(chunks) + f"--{boundary}--\r\n"
    return f"multipart/mixed; boundary={boundary}", body.encode("ascii")


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, rest = data.partition(sep)
        if found:
            return head, rest
    return data, b""


def _headers(head: bytes) -> dict[str, str]:
    parsed = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
    return {k.lower(): str(v) for k, v in parsed.items()}


def parse_responses(content_type: str, body: bytes) -> list[BatchResponse]:
    """The parts of a batch answer; raises :class:`ProtocolError` when it is not one."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/mixed" or not isinstance(boundary, str):
        raise ProtocolError("Gmail's batch answer is not multipart/mixed.")
    delimiter = b"--" + boundary.encode("ascii")
    pieces = body.split(delimiter)
    responses = []
    # pieces[0] is the preamble; a piece starting with "--" follows the closing delimiter.
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        part_head, http = _split_head(piece.lstrip(b"\r\n"))
        part_headers = _headers(part_head)
        status_and_head, http_body = _split_head(http.lstrip(b"\r\n"))
        status_line, _, response_head = status_and_head.partition(b"\n")
        fields = status_line.split()
        if len(fields) < 2 or not fields[1].isdigit():
            raise ProtocolError("Gmail's batch answer holds a part without an HTTP status.")
        content_id = part_headers.get("content-id", "").strip().strip("<>")
        content_id = content_id.removeprefix("response-")
        # The part ends with the CRLF that belongs to the next delimiter line.
        http_body = http_body.removesuffix(b"\r\n").removesuffix(b"\n")
        responses.append(
            BatchResponse(content_id, int(fields[1]), _headers(response_head), http_body)
        )
    return responses
