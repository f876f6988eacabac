"""Sync cursors that are links, not numbers (Microsoft Graph's delta links), kept on
the folder (``folders.sync_link``) and written with the batch they follow."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from crmail.storage.mail import FolderInfo, FolderStep, StepResult, _folder_info
from crmail.storage.models import Folder, MailAccount
from crmail.storage.remote import apply_steps


def sync_links(s: Session, account_id: int) -> dict[int, str | None]:
    """Each folder's stored sync link (Microsoft Graph: its delta or next-page link)."""
    return dict(
        s.execute(select(Folder.id, Folder.sync_link).where(Folder.account_id == account_id)).all()
    )


def apply_linked_steps(
    s: Session, account_id: int, steps: list[FolderStep], links: Mapping[int, str | None]
) -> list[StepResult]:
    """A batch's steps and the folders' new sync links, in one transaction: the link
    never runs ahead of what its page held."""
    results = apply_steps(s, account_id, steps)
    for folder_id, link in links.items():
        f = s.get_one(Folder, folder_id)
        if f.account_id == account_id:
            f.sync_link = link
    s.flush()
    return results


def restart_folder(s: Session, folder_id: int) -> FolderInfo:
    """The provider forgot the folder's sync link: read it again in full (placements
    stay, so nothing stored is lost or stored twice)."""
    f = s.get_one(Folder, folder_id)
    f.sync_link = None
    f.import_complete = False
    s.flush()
    return _folder_info(f)


def accounts_of_provider(s: Session, provider: str) -> list[tuple[int, str]]:
    """(id, email) of every account syncing through ``provider`` (e.g. "graph")."""
    return [
        (account_id, email)
        for account_id, email in s.execute(
            select(MailAccount.id, MailAccount.email)
            .where(MailAccount.provider == provider)
            .order_by(MailAccount.id)
        ).all()
    ]
