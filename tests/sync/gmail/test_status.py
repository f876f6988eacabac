"""A Gmail API account's status: refusals and 1-way mode, as for IMAP accounts."""

from __future__ import annotations

import pytest

from crmail.errors import AuthFailed
from crmail.storage import accounts, outbound
from crmail.storage.models import MailAccount
from tests.sync.gmail.conftest import Google

pytestmark = pytest.mark.db

CUSTOMER = "buyer@client.test"


async def test_a_refused_token_pauses_the_account_with_the_reconnect_hint(
    google: Google,
) -> None:
    google.world.contact(CUSTOMER)
    google.deliver(CUSTOMER, "Before the refusal")
    await google.sync()
    stored = google.stored()
    for token, address in list(google.fake.tokens.items()):
        if address == google.address:
            google.fake.revoke(token)  # access removed at Google
    worker = google.worker()
    with pytest.raises(AuthFailed):
        await worker.run_once()
    st = google.services.db.run(lambda s: accounts.status(s, google.account_id))
    assert st.state == "auth_error"
    assert st.last_error and "Google" in st.last_error
    assert google.stored() == stored  # nothing synced is lost


async def test_one_way_mode_reads_nothing_and_still_sends(google: Google) -> None:
    def one_way(s):  # type: ignore[no-untyped-def]
        a = s.get_one(MailAccount, google.account_id)
        a.settings = {**a.settings, "mode": "one_way"}

    google.services.db.run(one_way)
    google.world.contact(CUSTOMER)
    google.deliver(CUSTOMER, "Never read")
    sends = google.fake.count("POST", "/messages/send")
    u = google.user()
    q = await google.services.act(
        lambda s: outbound.queue_send(s, u, outbound.OutgoingDraft(to=(CUSTOMER,), text="Hi"))
    )
    assert isinstance(q, outbound.SendQueued)
    before = len(google.fake.requests)
    await google.sync()
    asked = google.fake.requests[before:]
    assert google.fake.count("POST", "/messages/send") == sends + 1
    assert not any(r.path.endswith(("/messages", "/history")) and r.method == "GET" for r in asked)
    assert google.stored() == 1  # only the message the CRM sent
