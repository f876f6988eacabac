"""Which worker syncs an account: by its provider (``MailAccount.provider``)."""

from __future__ import annotations

from crmail.crypto import SecretBox
from crmail.errors import CrmailError
from crmail.storage import mail
from crmail.storage.db import Database
from crmail.sync.gmail.worker import GmailWorker
from crmail.sync.graph.worker import GraphWorker
from crmail.sync.worker import AccountWorker, WorkerOptions

#: provider kind of accounts synced through the Gmail API (IMAP accounts: "imap")
GMAIL = "gmail"
#: provider kind of accounts synced through Microsoft Graph
GRAPH = "graph"


async def worker_for(
    db: Database,
    box: SecretBox,
    account_id: int,
    options: WorkerOptions,
    *,
    problems: dict[int, CrmailError] | None = None,
) -> AccountWorker:
    account = await db.read(lambda s: mail.account_info(s, account_id))
    kinds: dict[str, type[AccountWorker]] = {GMAIL: GmailWorker, GRAPH: GraphWorker}
    kind = kinds.get(account.provider, AccountWorker)
    if kind is AccountWorker:
        return AccountWorker(db, box, account_id, options, problems=problems, account=account)
    return kind(db, box, account_id, options, problems=problems)
