# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of the controller's addresses: ``ip -j addr`` records, and what a missing ``ip`` says."""

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.nixie.metal.plugins.module_utils import _interfaces

LINKS = [
    {"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
                   {"family": "inet6", "local": "::1", "prefixlen": 128, "scope": "host"}]},
    {"ifname": "br0", "flags": ["BROADCAST", "UP"],
     "addr_info": [{"family": "inet", "local": "10.77.0.1", "prefixlen": 24, "scope": "global"},
                   {"family": "inet6", "local": "fd77::1", "prefixlen": 64, "scope": "global", "tentative": True},
                   {"family": "inet6", "local": "2001:db8::5", "prefixlen": 64, "scope": "global", "dynamic": True},
                   {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
                   {"family": "inet", "local": "10.77.0.2"},            # no prefix: passed over
                   {"family": "inet", "local": "not an address", "prefixlen": 24}]},
    {"ifname": "wlan0", "flags": ["BROADCAST"], "addr_info": [{"family": "inet", "local": "172.16.3.4", "prefixlen": 16}]},
    "garbage",
]


def test_every_address_becomes_one_record():
    found = _interfaces.addresses_of(LINKS)
    assert [(a.interface, a.text, a.prefixlen, a.serves) for a in found] == [
        ("lo", "127.0.0.1", 8, False), ("lo", "::1", 128, False),
        ("br0", "10.77.0.1", 24, True), ("br0", "fd77::1", 64, True), ("br0", "2001:db8::5", 64, True),
        ("br0", "fe80::1", 64, True), ("wlan0", "172.16.3.4", 16, False)]
    assert found[2].ip == ipaddress.ip_interface("10.77.0.1/24") and found[2].version == 4


def test_only_settled_global_ipv6_addresses_go_in_urls():
    settled = {a.text: a.settled_ipv6 for a in _interfaces.addresses_of(LINKS) if a.version == 6}
    assert settled == {"::1": False, "fd77::1": False, "2001:db8::5": True, "fe80::1": False}
    assert "dynamic" in next(a for a in _interfaces.addresses_of(LINKS) if a.text == "2001:db8::5").flags


def test_not_a_list_is_no_addresses():
    assert _interfaces.addresses_of({"ifname": "br0"}) == []


def test_this_machines_addresses_are_read():
    assert any(a.interface == "lo" and a.text == "127.0.0.1" for a in _interfaces.addresses_of(_interfaces.read_links()))


def test_a_machine_without_ip_is_told_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(_interfaces.InterfacesError, match="the ip command"):
        _interfaces.read_links()
