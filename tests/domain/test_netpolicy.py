"""The address rule shared by webhooks and mail servers."""

from __future__ import annotations

import ipaddress

import pytest

from crmail.domain.netpolicy import AddressPolicy, parse_networks


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254",
     "100.64.0.1", "0.0.0.0", "::", "fe80::1", "fc00::1", "224.0.0.1", "::ffff:10.0.0.1",
     "::ffff:127.0.0.1", "192.0.2.1", "240.0.0.1"],
)  # fmt: skip
def test_default_policy_refuses_everything_but_public_addresses(address: str) -> None:
    assert not AddressPolicy().allows(ip(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().allows(ip(address))


def test_loopback_and_networks_are_allowed_on_request() -> None:
    assert AddressPolicy(allow_loopback=True).allows(ip("127.0.0.1"))
    assert not AddressPolicy(allow_loopback=True).allows(ip("10.0.0.1"))
    lan = AddressPolicy(allowed_networks=parse_networks("10.20.0.0/16, 127.0.0.1", setting="x"))
    assert lan.allows(ip("10.20.3.4")) and lan.allows(ip("::ffff:10.20.3.4"))
    assert lan.allows(ip("127.0.0.1")) and not lan.allows(ip("127.0.0.2"))
    assert not lan.allows(ip("10.21.0.1"))


def test_host_literals_are_judged_without_resolving() -> None:
    p = AddressPolicy()
    assert p.refuses_host("127.0.0.1") and p.refuses_host("[::1]") and p.refuses_host("localhost")
    assert p.refuses_host("mail.localhost") and p.refuses_host("10.1.1.1")
    assert not p.refuses_host("imap.example.com")  # judged when resolved, at connect time
    assert not p.refuses_host("8.8.8.8")


def test_networks_setting_is_checked() -> None:
    assert parse_networks("", setting="X") == ()
    assert parse_networks(" 10.0.0.1 ,::1/128,", setting="X") == (
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValueError, match="X: 'lan' is not an IP address"):
        parse_networks("10.0.0.0/8, lan", setting="X")
