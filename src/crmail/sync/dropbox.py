"""crmail's own SMTP listener for BCC drop addresses (``<token>@<drop_domain>``).

Point the drop domain's MX (or a relay) at it. It takes mail for known tokens only:
- an unknown token (or another domain) is refused at RCPT with 550, so nothing is
  queued and the sender learns at once that the address is wrong;
- more than ``max_size`` bytes is refused at DATA with 552 (aiosmtpd's SIZE limit);
- anything accepted is stored, malformed or not (parse failures keep the raw bytes);
  a storage error answers 451 so the sending server retries later.
No AUTH: like any MX it receives mail addressed to it; the token is the secret.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from aiosmtpd.smtp import SMTP, Envelope, Session

from crmail.storage import drop
from crmail.storage.db import Database

log = logging.getLogger(__name__)

#: the largest message accepted: the attachment limit of the biggest providers (seed 001)
DEFAULT_MAX_SIZE = 25 * 1024 * 1024


class DropHandler:
    """aiosmtpd handler: RCPT checks the token, DATA stores the message once per account."""

    def __init__(self, db: Database, domain: str) -> None:
        self.db = db
        self.domain = domain.lower()

    async def _account(self, address: str) -> int | None:
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at or not local or (self.domain and domain.lower() != self.domain):
            return None
        return await self.db.read(lambda s: drop.account_for_token(s, local))

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if await self._account(address) is None:
            return "550 5.1.1 no such drop address"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        accounts: list[int] = []
        for rcpt in envelope.rcpt_tos:
            # Looked up again: an account removed between RCPT and DATA gets nothing.
            account_id = await self._account(rcpt)
            if account_id is not None and account_id not in accounts:
                accounts.append(account_id)
        try:
            for account_id in accounts:
                await self.db.write(partial(drop.store_drop, account_id=account_id, raw=raw))
        except Exception:
            log.exception("drop address: storing a message failed")
            return "451 4.3.0 could not store the message, try again later"
        return "250 2.0.0 OK stored"


class DropServer:
    """The listener, on the caller's event loop (``port=0`` picks a free port)."""

    def __init__(
        self,
        db: Database,
        *,
        domain: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self.handler = DropHandler(db, domain)
        self.host = host
        self.port = port
        self.max_size = max_size
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                self.handler,
                data_size_limit=self.max_size,
                enable_SMTPUTF8=True,
                hostname=self.handler.domain or None,
                loop=loop,
            ),
            self.host,
            self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("drop address listener on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
