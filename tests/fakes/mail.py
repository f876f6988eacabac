"""Small RFC 5322 messages for the provider tests (Gmail, Microsoft Graph)."""

from __future__ import annotations

import itertools

_ids = itertools.count(1)


def raw_message(
    subject: str = "Hello",
    *,
    sender: str = "alice@example.test",
    to: str = "user@example.test",
    body: str = "Hi there.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    date: str = "Tue, 01 Dec 2026 10:00:00 +0000",
) -> bytes:
    message_id = message_id or f"<m{next(_ids)}@example.test>"
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: {message_id}",
    ]
    if in_reply_to:
        lines += [f"In-Reply-To: {in_reply_to}", f"References: {in_reply_to}"]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode()
