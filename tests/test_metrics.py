"""What an operator watches: `GET /metrics` (Prometheus text, behind its own secret) and
`crmail status`, both from one snapshot of the database that follows its changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import update

from crmail.api import create_app
from crmail.cli import main
from crmail.config import Settings
from crmail.errors import InvalidInput
from crmail.services import Services
from crmail.storage.models import (
    AccountLease,
    Folder,
    MailAccount,
    OutboxAction,
    SyncProcess,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from tests.factories import new_world

TOKEN = "m" * 32
LINE = re.compile(r'^([a-z_]+)(\{(?:[a-z]+="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.]+)$')
LABEL = re.compile(r'([a-z]+)="((?:[^"\\]|\\.)*)"')

Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics_services(settings: Settings) -> Iterator[Services]:
    svc = Services.open(replace(settings, metrics_token=TOKEN))
    try:
        yield svc
    finally:
        svc.close()


def parse(text: str) -> Figures:
    """The exposition format, strictly: every sample line well formed and declared."""
    declared: set[str] = set()
    out: Figures = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind == "gauge"
            declared.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        m = LINE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) in declared, f"{m.group(1)} has no TYPE line"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def fig(figures: Figures, name: str, **labels: str) -> float:
    return figures[(name, frozenset(labels.items()))]


def scrape(client: TestClient) -> Figures:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


def test_metrics_are_off_without_a_token_and_refuse_a_wrong_one(
    services: Services, metrics_services: Services
) -> None:
    off = TestClient(create_app(services)).get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert off.status_code == 404
    client = TestClient(create_app(metrics_services))
    for headers in ({}, {"Authorization": "Bearer " + "x" * 32}, {"Authorization": TOKEN}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthenticated"
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_short_metrics_token_is_refused_at_start() -> None:
    with pytest.raises(InvalidInput, match="CRMAIL_METRICS_TOKEN"):
        Settings.from_env({"CRMAIL_METRICS_TOKEN": "secret"})
    assert Settings.from_env({"CRMAIL_METRICS_TOKEN": TOKEN}).metrics_token == TOKEN


def test_figures_follow_the_database(metrics_services: Services) -> None:
    services = metrics_services
    client = TestClient(create_app(services))
    world = new_world(services)
    user = world.user("op@acme.test")
    now = utcnow()

    def account(state: str, checked_ago: float | None = None) -> int:
        def make(s):  # type: ignore[no-untyped-def]
            a = MailAccount(
                workspace_id=world.workspace_id,
                user_id=user,
                email=f"{state}{checked_ago}@acme.test",
                secret=b"x",
                state=state,
            )
            s.add(a)
            s.flush()
            if checked_ago is not None:
                s.add(
                    Folder(
                        account_id=a.id,
                        name="INBOX",
                        role="inbox",
                        last_sync_at=now - timedelta(seconds=checked_ago),
                    )
                )
            return a.id

        return int(services.db.run(make))

    empty = scrape(client)
    assert fig(empty, "crmail_accounts", state="live") == 0
    assert fig(empty, "crmail_outbox_actions", state="pending") == 0
    assert ("crmail_account_check_age_seconds", frozenset({("quantile", "1")})) not in empty

    live1, live2 = account("live", 600), account("live", 30)
    account("auth_error")
    account("importing", 60)
    first = scrape(client)
    assert fig(first, "crmail_accounts", state="live") == 2
    assert fig(first, "crmail_accounts", state="auth_error") == 1
    assert fig(first, "crmail_accounts", state="importing") == 1
    assert fig(first, "crmail_accounts_unowned") == 3  # auth_error waits for the user
    assert 600 <= fig(first, "crmail_account_check_age_seconds", quantile="1") < 660
    assert 60 <= fig(first, "crmail_account_check_age_seconds", quantile="0.5") < 120

    # A process takes a lease; an account's password is refused; work queues up.
    def changes(s):  # type: ignore[no-untyped-def]
        later = utcnow() + timedelta(seconds=60)
        s.add(AccountLease(account_id=live1, owner='h:1:"q"', epoch=1, expires_at=later))
        s.add(SyncProcess(owner='h:1:"q"', expires_at=later))
        s.execute(update(MailAccount).where(MailAccount.id == live2).values(state="auth_error"))
        old = now - timedelta(seconds=300)
        for state in ("pending", "pending", "failed"):
            s.add(
                OutboxAction(
                    workspace_id=world.workspace_id,
                    account_id=live1,
                    kind="sync",
                    state=state,
                    created_at=old,
                )
            )
            s.flush()
        for state in ("done", "done", "failed"):
            s.add(
                OutboxAction(
                    workspace_id=world.workspace_id, account_id=live1, kind="send", state=state
                )
            )
            s.flush()
        ep = WebhookEndpoint(workspace_id=world.workspace_id, url="https://h.test/", secret=b"x")
        s.add(ep)
        s.flush()
        for i, state in enumerate(("pending", "failed", "delivered")):
            ev = WebhookEvent(public_id=f"ev{i}", workspace_id=world.workspace_id, type="t")
            s.add(ev)
            s.flush()
            s.add(WebhookDelivery(endpoint_id=ep.id, event_id=ev.id, state=state))
            s.flush()

    services.db.run(changes)
    second = scrape(client)
    assert fig(second, "crmail_accounts", state="live") == 1
    assert fig(second, "crmail_accounts", state="auth_error") == 2
    assert fig(second, "crmail_accounts_unowned") == 1  # the importing one
    assert fig(second, "crmail_account_leases", owner='h:1:\\"q\\"') == 1
    assert fig(second, "crmail_sync_processes") == 1
    assert fig(second, "crmail_outbox_actions", state="pending") == 2
    assert fig(second, "crmail_outbox_actions", state="failed") == 2  # a sync, a send
    assert 300 <= fig(second, "crmail_outbox_oldest_pending_seconds") < 360
    assert fig(second, "crmail_webhook_deliveries", state="pending") == 1
    assert fig(second, "crmail_webhook_deliveries", state="failed") == 1
    assert fig(second, "crmail_sends_last_hour", outcome="sent") == 2
    assert fig(second, "crmail_sends_last_hour", outcome="failed") == 1

    # The same figures on the command line, for an operator without Prometheus.
    env = {
        "CRMAIL_DATA_DIR": str(services.settings.data_dir),
        "CRMAIL_DATABASE_URL": services.settings.database_url,
        "CRMAIL_SECRET_KEY": ",".join(services.settings.secret_keys),
    }
    out = CliRunner().invoke(main, ["status", "--summary"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "accounts: auth_error=2 importing=1 live=1; not held by any process: 1" in out.output
    assert "sync processes: 1" in out.output
    assert 'h:1:"q": 1 account lease(s)' in out.output
    assert "outbox: pending=2 running=0 failed=2, oldest pending 3" in out.output
    assert "webhook deliveries: pending=1 failed=1" in out.output
    assert "sends in the last hour: sent=2 failed=1" in out.output
    full = CliRunner().invoke(main, ["status"], env=env, catch_exceptions=False)
    assert f"#{live1} " in full.output and "sync processes: 1" in full.output
