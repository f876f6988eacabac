"""Mail accounts: provider presets, connection test, connect, options, list, remove, sync
status; the workspace's auto-create blocklist."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from crmail.api.deps import CurrentUser, ServicesDep
from crmail.api.schemas import (
    AccountConnectionPatch,
    AccountIn,
    AccountOut,
    AccountPatch,
    AccountStatusOut,
    AccountTestIn,
    AccountTestOut,
    BlocklistIn,
    BlocklistOut,
    ErrorOut,
    FolderStatusOut,
    IdPath,
    ProviderOut,
)
from crmail.domain.addresses import normalize_email
from crmail.domain.presets import PRESETS, preset
from crmail.errors import AuthFailed, Conflict, InvalidInput, ProviderError
from crmail.services import Services
from crmail.storage import accounts, autocreate, crm, drop
from crmail.storage.crm import UserInfo
from crmail.sync import connect, push_teardown

router = APIRouter(prefix="/api", tags=["mail accounts"])

_PROVIDER_ERRORS: dict[int | str, dict[str, object]] = {
    422: {"model": ErrorOut, "description": "invalid settings, or the server refused the login"},
    502: {"model": ErrorOut, "description": "the mail server could not be reached or failed"},
}


@router.get("/providers")
async def list_providers(user: CurrentUser) -> list[ProviderOut]:
    return [ProviderOut.model_validate(p) for p in PRESETS.values()]


@router.post("/accounts/test", response_model=AccountTestOut, responses=_PROVIDER_ERRORS)
async def test_account(body: AccountTestIn, user: CurrentUser, services: ServicesDep) -> Response:
    """Log in and list folders with these settings; nothing is stored."""
    r = connect.resolve(
        body,
        default_history_days=services.settings.history_days,
        allow_ca_file=user.is_admin,
    )
    try:
        folders = await connect.test_connection(r, services.settings.mail_policy)
    except ProviderError as err:
        return _provider_error(err, r)
    return JSONResponse(AccountTestOut(ok=True, folders=folders).model_dump())


@router.post("/accounts", status_code=201, response_model=AccountOut, responses=_PROVIDER_ERRORS)
async def create_account(body: AccountIn, user: CurrentUser, services: ServicesDep) -> Response:
    """Test the connection, then store the account (password encrypted) and start syncing it."""
    email = normalize_email(body.email)
    if email is None:
        raise InvalidInput(f"{body.email!r} is not a valid email address")
    r = connect.resolve(
        body,
        default_history_days=services.settings.history_days,
        allow_ca_file=user.is_admin,
    )
    if await services.db.read(lambda s: crm.find_account(s, user.id, email)):
        raise Conflict(f"{email} is already connected")
    try:
        await connect.test_connection(r, services.settings.mail_policy)
    except ProviderError as err:
        return _provider_error(err, r)
    secret = services.box.seal({"password": body.password.get_secret_value()})
    stored = {**r.stored, "preset": r.preset.key, **accounts.clean_options(body.options())}

    view = await services.db.write(
        lambda s: crm.add_account(s, user, email=email, settings=stored, secret=secret)
    )
    services.sync.accounts_changed()
    out = (await _outs([view], user, services))[0]
    return JSONResponse(out.model_dump(mode="json"), status_code=201)


async def _outs(
    views: list[crm.AccountView], user: UserInfo, services: Services
) -> list[AccountOut]:
    """Accounts as the API shows them. Only the owner sees an account's drop address
    (its token is made on first need): it lets mail into that account's CRM."""
    domain = services.settings.drop_domain
    mine = [v.id for v in views if v.user_id == user.id]
    found: dict[int, str] = {}
    if domain and mine:
        found = await services.db.write(
            lambda s: {i: drop.drop_address(s, i, domain) for i in mine}
        )
    return [_out(v, found.get(v.id)) for v in views]


def _out(view: crm.AccountView, drop_address: str | None) -> AccountOut:
    """Every setting the web app's forms show, typed; the password never leaves."""
    settings = view.settings
    connection = {name: settings.get(name) for name in AccountOut.CONNECTION_FIELDS}
    return AccountOut.model_validate(view).model_copy(
        update={
            "drop_address": drop_address,
            "preset": str(settings.get("preset") or "other"),
            "username": str(settings.get("username") or view.email),
            **connection,
            **accounts.options_of(settings),
        }
    )


def _provider_error(err: ProviderError, r: connect.Resolved) -> JSONResponse:
    err = connect.explain(err, r.preset)
    return JSONResponse(err.to_dict(), status_code=connect.status_for(err))


@router.get("/accounts")
async def list_accounts(
    user: CurrentUser, services: ServicesDep, all_users: bool = False
) -> list[AccountOut]:
    """Your mail accounts; ``all_users=true`` lists the workspace's (admins only)."""
    rows = await services.db.read(lambda s: crm.list_accounts(s, user, all_users=all_users))
    return await _outs(rows, user, services)


@router.get("/accounts/{account_id}")
async def get_account(account_id: IdPath, user: CurrentUser, services: ServicesDep) -> AccountOut:
    view = await services.db.read(lambda s: crm.get_account(s, user, account_id))
    return (await _outs([view], user, services))[0]


@router.patch("/accounts/{account_id}", response_model=AccountOut, responses=_PROVIDER_ERRORS)
async def update_account(
    account_id: IdPath, body: AccountPatch, user: CurrentUser, services: ServicesDep
) -> Response:
    """Change the options, address, login, password or servers (owner only).

    Options (mode, scope, folders, archive on Done, auto-create) change at once. A new
    connection is tested first: new CRM email goes from the new address; another server
    or login restarts the import (nothing is stored twice; nothing synced is lost); a
    new password alone keeps the sync position. A disconnected account stays
    disconnected.
    """
    options = body.option_changes()
    if body.connection_changes():
        view = await services.db.read(lambda s: crm.get_account(s, user, account_id))
        if not connect.is_api_mailbox(view.provider):
            return await _change_connection(
                account_id, body, user, services, resume=False, options=options
            )
        # A Gmail API or Graph mailbox has no server or password to test.
        connect.check_api_mailbox_patch(view.provider, view.email, view.settings, body)

    def write(s: Session) -> crm.AccountView:
        accounts.update_options(s, user, account_id, options)
        return crm.get_account(s, user, account_id)

    view = await services.db.write(write)
    services.sync.accounts_changed()  # the worker restarts with the new options
    out = (await _outs([view], user, services))[0]
    return JSONResponse(out.model_dump(mode="json"))


@router.post(
    "/accounts/{account_id}/reconnect", response_model=AccountOut, responses=_PROVIDER_ERRORS
)
async def reconnect_account(
    account_id: IdPath, body: AccountConnectionPatch, user: CurrentUser, services: ServicesDep
) -> Response:
    """Resume sync after a refused password or a disconnect (owner only).

    Give the new password (and anything else that changed); the login is tested first.
    Sync continues from where it stopped: nothing is imported again. A Gmail API or
    Graph mailbox resumes with its stored sign-in (renewed by Connect with Google or
    Microsoft), untested: its worker reports a refused one.
    """
    view = await services.db.read(lambda s: crm.get_account(s, user, account_id))
    if not connect.is_api_mailbox(view.provider):
        return await _change_connection(account_id, body, user, services, resume=True)
    connect.check_api_mailbox_patch(view.provider, view.email, view.settings, body)

    def write(s: Session) -> crm.AccountView:
        accounts.update_connection(s, user, account_id, settings={}, resume=True)
        return crm.get_account(s, user, account_id)

    resumed = await services.db.write(write)
    services.sync.accounts_changed()
    out = (await _outs([resumed], user, services))[0]
    return JSONResponse(out.model_dump(mode="json"))


async def _change_connection(
    account_id: int,
    body: AccountConnectionPatch,
    user: UserInfo,
    services: Services,
    *,
    resume: bool,
    options: Mapping[str, object] | None = None,
) -> Response:
    current = await services.db.read(lambda s: accounts.connection(s, user, account_id))
    secrets = services.box.open(current.secret)
    email, r = connect.resolve_patch(
        current.email,
        current.settings,
        str(secrets.get("password") or ""),
        body,
        default_history_days=services.settings.history_days,
        allow_ca_file=user.is_admin,
    )
    if email != current.email:
        taken = await services.db.read(lambda s: crm.find_account(s, user.id, email))
        if taken is not None:
            raise Conflict(f"{email} is already connected")
    try:
        await connect.test_connection(r, services.settings.mail_policy)
    except ProviderError as err:
        return _provider_error(err, r)
    secret = None
    if body.password is not None:
        # Other stored secrets (a separate SMTP password) are kept.
        secret = services.box.seal({**secrets, "password": body.password.get_secret_value()})
    stored = {**r.stored, "preset": r.preset.key}

    def write(s: Session) -> crm.AccountView:
        accounts.update_connection(
            s, user, account_id, settings=stored, secret=secret, email=email, resume=resume
        )
        if options:
            accounts.update_options(s, user, account_id, options)
        return crm.get_account(s, user, account_id)

    view = await services.db.write(write)
    services.sync.accounts_changed()  # the service restarts the worker with the new settings
    out = (await _outs([view], user, services))[0]
    return JSONResponse(out.model_dump(mode="json"))


@router.post("/accounts/{account_id}/disconnect")
async def disconnect_account(
    account_id: IdPath, user: CurrentUser, services: ServicesDep
) -> AccountOut:
    """Stop syncing (owner only). Everything synced stays; queued changes wait for a
    reconnect, which resumes where sync stopped."""

    # The worker is stopped within one scan interval; the provider stops pushing.
    await push_teardown.disconnect(services, user, account_id)
    view = await services.db.read(lambda s: crm.get_account(s, user, account_id))
    return (await _outs([view], user, services))[0]


@router.delete("/accounts/{account_id}", status_code=204)
async def delete_account(account_id: IdPath, user: CurrentUser, services: ServicesDep) -> Response:
    """Forget the account (owner only); the mailbox is never touched (a Graph
    subscription or Gmail watch is stopped, best effort).

    Messages stay, with their timeline links; messages only this mailbox held leave
    the owner's Inbox; queued sends through it are marked failed, never sent later.
    """
    await push_teardown.delete(services, user, account_id)
    return Response(status_code=204)


@router.get("/accounts/{account_id}/status")
async def account_status(
    account_id: IdPath, user: CurrentUser, services: ServicesDep
) -> AccountStatusOut:
    view, st = await services.db.read(lambda s: crm.account_status(s, user, account_id))
    st = accounts.with_problem(st, services.problems.get(account_id))
    hint = None
    if st.last_error_code in (AuthFailed.code, "app_password_required"):
        hint = preset(str(view.settings.get("preset", "other"))).app_password_hint
    return AccountStatusOut(
        id=st.id,
        email=st.email,
        state=st.state,
        last_error=st.last_error,
        last_error_code=st.last_error_code,
        hint=hint,
        synced=st.synced,
        skipped=st.skipped,
        lag_seconds=st.lag_seconds,
        last_sync_at=st.last_sync_at,
        folders=[
            FolderStatusOut(
                name=f.name,
                role=f.role,
                done=f.import_done,
                total=f.import_total,
                percent=round(f.progress * 100, 1),
                import_complete=f.import_complete,
                synced=f.synced,
                skipped=f.skipped,
                last_sync_at=f.last_sync_at,
            )
            for f in st.folders
        ],
    )


@router.get("/workspace/auto-create-blocklist")
async def get_blocklist(user: CurrentUser, services: ServicesDep) -> BlocklistOut:
    """Addresses and ``@domains`` never created as contacts by any account's auto-create."""
    ws = user.workspace_id
    return BlocklistOut(
        entries=await services.db.read(lambda s: autocreate.blocklist_entries(s, ws))
    )


@router.put("/workspace/auto-create-blocklist")
async def put_blocklist(
    body: BlocklistIn, user: CurrentUser, services: ServicesDep
) -> BlocklistOut:
    """Replace the blocklist (admins only); it applies to mail synced from now on."""
    entries = await services.db.write(lambda s: autocreate.replace_blocklist(s, user, body.entries))
    return BlocklistOut(entries=entries)
