"""ImapClient against the real Dovecot fixture."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Callable

import pytest

from crmail.errors import (
    AppPasswordRequired,
    AuthFailed,
    ConnectFailed,
    FolderMissing,
    TLSFailed,
)
from crmail.providers.imap import ImapClient, ImapSettings
from tests.servers import Dovecot, MailboxAccount, SmtpRelay
from tests.servers.dovecot import free_port

MSG = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: %d\r\n\r\nbody %d\r\n"


def settings(acct: MailboxAccount, **kw: object) -> ImapSettings:
    base: dict[str, object] = {
        "host": acct.host,
        "port": acct.port,
        "security": "none",
        "username": acct.email,
        "password": acct.password,
        "ca_file": acct.ca_file,
        "timeout": 10.0,
    }
    base.update(kw)
    return ImapSettings(**base)  # type: ignore[arg-type]


ClientFactory = Callable[..., "asyncio.Future[ImapClient]"]


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., object]]:
    clients: list[ImapClient] = []

    async def _connect(acct: MailboxAccount, **kw: object) -> ImapClient:
        c = await ImapClient.connect(settings(acct, **kw))
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        await c.close()


@pytest.fixture
async def client(mailbox: MailboxAccount) -> AsyncIterator[ImapClient]:
    c = await ImapClient.connect(settings(mailbox))
    yield c
    await c.close()


def seen_flags(dovecot: Dovecot, user: str, folder: str = "INBOX") -> dict[int, str]:
    out = dovecot.doveadm("fetch", "-u", user, "uid flags", "mailbox", folder, "ALL")
    result: dict[int, str] = {}
    uid = 0
    for line in out.splitlines():
        if line.startswith("uid: "):
            uid = int(line[5:])
        elif line.startswith("flags:"):
            result[uid] = line[6:].strip()
    return result


# --- login and transport ---------------------------------------------------------------


async def test_login_plain_and_capabilities(client: ImapClient) -> None:
    assert client.has("IDLE") and client.has("uidplus")
    assert client.qresync_enabled and client.condstore


async def test_wrong_password_is_auth_failed(mailbox: MailboxAccount) -> None:
    with pytest.raises(AuthFailed) as ei:
        await ImapClient.connect(settings(mailbox, password="wrong"))
    assert type(ei.value) is AuthFailed
    assert ei.value.hint and "password" in ei.value.hint
    assert "wrong" not in str(ei.value)


async def test_changed_password_is_auth_failed(dovecot: Dovecot, mailbox: MailboxAccount) -> None:
    dovecot.set_password(mailbox.email, "rotated-pw")
    with pytest.raises(AuthFailed):
        await ImapClient.connect(settings(mailbox))
    c = await ImapClient.connect(settings(mailbox, password="rotated-pw"))
    await c.logout()


async def test_app_password_reason(dovecot: Dovecot) -> None:
    acct = dovecot.add_user("twofa@example.test", "normal-pw", app_password_required=True)
    with pytest.raises(AppPasswordRequired) as ei:
        await ImapClient.connect(settings(acct))
    assert ei.value.hint and "app password" in ei.value.hint


async def test_odd_password_goes_as_literal(dovecot: Dovecot) -> None:
    acct = dovecot.add_user("odd@example.test", 'p"ä\\ß€x')
    c = await ImapClient.connect(settings(acct))
    await c.logout()


async def test_closed_port_is_connect_failed(mailbox: MailboxAccount) -> None:
    with pytest.raises(ConnectFailed) as ei:
        await ImapClient.connect(settings(mailbox, port=free_port()))
    assert type(ei.value) is ConnectFailed and ei.value.retryable
    assert ei.value.hint and "port" in ei.value.hint


async def test_unresolvable_host_is_connect_failed(mailbox: MailboxAccount) -> None:
    with pytest.raises(ConnectFailed):
        await ImapClient.connect(settings(mailbox, host="no-such-host.invalid"))


async def test_implicit_tls_with_fixture_ca(mailbox: MailboxAccount) -> None:
    c = await ImapClient.connect(settings(mailbox, port=mailbox.tls_port, security="tls"))
    assert "STARTTLS" not in c.capabilities
    assert (await c.select("INBOX")).exists == 0
    await c.logout()


async def test_starttls_on_plain_port(mailbox: MailboxAccount) -> None:
    c = await ImapClient.connect(settings(mailbox, security="starttls"))
    assert c.has("IDLE")
    await c.logout()


async def test_untrusted_cert_is_tls_failed(mailbox: MailboxAccount) -> None:
    for port, sec in ((mailbox.tls_port, "tls"), (mailbox.port, "starttls")):
        with pytest.raises(TLSFailed) as ei:
            await ImapClient.connect(settings(mailbox, port=port, security=sec, ca_file=None))
        assert "not trusted" in str(ei.value)


async def test_tls_to_plaintext_port_is_tls_failed(mailbox: MailboxAccount) -> None:
    with pytest.raises(ConnectFailed):  # TLSFailed or timeout, never an ssl error
        await ImapClient.connect(settings(mailbox, security="tls", timeout=2.0))


# --- folders ------------------------------------------------------------------------------


async def test_list_folders_special_use(client: ImapClient) -> None:
    folders = {f.name: f for f in await client.list_folders()}
    roles = {f.special_use: name for name, f in folders.items() if f.special_use}
    assert roles == {
        "\\Inbox": "INBOX",
        "\\Sent": "Sent",
        "\\Drafts": "Drafts",
        "\\Trash": "Trash",
        "\\Junk": "Junk",
        "\\Archive": "Archive",
    }
    assert folders["Sent"].delimiter == "/"


async def test_list_folders_heuristics_without_special_use(
    mailbox: MailboxAccount, connect: Callable[..., object]
) -> None:
    c: ImapClient = await connect(mailbox, disabled_caps=frozenset({"SPECIAL-USE"}))  # type: ignore[misc]
    await c.create_folder("Sent Items")
    await c.create_folder("Spam")
    await c.create_folder("Ünïcode/Sub")
    folders = {f.name: f for f in await c.list_folders()}
    assert folders["Sent"].special_use == "\\Sent"  # top-level "Sent" wins
    assert folders["Sent Items"].special_use is None
    assert folders["Junk"].special_use == "\\Junk"
    assert folders["Spam"].special_use is None
    assert folders["Ünïcode/Sub"].raw_name == b"&ANw-n&AO8-code/Sub"
    assert (await c.status(folders["Ünïcode/Sub"].raw_name)).messages == 0
    assert (await c.status("Ünïcode/Sub")).messages == 0


async def test_status_and_select_numbers(dovecot: Dovecot, client: ImapClient) -> None:
    user = (await client.list_folders()) and client.settings.username
    dovecot.seed_maildir(
        user, "INBOX", [MSG % (i, i) for i in range(5)], flags=["S", "S", "S", "", ""]
    )
    st = await client.status("INBOX")
    assert (st.messages, st.unseen, st.uidnext) == (5, 2, 6)
    assert st.highestmodseq is not None
    sel = await client.select("INBOX")
    assert (sel.exists, sel.uidnext, sel.uidvalidity) == (5, 6, st.uidvalidity)
    assert sel.highestmodseq == st.highestmodseq
    assert await client.uid_search("ALL") == [1, 2, 3, 4, 5]
    assert await client.uid_search("UNSEEN") == [4, 5]
    with pytest.raises(FolderMissing):
        await client.select("Nope")
    with pytest.raises(FolderMissing):
        await client.status("Nope")


async def test_search_without_esearch(
    dovecot: Dovecot, mailbox: MailboxAccount, connect: Callable[..., object]
) -> None:
    dovecot.seed_maildir(mailbox.email, "INBOX", [MSG % (i, i) for i in range(3)])
    c: ImapClient = await connect(mailbox, disabled_caps=frozenset({"ESEARCH"}))  # type: ignore[misc]
    await c.select("INBOX")
    assert await c.uid_search("ALL") == [1, 2, 3]
    assert await c.uid_search("SUBJECT nothing-matches") == []


# --- fetching -----------------------------------------------------------------------------


async def test_fetch_exact_bytes_and_never_sets_seen(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    eight_bit = (
        b"From: a@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
        b"Content-Type: text/plain; charset=latin-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"caf\xe9 \xff\xfe bytes\r\n"
        + bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"")
        + b"\r\n"
    )
    with_nul = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
    when = dt.datetime(2024, 2, 29, 13, 14, 15, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    dovecot.append(mailbox.email, "INBOX", eight_bit, date=when)
    dovecot.append(mailbox.email, "INBOX", with_nul)
    await client.select("INBOX")
    heads = await client.fetch_headers([1, 2])
    assert [h.uid for h in heads] == [1, 2]
    assert heads[0].header == eight_bit.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert heads[0].internaldate == when
    assert heads[0].size == len(eight_bit)
    assert heads[0].modseq is not None
    msgs = await client.fetch_messages([2, 1])
    assert [m.uid for m in msgs] == [1, 2]
    assert msgs[0].raw == eight_bit
    # RFC 3501 forbids NUL in literals: Dovecot substitutes 0x80 in BODY[]
    # (only BINARY[] could carry it, and that decodes transfer encodings).
    assert msgs[1].raw == with_nul.replace(b"\x00", b"\x80")
    assert msgs[1].size == len(with_nul)
    # Not \Seen, neither in our session nor for another client.
    assert all("\\Seen" not in m.flags for m in msgs)
    assert "Seen" not in "".join(seen_flags(dovecot, mailbox.email).values())
    assert await client.fetch_messages([99]) == []


async def test_fetch_many_in_chunks(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    n = 1200
    dovecot.seed_maildir(mailbox.email, "INBOX", [MSG % (i, i) for i in range(n)])
    await client.select("INBOX")
    uids = await client.uid_search("ALL")
    every_other = uids[::2]  # no runs: exercises line-length chunking
    msgs = await client.fetch_messages(every_other)
    assert [m.uid for m in msgs] == every_other
    assert msgs[-1].raw == MSG % (n - 2, n - 2)
    heads = await client.fetch_headers(uids)
    assert len(heads) == n


async def test_qresync_select_reports_flag_changes_and_vanished(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    dovecot.seed_maildir(mailbox.email, "INBOX", [MSG % (i, i) for i in range(6)])
    first = await client.select("INBOX")
    assert first.highestmodseq is not None
    await client.select("Sent")  # leave INBOX; another client changes it
    u = mailbox.email
    dovecot.doveadm("flags", "add", "-u", u, "\\Flagged", "mailbox", "INBOX", "uid", "2")
    dovecot.doveadm("expunge", "-u", u, "mailbox", "INBOX", "uid", "4:5")
    sel = await client.select("INBOX", qresync=(first.uidvalidity, first.highestmodseq))
    assert sel.resynced
    assert sel.vanished == {4, 5}
    changed = {c.uid: c for c in sel.changed}
    assert set(changed) == {2}
    assert "\\Flagged" in changed[2].flags
    assert changed[2].modseq is not None and changed[2].modseq > first.highestmodseq
    assert sel.highestmodseq is not None and sel.highestmodseq > first.highestmodseq
    # The same through CHANGEDSINCE + VANISHED on the selected mailbox.
    ff = await client.fetch_flags("1:*", changed_since=first.highestmodseq, vanished=True)
    assert {x.uid for x in ff.updates} == {2}
    assert ff.vanished == {4, 5}
    # Stale uidvalidity: nothing is claimed, caller must resync fully.
    stale = await client.select("INBOX", qresync=(first.uidvalidity + 1, 1))
    assert not stale.resynced and stale.vanished == frozenset() and stale.changed == ()


async def test_condstore_fallback_without_qresync(
    dovecot: Dovecot, mailbox: MailboxAccount, connect: Callable[..., object]
) -> None:
    dovecot.seed_maildir(mailbox.email, "INBOX", [MSG % (i, i) for i in range(3)])
    c: ImapClient = await connect(mailbox, disabled_caps=frozenset({"QRESYNC"}))  # type: ignore[misc]
    assert not c.qresync_enabled and c.condstore
    first = await c.select("INBOX")
    assert first.highestmodseq is not None
    dovecot.doveadm("flags", "add", "-u", mailbox.email, "\\Seen", "mailbox", "INBOX", "uid", "3")
    ff = await c.fetch_flags("1:*", changed_since=first.highestmodseq)
    assert [(x.uid, "\\Seen" in x.flags) for x in ff.updates] == [(3, True)]
    sel = await c.select("INBOX", qresync=(first.uidvalidity, first.highestmodseq))
    assert not sel.resynced
    assert [x.uid for x in sel.changed] == [3]


async def test_uidvalidity_change_visible(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    first = await client.select("INBOX")
    await client.select("Sent")
    dovecot.doveadm(
        "mailbox",
        "update",
        "-u",
        mailbox.email,
        "--uid-validity",
        str(first.uidvalidity + 7),
        "INBOX",
    )
    again = await client.select("INBOX")
    assert again.uidvalidity == first.uidvalidity + 7


# --- idle -------------------------------------------------------------------------------------


async def test_idle_wakes_on_lmtp_delivery(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    await client.select("INBOX")
    assert await client.idle(0.2) == []  # nothing happens: times out empty

    async def deliver_soon() -> None:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(dovecot.deliver, mailbox.email, MSG % (1, 1))

    task = asyncio.create_task(deliver_soon())
    events = await client.idle(20)
    await task
    assert [e.kind for e in events if e.kind == "exists"] == ["exists"]
    assert next(e.number for e in events if e.kind == "exists") == 1
    assert len(await client.fetch_headers(await client.uid_search("ALL"))) == 1


async def test_idle_reports_flag_changes_and_queued_events(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    dovecot.seed_maildir(mailbox.email, "INBOX", [MSG % (1, 1)])
    await client.select("INBOX")
    dovecot.doveadm(
        "flags", "add", "-u", mailbox.email, "\\Flagged", "mailbox", "INBOX", "uid", "1"
    )
    events = await client.idle(20)
    fetches = [e for e in events if e.kind == "fetch"]
    assert fetches and fetches[0].uid == 1 and fetches[0].flags is not None
    assert "\\Flagged" in fetches[0].flags
    # Events that arrive during another command are kept for the next idle()/noop().
    dovecot.deliver(mailbox.email, MSG % (2, 2))
    await asyncio.sleep(0.05)
    await client.noop()  # may or may not carry EXISTS yet, depending on timing
    events = await client.idle(20) if not await client.uid_search("UID 2") else []
    assert await client.uid_search("ALL") == [1, 2]
    del events


async def test_idle_fallback_polls_with_noop(
    dovecot: Dovecot, mailbox: MailboxAccount, connect: Callable[..., object]
) -> None:
    c: ImapClient = await connect(mailbox, disabled_caps=frozenset({"IDLE"}))  # type: ignore[misc]
    await c.select("INBOX")
    asyncio.get_running_loop().call_later(0.1, dovecot.deliver, mailbox.email, MSG % (1, 1))
    events = await c.idle(20)
    assert any(e.kind == "exists" for e in events)


# --- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disabled",
    [frozenset(), frozenset({"MOVE"}), frozenset({"MOVE", "UIDPLUS"})],
    ids=["move", "copy+uidplus", "copy+expunge"],
)
async def test_move(
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    connect: Callable[..., object],
    disabled: frozenset[str],
) -> None:
    dovecot.seed_maildir(mailbox.email, "INBOX", [MSG % (i, i) for i in range(5)])
    c: ImapClient = await connect(mailbox, disabled_caps=disabled)  # type: ignore[misc]
    await c.select("INBOX", readonly=False)
    mapping = await c.move([2, 4], "Archive")
    if "UIDPLUS" in disabled:
        assert mapping == {}
    else:
        assert mapping == {2: 1, 4: 2}
    assert await c.uid_search("ALL") == [1, 3, 5]
    await c.select("Archive")
    got = await c.fetch_messages(await c.uid_search("ALL"))
    assert [m.raw for m in got] == [MSG % (1, 1), MSG % (3, 3)]
    with pytest.raises(FolderMissing):
        await c.select("INBOX", readonly=False)
        await c.move([1], "Missing")


async def test_store_flags_and_expunge(
    dovecot: Dovecot, mailbox: MailboxAccount, client: ImapClient
) -> None:
    dovecot.seed_maildir(mailbox.email, "INBOX", [MSG % (i, i) for i in range(4)])
    await client.select("INBOX", readonly=False)
    await client.store_flags([1, 2], add=["\\Seen", "$Crm"])
    await client.store_flags([2], remove=["\\Seen"])
    flags = seen_flags(dovecot, mailbox.email)
    assert "\\Seen" in flags[1] and "$Crm" in flags[1]
    assert "\\Seen" not in flags[2] and "$Crm" in flags[2]
    await client.expunge([3])
    assert await client.uid_search("ALL") == [1, 2, 4]


@pytest.mark.parametrize("disabled", [frozenset(), frozenset({"UIDPLUS", "LITERAL+"})])
async def test_append(
    dovecot: Dovecot,
    mailbox: MailboxAccount,
    connect: Callable[..., object],
    disabled: frozenset[str],
) -> None:
    c: ImapClient = await connect(mailbox, disabled_caps=disabled)  # type: ignore[misc]
    raw = b"Subject: sent copy\r\n\r\n8-bit \xe9\r\n"
    when = dt.datetime(2023, 5, 1, 8, 0, tzinfo=dt.UTC)
    uid = await c.append("Sent", raw, flags=["\\Seen"], when=when)
    assert uid == (None if "UIDPLUS" in disabled else 1)
    await c.select("Sent")
    (m,) = await c.fetch_messages([1])
    assert m.raw == raw and m.internaldate == when and "\\Seen" in m.flags
    with pytest.raises(FolderMissing):
        await c.append("No/Such", raw)


async def test_create_folder(client: ImapClient) -> None:
    await client.create_folder("Projects/Crm", special_use="\\Archive")
    await client.create_folder("Projects/Crm")  # already exists: not an error
    names = {f.name for f in await client.list_folders()}
    assert {"Projects", "Projects/Crm"} <= names
    await client.append("Projects/Crm", b"Subject: x\r\n\r\ny\r\n")
    assert (await client.status("Projects/Crm")).messages == 1


async def test_logout_then_close_never_raises(client: ImapClient) -> None:
    await client.logout()
    await client.close()
    with pytest.raises(ConnectFailed):
        await client.noop()


def test_ssl_module_available() -> None:
    # The fixture CA must be loadable by the stdlib (sanity for TLS tests above).
    ssl.create_default_context()


async def test_smtp_relay_delivers_to_imap(
    smtp_relay: SmtpRelay, mailbox: MailboxAccount, client: ImapClient
) -> None:
    import smtplib

    raw = (
        b"From: x@example.test\r\nTo: %s\r\nSubject: via smtp\r\n\r\nhi\r\n"
        % mailbox.email.encode()
    )
    with smtplib.SMTP(smtp_relay.host, smtp_relay.port) as smtp:
        smtp.sendmail("x@example.test", [mailbox.email], raw)
    assert smtp_relay.accepted[-1].rcpt_tos == (mailbox.email,)
    await client.select("INBOX")
    (m,) = await client.fetch_messages(await client.uid_search("ALL"))
    assert b"Subject: via smtp" in m.raw
