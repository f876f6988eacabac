"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crmail.services import Services
from crmail.storage.migrate import current
from crmail.storage.models import Base


def test_migrations_match_models(services: Services) -> None:
    assert current(services.db.engine) == "0002"
    with services.db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    assert diff == []


def test_downgrade_and_upgrade_again(services: Services) -> None:
    from alembic import command

    from crmail.storage.migrate import alembic_config, upgrade

    cfg = alembic_config(services.db.engine.url.render_as_string(hide_password=False))
    with services.db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert current(services.db.engine) is None
    upgrade(services.db.engine)
    assert current(services.db.engine) == "0002"
