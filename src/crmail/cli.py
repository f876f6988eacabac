"""The `crmail` command: a thin shell over the services."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.errors import CrmailError
from crmail.services import Services


def _services(**overrides: Any) -> Services:
    return Services.open(Settings.from_env(**{k: v for k, v in overrides.items() if v is not None}))


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CrmailError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log sync activity.")
def main(verbose: bool) -> None:
    """crmail: two-way email sync between your CRM and your users' mailboxes."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@_fail_cleanly
def migrate() -> None:
    """Create or upgrade the database schema."""
    services = _services()
    from crmail.storage.migrate import current

    click.echo(
        f"database at revision {current(services.db.engine)} ({services.settings.database_url})"
    )
    services.close()


@main.command()
def keygen() -> None:
    """Print a new secret key for CRMAIL_SECRET_KEY."""
    click.echo(new_key())


@main.command()
@click.option("--host", default=None, help="API listen address (CRMAIL_HOST).")
@click.option("--port", type=int, default=None, help="API port (CRMAIL_PORT).")
@_fail_cleanly
def run(host: str | None, port: int | None) -> None:
    """Run the service: REST API and sync workers for every connected account."""
    from crmail.runtime import serve

    services = _services(host=host, port=port)
    asyncio.run(serve(services))


@main.command()
@click.option("--port", type=int, default=None, help="API port.")
@_fail_cleanly
def demo(port: int | None) -> None:
    """Start crmail on SQLite against a local demo mailbox (Dovecot) with seeded mail."""
    from crmail.demo import run_demo

    asyncio.run(run_demo(port=port))


@main.command()
@_fail_cleanly
def status() -> None:
    """Show every account's sync status."""
    from crmail.storage import accounts
    from crmail.storage.models import MailAccount

    services = _services()

    def collect(s: Any) -> list[accounts.AccountStatus]:
        from sqlalchemy import select

        return [
            accounts.status(s, i)
            for i in s.scalars(select(MailAccount.id).order_by(MailAccount.id))
        ]

    rows = services.db.run(collect)
    if not rows:
        click.echo("no mail accounts connected")
    for st in rows:
        click.echo(f"#{st.id} {st.email} [{st.provider}] state={st.state} synced={st.synced}")
        if st.last_error:
            click.echo(f"    last error: {st.last_error}")
        for f in st.folders:
            bar = _bar(f.progress)
            skipped = ", ".join(f"{k}={v}" for k, v in sorted(f.skipped.items())) or "none"
            click.echo(
                f"    {f.name:<20} {bar} {f.import_done}/{f.import_total} synced={f.synced} skipped: {skipped}"
            )
    services.close()


def _bar(progress: float, width: int = 20) -> str:
    filled = round(progress * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {progress * 100:5.1f}%"


@main.command()
@click.argument("account_id", type=int)
@_fail_cleanly
def sync(account_id: int) -> None:
    """Import and catch up one account once, showing progress, then exit."""
    from crmail.runtime import sync_once

    services = _services()
    asyncio.run(sync_once(services, account_id, progress=_print_progress))
    services.close()


def _print_progress(name: str, done: int, total: int) -> None:
    frac = 1.0 if total == 0 else done / total
    click.echo(f"\r{name:<20} {_bar(frac)} {done}/{total}", nl=False)
    if done >= total:
        click.echo()


if __name__ == "__main__":  # pragma: no cover
    main()
