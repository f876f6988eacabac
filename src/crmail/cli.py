"""The `crmail` command: a thin shell over the services."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from crmail.config import Settings
from crmail.crypto import new_key
from crmail.errors import CrmailError
from crmail.services import Services

if TYPE_CHECKING:
    from crmail.storage.metrics import Snapshot


def _services(**overrides: Any) -> Services:
    return Services.open(Settings.from_env(**{k: v for k, v in overrides.items() if v is not None}))


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    from crmail.storage.db import translated_errors

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            # A locked or full database is a one-line error, not a traceback.
            with translated_errors():
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
@click.option(
    "--role",
    type=click.Choice(["all", "api", "sync"]),
    default="all",
    show_default=True,
    help="api: the REST API and web app; sync: the sync workers and senders; all: both.",
)
@click.option(
    "--api-workers",
    type=int,
    default=1,
    show_default=True,
    help="processes serving the API on the port (PostgreSQL only): up to the cores.",
)
@_fail_cleanly
def run(host: str | None, port: int | None, role: str, api_workers: int) -> None:
    """Run the service: REST API and sync workers for every connected account.

    On PostgreSQL, run as many as you like: accounts are shared out by leases.
    """
    from crmail import api_processes
    from crmail.runtime import run_until_stopped, serve
    from crmail.storage.single import only_process

    overrides: dict[str, object] = {"host": host, "port": port}
    settings = Settings.from_env(None, **{k: v for k, v in overrides.items() if v is not None})
    api_processes.check_allowed(settings, api_workers, role)
    with only_process(settings.database_url):
        extra = api_processes.start(settings, api_workers - 1)
        try:
            many = api_workers > 1
            code = run_until_stopped(serve(Services.open(settings), role=role, reuse_port=many))
        finally:
            api_processes.stop(extra)
    sys.exit(code)


@main.command()
@click.option("--port", type=int, default=None, help="API port.")
@click.option(
    "--fake-providers",
    is_flag=True,
    help="Also start fake Google and Microsoft on loopback, to try Connect with Google / "
    "Microsoft (needs the repository checkout: the fakes are in tests/fakes/).",
)
@_fail_cleanly
def demo(port: int | None, fake_providers: bool) -> None:
    """Start crmail on SQLite against a local demo mailbox (Dovecot) with seeded mail."""
    from crmail.demo import run_demo
    from crmail.runtime import run_until_stopped

    if fake_providers:
        from crmail.demo.fakes import check_available

        check_available()
    sys.exit(run_until_stopped(run_demo(port=port, with_fake_providers=fake_providers)))


@main.command()
@click.option(
    "--summary", is_flag=True, help="Only the cluster's figures, not every account's lines."
)
@_fail_cleanly
def status(summary: bool) -> None:
    """Show every account's sync status, then the cluster's figures (as GET /metrics)."""
    from crmail.storage import accounts
    from crmail.storage.metrics import snapshot
    from crmail.storage.models import MailAccount

    services = _services()
    if summary:
        _echo_summary(services.db.run(snapshot))
        services.close()
        return

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
    _echo_summary(services.db.run(snapshot))
    services.close()


def _echo_summary(snap: Snapshot) -> None:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}s"

    counts = " ".join(f"{state}={n}" for state, n in sorted(snap.accounts.items()) if n)
    click.echo(f"accounts: {counts or 'none'}; not held by any process: {snap.unowned}")
    click.echo(f"sync processes: {snap.processes}")
    for owner, n in sorted(snap.leases.items()):
        click.echo(f"    {owner}: {n} account lease(s)")
    click.echo(
        f"outbox: pending={snap.outbox['pending']} running={snap.outbox['running']} "
        f"failed={snap.outbox['failed']}, oldest pending {seconds(snap.outbox_oldest_age)}"
    )
    click.echo(
        f"webhook deliveries: pending={snap.webhooks['pending']} failed={snap.webhooks['failed']}"
    )
    click.echo(
        f"last check of an account's folders: p50 {seconds(snap.check_age_p50)}, "
        f"max {seconds(snap.check_age_max)}"
    )
    click.echo(
        f"sends in the last hour: sent={snap.sends_last_hour} failed={snap.sends_failed_last_hour}"
    )


def _bar(progress: float, width: int = 20) -> str:
    filled = round(progress * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {progress * 100:5.1f}%"


@main.command()
@click.argument("account_id", type=int)
@click.option(
    "--wait",
    is_flag=True,
    help="If another process syncs the account, wait until it lets it go (PostgreSQL).",
)
@_fail_cleanly
def sync(account_id: int, wait: bool) -> None:
    """Import and catch up one account once, showing progress, then exit.

    On PostgreSQL it holds the account's lease meanwhile: it refuses (or with --wait,
    waits) while another crmail process syncs the account.
    """
    from crmail.runtime import sync_once
    from crmail.storage.single import only_process

    settings = Settings.from_env()
    with only_process(settings.database_url):
        services = Services.open(settings)
        try:
            asyncio.run(
                sync_once(
                    services,
                    account_id,
                    progress=_print_progress,
                    waiting=_print_waiting if wait else None,
                )
            )
        finally:
            services.close()


def _print_waiting(message: str) -> None:
    click.echo(f"waiting: {message}", err=True)


def _print_progress(name: str, done: int, total: int) -> None:
    frac = 1.0 if total == 0 else done / total
    click.echo(f"\r{name:<20} {_bar(frac)} {done}/{total}", nl=False)
    if done >= total:
        click.echo()


@main.group()
def user() -> None:
    """Manage users: add, disable or enable one, set a web password, manage API tokens."""


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
    click.echo(f"API token 'initial' (shown once): {new.token}")


_WORKSPACE_OPTION = click.option(
    "--workspace-id", type=int, default=None, help="When the address is in several."
)


def _run(fn: Callable[[Any], Any]) -> Any:
    services = _services()
    try:
        return services.db.run(fn)
    finally:
        services.close()


@user.command("password")
@click.argument("email")
@_WORKSPACE_OPTION
@click.option("--password", default=None, help="The new password (prompted when omitted).")
@click.option("--revoke-tokens", is_flag=True, help="Also revoke every API token of the user.")
@_fail_cleanly
def user_password(
    email: str, workspace_id: int | None, password: str | None, revoke_tokens: bool
) -> None:
    """Set (or reset) a user's web sign-in password; their web sessions end."""
    from crmail.storage import tokens, users
    from crmail.storage import web as web_store

    if password is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    new_password = password

    def change(s: Any) -> tuple[str, int]:
        u = users.find_by_email(s, email, workspace_id)
        web_store.set_password(s, u.id, new_password)
        return u.email, tokens.revoke_all(s, u.id) if revoke_tokens else 0

    who, revoked = _run(change)
    click.echo(f"password set for {who}; their web sessions have ended")
    if revoke_tokens:
        click.echo(f"{revoked} API token(s) revoked")


# The command's first name, kept for scripts that use it.
user.add_command(user_password, "set-password")


@user.command("disable")
@click.argument("email")
@_WORKSPACE_OPTION
@_fail_cleanly
def user_disable(email: str, workspace_id: int | None) -> None:
    """Disable a user: sessions end, API tokens are revoked, sign-in is refused."""
    from crmail.storage import users

    def disable(s: Any) -> str:
        u = users.find_by_email(s, email, workspace_id)
        return users.set_disabled(s, u.id, True).email

    click.echo(f"{_run(disable)} disabled; their sessions ended and API tokens were revoked")


@user.command("enable")
@click.argument("email")
@_WORKSPACE_OPTION
@_fail_cleanly
def user_enable(email: str, workspace_id: int | None) -> None:
    """Let a disabled user sign in again (their old API tokens stay revoked)."""
    from crmail.storage import users

    def enable(s: Any) -> str:
        u = users.find_by_email(s, email, workspace_id)
        return users.set_disabled(s, u.id, False).email

    click.echo(f"{_run(enable)} enabled; create API tokens for them if they need any")


@user.group("tokens")
def user_tokens() -> None:
    """List, create and revoke a user's API tokens."""


@user_tokens.command("list")
@click.argument("email")
@_WORKSPACE_OPTION
@_fail_cleanly
def tokens_list(email: str, workspace_id: int | None) -> None:
    """A user's API tokens (never the tokens themselves: only their first characters)."""
    from crmail.storage import tokens, users

    def load(s: Any) -> list[tokens.TokenInfo]:
        return tokens.list_for(s, users.find_by_email(s, email, workspace_id).id)

    rows = _run(load)
    if not rows:
        click.echo("no API tokens")
    for t in rows:
        click.echo(
            f"#{t.id} {t.name!r} {(t.prefix + '…') if t.prefix else '-'} {t.state()}"
            f" created={_when(t.created_at)} last_used={_when(t.last_used_at)}"
            f" expires={_when(t.expires_at)}"
            + (f" revoked={_when(t.revoked_at)}" if t.revoked_at else "")
        )


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%MZ") if value else "never"


@user_tokens.command("create")
@click.argument("email")
@_WORKSPACE_OPTION
@click.option("--name", required=True, help="What will use the token.")
@click.option("--expires-in-days", type=int, default=None, help="Default: never expires.")
@_fail_cleanly
def tokens_create(
    email: str, workspace_id: int | None, name: str, expires_in_days: int | None
) -> None:
    """Create an API token for a user; it is printed once and never stored in clear."""
    from crmail.storage import tokens, users

    def make(s: Any) -> tokens.NewToken:
        u = users.find_by_email(s, email, workspace_id)
        return tokens.issue(s, u.id, name, expires_in_days=expires_in_days)

    new = _run(make)
    click.echo(f"token #{new.info.id} {new.info.name!r} (shown once): {new.secret}")


@user_tokens.command("revoke")
@click.argument("email")
@click.argument("token_id", type=int, required=False)
@_WORKSPACE_OPTION
@click.option("--all", "revoke_every", is_flag=True, help="Revoke every token of the user.")
@_fail_cleanly
def tokens_revoke(
    email: str, token_id: int | None, workspace_id: int | None, revoke_every: bool
) -> None:
    """Revoke one API token of a user (by its #id from `list`), or --all of them."""
    from crmail.storage import tokens, users

    if (token_id is not None) == revoke_every:
        raise click.UsageError("give either a TOKEN_ID or --all")

    def revoke(s: Any) -> int:
        u = users.find_by_email(s, email, workspace_id)
        if token_id is None:
            return tokens.revoke_all(s, u.id)
        tokens.revoke(s, u.id, token_id)
        return 1

    count = _run(revoke)
    click.echo(f"{count} token(s) revoked" if revoke_every else f"token #{token_id} revoked")


@main.group()
def blocklist() -> None:
    """The auto-create blocklist of a workspace: addresses and @domains never made contacts."""


def _change_blocklist(workspace_id: int, change: Callable[[list[str]], list[str]]) -> list[str]:
    from crmail.storage import autocreate

    services = _services()
    try:
        return services.db.run(
            lambda s: autocreate.set_blocklist(
                s, workspace_id, change(autocreate.blocklist_entries(s, workspace_id))
            )
        )
    finally:
        services.close()


def _echo_blocklist(entries: list[str]) -> None:
    for entry in entries:
        click.echo(entry)
    if not entries:
        click.echo("the blocklist is empty", err=True)


@blocklist.command("list")
@click.option("--workspace-id", type=int, required=True)
@_fail_cleanly
def blocklist_list(workspace_id: int) -> None:
    """Print the blocklist, one entry a line."""
    from crmail.storage import autocreate

    services = _services()
    try:
        entries = services.db.run(lambda s: autocreate.blocklist_entries(s, workspace_id))
    finally:
        services.close()
    _echo_blocklist(entries)


@blocklist.command("add")
@click.option("--workspace-id", type=int, required=True)
@click.argument("entries", nargs=-1, required=True)
@_fail_cleanly
def blocklist_add(workspace_id: int, entries: tuple[str, ...]) -> None:
    """Block addresses (boss@partner.test) or whole domains (@competitor.test)."""
    _echo_blocklist(_change_blocklist(workspace_id, lambda current: [*current, *entries]))


@blocklist.command("remove")
@click.option("--workspace-id", type=int, required=True)
@click.argument("entries", nargs=-1, required=True)
@_fail_cleanly
def blocklist_remove(workspace_id: int, entries: tuple[str, ...]) -> None:
    """Unblock entries (mail synced from now on may create them as contacts)."""
    from crmail.domain.autocreate import blocklist_entry

    gone = {blocklist_entry(e) or e.strip().lower() for e in entries}
    _echo_blocklist(_change_blocklist(workspace_id, lambda cur: [e for e in cur if e not in gone]))


if __name__ == "__main__":  # pragma: no cover
    main()
