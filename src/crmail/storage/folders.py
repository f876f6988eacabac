"""Synced folders that another client renamed or deleted: followed or retired.

The server's folders are the truth. A synced folder found again under a new name keeps
its record (and so its messages' placements and the user's selection); one that is gone
for good has its placements retired. Messages are never deleted: they stay on their
timelines whatever happens to the folders that held them.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crmail.storage.models import Folder, MailAccount, Message, Placement

#: Message-IDs looked for when deciding where a vanished folder's mail went
SAMPLE_SIZE = 10


def sample_message_ids(s: Session, folder_id: int, limit: int = SAMPLE_SIZE) -> list[str]:
    """Message-IDs of the folder's newest placed messages (those that have one)."""
    return list(
        s.scalars(
            select(Message.message_id)
            .join(Placement, Placement.message_id == Message.id)
            .where(Placement.folder_id == folder_id, Message.message_id.is_not(None))
            .order_by(Placement.uid.desc())
            .limit(limit)
        )
    )


def follow_rename(s: Session, folder_id: int, new_name: str, *, keep_synced: bool) -> None:
    """The folder is now called ``new_name``: its record, placements and the user's
    selection follow. ``keep_synced``: the new name is added to the account's chosen
    folders, so a folder synced for its role (an Archive renamed "Done", which no longer
    announces \\Archive) keeps syncing."""
    f = s.get_one(Folder, folder_id)
    old = f.name
    f.name = new_name
    account = s.get_one(MailAccount, f.account_id)
    settings = dict(account.settings or {})
    raw = settings.get("folders")
    chosen = [str(x) for x in raw] if isinstance(raw, list) else []
    followed = [new_name if name == old else name for name in chosen]
    if keep_synced and new_name not in followed:
        followed.append(new_name)
    if followed != chosen:
        settings["folders"] = list(dict.fromkeys(followed))
        account.settings = settings
    s.flush()


def retire(s: Session, folder_id: int) -> set[int]:
    """The folder is gone from the server and its mail was found nowhere: its
    placements and record go; the messages stay. Returns the messages it held."""
    res = s.execute(
        delete(Placement).where(Placement.folder_id == folder_id).returning(Placement.message_id)
    )
    held = set(res.scalars())
    s.execute(delete(Folder).where(Folder.id == folder_id))
    return held
