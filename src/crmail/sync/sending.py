"""Sending: hand a queued message to SMTP once, then file exactly one copy in Sent.

A send moves through stages recorded in its outbox action, each committed before the
next step starts:

    queued → sending → sent → (Sent copy filed) done

- "sending" is written *before* the SMTP transaction. Finding an action in that stage
  after a crash means we cannot know whether the server accepted the message; the CRM
  does not send it again on its own (a duplicate to a customer is worse than a retry
  button). It looks for the message in the Sent folder — servers that file their own
  copy answer the question — and otherwise marks the send "unknown" for the user.
- "sent" is written as soon as SMTP accepted; filing the Sent copy is idempotent (it
  searches Sent for the Message-ID before appending), so it resumes safely. A failed
  append never causes a resend.
- Servers that file a copy themselves (Gmail, Microsoft 365) are recognised on the
  first send and never get a second copy appended.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from urllib.parse import parse_qs, unquote, urlsplit

from crmail.crypto import SecretBox
from crmail.domain.folders import Role
from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import ConnectFailed, CrmailError, InvalidInput, SendFailed
from crmail.providers import smtp
from crmail.storage import mail, outbound, outbox
from crmail.storage.db import Database
from crmail.sync.send_stages import (
    handoff_refused,
    interrupted_unknown,
    mark_sending,
    message_id_of,
)
from crmail.sync.syncback import SyncBack

log = logging.getLogger(__name__)

#: how long to look for a copy the server files itself before appending one
SERVER_COPY_WAITS = (0.2, 0.4, 0.8)


def smtp_settings_for(
    account: mail.AccountInfo, box: SecretBox, policy: AddressPolicy | None = None
) -> smtp.SmtpSettings:
    cfg = account.settings
    secrets = box.open(account.secret)
    if not cfg.get("smtp_host"):
        raise InvalidInput(
            f"{account.email} has no SMTP server configured",
            hint="add the SMTP host and port in Settings → Email",
        )
    # Some relays (a local MTA, an IP-allow-listed smarthost) take mail without a login.
    login = cfg.get("smtp_auth", True) is not False
    return smtp.SmtpSettings(
        host=str(cfg["smtp_host"]),
        port=int(str(cfg.get("smtp_port") or 587)),
        security=str(cfg.get("smtp_security") or "starttls"),
        username=str(cfg.get("smtp_username") or cfg.get("username") or account.email)
        if login
        else None,
        password=(secrets.get("smtp_password") or secrets.get("password")) if login else None,
        oauth2_token=secrets.get("oauth2_token") if login else None,
        ca_file=str(cfg["ca_file"]) if cfg.get("ca_file") else None,
        address_policy=policy,
    )


def smtp_settings_from_url(url: str) -> smtp.SmtpSettings:
    """``smtp://user:pass@host:587`` (STARTTLS), ``smtps://...`` (TLS), ``?security=none``."""
    u = urlsplit(url)
    if u.scheme not in ("smtp", "smtps") or not u.hostname:
        raise InvalidInput("CRMAIL_DEFAULT_SMTP_URL must look like smtp://user:pass@host:587")
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    security = q.get("security") or ("tls" if u.scheme == "smtps" else "starttls")
    return smtp.SmtpSettings(
        host=u.hostname,
        port=u.port or (465 if u.scheme == "smtps" else 587),
        security=security,
        username=unquote(u.username) if u.username else None,
        password=unquote(u.password) if u.password else None,
        ca_file=q.get("ca_file"),
    )


class Sending:
    """Runs "send" actions for one account (or, with ``account=None``, the default provider)."""

    def __init__(
        self,
        db: Database,
        settings: smtp.SmtpSettings,
        *,
        account: mail.AccountInfo | None = None,
        syncback: SyncBack | None = None,
        accepted: dict[int, dict[str, object]] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.account = account
        self.syncback = syncback
        #: "sent" stages the server accepted but the database refused to record (a full
        #: disk), by action id: this process knows they went out, so when the action runs
        #: again it records them rather than call the send "unknown". Pass the same dict
        #: to the next Sending of the account to keep that knowledge across reconnects.
        self.accepted: dict[int, dict[str, object]] = {} if accepted is None else accepted

    async def run(self, action: outbox.Action) -> None:
        stage = str(action.payload.get("stage", "queued"))
        if stage == "queued":
            await self._hand_to_smtp(action)
            stage = "sent"
        elif stage == "sending" and action.id in self.accepted:
            await self._record_sent(action, self.accepted[action.id])
            stage = "sent"
        elif stage == "sending":
            stage = await self._after_interrupted_send(action)
        if stage == "sent":
            await self._file_sent_copy(action)

    # --- SMTP ----------------------------------------------------------------------

    async def _hand_to_smtp(self, action: outbox.Action) -> None:
        mid = self._message_id(action)
        raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
        # Last step before the handoff: with several processes, this write is fenced by
        # the account's lease (crmail.storage.leases), so an owner that lost the account
        # stops here instead of sending what the new owner may send too.
        await mark_sending(self.db, action, mid)
        try:
            result = await smtp.send(
                self.settings,
                mail_from=str(action.payload["mail_from"]),
                recipients=_strings(action.payload.get("recipients")),
                raw=raw,
            )
        except (SendFailed, ConnectFailed, CrmailError) as exc:
            # Refused before or during the SMTP transaction: nothing was delivered.
            await handoff_refused(self.db, action, mid, exc, error_key="last_smtp_error")
            raise
        sent = {
            **action.payload,
            "stage": "sent",
            "accepted": list(result.accepted),
            "refused": result.refused,
        }
        self.accepted[action.id] = sent
        await self._record_sent(action, sent)

    async def _record_sent(self, action: outbox.Action, sent: dict[str, object]) -> None:
        mid = self._message_id(action)
        await self.db.write(lambda s: outbound.record_sent(s, action, mid, sent, self._answering()))
        self.accepted.pop(action.id, None)

    async def _after_interrupted_send(self, action: outbox.Action) -> str:
        """A crash hit between "sending" and "sent": did the server take the message?"""
        if self.account is not None and await self._in_sent_folder(action, waits=()):
            log.info("action %s: interrupted send found in Sent: it went out", action.id)
            await self._record_sent(action, {**action.payload, "stage": "sent"})
            return "sent"
        await interrupted_unknown(self.db, action, self._message_id(action), "the mail server")

    # --- the Sent copy -------------------------------------------------------------

    async def _file_sent_copy(self, action: outbox.Action) -> None:
        mid = self._message_id(action)
        if self.account is None or self.syncback is None:
            await self.db.write(lambda s: outbox.complete(s, action.id))
            return
        saves = self.account.settings.get("server_saves_sent")
        waits = () if saves is False else SERVER_COPY_WAITS
        found = await self._in_sent_folder(action, waits=waits)
        if not found:
            raw = await self.db.read(lambda s: outbound.raw_of(s, mid))
            folder = await self.syncback.folder_for(Role.SENT)
            await self.syncback.client.append(folder, raw, flags=["\\Seen"])
        learned = found if saves is None else None
        account_id = self.account.id
        await self.db.write(lambda s: outbound.sent_filed(s, account_id, action.id, learned))
        if learned is not None:
            self.account = replace(
                self.account, settings={**self.account.settings, "server_saves_sent": learned}
            )

    async def _in_sent_folder(self, action: outbox.Action, *, waits: tuple[float, ...]) -> bool:
        assert self.syncback is not None
        mid = self._message_id(action)
        header = await self.db.read(lambda s: outbox.message_id_header(s, mid))
        if not header:
            return False
        folder = await self.syncback.folder_for(Role.SENT)
        client = self.syncback.client
        for delay in (0.0, *waits):
            if delay:
                await asyncio.sleep(delay)
            await client.select(folder, readonly=True)
            if await client.uid_search(f'HEADER Message-ID "<{header}>"'):
                return True
        return False

    def _answering(self) -> tuple[int, int] | None:
        """(account, user) whose copy of the replied-to message gets \\Answered."""
        return (self.account.id, self.account.user_id) if self.account is not None else None

    @staticmethod
    def _message_id(action: outbox.Action) -> int:
        return message_id_of(action)


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
