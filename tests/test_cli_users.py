"""`crmail user …`: tokens listed, made and revoked, users disabled and enabled, passwords set."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from crmail.cli import main
from crmail.config import Settings
from crmail.errors import Forbidden, Unauthenticated
from crmail.services import Services
from crmail.storage import crm, tokens, web
from crmail.storage.models import WebSession


@pytest.fixture
def cli(settings: Settings, services: Services) -> tuple[CliRunner, dict[str, str]]:
    key = ",".join(settings.secret_keys)
    env = {
        "CRMAIL_DATA_DIR": str(settings.data_dir),
        "CRMAIL_DATABASE_URL": settings.database_url,
        "CRMAIL_SECRET_KEY": key,
    }
    return CliRunner(), env


def _run(cli: tuple[CliRunner, dict[str, str]], *args: str) -> Result:
    runner, env = cli
    return runner.invoke(main, list(args), env=env, catch_exceptions=False)


def _works(services: Services, secret: str) -> bool:
    try:
        services.db.run(lambda s: tokens.check(s, secret))
    except Unauthenticated:
        return False
    return True


def _sessions(services: Services, user_id: int) -> int:
    return services.db.run(
        lambda s: s.query(WebSession).filter(WebSession.user_id == user_id).count()
    )


def test_token_commands(cli: tuple[CliRunner, dict[str, str]], services: Services) -> None:
    added = _run(
        cli, "user", "add", "--workspace-name", "Acme", "--email", "ann@acme.test", "--no-password"
    )
    assert added.exit_code == 0, added.output
    initial = re.search(r"\(shown once\): (\S+)", added.output)
    assert initial and _works(services, initial.group(1))

    made = _run(
        cli, "user", "tokens", "create", "ann@acme.test", "--name", "backup job",
        "--expires-in-days", "30",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    m = re.search(r"token #(\d+) 'backup job' \(shown once\): (crm_\S+)", made.output)
    assert m, made.output
    token_id, secret = m.group(1), m.group(2)
    assert _works(services, secret)

    listed = _run(cli, "user", "tokens", "list", "ann@acme.test")
    assert "'initial'" in listed.output and "'backup job'" in listed.output
    assert secret not in listed.output and secret[:8] in listed.output

    assert _run(cli, "user", "tokens", "revoke", "ann@acme.test", token_id).exit_code == 0
    assert not _works(services, secret) and _works(services, initial.group(1))
    assert "revoked" in _run(cli, "user", "tokens", "list", "ann@acme.test").output

    everything = _run(cli, "user", "tokens", "revoke", "ann@acme.test", "--all")
    assert everything.exit_code == 0 and "1 token(s) revoked" in everything.output
    assert not _works(services, initial.group(1))

    both = _run(cli, "user", "tokens", "revoke", "ann@acme.test", "1", "--all")
    assert both.exit_code != 0
    unknown = _run(cli, "user", "tokens", "list", "nobody@acme.test")
    assert unknown.exit_code == 1 and "no user nobody@acme.test" in unknown.output


def _user_with_session(services: Services) -> tuple[int, str]:
    def make(s: Session) -> tuple[int, str]:
        ws = crm.create_workspace(s, "Acme").id
        new = crm.create_user(s, ws, "bob@acme.test", role="admin")
        web.set_password(s, new.user.id, "first password")
        web.create_session(s, new.user.id)
        return new.user.id, new.token

    return services.db.run(make)


def test_disable_and_enable(cli: tuple[CliRunner, dict[str, str]], services: Services) -> None:
    user_id, token = _user_with_session(services)
    out = _run(cli, "user", "disable", "bob@acme.test")
    assert out.exit_code == 0, out.output
    assert _sessions(services, user_id) == 0 and not _works(services, token)
    with pytest.raises(Forbidden, match="this user is disabled"):
        services.db.run(lambda s: web.check_password(s, "bob@acme.test", "first password"))

    assert _run(cli, "user", "enable", "bob@acme.test").exit_code == 0
    signed = services.db.run(lambda s: web.check_password(s, "bob@acme.test", "first password"))
    assert signed is not None and signed.id == user_id
    assert not _works(services, token)  # revoked tokens stay revoked


def test_password_command_ends_sessions_and_can_revoke_tokens(
    cli: tuple[CliRunner, dict[str, str]], services: Services
) -> None:
    user_id, token = _user_with_session(services)
    out = _run(cli, "user", "password", "bob@acme.test", "--password", "second password")
    assert out.exit_code == 0, out.output
    assert _sessions(services, user_id) == 0 and _works(services, token)
    old_name = _run(
        cli, "user", "set-password", "bob@acme.test", "--password", "third password",
        "--revoke-tokens",
    )  # fmt: skip
    assert old_name.exit_code == 0 and "1 API token(s) revoked" in old_name.output
    assert not _works(services, token)
    assert services.db.run(lambda s: web.check_password(s, "bob@acme.test", "third password"))
