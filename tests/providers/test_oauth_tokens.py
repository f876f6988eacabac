"""The access-token keeper against the fake identity platform and a real database:
refresh once per account however many loops ask, no two processes storing different
tokens (Microsoft rotates refresh tokens), invalid_grant as a reconnect-worthy error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from crmail.errors import AuthFailed
from crmail.providers.oauth import GrantRevoked, OAuthClient, StoredTokens, provider_for
from crmail.services import Services
from crmail.storage import accounts, crm
from crmail.storage.models import MailAccount
from crmail.sync.oauth import ACCESS, REFRESH, DatabaseTokenStore, seal_grant, token_keeper
from tests.fakes.oauth import RunningFakeOAuth

pytestmark = pytest.mark.db

EMAIL = "kim@contoso.example.test"


@pytest.fixture(scope="module")
def fake() -> Iterator[RunningFakeOAuth]:
    with RunningFakeOAuth() as f:
        yield f


@pytest.fixture
def configured(services: Services, fake: RunningFakeOAuth) -> Services:
    public = "http://crm.example.test"
    client = fake.register("microsoft", f"{public}/oauth/microsoft/callback")
    services.settings = replace(
        services.settings,
        public_url=public,
        microsoft_client_id=client.client_id,
        microsoft_client_secret=client.secret,
        microsoft_auth_base=f"{fake.url}/microsoft",
    )
    fake.user_email = EMAIL
    fake.auto_consent = True
    return services


async def connected_account(services: Services) -> int:
    """A grant from the fake (as the callback gets one), stored on a new account, with
    its access token already past the refresh margin."""
    client = OAuthClient(provider_for(services.settings, "microsoft"))
    pending = client.authorization()
    async with httpx.AsyncClient() as http:
        back = await http.get(pending.url)
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    grant = await client.exchange(code, pending.code_verifier)
    assert grant.email == EMAIL and grant.refresh_token
    stale = replace(grant, expires_at=0.0)
    secret = seal_grant(services.box, stale, grant.refresh_token)

    def make(s):  # type: ignore[no-untyped-def]
        ws = crm.create_workspace(s, "Contoso").id
        user = crm.create_user(s, ws, "kim@crm.example.test").user
        return accounts.create_account(
            s,
            workspace_id=ws,
            user_id=user.id,
            email=EMAIL,
            provider="imap",
            settings={"oauth_provider": "microsoft", "oauth_grant": "g1"},
            secret=secret,
        )

    return services.db.run(make)


def stored(services: Services, account_id: int) -> dict[str, str]:
    row = services.db.run(lambda s: s.get_one(MailAccount, account_id).secret)
    return services.box.open(row)


async def test_many_loops_asking_at_once_cause_one_refresh(
    configured: Services, fake: RunningFakeOAuth
) -> None:
    account_id = await connected_account(configured)
    keeper = token_keeper(configured.settings, configured.db, configured.box)
    before = fake.refresh_requests["microsoft"]
    tokens = await asyncio.gather(*(keeper.access_token(account_id) for _ in range(5)))
    assert fake.refresh_requests["microsoft"] == before + 1
    assert len({t.token for t in tokens}) == 1
    assert stored(configured, account_id)[ACCESS] == tokens[0].token


async def test_two_processes_refreshing_together_keep_one_set_of_tokens(
    configured: Services, fake: RunningFakeOAuth
) -> None:
    """Both load the same stored tokens before either stores (a barrier makes the race
    certain); only the first store lands, the other process takes the stored tokens."""
    account_id = await connected_account(configured)
    original_refresh = stored(configured, account_id)[REFRESH]
    both_loaded = asyncio.Barrier(2)

    class RacingStore(DatabaseTokenStore):
        first = True

        async def load(self, account_id: int) -> StoredTokens:
            t = await super().load(account_id)
            if self.first:
                self.first = False
                await both_loaded.wait()
            return t

    def process():  # type: ignore[no-untyped-def]
        keeper = token_keeper(configured.settings, configured.db, configured.box)
        keeper.store = RacingStore(configured.db, configured.box)
        return keeper

    a, b = process(), process()
    before = fake.refresh_requests["microsoft"]
    ta, tb = await asyncio.gather(a.access_token(account_id), b.access_token(account_id))
    assert fake.refresh_requests["microsoft"] == before + 2  # both really refreshed
    now = stored(configured, account_id)
    assert ta.token == tb.token == now[ACCESS]  # the loser uses the winner's token
    assert now[REFRESH] != original_refresh  # Microsoft's rotated refresh token is kept
    assert now[REFRESH] in fake.refresh and not fake.refresh[now[REFRESH]].revoked


async def test_a_revoked_grant_is_an_auth_error_naming_the_refused_version(
    configured: Services, fake: RunningFakeOAuth
) -> None:
    account_id = await connected_account(configured)
    version = configured.db.run(lambda s: s.get_one(MailAccount, account_id).secret)
    fake.revoke_user(EMAIL)
    keeper = token_keeper(configured.settings, configured.db, configured.box)
    with pytest.raises(GrantRevoked) as refused:
        await keeper.access_token(account_id)
    assert isinstance(refused.value, AuthFailed)
    assert refused.value.version == version
    assert "reconnect" in (refused.value.hint or "")
    assert "rt-" not in str(refused.value) and "at-" not in str(refused.value)
