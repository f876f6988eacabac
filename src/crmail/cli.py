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


@main.group()
def user() -> None:
    """Manage users: add one (prints its API token), set a web password."""


@user.command("add")
@click.option("--workspace-name", default=None, help="Create a new workspace with this name.")
@click.option("--workspace-id", type=int, default=None, help="Add to this existing workspace.")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--role", type=click.Choice(["admin", "member"]), default="member", show_default=True)
@click.option("--password", default=None, help="Web sign-in password (prompted when omitted).")
@click.option("--no-password", is_flag=True, help="API token only: no web sign-in.")
@_fail_cleanly
def user_add(
    workspace_name: str | None,
    workspace_id: int | None,
    email: str,
    name: str,
    role: str,
    password: str | None,
    no_password: bool,
) -> None:
    """Create a user; its API token is printed once and never stored in clear."""
    from crmail.storage import crm
    from crmail.storage import web as web_store

    if (workspace_name is None) == (workspace_id is None):
        raise click.UsageError("give exactly one of --workspace-name and --workspace-id")
    if password is None and not no_password:
        password = click.prompt("Web password", hide_input=True, confirmation_prompt=True)
    services = _services()

    def make(s: Any) -> crm.NewUser:
        ws = workspace_id
        if ws is None:
            ws = crm.create_workspace(s, str(workspace_name)).id
        else:
            web_store.check_workspace(s, ws)
        new = crm.create_user(s, ws, email, name=name, role=role)
        if password:
            web_store.set_password(s, new.user.id, password)
        return new

    try:
        new = services.db.run(make)
    finally:
        services.close()
    click.echo(
        f"user {new.user.id} <{new.user.email}> ({new.user.role}) in workspace {new.user.workspace_id}"
    )
    click.echo(f"API token (shown once): {new.token}")


@user.command("set-password")
@click.argument("email")
@click.option("--workspace-id", type=int, default=None, help="When the address is in several.")
@click.option("--password", default=None, help="The new password (prompted when omitted).")
@_fail_cleanly
def user_set_password(email: str, workspace_id: int | None, password: str | None) -> None:
    """Set (or reset) a user's web sign-in password; their web sessions end."""
    from crmail.errors import InvalidInput, NotFound
    from crmail.storage import web as web_store

    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    new_password = password
    services = _services()

    def change(s: Any) -> str:
        users = [
            u
            for u in web_store.users_by_email(s, email)
            if workspace_id is None or u.workspace_id == workspace_id
        ]
        if not users:
            raise NotFound(f"no user {email}")
        if len(users) > 1:
            raise InvalidInput(
                f"{email} is a user in several workspaces", hint="add --workspace-id"
            )
        web_store.set_password(s, users[0].id, new_password)
        return users[0].email

    try:
        who = services.db.run(change)
    finally:
        services.close()
    click.echo(f"password set for {who}")


if __name__ == "__main__":  # pragma: no cover
    main()
