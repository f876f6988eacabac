"""Calendar accounts and their calendars: connecting, listing, selecting, and what the
sync loop needs to run an account. A calendar account belongs to one user; another
user's id is "not found".
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crmail.crypto import SecretBox
from crmail.errors import InvalidInput, NotFound
from crmail.storage.calendar_models import CalendarAccount, CalendarRow, EventPlacement
from crmail.storage.calendar_views import CalendarAccountView, CalendarState, CalendarView, SyncJob
from crmail.storage.models import MailAccount, utcnow
from crmail.storage.views import UserInfo


def _account_view(a: CalendarAccount) -> CalendarAccountView:
    return CalendarAccountView(
        a.id,
        a.user_id,
        a.provider,
        a.url,
        a.username,
        a.preset,
        a.mail_account_id,
        a.auto_create,
        a.state,
        a.last_error,
        a.last_sync_at,
        a.created_at,
    )


def account_row(s: Session, user: UserInfo, account_id: int) -> CalendarAccount:
    a = s.get(CalendarAccount, account_id)
    if a is None or a.user_id != user.id or a.workspace_id != user.workspace_id:
        raise NotFound(f"calendar account {account_id} not found")
    return a


def add_account(
    s: Session,
    user: UserInfo,
    box: SecretBox,
    *,
    url: str,
    username: str,
    password: str,
    preset: str | None = None,
    mail_account_id: int | None = None,
    auto_create: bool = False,
) -> CalendarAccountView:
    if not url.strip() or not username.strip():
        raise InvalidInput("a CalDAV URL and a username are needed")
    if mail_account_id is not None:
        owner = s.scalar(select(MailAccount.user_id).where(MailAccount.id == mail_account_id))
        if owner != user.id:
            raise NotFound(f"account {mail_account_id} not found")
    a = CalendarAccount(
        workspace_id=user.workspace_id,
        user_id=user.id,
        mail_account_id=mail_account_id,
        preset=preset,
        url=url.strip()[:2000],
        username=username.strip()[:320],
        secret=box.seal({"password": password}),
        auto_create=auto_create,
    )
    s.add(a)
    s.flush()
    return _account_view(a)


def list_accounts(s: Session, user: UserInfo) -> list[CalendarAccountView]:
    rows = s.scalars(
        select(CalendarAccount)
        .where(CalendarAccount.user_id == user.id)
        .order_by(CalendarAccount.id)
    )
    return [_account_view(a) for a in rows]


def get_account(s: Session, user: UserInfo, account_id: int) -> CalendarAccountView:
    return _account_view(account_row(s, user, account_id))


def delete_account(s: Session, user: UserInfo, account_id: int) -> None:
    """Disconnect: the calendars and placements go, the meetings stay on the timelines.

    The calendar of a mail account's grant (Google, Graph) stays as a disconnected row:
    the loop would otherwise make it again for the mail account."""
    a = account_row(s, user, account_id)
    cal_ids = list(s.scalars(select(CalendarRow.id).where(CalendarRow.account_id == a.id)))
    if cal_ids:
        s.execute(delete(EventPlacement).where(EventPlacement.calendar_id.in_(cal_ids)))
        s.execute(delete(CalendarRow).where(CalendarRow.id.in_(cal_ids)))
    if a.provider in GRANT_CALENDARS.values():
        a.state = "disconnected"
    else:
        s.delete(a)
    s.flush()


def sync_jobs(s: Session) -> list[SyncJob]:
    rows = s.scalars(
        select(CalendarAccount)
        .where(CalendarAccount.state != "disconnected")
        .order_by(CalendarAccount.id)
    )
    return [sync_job_of(a) for a in rows]


def sync_job_of(a: CalendarAccount) -> SyncJob:
    return SyncJob(
        a.id,
        a.workspace_id,
        a.user_id,
        a.url,
        a.username,
        a.secret,
        a.auto_create,
        a.provider,
        a.mail_account_id,
    )


def job_for(s: Session, user: UserInfo, account_id: int) -> SyncJob:
    return sync_job_of(account_row(s, user, account_id))


#: mail account providers whose OAuth grant also opens a calendar
GRANT_CALENDARS = {"gmail": "google", "graph": "microsoft"}


def ensure_grant_calendars(s: Session, box: SecretBox) -> int:
    """A calendar account for every connected Gmail or Graph account that has none (its
    grant reaches the calendar when it carries the calendar scope; a round finds out).
    Returns how many were made."""
    have = select(CalendarAccount.mail_account_id).where(
        CalendarAccount.mail_account_id.is_not(None),
        CalendarAccount.provider.in_(GRANT_CALENDARS.values()),
    )
    made = 0
    for m in s.scalars(
        select(MailAccount).where(
            MailAccount.provider.in_(GRANT_CALENDARS),
            MailAccount.state != "disconnected",
            MailAccount.id.not_in(have),
        )
    ):
        s.add(
            CalendarAccount(
                workspace_id=m.workspace_id,
                user_id=m.user_id,
                mail_account_id=m.id,
                provider=GRANT_CALENDARS[m.provider],
                url=GRANT_CALENDARS[m.provider],
                username=m.email,
                secret=box.seal({}),
            )
        )
        made += 1
    s.flush()
    return made


def record_account_result(s: Session, account_id: int, error: str | None, code: str | None) -> None:
    s.execute(
        update(CalendarAccount)
        .where(CalendarAccount.id == account_id)
        .values(
            state="error" if error else "active",
            last_error=error,
            last_error_code=code,
            last_sync_at=utcnow(),
        )
    )


# --- calendars ----------------------------------------------------------------------------------


def _calendar_view(c: CalendarRow) -> CalendarView:
    return CalendarView(
        c.id,
        c.account_id,
        c.url,
        c.name,
        c.selected,
        c.synced,
        dict(c.skipped or {}),
        c.last_sync_at,
    )


def upsert_calendars(s: Session, account_id: int, found: Sequence[tuple[str, str]]) -> None:
    """Remember the server's calendars (url, name); new ones start selected."""
    known = {
        c.url: c for c in s.scalars(select(CalendarRow).where(CalendarRow.account_id == account_id))
    }
    for url, name in found:
        row = known.get(url)
        if row is None:
            s.add(CalendarRow(account_id=account_id, url=url[:2000], name=name[:300]))
        elif row.name != name:
            row.name = name[:300]
    s.flush()


def list_calendars(s: Session, user: UserInfo, account_id: int) -> list[CalendarView]:
    account_row(s, user, account_id)
    rows = s.scalars(
        select(CalendarRow).where(CalendarRow.account_id == account_id).order_by(CalendarRow.id)
    )
    return [_calendar_view(c) for c in rows]


def select_calendar(
    s: Session, user: UserInfo, account_id: int, calendar_id: int, selected: bool
) -> CalendarView:
    account_row(s, user, account_id)
    c = s.get(CalendarRow, calendar_id)
    if c is None or c.account_id != account_id:
        raise NotFound(f"calendar {calendar_id} not found")
    c.selected = selected
    s.flush()
    return _calendar_view(c)


def selected_calendars(s: Session, account_id: int) -> list[CalendarState]:
    rows = list(
        s.scalars(
            select(CalendarRow)
            .where(CalendarRow.account_id == account_id, CalendarRow.selected.is_(True))
            .order_by(CalendarRow.id)
        )
    )
    out: list[CalendarState] = []
    for c in rows:
        etags = dict(
            s.execute(
                select(EventPlacement.href, EventPlacement.etag).where(
                    EventPlacement.calendar_id == c.id
                )
            ).all()
        )
        out.append(CalendarState(c.id, c.url, c.sync_token, c.ctag, etags))
    return out


def forget_token(s: Session, calendar_id: int) -> None:
    s.execute(update(CalendarRow).where(CalendarRow.id == calendar_id).values(sync_token=None))
