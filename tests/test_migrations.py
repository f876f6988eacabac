"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text

from crmail.services import Services
from crmail.storage.migrate import alembic_config, current, downgrade, upgrade
from crmail.storage.models import Base

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrations_match_models(services: Services) -> None:
    assert current(services.db.engine) == HEAD
    with services.db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    assert diff == []


def test_downgrade_and_upgrade_again(services: Services) -> None:
    downgrade(services.db.engine, "base")
    assert current(services.db.engine) is None
    upgrade(services.db.engine)
    assert current(services.db.engine) == HEAD


def test_user_tokens_move_to_api_tokens_and_nothing_else_is_lost(services: Services) -> None:
    # 0003 rebuilds ``users`` on SQLite: rows pointing at a user (here a mail account)
    # must survive it, and the user's old token must still sign in.
    downgrade(services.db.engine, "0002")
    digest = "ab" * 32
    with services.db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO workspaces (id, name, settings, created_at) "
                "VALUES (1, 'Acme', '{}', '2026-01-01 00:00:00+00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO users (id, workspace_id, email, name, role, token_hash,"
                " created_at) VALUES (7, 1, 'a@acme.test', 'A', 'admin', :h,"
                " '2026-01-01 00:00:00+00:00')"
            ),
            {"h": digest},
        )
        conn.execute(
            text(
                "INSERT INTO mail_accounts (id, workspace_id, user_id, email, provider,"
                " settings, secret, state, created_at) VALUES (3, 1, 7, 'a@acme.test',"
                " 'imap', '{}', :secret, 'new', '2026-01-01 00:00:00+00:00')"
            ),
            {"secret": b"sealed"},
        )
    upgrade(services.db.engine)
    with services.db.engine.connect() as conn:
        tokens = conn.execute(
            text("SELECT user_id, name, token_hash, revoked_at FROM api_tokens")
        ).all()
        accounts = conn.execute(text("SELECT id, user_id FROM mail_accounts")).all()
        disabled = conn.execute(text("SELECT disabled_at FROM users WHERE id = 7")).scalar_one()
    assert [tuple(r) for r in tokens] == [(7, "initial", digest, None)]
    assert [tuple(r) for r in accounts] == [(3, 7)]
    assert disabled is None
    # and back: the token returns to its user
    downgrade(services.db.engine, "0002")
    with services.db.engine.connect() as conn:
        back = conn.execute(text("SELECT token_hash FROM users WHERE id = 7")).scalar_one()
        count = conn.execute(text("SELECT count(*) FROM mail_accounts")).scalar_one()
    assert (back, count) == (digest, 1)


def test_dedup_keys_take_the_message_id_prefix_and_copies_still_match(
    services: Services,
) -> None:
    # 0019 rewrites the key of every message with a Message-ID; a copy imported after
    # the upgrade must find the stored message (not be stored twice), and a reply must
    # find it by Message-ID with the Message-ID index gone.
    import hashlib

    from crmail.mime import parse_message
    from crmail.mime.keys import envelope_key
    from crmail.storage import mail
    from crmail.storage.models import Message
    from tests.factories import new_world

    def raw(mid: str, sender: str, *refs: str) -> bytes:
        head = f"From: {sender}\r\nTo: me@acme.test\r\nSubject: Offer\r\nMessage-ID: <{mid}>\r\n"
        if refs:
            head += f"In-Reply-To: <{refs[-1]}>\r\n"
        return (head + "\r\nHello\r\n").encode()

    def new(data: bytes) -> mail.NewMessage:
        parsed = parse_message(data)
        return mail.NewMessage(envelope_key(parsed.envelope, data), parsed, data, ())

    ws = new_world(services).workspace_id
    first, no_id = raw("offer@client.test", "Ann <ann@client.test>"), b"From: x@y.test\r\n\r\nhi"
    services.db.run(lambda s: mail.store_messages(s, ws, [new(first), new(no_id)]))
    keys = lambda: services.db.run(  # noqa: E731
        lambda s: dict(s.execute(text("SELECT message_id, dedup_key FROM messages")).all())
    )
    stored = keys()
    downgrade(services.db.engine, "0018")
    old = hashlib.sha256(b"mid\noffer@client.test\nann@client.test").hexdigest()
    assert keys() == {"offer@client.test": old, None: stored[None]}
    upgrade(services.db.engine)
    assert keys() == stored == {"offer@client.test": new(first).dedup_key, None: stored[None]}
    assert stored["offer@client.test"].startswith(old[:32], 32)

    again = services.db.run(lambda s: mail.store_messages(s, ws, [new(first)]))
    reply = raw("re@me.test", "Me <me@acme.test>", "offer@client.test")
    services.db.run(lambda s: mail.store_messages(s, ws, [new(reply)]))
    threads = services.db.run(
        lambda s: dict(s.execute(text("SELECT message_id, thread_id FROM messages")).all())
    )
    assert again == []
    assert threads["re@me.test"] == threads["offer@client.test"]
    with services.db.engine.connect() as conn:
        indexes = {i["name"] for i in sa_inspect(conn).get_indexes(Message.__tablename__)}
    assert "ix_messages_ws_msgid" not in indexes
