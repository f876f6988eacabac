"""`crmail blocklist …`: the auto-create blocklist of a workspace from the command line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from crmail.cli import main
from crmail.config import Settings
from crmail.services import Services
from crmail.storage import autocreate, crm

pytestmark = pytest.mark.db


def _run(settings: Settings, *args: str) -> Result:
    env = {
        "CRMAIL_DATA_DIR": str(settings.data_dir),
        "CRMAIL_DATABASE_URL": settings.database_url,
        "CRMAIL_SECRET_KEY": ",".join(settings.secret_keys),
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_blocklist_commands(settings: Settings, services: Services) -> None:
    ws = str(services.db.run(lambda s: crm.create_workspace(s, "Acme").id))
    added = _run(
        settings, "blocklist", "add", "--workspace-id", ws, "Boss@Partner.test", "@rival.test"
    )
    assert added.exit_code == 0, added.output
    assert added.stdout.split() == ["boss@partner.test", "@rival.test"]
    stored = services.db.run(lambda s: autocreate.blocklist(s, int(ws)))
    assert stored.blocks("boss@partner.test") and stored.blocks("anyone@rival.test")

    removed = _run(settings, "blocklist", "remove", "--workspace-id", ws, "BOSS@partner.test")
    assert removed.exit_code == 0, removed.output
    listed = _run(settings, "blocklist", "list", "--workspace-id", ws)
    assert listed.stdout.split() == ["@rival.test"]

    bad = _run(settings, "blocklist", "add", "--workspace-id", ws, "not an address")
    assert bad.exit_code == 1 and "not an address or @domain" in bad.output
    missing = _run(settings, "blocklist", "list", "--workspace-id", "999")
    assert missing.exit_code == 1 and "workspace 999 not found" in missing.output
