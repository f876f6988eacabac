"""Signatures (Standard Webhooks), URL rules (SSRF guard) and the backoff schedule."""

from __future__ import annotations

import pytest

from crmail.errors import InvalidInput
from crmail.storage.events import new_secret
from crmail.sync.webhooks import (
    BACKOFF,
    MAX_ATTEMPTS,
    Refused,
    check_url,
    resolve_checked,
    retry_delay,
    sign,
    verify_signature,
)

TS = 1_700_000_000


def headers(secret: str, body: bytes, ts: int = TS, msg_id: str = "evt_1") -> dict[str, str]:
    return {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": str(ts),
        "Webhook-Signature": sign(secret, msg_id, ts, body),
    }


def test_known_vector_of_the_standard_webhooks_libraries() -> None:
    # The test vector the Standard Webhooks reference libraries use: proves interop,
    # not just that sign and verify agree with each other.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_round_trip() -> None:
    secret, body = new_secret(), b'{"id":"evt_1"}'
    assert verify_signature(secret, headers(secret, body), body, now=TS)


def test_header_names_are_case_insensitive() -> None:
    secret, body = new_secret(), b"{}"
    lower = {k.lower(): v for k, v in headers(secret, body).items()}
    assert verify_signature(secret, lower, body, now=TS)


def test_tampered_body_is_rejected() -> None:
    secret, body = new_secret(), b'{"amount":1}'
    assert not verify_signature(secret, headers(secret, body), b'{"amount":9}', now=TS)


def test_other_secret_is_rejected() -> None:
    body = b"{}"
    assert not verify_signature(new_secret(), headers(new_secret(), body), body, now=TS)


def test_changed_id_or_timestamp_is_rejected() -> None:
    secret, body = new_secret(), b"{}"
    h = headers(secret, body)
    assert not verify_signature(secret, {**h, "Webhook-Id": "evt_2"}, body, now=TS)
    assert not verify_signature(secret, {**h, "Webhook-Timestamp": str(TS + 1)}, body, now=TS)


@pytest.mark.parametrize("skew", [-299, 299])
def test_timestamp_within_tolerance_is_accepted(skew: int) -> None:
    secret, body = new_secret(), b"{}"
    assert verify_signature(secret, headers(secret, body), body, now=TS + skew)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_timestamp_outside_tolerance_is_rejected(skew: int) -> None:
    # an old (replayed) request, or one dated in the future
    secret, body = new_secret(), b"{}"
    assert not verify_signature(secret, headers(secret, body), body, now=TS + skew)


def test_one_valid_signature_among_several_is_enough() -> None:
    old, new, body = new_secret(), new_secret(), b"{}"
    h = headers(new, body)
    h["Webhook-Signature"] = f"{sign(old, 'evt_1', TS, body)} {h['Webhook-Signature']}"
    assert verify_signature(new, h, body, now=TS)


@pytest.mark.parametrize("missing", ["Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    secret, body = new_secret(), b"{}"
    h = headers(secret, body)
    del h[missing]
    assert not verify_signature(secret, h, body, now=TS)


def test_garbage_timestamp_is_rejected() -> None:
    secret, body = new_secret(), b"{}"
    assert not verify_signature(
        secret, {**headers(secret, body), "Webhook-Timestamp": "soon"}, body, now=TS
    )


# --- URL rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/crm", "https://93.184.216.34:8443/x", "https://[2606:4700::1]/"],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/crm",  # not https
        "ftp://hooks.example.com/",
        "https://user:pw@hooks.example.com/",  # credentials would be stored in clear
        "https://127.0.0.1/",
        "https://localhost/",
        "https://10.1.2.3/",
        "https://192.168.0.1/",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://100.64.0.1/",  # carrier-grade NAT
        "https://[::1]/",
        "https://[fe80::1]/",
        "https://[::ffff:10.0.0.1]/",  # IPv4-mapped private
        "https://0.0.0.0/",
        "not a url",
    ],
)
def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_url(url)


def test_loopback_http_only_with_the_flag() -> None:
    assert check_url("http://127.0.0.1:9000/h", allow_http_loopback=True)
    assert check_url("http://localhost:9000/h", allow_http_loopback=True)
    with pytest.raises(InvalidInput):
        check_url("http://127.0.0.1:9000/h")
    # the flag is about loopback: private networks and plain http elsewhere stay refused
    with pytest.raises(InvalidInput):
        check_url("http://10.0.0.5/h", allow_http_loopback=True)
    with pytest.raises(InvalidInput):
        check_url("https://10.0.0.5/h", allow_http_loopback=True)
    with pytest.raises(InvalidInput):
        check_url("http://hooks.example.com/h", allow_http_loopback=True)


async def test_resolution_is_checked_at_delivery_time() -> None:
    # A name (not a literal) that resolves to loopback: only the delivery-time check sees it.
    with pytest.raises(Refused):
        await resolve_checked("localhost", 443, allow_loopback=False)
    addresses = await resolve_checked("localhost", 443, allow_loopback=True)
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}
    with pytest.raises(Refused):
        await resolve_checked("10.0.0.1", 443, allow_loopback=True)


# --- backoff ----------------------------------------------------------------------------------


def test_backoff_grows_and_gives_up() -> None:
    exact = [retry_delay(n, rng=lambda a, b: 1.0) for n in range(1, MAX_ATTEMPTS + 1)]
    # after the 8th failed attempt: give up
    assert exact == [5, 30, 120, 600, 3600, 6 * 3600, 12 * 3600, None]
    assert BACKOFF[-1] == 12 * 3600
    # past the table, the last (cap) value repeats
    assert retry_delay(20, max_attempts=30, rng=lambda a, b: 1.0) == 12 * 3600


def test_backoff_has_jitter_within_bounds() -> None:
    low = retry_delay(1, rng=lambda a, b: a)
    high = retry_delay(1, rng=lambda a, b: b)
    assert low == pytest.approx(4.0) and high == pytest.approx(6.0)
    samples = {retry_delay(2) for _ in range(20)}
    assert len(samples) > 1 and all(s is not None and 24 <= s <= 36 for s in samples)
