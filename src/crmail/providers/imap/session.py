"""An IMAP session: connecting, logging in, capabilities, and the command plumbing that
the operation groups (:mod:`.mailboxes`, :mod:`.reading`, :mod:`.writing`,
:mod:`.watching`) share."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable
from typing import Self

from crmail.errors import AuthFailed, ConnectFailed, InvalidInput
from crmail.providers.imap.connection import Arg, ImapConnection, TaggedResult, quoted
from crmail.providers.imap.error_mapping import check, login_error
from crmail.providers.imap.responses import caps_from, server_event
from crmail.providers.imap.results import ServerEvent
from crmail.providers.imap.settings import ImapSettings, open_connection


class ImapSession:
    """One logged-in IMAP session. Methods are serialised by an internal lock."""

    def __init__(self, conn: ImapConnection, settings: ImapSettings) -> None:
        self._conn = conn
        self.settings = settings
        self.capabilities: frozenset[str] = frozenset()
        self.qresync_enabled = False
        self.selected: str | bytes | None = None
        self._lock = asyncio.Lock()

    # --- connecting ------------------------------------------------------------------

    @classmethod
    async def connect(cls, s: ImapSettings) -> Self:
        conn = await open_connection(s)
        client = cls(conn, s)
        try:
            await client._setup()
        except BaseException:
            await client.close()
            raise
        return client

    async def _setup(self) -> None:
        conn, s = self._conn, self.settings
        greeting = conn.greeting
        caps: set[str] | None = None
        # Greeting capabilities are only trustworthy before any TLS upgrade.
        if s.security != "starttls" and greeting is not None and greeting.code == b"CAPABILITY":
            caps = caps_from(greeting.code_args)
        if caps is None:
            caps = await self._fetch_capabilities()
        self._set_caps(caps)
        if greeting is None or greeting.kind != b"PREAUTH":
            await self._login()
        if not self.has("ENABLE"):
            pass
        elif self.has("QRESYNC"):
            res = await conn.command("ENABLE", "QRESYNC")
            enabled = set()
            for r in res.of_kind(b"ENABLED"):
                enabled |= caps_from(r.text)
            self.qresync_enabled = res.ok and "QRESYNC" in enabled
        elif self.has("CONDSTORE"):
            # CONDSTORE also gets enabled by the first (CONDSTORE) SELECT; ENABLE
            # just makes MODSEQ show up in unsolicited FETCH responses right away.
            await conn.command("ENABLE", "CONDSTORE")

    async def _fetch_capabilities(self) -> set[str]:
        res = await self._conn.command("CAPABILITY")
        check(res, "CAPABILITY")
        caps: set[str] = set()
        for r in res.of_kind(b"CAPABILITY"):
            caps |= caps_from(r.text)
        return caps

    def _set_caps(self, caps: set[str]) -> None:
        disabled = {c.upper() for c in self.settings.disabled_caps}
        self.capabilities = frozenset(caps - disabled)
        self._conn.literal_plus = "LITERAL+" in self.capabilities

    async def _login(self) -> None:
        conn, s = self._conn, self.settings
        if s.oauth2_token is not None:
            if not self.has("AUTH=XOAUTH2"):
                raise AuthFailed(
                    f"{s.host} does not offer OAuth2 (XOAUTH2) login",
                    hint="Use password login (app password) for this server.",
                )
            sasl = f"user={s.username}\x01auth=Bearer {s.oauth2_token}\x01\x01"
            res = await conn.authenticate(
                "XOAUTH2", base64.b64encode(sasl.encode()), sasl_ir=self.has("SASL-IR")
            )
        else:
            if s.password is None:
                raise InvalidInput("IMAP settings need a password or an OAuth2 token")
            if self.has("LOGINDISABLED"):
                raise AuthFailed(
                    f"{s.host} does not allow password login on an unencrypted connection",
                    hint="Use TLS (usually port 993) or STARTTLS for this server.",
                )
            res = await conn.command("LOGIN", quoted(s.username), quoted(s.password), redact=True)
        if not res.ok:
            raise login_error(res, host=s.host, oauth2=s.oauth2_token is not None)
        if (res.code or "").upper() == "CAPABILITY":
            caps = caps_from(res.code_args)
        else:
            caps = await self._fetch_capabilities()
        self._set_caps(caps)

    # --- capabilities ------------------------------------------------------------------

    def has(self, cap: str) -> bool:
        return cap.upper() in self.capabilities

    @property
    def condstore(self) -> bool:
        return self.qresync_enabled or self.has("CONDSTORE")

    # --- plumbing ------------------------------------------------------------------------

    async def _cmd(
        self, name: str, *args: Arg, owns: Iterable[bytes] = (), what: str | None = None
    ) -> TaggedResult:
        # Raw command without status check; parser/foreign errors are already mapped
        # by the connection.
        return await self._conn.command(name, *args, owns=frozenset(owns))

    def _drain_events(self) -> list[ServerEvent]:
        out: list[ServerEvent] = []
        q = self._conn.events
        while q:
            ev = server_event(q.popleft())
            if ev is not None:
                out.append(ev)
        return out

    @property
    def dropped(self) -> bool:
        """The connection is known to be gone (see :attr:`ImapConnection.dropped`)."""
        return self._conn.dropped

    # --- ending -------------------------------------------------------------------------

    async def logout(self) -> None:
        try:
            async with self._lock:
                await self._cmd("LOGOUT")
        except ConnectFailed:
            pass  # the server may close before we read its OK; we are done anyway
        finally:
            await self._conn.close()

    async def close(self) -> None:
        """Drop the connection. Never raises."""
        await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
