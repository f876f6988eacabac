"""providers.smtp against a real aiosmtpd relay on loopback that delivers into Dovecot."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crmail.domain.addresses import sendable_address
from crmail.domain.netpolicy import AddressPolicy, parse_networks
from crmail.errors import (
    AddressNotAllowed,
    AppPasswordRequired,
    AuthFailed,
    ConnectFailed,
    MessageTooLarge,
    SendFailed,
    TLSFailed,
)
from crmail.mime import Address, Draft, OutgoingAttachment, compose, parse_message
from crmail.providers.smtp import SendResult, SmtpSettings, probe, send
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.servers.dovecot import free_port

# Plain-text AUTH on loopback is what these tests want; aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "agent@example.test", "s3cret-pw"
GMAIL_534 = (
    "534 5.7.9 Application-specific password required. For more information, go to "
    "https://support.google.com/mail/?p=InvalidSecondFactor"
)
MICROSOFT_535 = (
    "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. "
    "[AM0PR01CA0000.eurprd01.prod.exchangelabs.com]"
)


def relay(dovecot: Dovecot, **kw: object) -> SmtpRelay:
    tls = kw.get("tls", "none")
    if tls != "none":
        kw.setdefault("cert_file", dovecot.cert_file)
        kw.setdefault("key_file", dovecot.key_file)
    return SmtpRelay(dovecot.host, dovecot.lmtp_port, **kw)  # type: ignore[arg-type]


@pytest.fixture
def relays(dovecot: Dovecot) -> Iterator[list[SmtpRelay]]:
    """Relays a test starts; all are stopped at the end."""
    started: list[SmtpRelay] = []
    yield started
    for r in started:
        r.stop()


Start = Callable[..., SmtpRelay]


@pytest.fixture
def start(dovecot: Dovecot, relays: list[SmtpRelay]) -> Start:
    def _start(**kw: object) -> SmtpRelay:
        r = relay(dovecot, **kw).start()
        relays.append(r)
        return r

    return _start


def settings(r: SmtpRelay, dovecot: Dovecot, **kw: object) -> SmtpSettings:
    base: dict[str, object] = {
        "host": r.host,
        "port": r.port,
        "security": {"none": "none", "starttls": "starttls", "implicit": "tls"}[r.tls],
        "ca_file": dovecot.ca_file,
        "timeout": 10.0,
    }
    if r.users:
        base["username"], base["password"] = USER, PASSWORD
    base.update(kw)
    return SmtpSettings(**base)  # type: ignore[arg-type]


def message(to: str, *, bcc: str | None = None, subject: str = "Hello", size: int = 0) -> bytes:
    return compose(
        Draft(
            from_=Address("Agent", USER),
            to=(Address("Customer", to),),
            bcc=(Address("", bcc),) if bcc else (),
            subject=subject,
            text="Hello from the CRM\n",
            attachments=(
                OutgoingAttachment("data.bin", "application/octet-stream", b"\x00" * size),
            )
            if size
            else (),
        )
    ).raw


def inbox(dovecot: Dovecot, user: str) -> list[bytes]:
    """Every message in ``user``'s INBOX, read over IMAP like any mail client."""
    imap = dovecot.imap_login(user)
    try:
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, parts = imap.fetch(num, "(BODY.PEEK[])")
            item = parts[0]
            assert isinstance(item, tuple)
            out.append(item[1])
        return out
    finally:
        imap.logout()


# --- delivery ----------------------------------------------------------------------------


async def test_sent_message_arrives_in_mailbox_and_bcc_stays_hidden(
    dovecot: Dovecot, start: Start, mailbox: MailboxAccount
) -> None:
    hidden = dovecot.add_user("hidden@example.test", "pw-hidden")
    r = start()
    raw = message(mailbox.email, bcc=hidden.email, subject="Quote #42")
    result = await send(
        settings(r, dovecot),
        mail_from=USER,
        recipients=[mailbox.email, hidden.email],
        raw=raw,
    )
    assert result == SendResult(accepted=(mailbox.email, hidden.email), refused={})
    (got,) = inbox(dovecot, mailbox.email)
    env = parse_message(got).envelope
    assert env.subject == "Quote #42"
    assert env.message_id == parse_message(raw).envelope.message_id
    assert b"hidden@example.test" not in got
    (got_hidden,) = inbox(dovecot, hidden.email)
    assert parse_message(got_hidden).envelope.subject == "Quote #42"


async def test_starttls_with_auth_probe_and_send(
    dovecot: Dovecot, start: Start, mailbox: MailboxAccount
) -> None:
    r = start(tls="starttls", users={USER: PASSWORD})
    s = settings(r, dovecot)
    info = await probe(s)
    assert info.starttls is True
    assert {"PLAIN", "LOGIN"} <= info.auth_mechanisms
    assert info.max_size == 33_554_432  # aiosmtpd's default SIZE
    await send(s, mail_from=USER, recipients=[mailbox.email], raw=message(mailbox.email))
    assert r.accepted[0].login == USER
    assert len(inbox(dovecot, mailbox.email)) == 1


async def test_implicit_tls_with_auth_send(
    dovecot: Dovecot, start: Start, mailbox: MailboxAccount
) -> None:
    r = start(tls="implicit", users={USER: PASSWORD}, size_limit=0)
    s = settings(r, dovecot)
    info = await probe(s)
    assert info.starttls is False and info.max_size is None
    await send(s, mail_from=USER, recipients=[mailbox.email], raw=message(mailbox.email))
    assert [m.login for m in r.accepted] == [USER]
    assert len(inbox(dovecot, mailbox.email)) == 1


async def test_partial_refusal_is_a_result(
    dovecot: Dovecot, start: Start, mailbox: MailboxAccount
) -> None:
    gone = "gone@example.test"
    r = start(rcpt_replies={gone: "550 5.1.1 <gone@example.test>: user unknown"})
    result = await send(
        settings(r, dovecot), mail_from=USER, recipients=[gone, mailbox.email], raw=message(gone)
    )
    assert result.accepted == (mailbox.email,)
    assert result.refused == {gone: "550 5.1.1 <gone@example.test>: user unknown"}
    assert r.accepted[0].rcpt_tos == (mailbox.email,)
    assert len(inbox(dovecot, mailbox.email)) == 1


# --- refusals ----------------------------------------------------------------------------


async def test_all_recipients_refused_is_permanent(dovecot: Dovecot, start: Start) -> None:
    r = start(rcpt_replies={"a@x.test": "550 5.1.1 no such user", "b@x.test": "553 bad"})
    with pytest.raises(SendFailed) as err:
        await send(
            settings(r, dovecot), mail_from=USER, recipients=["a@x.test", "b@x.test"], raw=b"x"
        )
    assert err.value.permanent and not err.value.retryable
    assert "550 5.1.1 no such user" in err.value.message and "553 bad" in err.value.message
    assert r.accepted == []


async def test_all_recipients_greylisted_is_temporary(dovecot: Dovecot, start: Start) -> None:
    r = start(rcpt_replies={"a@x.test": "450 4.2.0 greylisted, try again"})
    with pytest.raises(SendFailed) as err:
        await send(settings(r, dovecot), mail_from=USER, recipients=["a@x.test"], raw=b"x")
    assert not err.value.permanent and err.value.retryable
    assert err.value.smtp_code == 450


async def test_data_550_is_permanent(dovecot: Dovecot, start: Start) -> None:
    r = start(data_reply="550 5.7.1 Message rejected as spam")
    with pytest.raises(SendFailed) as err:
        await send(settings(r, dovecot), mail_from=USER, recipients=["a@x.test"], raw=b"x")
    assert err.value.permanent is True and err.value.retryable is False
    assert err.value.smtp_code == 550
    assert "550 5.7.1 Message rejected as spam" in err.value.message
    assert err.value.code == "send_failed" and err.value.http_status == 502


async def test_data_451_is_temporary(dovecot: Dovecot, start: Start) -> None:
    r = start(data_reply="451 4.3.0 Temporary local problem, try later")
    with pytest.raises(SendFailed) as err:
        await send(settings(r, dovecot), mail_from=USER, recipients=["a@x.test"], raw=b"x")
    assert err.value.permanent is False and err.value.retryable is True
    assert err.value.smtp_code == 451
    assert "451 4.3.0" in err.value.message


async def test_connection_dropped_during_data_is_temporary(dovecot: Dovecot, start: Start) -> None:
    r = start(drop_on_data=True)
    with pytest.raises(SendFailed) as err:
        await send(settings(r, dovecot), mail_from=USER, recipients=["a@x.test"], raw=b"x")
    assert err.value.permanent is False and err.value.retryable is True
    assert err.value.smtp_code is None


async def test_message_over_size_is_refused_before_data(dovecot: Dovecot, start: Start) -> None:
    r = start(size_limit=20_000)
    raw = message("a@x.test", size=20_000)  # base64 makes it ~27 KB
    with pytest.raises(MessageTooLarge) as err:
        await send(settings(r, dovecot), mail_from=USER, recipients=["a@x.test"], raw=raw)
    assert "accepts at most" in err.value.message
    assert r.accepted == []
    # a small one still goes through the same server
    await send(
        settings(r, dovecot), mail_from=USER, recipients=["a@x.test"], raw=message("a@x.test")
    )
    assert len(r.accepted) == 1


# --- login ----------------------------------------------------------------------------------


async def test_wrong_password_is_auth_failed(dovecot: Dovecot, start: Start) -> None:
    r = start(users={USER: PASSWORD})
    with pytest.raises(AuthFailed) as err:
        await probe(settings(r, dovecot, password="wrong"))
    assert type(err.value) is AuthFailed
    assert "535" in err.value.message
    assert "wrong" not in err.value.message


async def test_gmail_app_password_reply(dovecot: Dovecot, start: Start) -> None:
    r = start(users={USER: PASSWORD}, auth_replies={USER: GMAIL_534})
    with pytest.raises(AppPasswordRequired) as err:
        await send(settings(r, dovecot), mail_from=USER, recipients=["a@x.test"], raw=b"x")
    assert "534" in err.value.message and "Application-specific" in err.value.message
    assert r.accepted == []


async def test_microsoft_basic_auth_disabled_reply(dovecot: Dovecot, start: Start) -> None:
    r = start(users={USER: PASSWORD}, auth_replies={USER: MICROSOFT_535})
    with pytest.raises(AppPasswordRequired) as err:
        await probe(settings(r, dovecot))
    assert "5.7.139" in err.value.message


async def test_oauth2_without_xoauth2_support_is_auth_failed(
    dovecot: Dovecot, start: Start
) -> None:
    r = start(users={USER: PASSWORD})
    with pytest.raises(AuthFailed) as err:
        await probe(settings(r, dovecot, password=None, oauth2_token="ya29.token"))
    assert "XOAUTH2" in err.value.message


def test_secrets_are_not_in_repr() -> None:
    s = SmtpSettings("h", 1, "none", username="u", password="hunter2", oauth2_token="tok")
    assert "hunter2" not in repr(s) and "tok" not in repr(s)


# --- connecting -------------------------------------------------------------------------------


async def test_closed_port_is_connect_failed() -> None:
    s = SmtpSettings("127.0.0.1", free_port(), "none", timeout=5)
    with pytest.raises(ConnectFailed) as err:
        await probe(s)
    assert type(err.value) is ConnectFailed
    assert err.value.retryable


async def test_connects_to_the_address_the_policy_checked_not_a_second_dns_answer(
    dovecot: Dovecot, start: Start, mailbox: MailboxAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers an allowed address for the check, then another."""
    r = start()
    loop = asyncio.get_running_loop()
    asked: list[str] = []

    async def rebinding_dns(host: str, port: int, *args: object, **kw: object) -> list[Any]:
        # first answer: the relay (allowed); every later one: 127.0.0.2 (refused; and
        # nothing listens there, so connecting to it fails the send)
        address = "127.0.0.1" if not asked else "127.0.0.2"
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding_dns)
    policy = AddressPolicy(allowed_networks=parse_networks("127.0.0.1", setting="test"))
    s = settings(r, dovecot, host="smtp.rebinding.test", address_policy=policy)
    result = await send(s, mail_from=USER, recipients=[mailbox.email], raw=message(mailbox.email))
    assert result.accepted == (mailbox.email,)
    assert asked == ["smtp.rebinding.test"]  # resolved once, for the check


async def test_policy_refusing_every_address_connects_nowhere(
    dovecot: Dovecot, start: Start
) -> None:
    r = start()
    s = settings(r, dovecot, address_policy=AddressPolicy())  # loopback not allowed
    with pytest.raises(AddressNotAllowed):
        await probe(s)
    assert not r.accepted


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_untrusted_certificate_is_tls_failed(
    dovecot: Dovecot, start: Start, tls: str
) -> None:
    r = start(tls=tls)
    with pytest.raises(TLSFailed) as err:
        await probe(settings(r, dovecot, ca_file=None))
    assert "not trusted" in err.value.message


async def test_starttls_not_offered_is_tls_failed(dovecot: Dovecot, start: Start) -> None:
    r = start()
    with pytest.raises(TLSFailed) as err:
        await probe(settings(r, dovecot, security="starttls"))
    assert "does not offer STARTTLS" in err.value.message


async def test_implicit_tls_on_plaintext_port_is_tls_failed(dovecot: Dovecot, start: Start) -> None:
    r = start()
    with pytest.raises(TLSFailed):
        await probe(settings(r, dovecot, security="tls"))


async def test_non_ascii_address_without_smtputf8_is_permanent(
    dovecot: Dovecot, start: Start
) -> None:
    r = start(smtputf8=False)
    with pytest.raises(SendFailed) as err:
        await send(settings(r, dovecot), mail_from=USER, recipients=["jörg@x.test"], raw=b"x")
    assert err.value.permanent and "SMTPUTF8" in err.value.message
    assert r.accepted == []


async def test_non_ascii_address_is_sent_with_smtputf8(dovecot: Dovecot, start: Start) -> None:
    # Dovecot's LMTP has no SMTPUTF8, so this relay answers DATA itself.
    r = start(data_reply="250 2.0.0 OK queued")
    raw = compose(
        Draft(from_=Address("", USER), to=(Address("Jörg", "jörg@example.test"),), text="hi")
    ).raw
    result = await send(
        settings(r, dovecot), mail_from=USER, recipients=["jörg@example.test"], raw=raw
    )
    assert result == SendResult(accepted=("jörg@example.test",), refused={})
    (options,) = r.handler.mail_options
    assert "SMTPUTF8" in options


@pytest.mark.parametrize(
    "address",
    [
        "a,evil@x.test",
        'a"b@x.test',
        "a b@x.test",
        "a@x.test\r\nRCPT TO:<e@x.test>",
        "<a@x.test>",
        "",
    ],
)
async def test_envelope_address_that_smtp_would_rewrite_is_refused_before_connecting(
    address: str,
) -> None:
    unreachable = SmtpSettings(host="127.0.0.1", port=free_port(), security="none", timeout=1)
    for mail_from, rcpts in ((USER, [address]), (address, ["b@x.test"])):
        with pytest.raises(SendFailed) as err:
            await send(unreachable, mail_from=mail_from, recipients=rcpts, raw=b"x")
        assert err.value.permanent and "envelope" in err.value.message


async def test_every_address_of_the_send_grammar_is_sent_as_written(
    dovecot: Dovecot, start: Start
) -> None:
    r = start(data_reply="250 2.0.0 OK queued")  # answered by the relay itself
    odd = [
        "o'neil@x.test",
        "a|b@x.test",
        "{a}@x.test",
        "a/b%c@x.test",
        "a.b+c@x.test",
        "a?b@x.test",
    ]
    assert [sendable_address(a) for a in odd] == odd
    await send(settings(r, dovecot), mail_from=USER, recipients=odd, raw=b"x\r\n")
    assert r.handler.rcpt_seen == [tuple(odd)]
