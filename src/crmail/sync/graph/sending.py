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
"sending" after a crash is looked for in Sent Items by its Message-ID: there, it went
out (recorded sent, never sent again); not there (not sent, or its copy not filed yet:
Graph cannot tell the two apart) it is marked "unknown" for the user and never sent
again on its own.

Over 3 MB, when the account allows large attachments (``large_attachments``), the
message goes through a draft instead: its MIME without the attachments becomes a draft
(``POST /me/messages``, Message-ID kept), each file is attached (inline up to 3 MB, an
upload session above), then the draft is sent. Stages: queued → drafting → drafted
(the draft's id recorded) → sending → sent. A crash anywhere resumes with the same
draft: "drafting" looks for it in Drafts by Message-ID before making one; "drafted"
and "sending" look for it there too, then attach only the files it lacks and send it.
A draft no longer in Drafts was either sent (a sent draft leaves Drafts: its copy is
in Sent Items, found by Message-ID, and the message is recorded sent) or deleted in
Outlook before it was sent (no copy in Sent Items: the send fails in those words and
nothing goes out; a draft moved to Deleted Items is not sent from there). No second
draft, no second send, and never "sent" for a message Outlook does not have as sent.
"""

from __future__ import annotations

import email.policy
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from crmail.domain.attachments import account_policy, check_attachments
from crmail.errors import CrmailError, MessageNotInMailbox, SendFailed
from crmail.providers.graph import Attachment, GraphClient, check_outlook_attachments
from crmail.providers.graph.client import INLINE_ATTACHMENT_LIMIT
from crmail.storage import outbound, outbox
from crmail.sync.send_stages import ApiSending, handoff_refused, message_id_of

#: the payload key of the draft a large message goes out through
DRAFT = "graph_draft_id"
#: the stages of the draft route before "sending"
DRAFT_STAGES = ("drafting", "drafted")
#: attempts that look for the Sent Items copy of a vanished draft before it counts as
#: deleted (the outbox's backoff spaces them by about 1, 2 and 4 s)
SENT_COPY_LOOKS = 3
SENT_COPY_PENDING = (
    "The draft has left Drafts and no copy is in Sent Items yet; crmail looks again "
    "shortly and does not send it again."
)
DRAFT_DELETED = (
    "The draft was deleted before it was sent: Outlook has it neither in Drafts nor in "
    "Sent Items, so nothing went out and crmail did not send it again. Send the message "
    "again to send it."
)


@dataclass(frozen=True, slots=True)
class Split:
    """A message taken apart for the draft route."""

    message_id: str
    without_attachments: bytes
    attachments: list[Attachment]


def _parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def _attachments(parsed: EmailMessage) -> list[tuple[EmailMessage, Attachment]]:
    found = []
    for part in parsed.iter_attachments():
        content = part.get_payload(decode=True)
        data = content if isinstance(content, bytes) else b""
        name = part.get_filename() or "attachment"
        found.append((part, Attachment(name, data, part.get_content_type())))
    return found


def check_outlook_policy(raw: bytes) -> None:
    """:raises MessageTooLarge, AttachmentTypeNotAllowed: Outlook would refuse it."""
    check_outlook_attachments([a for _, a in _attachments(_parse(raw))])


def split(raw: bytes) -> Split:
    parsed = _parse(raw)
    found = _attachments(parsed)
    gone = {id(part) for part, _ in found}
    for part in parsed.walk():
        if part.is_multipart():
            kept = [p for p in part.get_payload() if id(p) not in gone]
            part.set_payload(kept)
    return Split(
        str(parsed.get("Message-ID", "")).strip(), parsed.as_bytes(), [a for _, a in found]
    )


class GraphSending(ApiSending[GraphClient]):
    handed_to = "Microsoft"

    @property
    def large_allowed(self) -> bool:
        return bool(self.account.settings.get("large_attachments"))

    async def run(self, action: outbox.Action) -> None:
        stage = str(action.payload.get("stage", "queued"))
        if stage in DRAFT_STAGES or (stage == "sending" and action.payload.get(DRAFT)):
            await self._through_draft(action)
            account_id = self.account.id
            await self.db.write(lambda s: outbound.sent_filed(s, account_id, action.id, None))
            return
        await super().run(action)

    async def check(self, action: outbox.Action, raw: bytes) -> None:
        try:
            if self.large_allowed:
                files = [(a.name, len(a.content)) for _, a in _attachments(_parse(raw))]
                check_attachments(account_policy(self.account.settings, "graph"), files)
            else:
                check_outlook_policy(raw)
        except CrmailError as exc:
            mid = message_id_of(action)
            back = {**action.payload, "last_send_error": exc.message}
            error = exc.message
            await self.db.write(
                lambda s: outbound.send_progress(s, action.id, mid, back, "failed", error)
            )
            raise

    async def _send(self, action: outbox.Action) -> None:
        mid = message_id_of(action)
        raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
        if self.large_allowed and len(raw) > INLINE_ATTACHMENT_LIMIT:
            await self.check(action, raw)
            await self._through_draft(action, raw)
            return
        await super()._send(action)

    async def hand_off(self, action: outbox.Action, raw: bytes) -> dict[str, Any]:
        await self.client.send_mime(raw)
        return {}

    async def went_out(self, action: outbox.Action, mid: int) -> bool:
        raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
        # Graph's internetMessageId is the header as sent, angle brackets included.
        header = str(_parse(raw).get("Message-ID", "")).strip()
        return bool(header) and await self.client.find_sent(header) is not None

    # --- the draft route (large attachments) ----------------------------------------------

    async def _through_draft(self, action: outbox.Action, raw: bytes | None = None) -> None:
        mid = message_id_of(action)
        if raw is None:
            raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
        parts = split(raw)
        payload = dict(action.payload)

        async def progress(stage: str, **extra: object) -> None:
            payload.update(stage=stage, **extra)
            saved = dict(payload)
            await self.db.write(
                lambda s: outbound.send_progress(s, action.id, mid, saved, "sending")
            )

        stage = str(payload.get("stage", "queued"))
        resumed = stage in ("drafted", "sending")
        try:
            if stage == "queued":
                await progress("drafting")
                stage = "drafting"
            if stage == "drafting":
                # A crash after Graph made the draft but before its id was recorded
                # leaves it in Drafts: found by Message-ID, it is used, not doubled.
                found = await self.client.find_draft(parts.message_id)
                if found is None:
                    found = await self.client.create_draft_mime(parts.without_attachments)
                await progress("drafted", **{DRAFT: found.id})
                stage = "drafted"
            draft = str(payload[DRAFT])
            if resumed:
                # Since the interrupted attempt the draft may have been sent (it left
                # Drafts for Sent Items) or deleted in Outlook (out of Drafts, often
                # into Deleted Items, where it must not be sent from).
                still = await self.client.find_draft(parts.message_id)
                if still is None:
                    await self._sent_or_deleted(parts.message_id, action.attempts)
                    stage = "sent"
                else:
                    draft = still.id
            if stage == "drafted":
                await self._attach_missing(draft, parts.attachments)
                await progress("sending")
                stage = "sending"
            if stage == "sending":
                try:
                    await self.client.send_draft(draft)
                except MessageNotInMailbox:
                    # Gone between the look and the send (or a retried request whose
                    # first copy went through): Sent Items tells which.
                    await self._sent_or_deleted(parts.message_id, action.attempts)
        except CrmailError as exc:
            if getattr(exc, "retryable", False):
                raise  # the stage and draft are kept: the retry resumes with them
            await handoff_refused(self.db, action, mid, exc)
            raise
        await self._record_sent(action, mid, {DRAFT: payload[DRAFT]})

    async def _sent_or_deleted(self, message_id: str, attempt: int) -> None:
        """The draft is gone from Drafts: sent if its copy is in Sent Items.

        Outlook files the Sent Items copy a moment after it accepts a send, so a copy
        not there yet is looked for again on the next attempts (with the outbox's
        backoff) before the draft is called deleted.

        :raises SendFailed: no copy: temporary on the first looks, then permanent (it
            was deleted before it was sent).
        """
        if await self.client.find_sent(message_id) is None:
            if attempt < SENT_COPY_LOOKS:
                raise SendFailed(SENT_COPY_PENDING, permanent=False)
            raise SendFailed(DRAFT_DELETED, permanent=True)

    async def _attach_missing(self, draft: str, files: list[Attachment]) -> None:
        """Attach what the draft lacks (by name: Graph's attachment size is not the
        file's): an attempt cut short leaves the files it finished, never half a file."""
        have = Counter(name for name, _ in await self.client.attachments_of(draft))
        for a in files:
            if have[a.name] > 0:
                have[a.name] -= 1
                continue
            await self.client.add_attachment(draft, a)
