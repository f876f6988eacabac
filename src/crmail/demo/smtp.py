"""An aiosmtpd server on loopback that relays every accepted message to Dovecot's LMTP (demo and tests).

So a message "sent by SMTP" shows up in the recipient's INBOX over IMAP, the way a
real submission server + MTA would do it.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from crmail.demo.dovecot import free_port


@dataclass(frozen=True)
class AcceptedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None


@dataclass
class _RelayHandler:
    lmtp_host: str
    lmtp_port: int
    accepted: list[AcceptedMessage] = field(default_factory=list)
    #: recipient (as sent, lowercased) -> the reply RCPT TO gets, e.g. "550 5.1.1 no such user"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    #: when set, the reply to the end of DATA instead of relaying ("451 4.3.0 try later")
    data_reply: str | None = None
    #: when True, the connection is dropped after DATA without any reply
    drop_on_data: bool = False
    #: MAIL FROM parameters of every transaction that reached DATA ("SMTPUTF8", "SIZE=...")
    mail_options: list[tuple[str, ...]] = field(default_factory=list)
    #: RCPT TO addresses (as the server read them) of every transaction that reached DATA
    rcpt_seen: list[tuple[str, ...]] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mail_options.append(tuple(envelope.mail_options))
        self.rcpt_seen.append(tuple(envelope.rcpt_tos))
        if self.drop_on_data:
            assert server.transport is not None
            server.transport.close()
            return "421 closing"  # never reaches the client: the transport is gone
        if self.data_reply is not None:
            return self.data_reply
        data = envelope.original_content or b""
        rcpts = tuple(envelope.rcpt_tos)
        mail_from = envelope.mail_from or ""
        try:
            # smtplib is blocking: keep the server's loop responsive.
            await asyncio.get_running_loop().run_in_executor(
                None, self._relay, mail_from, rcpts, data
            )
        except smtplib.SMTPException as e:
            return f"451 relay to LMTP failed: {e}"
        # The authenticator returns the login as auth_data (login_data is the legacy slot).
        auth = session.auth_data
        login = auth.decode() if isinstance(auth, bytes) else None
        self.accepted.append(AcceptedMessage(mail_from, rcpts, data, login))
        return "250 OK relayed"

    def _relay(self, mail_from: str, rcpts: tuple[str, ...], data: bytes) -> None:
        # One transaction per recipient: LMTP answers DATA once per recipient, which
        # smtplib.LMTP.sendmail does not read, so a multi-recipient send desyncs it.
        with smtplib.LMTP(self.lmtp_host, self.lmtp_port, timeout=10) as lmtp:
            for rcpt in rcpts:
                lmtp.sendmail(mail_from, [rcpt], data)


class _Authenticator:
    def __init__(self, users: dict[str, str], auth_replies: dict[str, str] | None = None) -> None:
        self.users = users
        self.auth_replies = auth_replies or {}

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            # A login listed in auth_replies always fails with that reply, whatever the
            # password: like Gmail's "534-5.7.9 Application-specific password required".
            reply = self.auth_replies.get(login)
            if reply is not None:
                return AuthResult(success=False, handled=False, message=reply)
            if self.users.get(login) == auth_data.password.decode():
                return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)


class SmtpRelay:
    """aiosmtpd relay to LMTP. ``tls="starttls"`` offers STARTTLS, ``"implicit"`` wraps.

    With ``users`` AUTH PLAIN/LOGIN is required and checked against the dict; a login in
    ``auth_replies`` always fails with that reply text. ``size_limit`` is the advertised
    and enforced SIZE (aiosmtpd's default 32 MiB when None, no SIZE at all when 0).
    ``rcpt_replies`` / ``data_reply`` / ``drop_on_data`` make the server refuse chosen
    recipients, refuse the message, or hang up after DATA (also settable later on
    ``handler``). ``smtputf8=False`` stops offering SMTPUTF8 (aiosmtpd's Controller
    offers it by default). ``accepted`` records every envelope that was relayed.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        lmtp_host: str,
        lmtp_port: int,
        *,
        users: dict[str, str] | None = None,
        tls: str = "none",
        cert_file: str | None = None,
        key_file: str | None = None,
        auth_replies: dict[str, str] | None = None,
        size_limit: int | None = None,
        rcpt_replies: dict[str, str] | None = None,
        data_reply: str | None = None,
        drop_on_data: bool = False,
        smtputf8: bool = True,
    ) -> None:
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(tls)
        self.port = free_port()
        self.users = users
        self.tls = tls
        self.handler = _RelayHandler(
            lmtp_host,
            lmtp_port,
            rcpt_replies={k.lower(): v for k, v in (rcpt_replies or {}).items()},
            data_reply=data_reply,
            drop_on_data=drop_on_data,
        )
        server_ctx: ssl.SSLContext | None = None
        if tls != "none":
            if not (cert_file and key_file):
                raise ValueError("TLS needs cert_file and key_file")
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(cert_file, key_file)
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if size_limit is not None:
            kwargs["data_size_limit"] = size_limit
        if users is not None:
            kwargs["authenticator"] = _Authenticator(users, auth_replies)
            kwargs["auth_required"] = True
            # aiosmtpd only knows STARTTLS as "TLS": on an implicit-TLS listener
            # auth_require_tls=True would hide AUTH for good.
            kwargs["auth_require_tls"] = tls == "starttls"
        if tls == "starttls":
            kwargs["tls_context"] = server_ctx
            kwargs["require_starttls"] = users is not None
        self.controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ssl_context=server_ctx if tls == "implicit" else None,
            server_hostname="localhost",
            **kwargs,
        )

    @property
    def accepted(self) -> list[AcceptedMessage]:
        return self.handler.accepted

    def start(self) -> SmtpRelay:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
