"""Sending through the user's own SMTP server (aiosmtplib).

This is the edge where SMTP meets crmail: every aiosmtplib, ssl and socket error is
translated into :mod:`crmail.errors` here, and nothing foreign escapes.

* credentials refused -> :class:`AuthFailed` / :class:`AppPasswordRequired`
* server unreachable, greeting refused, timeouts while connecting -> :class:`ConnectFailed`
* certificate or TLS problems -> :class:`TLSFailed`
* the message bigger than the server's SIZE -> :class:`MessageTooLarge` (before DATA)
* refused or interrupted send -> :class:`SendFailed` (5xx permanent, 4xx/drops temporary)

Some recipients refused is not an error: :class:`SendResult` lists them.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.email import quote_address

from crmail.domain.netpolicy import AddressPolicy
from crmail.errors import (
    AppPasswordRequired,
    AuthFailed,
    ConnectFailed,
    CrmailError,
    InvalidInput,
    MessageTooLarge,
    SendFailed,
    TLSFailed,
)
from crmail.providers import OAUTH2_REFUSED_HINT
from crmail.providers.netcheck import allowed_addresses, first_answering
from crmail.providers.tls import client_context

__all__ = ["SendResult", "SmtpInfo", "SmtpSettings", "probe", "send"]

_SECURITIES = ("tls", "starttls", "none")
_UNREACHABLE_HINT = "Check the SMTP server name and port, and that the server is up."
_TLS_HINT = (
    "The server's TLS certificate could not be verified or TLS failed. Check the server "
    "name and the port's security setting (TLS, usually port 465, vs STARTTLS, usually 587)."
)
# Gmail: 534-5.7.9 Application-specific password required. Others word it similarly.
_APP_PASSWORD = re.compile(
    r"application[- ]specific|app[- ]password|app[- ]specific|web ?login required|"
    r"please log ?in via your web browser",
    re.IGNORECASE,
)
# Microsoft 365 with SMTP AUTH / basic auth turned off:
# 535 5.7.139 Authentication unsuccessful, basic authentication is disabled.
_BASIC_AUTH_DISABLED = re.compile(
    r"5\.7\.139|basic auth(?:entication)? is disabled|smtpclientauthentication is disabled",
    re.IGNORECASE,
)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_NOT_IN_A_PATH = re.compile(r"[\s\x00-\x1f\x7f<>]")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "tls" (implicit, 465) | "starttls" (587) | "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth2_token: str | None = field(default=None, repr=False)  # XOAUTH2 access token
    ca_file: str | None = None  # extra CA to trust (self-hosted servers)
    timeout: float = 30.0
    #: where the server may be (SSRF guard), checked before every connection; None for
    #: servers the operator chose (the default provider, tests)
    address_policy: AddressPolicy | None = None


@dataclass(frozen=True)
class SmtpInfo:
    max_size: int | None  # SIZE limit in octets; None when not advertised or 0
    auth_mechanisms: frozenset[str]  # upper-case, as advertised (after STARTTLS)
    starttls: bool  # the server offered STARTTLS on the plaintext connection


@dataclass(frozen=True)
class SendResult:
    accepted: tuple[str, ...]
    refused: dict[str, str]  # recipient -> "550 5.1.1 user unknown"


# --- public API ----------------------------------------------------------------------


async def probe(s: SmtpSettings) -> SmtpInfo:
    """Connect, EHLO, STARTTLS when configured, log in: the settings screen's test."""
    async with _session(s) as (smtp, offered_starttls):
        return _info(smtp, offered_starttls)


async def send(
    s: SmtpSettings, *, mail_from: str, recipients: Sequence[str], raw: bytes
) -> SendResult:
    """Send ``raw`` to ``recipients`` (the envelope; Bcc included) as ``mail_from``.

    Returns which recipients were accepted and which refused. Raises
    :class:`SendFailed` when the server accepted no recipient or refused the
    sender or the message, and :class:`MessageTooLarge` before DATA when ``raw`` is
    bigger than the SIZE the server advertised.
    """
    rcpts = list(dict.fromkeys(recipients))
    if not rcpts:
        raise SendFailed("No recipients to send to.", permanent=True)
    for address in (mail_from, *rcpts):
        _check_envelope_address(address)
    # SIZE (RFC 1870) counts octets as transmitted: with CRLF line endings.
    data = _LINE_END.sub(b"\r\n", raw)
    async with _session(s) as (smtp, _):
        info = _info(smtp, False)
        if info.max_size is not None and len(data) > info.max_size:
            raise MessageTooLarge(
                f"The message is {_mb(len(data))}; {s.host} accepts at most "
                f"{_mb(info.max_size)} (attachments grow by about a third when sent).",
                hint="Remove or shrink attachments, or share them as links.",
            )
        options: list[str] = []
        if not (mail_from.isascii() and all(r.isascii() for r in rcpts)):
            if not smtp.supports_extension("smtputf8"):
                raise SendFailed(
                    f"{s.host} does not support internationalized (non-ASCII) email "
                    "addresses (SMTPUTF8).",
                    permanent=True,
                )
            options.append("SMTPUTF8")
        if not data.isascii() and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        try:
            refused_raw, _ = await smtp.sendmail(mail_from, rcpts, data, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as e:
            raise _all_refused(s.host, e) from e
        except aiosmtplib.SMTPSenderRefused as e:
            raise _refusal(s.host, f"refused the sender {mail_from}", e.code, e.message) from e
        except aiosmtplib.SMTPDataError as e:
            raise _refusal(s.host, "refused the message", e.code, e.message) from e
        except aiosmtplib.SMTPResponseException as e:
            raise _refusal(s.host, "refused the message", e.code, e.message) from e
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as e:
            raise SendFailed(
                f"The connection to {s.host} was lost while sending: {_describe(e)}. "
                "The message was probably not sent.",
                permanent=False,
                hint="It will be retried; check your outbox if the recipient reports a duplicate.",
            ) from e
        except aiosmtplib.SMTPException as e:
            raise SendFailed(f"{s.host} could not send the message: {e}", permanent=True) from e
    refused = {r: _reply(resp.code, resp.message) for r, resp in refused_raw.items()}
    accepted = tuple(r for r in rcpts if r not in refused)
    return SendResult(accepted=accepted, refused=refused)


def _check_envelope_address(address: str) -> None:
    """The envelope must carry exactly the address given: aiosmtplib re-parses it (with
    ``email.utils.parseaddr``), which turns ``a,b@x`` into another address, and a line
    break would end the command. Addresses are validated long before; this is the edge."""
    if not address or _NOT_IN_A_PATH.search(address) or quote_address(address) != f"<{address}>":
        raise SendFailed(
            f"{address!r} cannot be used as an SMTP envelope address as written.",
            permanent=True,
            hint="Check the address.",
        )


# --- session -----------------------------------------------------------------------


@asynccontextmanager
async def _session(s: SmtpSettings) -> AsyncIterator[tuple[aiosmtplib.SMTP, bool]]:
    """A connected, EHLO'd, TLS-upgraded (per settings) and logged-in client.

    Yields ``(client, offered_starttls)``. Always closes the connection.
    """
    if s.security not in _SECURITIES:
        raise ValueError(f"unknown SMTP security {s.security!r}")
    # Before the socket: a CA file that cannot be used leaves no connection behind.
    tls_context = await _tls_context(s) if s.security != "none" else None
    # Under a policy the connection goes to an address that passed it, never to a second
    # DNS answer (rebinding); the name stays the TLS server name.
    policy = s.address_policy
    sock = await _checked_socket(s, policy) if policy is not None else None
    smtp = aiosmtplib.SMTP(
        hostname=s.host,
        port=None if sock is not None else s.port,
        sock=sock,
        timeout=s.timeout,
        use_tls=s.security == "tls",
        # "none" is an explicit choice: never upgrade (and then fail on a certificate
        # the user did not ask us to check). "starttls" upgrades below, by hand, so
        # that a missing STARTTLS is reported as such.
        start_tls=False,
        tls_context=tls_context,
    )
    try:
        await _connect(smtp, s)
        offered_starttls = smtp.supports_extension("starttls")
        if s.security == "starttls":
            await _starttls(smtp, s, offered_starttls)
        await _login(smtp, s)
        yield smtp, offered_starttls
    finally:
        await _close(smtp)
        if sock is not None:
            sock.close()  # the transport owns it once connected; before that, nobody does


async def _checked_socket(s: SmtpSettings, policy: AddressPolicy) -> socket.socket:
    """A socket connected to the first answering address of ``s.host`` that ``policy`` allows."""
    loop = asyncio.get_running_loop()

    async def connect(address: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, s.port)), s.timeout)
        except (OSError, TimeoutError) as e:
            sock.close()
            raise ConnectFailed(
                f"SMTP server {s.host}:{s.port} is unreachable: {_describe(e)}",
                hint=_UNREACHABLE_HINT,
            ) from e
        return sock

    return await first_answering(await allowed_addresses(s.host, s.port, policy), connect)


async def _tls_context(s: SmtpSettings) -> ssl.SSLContext:
    """The shared context for ``s``'s trust: the system store, plus its CA file if any
    (built once per CA file and off the event loop, ``providers/tls.py``)."""
    try:
        return await client_context(s.ca_file or None, with_system_store=True)
    except InvalidInput as e:
        raise TLSFailed(
            f"The CA file {s.ca_file} cannot be used: {_describe(e.__cause__ or e)}",
            hint=_TLS_HINT,
        ) from e


async def _connect(smtp: aiosmtplib.SMTP, s: SmtpSettings) -> None:
    where = f"{s.host}:{s.port}"
    try:
        await smtp.connect()
        await smtp.ehlo()
    except aiosmtplib.SMTPConnectResponseError as e:
        raise ConnectFailed(
            f"SMTP server {where} refused the connection: {_reply(e.code, e.message)}",
            hint="The server may be overloaded or in maintenance; try again later.",
        ) from e
    except aiosmtplib.SMTPHeloError as e:
        raise ConnectFailed(
            f"SMTP server {where} refused EHLO: {_reply(e.code, e.message)}",
            hint=_UNREACHABLE_HINT,
        ) from e
    except (aiosmtplib.SMTPException, OSError) as e:
        tls = _ssl_cause(e)
        if tls is not None:
            raise _tls_error(where, tls) from e
        raise ConnectFailed(
            f"SMTP server {where} is unreachable: {_describe(e)}", hint=_UNREACHABLE_HINT
        ) from e


async def _starttls(smtp: aiosmtplib.SMTP, s: SmtpSettings, offered: bool) -> None:
    if not offered:
        raise TLSFailed(
            f"{s.host}:{s.port} does not offer STARTTLS.",
            hint="Use TLS (usually port 465), or check the port number.",
        )
    try:
        await smtp.starttls(server_hostname=s.host)
        await smtp.ehlo()  # RFC 3207: capabilities before TLS must be forgotten
    except aiosmtplib.SMTPResponseException as e:
        raise TLSFailed(
            f"{s.host} refused STARTTLS: {_reply(e.code, e.message)}", hint=_TLS_HINT
        ) from e
    except (aiosmtplib.SMTPException, OSError) as e:
        tls = _ssl_cause(e)
        if tls is not None:
            raise _tls_error(f"{s.host}:{s.port}", tls) from e
        raise ConnectFailed(
            f"TLS negotiation with {s.host}:{s.port} failed: {_describe(e)}", hint=_TLS_HINT
        ) from e


async def _login(smtp: aiosmtplib.SMTP, s: SmtpSettings) -> None:
    if s.username is None or (s.password is None and s.oauth2_token is None):
        return  # an unauthenticated relay (on-premise servers that trust the network)
    methods = {m.upper() for m in _advertised_auth(smtp)}
    try:
        if s.oauth2_token is not None:
            if "XOAUTH2" not in methods:
                raise AuthFailed(
                    f"{s.host} does not offer OAuth2 (XOAUTH2) login.",
                    hint="Use password login (an app password) for this server.",
                )
            await smtp.auth_xoauth2(s.username, s.oauth2_token)
        else:
            if not methods:
                encrypted = smtp.get_transport_info("sslcontext") is not None
                raise AuthFailed(
                    f"{s.host} offers no login (AUTH) on this connection.",
                    hint="Check the port; most servers only allow login on 587 with "
                    "STARTTLS or 465 with TLS."
                    if not encrypted
                    else "Check the port: this may be a server-to-server (MX) port.",
                )
            assert s.password is not None
            await smtp.login(s.username, s.password)
    except aiosmtplib.SMTPResponseException as e:  # SMTPAuthenticationError included
        raise _auth_error(s.host, e.code, e.message, oauth2=s.oauth2_token is not None) from e
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as e:
        raise ConnectFailed(
            f"The connection to {s.host} was lost during login: {_describe(e)}",
            hint=_UNREACHABLE_HINT,
        ) from e
    except aiosmtplib.SMTPException as e:
        raise AuthFailed(f"{s.host} refused the login: {e}") from e


def _advertised_auth(smtp: aiosmtplib.SMTP) -> list[str]:
    return smtp.esmtp_extensions.get("auth", "").split()


async def _close(smtp: aiosmtplib.SMTP) -> None:
    if smtp.is_connected:
        try:
            # A polite QUIT, but never let it delay or fail the caller.
            async with asyncio.timeout(2):
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
    smtp.close()


def _info(smtp: aiosmtplib.SMTP, offered_starttls: bool) -> SmtpInfo:
    size_text = smtp.esmtp_extensions.get("size", "").strip()
    max_size = int(size_text) if size_text.isdigit() and int(size_text) > 0 else None
    return SmtpInfo(
        max_size=max_size,
        auth_mechanisms=frozenset(m.upper() for m in _advertised_auth(smtp)),
        starttls=offered_starttls,
    )


# --- error translation -----------------------------------------------------------------


def _auth_error(host: str, code: int, text: str, *, oauth2: bool = False) -> CrmailError:
    reply = _reply(code, text)
    if oauth2 and code >= 500:
        return AuthFailed(f"{host} refused the OAuth2 sign-in: {reply}", hint=OAUTH2_REFUSED_HINT)
    if _APP_PASSWORD.search(text):
        return AppPasswordRequired(
            f"{host} refused the password: {reply}",
            hint="Your account uses two-factor authentication: create an app password "
            "at your mail provider and use it instead of your normal password.",
        )
    if _BASIC_AUTH_DISABLED.search(text):
        return AppPasswordRequired(
            f"{host} does not allow password login (basic authentication is disabled): {reply}",
            hint="Connect with Microsoft sign-in, or ask your admin to enable SMTP AUTH "
            "for your mailbox and use an app password.",
        )
    if 400 <= code < 500:
        # 454 4.7.0 Temporary authentication failure: the server, not the password.
        return ConnectFailed(
            f"{host} cannot log in right now: {reply}",
            hint="The mail server is temporarily unavailable; try again later.",
        )
    return AuthFailed(
        f"{host} refused the login: {reply}",
        hint="Check the user name and password (some providers require an app password).",
    )


def _refusal(host: str, what: str, code: int, text: str) -> CrmailError:
    reply = _reply(code, text)
    if code == 552 or "5.3.4" in text:
        # 552 at MAIL (SIZE parameter) or after DATA: message size exceeds the limit.
        return MessageTooLarge(
            f"{host} {what}: {reply}",
            hint="Remove or shrink attachments, or share them as links.",
        )
    permanent = 500 <= code < 600
    return SendFailed(
        f"{host} {what}: {reply}",
        permanent=permanent,
        smtp_code=code,
        hint=None if permanent else "The server asked to try again later; it will be retried.",
    )


def _all_refused(host: str, e: aiosmtplib.SMTPRecipientsRefused) -> SendFailed:
    details = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in e.recipients)
    # Permanent only when every refusal is: a 4xx (greylisting, mailbox busy) for
    # any recipient means a retry can still reach them.
    permanent = all(500 <= r.code < 600 for r in e.recipients)
    codes = {r.code for r in e.recipients}
    return SendFailed(
        f"{host} refused every recipient: {details}",
        permanent=permanent,
        smtp_code=codes.pop() if len(codes) == 1 else None,
        hint="Check the recipients' addresses." if permanent else None,
    )


def _reply(code: int, text: str) -> str:
    return f"{code} {' '.join(text.split())}".strip()


def _ssl_cause(e: BaseException) -> ssl.SSLError | None:
    """The ssl error behind ``e`` (aiosmtplib wraps connect errors in its own)."""
    seen: BaseException | None = e
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_error(where: str, e: ssl.SSLError) -> TLSFailed:
    if isinstance(e, ssl.SSLCertVerificationError):
        what = f"the TLS certificate of {where} is not trusted: {e.verify_message}"
    else:
        what = f"TLS with {where} failed: {e.reason or e}"
    return TLSFailed(what, hint=_TLS_HINT)


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
