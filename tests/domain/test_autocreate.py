"""The auto-create rule (Freshsales, seed 004): which new addresses become contacts."""

from __future__ import annotations

from crmail.domain.autocreate import Blocklist, Mail, Options, is_no_reply, new_contacts

ME = "me@acme.test"
OWN = frozenset({ME, "coworker@acme.test"})
OUTGOING_ONLY = Options(outgoing=True, incoming=False)
NO_BLOCKLIST = Blocklist()


def rule(
    mail: Mail,
    options: Options = OUTGOING_ONLY,
    *,
    known: frozenset[str] = frozenset(),
    blocklist: Blocklist = NO_BLOCKLIST,
) -> dict[str, str]:
    return new_contacts(
        mail, account_email=ME, options=options, own=OWN, known=known, blocklist=blocklist
    )


def outgoing(*to: str, bulk: bool = False) -> Mail:
    return Mail((ME,), tuple((t, f"Name of {t}") for t in to), bulk)


def incoming(sender: str, *to: str) -> Mail:
    return Mail((sender,), tuple((t, "") for t in to), False)


def test_outgoing_recipients_become_contacts_with_their_names() -> None:
    got = rule(outgoing("New@Client.test", "other@client.test"))
    assert got == {
        "new@client.test": "Name of New@Client.test",
        "other@client.test": "Name of other@client.test",
    }


def test_off_by_default() -> None:
    assert Options.of({}) == Options(False, False)
    assert rule(outgoing("new@client.test"), Options.of({})) == {}


def test_incoming_only_with_its_flag_and_never_the_sender() -> None:
    mail = incoming("stranger@x.test", ME, "cc-person@client.test")
    assert rule(mail) == {}
    both = Options.of({"auto_create_contacts": True, "auto_create_incoming": True})
    assert rule(mail, both) == {"cc-person@client.test": ""}
    # the incoming flag alone does nothing: it extends outgoing auto-create
    assert Options.of({"auto_create_incoming": True}) == Options(False, False)


def test_own_known_blocklisted_bulk_and_no_reply_never() -> None:
    blocklist = Blocklist.parse(["boss@partner.test", "@competitor.test", "not an address", "@"])
    assert blocklist == Blocklist(frozenset({"boss@partner.test"}), frozenset({"competitor.test"}))
    mail = outgoing(
        "coworker@acme.test",  # a workspace user
        "known@client.test",
        "boss@partner.test",
        "spy@competitor.test",
        "noreply@shop.test",
        "Mailer-Daemon@relay.test",
        "no-reply+tag@svc.test",
        "ok@partner.test",
        "a@sub.competitor.test",  # exact domains only
    )
    got = rule(mail, known=frozenset({"known@client.test"}), blocklist=blocklist)
    assert set(got) == {"ok@partner.test", "a@sub.competitor.test"}
    assert rule(outgoing("person@client.test", bulk=True)) == {}


def test_no_reply_list_is_small_and_exact() -> None:
    assert is_no_reply("postmaster@x.test")
    assert is_no_reply("do-not-reply@x.test")
    assert not is_no_reply("replies@x.test")
    assert not is_no_reply("noreplyjoe@x.test")
