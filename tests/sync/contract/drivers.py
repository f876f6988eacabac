"""The hands a contract test has on a mailbox server, one driver per provider.

Each driver acts "in another client" (deliver, file in Sent or a folder, read, archive,
move, trash, delete) and reads the server's state back in the terms crmail syncs: which
synced folders hold a message (by the name crmail gives them) and whether it is read.
Acting on a message the server no longer has is a no-op, as it would be for a user.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from crmail.services import Services
from crmail.sync.gmail.labels import OUTSIDE
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.graph.folders import WELL_KNOWN as GRAPH_SYNCED
from crmail.sync.graph.options import GraphOptions
from crmail.sync.graph.worker import GraphWorker
from crmail.sync.worker import AccountWorker
from tests.fakes import gmail, graph
from tests.servers import Dovecot, MailboxAccount
from tests.sync.api_fixtures import QUICK_RETRY
from tests.sync.gmail.conftest import gmail_options
from tests.sync.test_inbound import FAST

#: (crmail folder name, read) of one copy of a message on the server
Copy = tuple[str, bool]


class MailboxDriver(Protocol):
    """The server side of a test, whatever the provider."""

    kind: str
    account_id: int
    #: where the CRM's "move to archive" files a message on this provider
    archive_folder: str

    @property
    def address(self) -> str: ...
    def deliver(self, raw: bytes) -> None: ...
    def file_sent(self, raw: bytes) -> None: ...
    def file_in(self, folder: str, raw: bytes) -> None: ...
    def read_elsewhere(self, msgid: str, read: bool = True) -> None: ...
    def archive_elsewhere(self, msgid: str) -> None: ...
    def to_inbox_elsewhere(self, msgid: str) -> None: ...
    def move_elsewhere(self, msgid: str, folder: str) -> None: ...
    def trash_elsewhere(self, msgid: str) -> None: ...
    def delete_elsewhere(self, msgid: str) -> None: ...
    def copies(self, msgid: str) -> list[Copy]:
        """The synced folders holding the message, as crmail should know them."""
        ...

    def sent_count(self) -> int:
        """Messages in the mailbox's Sent folder."""
        ...

    def in_inbox(self, msgid: str) -> bool: ...
    def is_read(self, msgid: str) -> bool: ...
    async def sync(self) -> None: ...


def _header_id(parsed_id: object) -> str:
    return str(parsed_id or "").strip().strip("<>")


@dataclass
class DovecotDriver:
    services: Services
    dovecot: Dovecot
    box: MailboxAccount
    account_id: int
    chosen: tuple[str, ...] = ()
    kind: str = "imap"
    archive_folder: str = "Archive"

    @property
    def address(self) -> str:
        return self.box.email

    def _doveadm(self, *args: str) -> str:
        return self.dovecot.doveadm(*args)

    def _query(self, msgid: str) -> tuple[str, ...]:
        return ("header", "Message-ID", f"<{msgid}>")

    def _create(self, folder: str) -> None:
        if folder not in self._folders():
            self._doveadm("mailbox", "create", "-u", self.box.email, folder)

    def _folders(self) -> set[str]:
        return set(self._doveadm("mailbox", "list", "-u", self.box.email).split())

    def deliver(self, raw: bytes) -> None:
        self.dovecot.deliver(self.box.email, raw)

    def file_sent(self, raw: bytes) -> None:
        self.dovecot.append(self.box.email, "Sent", raw, flags=["\\Seen"])

    def file_in(self, folder: str, raw: bytes) -> None:
        self._create(folder)
        self.dovecot.append(self.box.email, folder, raw)

    def read_elsewhere(self, msgid: str, read: bool = True) -> None:
        verb = "add" if read else "remove"
        self._doveadm(
            "flags", verb, "-u", self.box.email, "\\Seen", "mailbox", "*", *self._query(msgid)
        )

    def _move(self, msgid: str, source: str, target: str) -> None:
        self._doveadm("move", "-u", self.box.email, target, "mailbox", source, *self._query(msgid))

    def archive_elsewhere(self, msgid: str) -> None:
        self._move(msgid, "INBOX", "Archive")

    def to_inbox_elsewhere(self, msgid: str) -> None:
        self._move(msgid, "Archive", "INBOX")

    def move_elsewhere(self, msgid: str, folder: str) -> None:
        self._create(folder)
        self._move(msgid, "INBOX", folder)

    def trash_elsewhere(self, msgid: str) -> None:
        for source in ("INBOX", "Archive"):
            self._move(msgid, source, "Trash")

    def delete_elsewhere(self, msgid: str) -> None:
        self._doveadm("expunge", "-u", self.box.email, "mailbox", "*", *self._query(msgid))

    def _all_copies(self) -> dict[str, list[Copy]]:
        out = self._doveadm(
            "fetch", "-u", self.box.email, "mailbox hdr.message-id flags", "mailbox", "*"
        )
        state: dict[str, list[Copy]] = {}
        folder = msgid = None
        for line in out.splitlines():
            if line.startswith("mailbox:"):
                folder = line.split(":", 1)[1].strip()
            elif line.lower().startswith("hdr.message-id:"):
                msgid = _header_id(line.split(":", 1)[1])
            elif line.startswith("flags:") and folder and msgid:
                state.setdefault(msgid, []).append((folder, "\\Seen" in line))
                folder = msgid = None
        return state

    def copies(self, msgid: str) -> list[Copy]:
        synced = {"INBOX", "Sent", "Archive", *self.chosen}
        return sorted(c for c in self._all_copies().get(msgid, []) if c[0] in synced)

    def sent_count(self) -> int:
        return sum(
            1 for copies in self._all_copies().values() for folder, _ in copies if folder == "Sent"
        )

    def in_inbox(self, msgid: str) -> bool:
        return any(folder == "INBOX" for folder, _ in self._all_copies().get(msgid, []))

    def is_read(self, msgid: str) -> bool:
        return any(seen for _, seen in self._all_copies().get(msgid, []))

    async def sync(self) -> None:
        await AccountWorker(self.services.db, self.services.box, self.account_id, FAST).run_once()


@dataclass
class GmailDriver:
    """Gmail has labels: archived is "INBOX removed", read is "UNREAD removed"."""

    services: Services
    fake: gmail.FakeGmail
    url: str
    box: gmail.Mailbox
    account_id: int
    chosen: tuple[str, ...] = ()
    kind: str = "gmail"
    archive_folder: str = "All Mail"
    labels: dict[str, str] = field(default_factory=dict)  # name -> id

    @property
    def address(self) -> str:
        return self.box.address

    def _message(self, msgid: str) -> gmail.StoredMessage | None:
        return next(
            (m for m in self.box.messages.values() if _header_id(m.parsed["Message-ID"]) == msgid),
            None,
        )

    def _label(self, name: str) -> str:
        if name not in self.labels:
            self.labels[name] = self.box.create_label(name)["id"]
        return self.labels[name]

    def _modify(self, msgid: str, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()) -> None:
        m = self._message(msgid)
        if m is not None:
            self.box.modify(m.id, add=add, remove=remove)

    def deliver(self, raw: bytes) -> None:
        self.box.deliver(raw)

    def file_sent(self, raw: bytes) -> None:
        self.box.deliver(raw, labels=("SENT",))

    def file_in(self, folder: str, raw: bytes) -> None:
        self.box.deliver(raw, labels=(self._label(folder), "UNREAD"))

    def read_elsewhere(self, msgid: str, read: bool = True) -> None:
        if read:
            self._modify(msgid, remove=("UNREAD",))
        else:
            self._modify(msgid, add=("UNREAD",))

    def archive_elsewhere(self, msgid: str) -> None:
        self._modify(msgid, remove=("INBOX",))

    def to_inbox_elsewhere(self, msgid: str) -> None:
        m = self._message(msgid)
        if m is not None and "INBOX" not in m.labels and not m.labels & OUTSIDE:
            self._modify(msgid, add=("INBOX",))

    def move_elsewhere(self, msgid: str, folder: str) -> None:
        self._modify(msgid, add=(self._label(folder),), remove=("INBOX",))

    def trash_elsewhere(self, msgid: str) -> None:
        self._modify(msgid, add=("TRASH",))

    def delete_elsewhere(self, msgid: str) -> None:
        m = self._message(msgid)
        if m is not None:
            self.box.delete(m.id)

    def copies(self, msgid: str) -> list[Copy]:
        m = self._message(msgid)
        if m is None or m.labels & OUTSIDE:
            return []
        seen = "UNREAD" not in m.labels
        chosen = {self.labels.get(name, name): name for name in self.chosen}
        folders = [
            {"INBOX": "INBOX", "SENT": "SENT"}.get(label) or chosen[label]
            for label in m.labels
            if label in ("INBOX", "SENT") or label in chosen
        ]
        # A label is a folder: mail only under labels not chosen is in no synced folder;
        # All Mail holds the rest (archived = neither INBOX nor a user label).
        if folders or not m.labels & set(self.box.user_labels):
            folders.append("All Mail")
        return sorted((folder, seen) for folder in folders)

    def sent_count(self) -> int:
        return sum(1 for m in self.box.messages.values() if "SENT" in m.labels)

    def in_inbox(self, msgid: str) -> bool:
        m = self._message(msgid)  # Gmail hides trashed mail from the Inbox, INBOX or not
        return m is not None and "INBOX" in m.labels and not m.labels & OUTSIDE

    def is_read(self, msgid: str) -> bool:
        m = self._message(msgid)
        return m is not None and "UNREAD" not in m.labels

    async def sync(self) -> None:
        options = gmail_options(self.url)
        await GmailWorker(self.services.db, self.services.box, self.account_id, options).run_once()


@dataclass
class GraphDriver:
    """Outlook has folders, not labels: archived is "moved to Archive", read is isRead."""

    services: Services
    fake: graph.FakeGraph
    url: str
    box: graph.Mailbox
    account_id: int
    chosen: tuple[str, ...] = ()
    kind: str = "graph"
    archive_folder: str = "Archive"

    @property
    def address(self) -> str:
        return self.box.address

    def _message(self, msgid: str) -> graph.StoredMessage | None:
        return next(
            (m for m in self.box.messages.values() if _header_id(m.parsed["Message-ID"]) == msgid),
            None,
        )

    def _folder(self, display: str) -> graph.Folder:
        for f in self.box.folders.values():
            if f.display_name == display:
                return f
        return self.box.create_folder(display)

    def _move(self, msgid: str, source: str | None, target: str) -> None:
        m = self._message(msgid)
        if m is not None and (source is None or m.folder_id == self.box.folder(source).id):
            self.box.move(m.id, target)

    def deliver(self, raw: bytes) -> None:
        self.box.deliver(raw)

    def file_sent(self, raw: bytes) -> None:
        self.box.deliver(raw, folder="sentitems", is_read=True)

    def file_in(self, folder: str, raw: bytes) -> None:
        self.box.deliver(raw, folder=self._folder(folder).id)

    def read_elsewhere(self, msgid: str, read: bool = True) -> None:
        m = self._message(msgid)
        if m is not None:
            self.box.mark_read(m.id, read)

    def archive_elsewhere(self, msgid: str) -> None:
        self._move(msgid, "inbox", "archive")

    def to_inbox_elsewhere(self, msgid: str) -> None:
        self._move(msgid, "archive", "inbox")

    def move_elsewhere(self, msgid: str, folder: str) -> None:
        self._move(msgid, "inbox", self._folder(folder).id)

    def trash_elsewhere(self, msgid: str) -> None:
        self._move(msgid, None, "deleteditems")

    def delete_elsewhere(self, msgid: str) -> None:
        m = self._message(msgid)
        if m is not None:
            self.box.delete(m.id)

    def _name(self, folder: graph.Folder) -> str | None:
        if folder.well_known in GRAPH_SYNCED:
            return GRAPH_SYNCED[folder.well_known][0]
        return folder.display_name if folder.display_name in self.chosen else None

    def copies(self, msgid: str) -> list[Copy]:
        m = self._message(msgid)
        name = None if m is None else self._name(self.box.folders[m.folder_id])
        return [] if m is None or name is None else [(name, m.is_read)]

    def sent_count(self) -> int:
        sent = self.box.folder("sentitems").id
        return sum(1 for m in self.box.messages.values() if m.folder_id == sent)

    def in_inbox(self, msgid: str) -> bool:
        m = self._message(msgid)
        return m is not None and m.folder_id == self.box.folder("inbox").id

    def is_read(self, msgid: str) -> bool:
        m = self._message(msgid)
        return m is not None and m.is_read

    async def sync(self) -> None:
        options = replace(FAST, graph=GraphOptions(base_url=self.url, retry=QUICK_RETRY))
        await GraphWorker(self.services.db, self.services.box, self.account_id, options).run_once()
