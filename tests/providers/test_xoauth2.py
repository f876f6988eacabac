"""OAuth2 (XOAUTH2) login, IMAP and SMTP, against a real Dovecot that checks bearer
tokens with an RFC 7662 introspection endpoint on loopback, as Gmail's and Microsoft's
servers check theirs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from crmail.errors import AuthFailed
from crmail.providers import smtp
from crmail.providers.imap import ImapClient, ImapSettings
from tests.servers import Dovecot, MailboxAccount, SmtpRelay

USER = "oauth@example.test"
TOKENS = {"good-token": USER}


class Introspection:
    """The token endpoint's introspection: which tokens are live, and for whom."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        seen = self.asked

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                token = parse_qs(body).get("token", [""])[0]
                seen.append(token)
                user = TOKENS.get(token)
                doc = {"active": True, "username": user} if user else {"active": False}
                data = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/introspect"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def oauth_dovecot() -> Iterator[tuple[Dovecot, Introspection]]:
    """Dovecot with IMAP and SMTP submission checking tokens; submission relays through
    an SMTP relay back into Dovecot's LMTP."""
    endpoint = Introspection()
    server = Dovecot(oauth2_introspection_url=endpoint.url)
    relay = SmtpRelay(server.host, server.lmtp_port).start()
    server.submission_relay = (relay.host, relay.port)
    server.start()
    try:
        server.add_user(USER, "a-password-nobody-uses")
        yield server, endpoint
    finally:
        server.stop()
        relay.stop()
        endpoint.close()


def settings(server: Dovecot, token: str) -> ImapSettings:
    return ImapSettings(
        server.host,
        server.imaps_port,
        "tls",
        USER,
        None,
        ca_file=server.ca_file,
        oauth2_token=token,
    )


async def test_a_live_token_logs_in_and_reads(
    oauth_dovecot: tuple[Dovecot, Introspection],
) -> None:
    server, endpoint = oauth_dovecot
    server.deliver(
        USER, b"From: a@example.test\r\nTo: oauth@example.test\r\nSubject: s\r\n\r\nx\r\n"
    )
    client = await ImapClient.connect(settings(server, "good-token"))
    try:
        sel = await client.select("INBOX", readonly=True)
        assert sel.exists == 1
    finally:
        await client.logout()
    assert "good-token" in endpoint.asked  # the server really checked it


async def test_a_server_without_oauth2_says_so(mailbox: MailboxAccount) -> None:
    with pytest.raises(AuthFailed, match="OAuth2"):
        await ImapClient.connect(
            ImapSettings(mailbox.host, mailbox.port, "none", mailbox.email, None, oauth2_token="t")
        )


def smtp_settings(server: Dovecot, token: str) -> smtp.SmtpSettings:
    return smtp.SmtpSettings(
        server.host, server.submission_port, "none", USER, oauth2_token=token, timeout=10.0
    )


async def test_a_live_token_sends_through_smtp(
    oauth_dovecot: tuple[Dovecot, Introspection],
) -> None:
    server, _ = oauth_dovecot
    raw = (
        b"From: oauth@example.test\r\nTo: oauth@example.test\r\nSubject: via xoauth2\r\n\r\nhi\r\n"
    )
    result = await smtp.send(
        smtp_settings(server, "good-token"), mail_from=USER, recipients=[USER], raw=raw
    )
    assert result.accepted == (USER,)
    found = server.doveadm("search", "-u", USER, "mailbox", "INBOX", "subject", "via xoauth2")
    assert found.strip(), "the message did not arrive"


@pytest.mark.parametrize("protocol", ["imap", "smtp"])
async def test_a_revoked_token_is_an_auth_error_that_says_to_reconnect(
    oauth_dovecot: tuple[Dovecot, Introspection], protocol: str
) -> None:
    server, endpoint = oauth_dovecot
    endpoint.asked.clear()
    with pytest.raises(AuthFailed) as failed:
        if protocol == "imap":
            await ImapClient.connect(settings(server, "revoked-token"))
        else:
            await smtp.probe(smtp_settings(server, "revoked-token"))
    assert "revoked-token" in endpoint.asked  # the server really checked it
    assert "OAuth2" in str(failed.value)
    assert "reconnect" in (failed.value.hint or "")  # not "check your password"
