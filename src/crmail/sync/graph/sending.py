"""Sending through Microsoft Graph: once, with Outlook's own Sent Items copy.

The CRM composed the message (MIME, with its Message-ID and, for a reply, In-Reply-To
and References); it goes out as it is through ``sendMail`` (base64 MIME), so Outlook
files the Sent Items copy itself (crmail never appends one) and puts a reply in the
conversation of the message it answers. That copy comes back through the Sent Items
delta and is recognised by its Message-ID as the message the CRM stored when it was
queued: one message, now with its Sent Items placement.

Outlook's policy is checked before anything is sent, in words: 3 MB at most through
this path and the file-type allow-list for attachments.

Stages, each committed before the next step: queued → sending → sent. A send found in
"sending" after a crash is marked "unknown" for the user and never sent again on its
own (Graph cannot be asked whether a MIME send went out before its copy is filed).
"""

from __future__ import annotations

import email.policy
from email.parser import BytesParser
from typing import Any

from crmail.errors import CrmailError
from crmail.providers.graph import Attachment, GraphClient, check_outlook_attachments
from crmail.storage import outbound, outbox
from crmail.sync.send_stages import ApiSending, message_id_of


def check_outlook_policy(raw: bytes) -> None:
    """:raises MessageTooLarge, AttachmentTypeNotAllowed: Outlook would refuse it."""
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    files = []
    for part in parsed.iter_attachments():
        content = part.get_payload(decode=True)
        data = content if isinstance(content, bytes) else b""
        files.append(Attachment(part.get_filename() or "attachment", data))
    check_outlook_attachments(files)


class GraphSending(ApiSending[GraphClient]):
    handed_to = "Microsoft"

    async def check(self, action: outbox.Action, raw: bytes) -> None:
        try:
            check_outlook_policy(raw)
        except CrmailError as exc:
            mid = message_id_of(action)
            back = {**action.payload, "last_send_error": exc.message}
            error = exc.message
            await self.db.write(
                lambda s: outbound.send_progress(s, action.id, mid, back, "failed", error)
            )
            raise

    async def hand_off(self, action: outbox.Action, raw: bytes) -> dict[str, Any]:
        await self.client.send_mime(raw)
        return {}
