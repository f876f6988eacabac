"""Pub/Sub push tokens: Google's signature (keys fetched from the fake's JWKS over HTTP,
cached, refetched for a new key) and the subscription's claims."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from starlette.applications import Starlette
from starlette.routing import Route

from crmail.providers.gmail.pushauth import GoogleKeys, PushAuthenticator, PushTokenRefused
from tests.fakes.pubsub import CERTS_PATH, PushSigner
from tests.fakes.server import LoopbackServer

AUDIENCE = "https://crm.example.test/api/push/gmail"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signer() -> Iterator[tuple[PushSigner, str]]:
    signer = PushSigner(audience=AUDIENCE, max_age=600)
    with LoopbackServer(Starlette(routes=[Route(CERTS_PATH, signer.certs)])) as server:
        yield signer, server.url + CERTS_PATH


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def auth(signer: tuple[PushSigner, str], clock: Clock) -> AsyncIterator[PushAuthenticator]:
    keys = GoogleKeys(signer[1], clock=clock, min_refetch=30)
    yield PushAuthenticator(keys, AUDIENCE, signer[0].service_account)
    await keys.aclose()


async def test_a_token_google_signed_for_this_subscription_is_accepted(
    signer: tuple[PushSigner, str], auth: PushAuthenticator
) -> None:
    fake, _ = signer
    await auth.verify(f"Bearer {fake.sign()}")
    await auth.verify(f"bearer {fake.sign(iss='accounts.google.com')}")
    assert fake.certs_requests == 1  # the keys are cached


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://elsewhere.test/push"},
        {"aud": None},
        {"iss": "https://evil.example.test"},
        {"email": "someone-else@other-project.iam.gserviceaccount.com"},
        {"email": None},
        {"email_verified": False},
        {"exp": int(time.time()) - 3600},
        {"exp": None},
    ],
    ids=["aud", "no-aud", "iss", "email", "no-email", "unverified", "expired", "no-exp"],
)
async def test_a_token_with_claims_of_another_subscription_is_refused(
    signer: tuple[PushSigner, str], auth: PushAuthenticator, changes: dict[str, object]
) -> None:
    with pytest.raises(PushTokenRefused):
        await auth.verify(f"Bearer {signer[0].sign(**changes)}")


async def test_a_token_not_signed_by_google_is_refused(
    signer: tuple[PushSigner, str], auth: PushAuthenticator
) -> None:
    fake, _ = signer
    # Another key under the kid of Google's: the signature does not check out.
    forged_key = RSAKey.generate_key(2048, parameters={"kid": fake.signing_key.kid})
    with pytest.raises(PushTokenRefused, match="signature"):
        await auth.verify(f"Bearer {fake.sign(key=forged_key)}")
    # A token whose signature was cut off and replaced.
    token = fake.sign()
    with pytest.raises(PushTokenRefused):
        await auth.verify(f"Bearer {token.rsplit('.', 1)[0]}.AAAA")
    # Signed with a shared secret instead of RS256.
    hs = jwt.encode(
        {"alg": "HS256", "kid": fake.signing_key.kid}, fake.claims(), OctKey.import_key(b"x" * 32)
    )
    with pytest.raises(PushTokenRefused):
        await auth.verify(f"Bearer {hs}")


async def test_a_token_naming_a_key_google_does_not_have_is_refused(
    signer: tuple[PushSigner, str], auth: PushAuthenticator
) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-a-google-key"})
    with pytest.raises(PushTokenRefused, match="key"):
        await auth.verify(f"Bearer {signer[0].sign(key=stranger)}")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer " + "A" * 10_000,
        "Bearer ééé.ééé.ééé",
    ],
)
async def test_a_malformed_authorization_header_is_refused(
    auth: PushAuthenticator, header: str | None
) -> None:
    with pytest.raises(PushTokenRefused):
        await auth.verify(header)


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    signer: tuple[PushSigner, str], auth: PushAuthenticator, clock: Clock
) -> None:
    fake, _ = signer
    await auth.verify(f"Bearer {fake.sign()}")
    clock.now += 60  # within the keys' max-age, past the refetch floor
    fake.rotate()
    await auth.verify(f"Bearer {fake.sign()}")
    assert fake.certs_requests == 2
    await auth.verify(f"Bearer {fake.sign(key=fake.keys[0])}")  # the old key still good
    assert fake.certs_requests == 2


async def test_unknown_key_ids_do_not_refetch_more_than_once_in_a_while(
    signer: tuple[PushSigner, str], auth: PushAuthenticator, clock: Clock
) -> None:
    fake, _ = signer
    await auth.verify(f"Bearer {fake.sign()}")
    stranger = RSAKey.generate_key(2048, parameters={"kid": "unknown"})
    for _ in range(3):
        with pytest.raises(PushTokenRefused):
            await auth.verify(f"Bearer {fake.sign(key=stranger)}")
    assert fake.certs_requests == 1  # fetched a moment ago: not again
    clock.now += 31
    with pytest.raises(PushTokenRefused):
        await auth.verify(f"Bearer {fake.sign(key=stranger)}")
    assert fake.certs_requests == 2


async def test_the_keys_are_kept_as_long_as_cache_control_says(
    signer: tuple[PushSigner, str], auth: PushAuthenticator, clock: Clock
) -> None:
    fake, _ = signer
    await auth.verify(f"Bearer {fake.sign()}")
    clock.now += 599
    await auth.verify(f"Bearer {fake.sign()}")
    assert fake.certs_requests == 1
    clock.now += 2
    await auth.verify(f"Bearer {fake.sign()}")
    assert fake.certs_requests == 2
