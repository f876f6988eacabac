"""Settings → Email: connect a mailbox, its options, reconnect, disconnect, delete, sync
health; the workspace's auto-create blocklist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from crmail.domain.addresses import normalize_email
from crmail.domain.presets import PRESETS, preset
from crmail.errors import Conflict, CrmailError, InvalidInput, ProviderError
from crmail.storage import accounts, autocreate, crm
from crmail.storage import web as store
from crmail.sync import connect, push_teardown
from crmail.sync.connect import AccountIn
from crmail.web import oauth
from crmail.web.common import Web, WebAction, WebRoute, WebUser, see_other

router = APIRouter(prefix="/settings/email", route_class=WebRoute, include_in_schema=False)

_FIELDS = (
    "provider", "email", "username", "password", "imap_host", "imap_port", "imap_security",
    "smtp_host", "smtp_port", "smtp_security", "ca_file",
)  # fmt: skip

#: what the user should do about an account's last error, by error code
WHAT_TO_DO = {
    "auth_failed": "Reconnect with the right password (below).",
    "app_password_required": "Create an app password at your provider and reconnect with it.",
    "server_unreachable": "crmail keeps retrying; if it lasts, check the server name and port.",
    "tls_failed": "The server's certificate is not trusted: check the host name, or give a CA file.",
    "folder_missing": "A synced folder no longer exists: update the folder list.",
    "protocol_error": "The server answered something unexpected; crmail retries. Check the logs.",
}


def _resolve(web: Web, body: AccountIn) -> connect.Resolved:
    """The settings of the form, checked (a CA file only from an admin)."""
    return connect.resolve(
        body,
        default_history_days=web.services.settings.history_days,
        allow_ca_file=web.user.is_admin,
    )


def _address(body: AccountIn) -> str:
    email = normalize_email(body.email)
    if email is None:
        raise InvalidInput(f"{body.email!r} is not a valid email address")
    return email


def _account_in(form: FormData) -> AccountIn:
    data: dict[str, object] = {}
    for name in _FIELDS:
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            data[name] = value if name == "password" else value.strip()
    data["folders"] = _folders(form)
    try:
        return AccountIn.model_validate(data)
    except ValidationError as exc:
        # Field names only: the input would echo the password.
        bad = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        raise InvalidInput(f"please check: {', '.join(bad)}") from None


def _folders(form: FormData) -> list[str]:
    raw = form.get("folders")
    text = raw if isinstance(raw, str) else ""
    return [f.strip() for f in text.splitlines() if f.strip()]


def _options(form: FormData) -> dict[str, object]:
    return accounts.clean_options(
        {
            "mode": form.get("mode") or "two_way",
            "scope": form.get("scope") or "contacts",
            "auto_create_contacts": form.get("auto_create_contacts") == "on",
            "auto_create_incoming": form.get("auto_create_incoming") == "on",
            "archive_on_done": form.get("archive_on_done") == "on",
            "large_attachments": form.get("large_attachments") == "on",
            "folders": _folders(form),
        }
    )


def _form_values(form: FormData | None) -> dict[str, str]:
    values = {name: "" for name in (*_FIELDS, "mode", "scope", "folders")}
    values.update(provider="gmail", mode="two_way", scope="contacts", archive_on_done="on")
    if form is not None:
        for name in (*_FIELDS, "mode", "scope", "folders"):
            v = form.get(name)
            values[name] = v if isinstance(v, str) else ""
        for flag in (
            "auto_create_contacts",
            "auto_create_incoming",
            "archive_on_done",
            "large_attachments",
        ):
            values[flag] = "on" if form.get(flag) == "on" else ""
    return values


async def _settings_page(
    web: Web,
    form: FormData | None = None,
    *,
    result: dict[str, object] | None = None,
    status: int = 200,
) -> Response:
    me = web.user

    def load(
        s: Session,
    ) -> tuple[list[crm.AccountView], list[crm.AccountView], dict[int, str], list[str]]:
        mine = crm.list_accounts(s, me)
        others = [a for a in crm.list_accounts(s, me, all_users=True) if a.user_id != me.id]
        names = {u.id: u.name or u.email for u in store.list_users(s, me.workspace_id)}
        return mine, others, names, autocreate.blocklist_entries(s, me.workspace_id)

    mine, others, names, blocklist = await web.services.db.read(load)
    resp = web.render(
        "settings_email.html",
        status,
        **oauth.buttons(web.services.settings),
        accounts=mine,
        others=others,
        owners=names,
        presets=list(PRESETS.values()),
        values=_form_values(form),
        result=result or {},
        blocklist=blocklist,
        is_admin=me.is_admin,
    )
    return oauth.allow_consent_redirects(resp, web.services.settings)


@router.get("")
async def settings_email(web: WebUser) -> Response:
    return await _settings_page(web)


def _failure(err: CrmailError, r: connect.Resolved | None) -> dict[str, object]:
    if isinstance(err, ProviderError) and r is not None:
        err = connect.explain(err, r.preset)
    return {"ok": False, "code": err.code, "message": err.message, "hint": err.hint or ""}


@router.post("/test")
async def test(request: Request, web: WebAction) -> Response:
    """Log in and list folders with what was typed; nothing is stored."""
    form = await request.form()
    r = None
    try:
        body = _account_in(form)
        r = _resolve(web, body)
        folders = await connect.test_connection(r, web.services.settings.mail_policy)
    except CrmailError as err:
        return await _settings_page(web, form, result=_failure(err, r), status=422)
    return await _settings_page(web, form, result={"ok": True, "folders": folders})


@router.post("/connect")
async def connect_account(request: Request, web: WebAction) -> Response:
    me = web.user
    form = await request.form()
    r = None
    try:
        body = _account_in(form)
        email = _address(body)
        r = _resolve(web, body)
        if await web.services.db.read(lambda s: crm.find_account(s, me.id, email)):
            raise Conflict(f"{email} is already connected")
        await connect.test_connection(r, web.services.settings.mail_policy)
        options = _options(form)
    except CrmailError as err:
        return await _settings_page(web, form, result=_failure(err, r), status=422)
    secret = web.services.box.seal({"password": body.password.get_secret_value()})
    stored = {**r.stored, "preset": r.preset.key, **options}
    view = await web.services.db.write(
        lambda s: crm.add_account(s, me, email=email, settings=stored, secret=secret)
    )
    web.services.sync.accounts_changed()
    return see_other(f"/settings/email/accounts/{view.id}")


async def _health(web: Web, account_id: int) -> tuple[crm.AccountView, accounts.AccountStatus, str]:
    me = web.user
    view, st = await web.services.db.read(lambda s: crm.account_status(s, me, account_id))
    todo = ""
    if st.last_error_code:
        todo = WHAT_TO_DO.get(st.last_error_code, "")
        if view.settings.get("oauth_provider") and st.last_error_code == "auth_failed":
            label = str(view.settings["oauth_provider"]).capitalize()
            todo = f"Reconnect: Settings → Email → Connect with {label}, as {view.email}."
        elif st.last_error_code in ("auth_failed", "app_password_required"):
            todo = f"{todo} {preset(str(view.settings.get('preset', 'other'))).app_password_hint}"
    return view, st, todo


@router.post("/blocklist")
async def save_blocklist(
    web: WebAction, entries: Annotated[str, Form(max_length=400_000)] = ""
) -> Response:
    """The workspace's auto-create blocklist, one address or @domain a line (admins)."""
    me = web.user
    lines = [line.strip() for line in entries.splitlines() if line.strip()]
    await web.services.db.write(lambda s: autocreate.replace_blocklist(s, me, lines))
    return see_other("/settings/email#blocklist")


@router.get("/accounts/{account_id}")
async def account(account_id: int, web: WebUser) -> Response:
    view, st, todo = await _health(web, account_id)
    return web.render(
        "account.html",
        account=view,
        status=st,
        todo=todo,
        owner=view.user_id == web.user.id,
        presets=list(PRESETS.values()),
        opts={**accounts.OPTION_DEFAULTS, **view.settings},
        sign_in=connect.api_mailbox_sign_in(view.provider),
    )


@router.get("/accounts/{account_id}/health")
async def health(account_id: int, web: WebUser, fragment: int = 0) -> Response:
    """The sync status alone; refreshes itself (meta refresh, or the account page's script)."""
    view, st, todo = await _health(web, account_id)
    return web.render(
        "health_fragment.html" if fragment else "health.html", account=view, status=st, todo=todo
    )


@router.post("/accounts/{account_id}/options")
async def options(account_id: int, request: Request, web: WebAction) -> Response:
    me = web.user
    opts = _options(await request.form())
    await web.services.db.write(lambda s: accounts.update_options(s, me, account_id, opts))
    web.services.sync.accounts_changed()
    return see_other(f"/settings/email/accounts/{account_id}")


@router.post("/accounts/{account_id}/reconnect")
async def reconnect(account_id: int, request: Request, web: WebAction) -> Response:
    """New password or server settings: tested first, then the worker starts over."""
    me = web.user
    form = await request.form()
    view = await web.services.db.read(lambda s: crm.get_account(s, me, account_id))
    label = connect.api_mailbox_sign_in(view.provider)
    if label:
        # No server or password to test: the sign-in is renewed by Connect with ...
        raise InvalidInput(
            f"this mailbox signs in with {label}",
            hint=f"use Settings → Email → Connect with {label} to renew its access",
        )
    r = None
    try:
        body = _account_in(form)
        email = _address(body)
        r = _resolve(web, body)
        await connect.test_connection(r, web.services.settings.mail_policy)
    except CrmailError as err:
        failure = _failure(err, r)
        st = await web.services.db.read(lambda s: accounts.status(s, account_id))
        return web.render(
            "account.html",
            422,
            account=view,
            status=st,
            todo="",
            owner=view.user_id == me.id,
            presets=list(PRESETS.values()),
            opts={**accounts.OPTION_DEFAULTS, **view.settings},
            reconnect_error=failure,
        )
    secret = web.services.box.seal({"password": body.password.get_secret_value()})
    stored = {k: v for k, v in r.stored.items() if k not in ("folders", "history_days")}
    stored["preset"] = r.preset.key
    # The same rules as the API's reconnect: another address or server restarts the
    # import (deduplicated), a new password alone resumes from the stored cursors.
    await web.services.db.write(
        lambda s: accounts.reconnect(s, me, account_id, settings=stored, secret=secret, email=email)
    )
    web.services.sync.accounts_changed()
    return see_other(f"/settings/email/accounts/{account_id}")


@router.post("/accounts/{account_id}/disconnect")
async def disconnect(account_id: int, web: WebAction) -> Response:
    me = web.user
    await push_teardown.disconnect(web.services, me, account_id)
    return see_other(f"/settings/email/accounts/{account_id}")


@router.get("/accounts/{account_id}/delete")
async def confirm_delete(account_id: int, web: WebUser) -> Response:
    me = web.user
    view = await web.services.db.read(lambda s: crm.get_account(s, me, account_id))
    return web.render("account_delete.html", account=view)


@router.post("/accounts/{account_id}/delete")
async def delete(
    account_id: int, web: WebAction, confirm: Annotated[str, Form(max_length=320)] = ""
) -> Response:
    me = web.user
    view = await web.services.db.read(lambda s: crm.get_account(s, me, account_id))
    if confirm.strip().lower() != view.email:
        raise InvalidInput("type the mailbox address to confirm", hint=view.email)
    await push_teardown.delete(web.services, me, account_id)
    return see_other("/settings/email")
