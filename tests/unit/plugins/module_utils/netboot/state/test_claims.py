# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who gets a host's script, kernel, initrd and phone-home: trust.admit and the registry's claims (no sockets).

The kernel's answers are given as :class:`trust.Binding` values here; the
namespace lab of the netboot_trust integration target reads them from a real kernel.
"""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import trust
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.agent_report import PeerRefused, TokenRejected, UnknownHost
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.api import status_of
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.host_state import MAX_IMPOSTOR_ROWS
from ansible_collections.nixie.metal.plugins.module_utils._netboot.state.registry import Registry

HOST = "52:54:00:aa:00:01"
OTHER = "02:00:00:bb:00:02"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAwq+EfnD2DZmIrGP9ja8hP2GBrvXDwB95xkcbYRkgxX"


def on_segment(ip, seen_mac, expected=HOST):
    entry = None if seen_mac is None else trust_entry(ip, seen_mac)
    return trust.Binding(peer=ip, scope=trust.ON_SEGMENT, verdict=trust.verdict(ip, expected, entry), interface="br0")


def trust_entry(ip, mac):
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.neighbours import Entry
    return Entry(ip=ip, dev="br0", mac=mac, state="REACHABLE")


ROUTED = trust.Binding(peer="10.91.0.5", scope=trust.ROUTED, interface="br0")
LOCAL = trust.Binding(peer="127.0.0.1", scope=trust.LOCAL, interface="lo")


def report(mac=HOST):
    return {"mac": mac, "addresses": [{"ifname": "eth0", "mac": mac, "address": "10.99.0.10", "prefix": 24}],
            "ssh_host_keys": [KEY], "hostname": "nixos", "uptime": 3.0}


@pytest.fixture
def registry():
    clock = iter(range(1000, 100000))
    return Registry([Host("node1", HOST)], clock=lambda: next(clock), token_factory=iter(["t" * 32, "u" * 32]).__next__)


# -- the decision ----------------------------------------------------------------

@pytest.mark.parametrize("binding, route, claim, allowed, claims, reason", [
    (LOCAL, "script", None, True, False, None),
    (LOCAL, "script", {"ip": "10.99.0.10", "epoch": 5}, True, False, None),
    (on_segment("10.99.0.10", HOST), "script", None, True, True, None),
    (on_segment("10.99.0.10", HOST), "script", {"ip": "10.99.0.10", "epoch": 5}, True, False, None),
    (on_segment("10.99.0.50", HOST), "script", {"ip": "10.99.0.10", "epoch": 5}, False, False, trust.CLAIMED),
    (on_segment("10.99.0.50", HOST), "script", {"ip": "10.99.0.10", "epoch": 4}, True, True, None),
    (on_segment("10.99.0.50", HOST), "kernel", {"ip": "10.99.0.10", "epoch": 5}, True, False, None),
    (on_segment("10.99.0.50", OTHER), "script", None, False, False, trust.IMPOSTOR),
    (on_segment("10.99.0.50", OTHER), "initrd", None, False, False, trust.IMPOSTOR),
    (on_segment("10.99.0.50", OTHER), "phone_home", None, False, False, trust.IMPOSTOR),
    (on_segment("10.99.0.99", None), "script", None, False, False, trust.UNVERIFIED),
    (on_segment("10.99.0.99", None), "phone_home", None, False, False, trust.UNVERIFIED),
    (ROUTED, "script", None, True, True, trust.UNCHECKED),
    (ROUTED, "script", {"ip": "10.99.0.10", "epoch": 5}, False, False, trust.CLAIMED),
    (ROUTED, "phone_home", None, True, False, trust.UNCHECKED),
])
def test_admit(binding, route, claim, allowed, claims, reason):
    assert trust.admit(route, binding, claim, 5) == trust.Admission(allowed, claims, reason)


def test_scope_of_the_kernels_route():
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.wire.netlink import Route
    assert trust.scope_of(Route(kind="local", ifindex=1, gateway=None)) == trust.LOCAL
    assert trust.scope_of(Route(kind="unicast", ifindex=3, gateway="10.90.0.254")) == trust.ROUTED
    assert trust.scope_of(Route(kind="unicast", ifindex=3, gateway=None)) == trust.ON_SEGMENT
    assert trust.scope_of(None) == trust.ON_SEGMENT


def test_a_binding_says_what_was_checked():
    assert on_segment("10.99.0.50", OTHER).as_dict() == {
        "checked": True, "method": "arp", "scope": "on_segment", "mac_seen": OTHER, "interface": "br0"}
    assert on_segment("fd99::10", HOST).method == "ndp"
    assert ROUTED.as_dict()["checked"] is False and ROUTED.method == "none"


# -- the registry: claims per boot -------------------------------------------------

def test_the_first_checked_fetch_of_a_boot_claims_and_the_same_address_gets_it_again(registry):
    registry.record(HOST, "offered")
    assert registry.admit(HOST, "script", on_segment("10.99.0.10", HOST)).claims
    assert registry.claimed_by(HOST) == "10.99.0.10"
    again = registry.admit(HOST, "script", on_segment("10.99.0.10", HOST))
    assert again.allowed and not again.claims
    assert [e["event"] for e in registry.events_after(0)] == ["offered"]


def test_a_clone_at_another_address_is_refused_until_the_next_boot(registry):
    registry.record(HOST, "offered")
    registry.admit(HOST, "script", on_segment("10.99.0.10", HOST))
    clone = registry.admit(HOST, "script", on_segment("10.99.0.50", HOST))
    assert (clone.allowed, clone.reason) == (False, trust.CLAIMED)
    event = registry.last_event(HOST)
    assert (event["event"], event["peer"], event["claimed_by"], event["reason"]) == ("impostor", "10.99.0.50", "10.99.0.10", "claimed")
    # A reboot starts with DHCP: the next fetch may claim again, from any address of the host's MAC.
    registry.record(HOST, "script_offered")
    assert registry.admit(HOST, "script", on_segment("10.99.0.50", HOST)).claims
    assert registry.claimed_by(HOST) == "10.99.0.50"


def test_refusals_are_rows_not_a_flood_of_events(registry):
    for dummy in range(50):
        assert not registry.admit(HOST, "script", on_segment("10.99.0.50", OTHER)).allowed
    registry.admit(HOST, "kernel", on_segment("10.99.0.50", OTHER))
    host = registry.host_snapshot(HOST)
    assert [e["event"] for e in host["events"]] == ["impostor"]
    assert host["events"][0]["mac_seen"] == OTHER and host["events"][0]["route"] == "script"
    [row] = host["impostors"]
    assert (row["address"], row["mac"], row["reason"], row["count"], row["routes"]) == (
        "10.99.0.50", OTHER, "impostor", 51, ["kernel", "script"])
    for n in range(MAX_IMPOSTOR_ROWS + 5):
        registry.admit(HOST, "script", on_segment("10.99.1.%d" % n, OTHER))
    host = registry.host_snapshot(HOST)
    assert len(host["impostors"]) == MAX_IMPOSTOR_ROWS and host["impostors_dropped"] == 6
    assert registry.snapshot()["refused_requests"]["impostor"] == 51 + MAX_IMPOSTOR_ROWS + 5
    assert host["state"] == "known" and host["claimed_by"] is None


def test_a_routed_peer_is_let_in_unchecked_and_that_is_said_once(registry):
    assert registry.admit(HOST, "script", ROUTED).reason == trust.UNCHECKED
    registry.admit(HOST, "kernel", ROUTED)
    assert [e["event"] for e in registry.events_after(0)] == ["binding_unchecked"]
    with pytest.raises(UnknownHost):
        registry.admit(OTHER, "script", ROUTED)


# -- the registry: the phone-home ------------------------------------------------------

def test_a_phone_home_from_another_mac_changes_nothing(registry):
    with pytest.raises(PeerRefused) as refused:
        registry.phone_home("t" * 32, report(), "10.99.0.50", binding=on_segment("10.99.0.50", OTHER))
    assert status_of(refused.value.code) == 403 and refused.value.code == "impostor"
    assert "10.99.0.50 is MAC %s" % OTHER in refused.value.message and "node1" in refused.value.message
    host = registry.host_snapshot(HOST)
    assert host["state"] == "known" and not registry.all_done()
    assert host["impostors"][0]["routes"] == ["phone_home"]
    assert registry.snapshot()["rejected_phone_homes"]["impostor"] == 1


def test_the_impostor_is_refused_before_its_report_is_read(registry):
    with pytest.raises(PeerRefused):
        registry.phone_home("t" * 32, {"not": "a report"}, "10.99.0.50", binding=on_segment("10.99.0.50", OTHER))
    with pytest.raises(TokenRejected):  # a wrong token tells nothing about the host, checked or not
        registry.phone_home("x" * 32, report(), "10.99.0.50", binding=on_segment("10.99.0.50", OTHER))
    assert registry.mac_for_token("t" * 32) == HOST and registry.mac_for_token("x" * 32) is None
    assert registry.mac_for_token(None) is None


def test_the_host_itself_phones_home_and_the_binding_is_kept(registry):
    answer = registry.phone_home("t" * 32, report(), "10.99.0.10", binding=on_segment("10.99.0.10", HOST))
    assert answer["address"] == "10.99.0.10" and not answer["repeat"]
    assert registry.host_snapshot(HOST)["binding"] == {
        "checked": True, "method": "arp", "scope": "on_segment", "mac_seen": HOST, "interface": "br0"}
    assert registry.phone_home("t" * 32, report(), "10.99.0.10", binding=on_segment("10.99.0.10", HOST))["repeat"]
    # After the phone-home an impostor still gets nothing, and the host stays as it was.
    with pytest.raises(PeerRefused):
        registry.phone_home("t" * 32, report(), "10.99.0.50", binding=on_segment("10.99.0.50", OTHER))
    assert registry.host_snapshot(HOST)["address"] == "10.99.0.10"


def test_a_peer_without_an_ip_address_is_never_vouched_for():
    from ansible_collections.nixie.metal.plugins.module_utils._netboot.serve.binding import SegmentCheck
    found = SegmentCheck(lookup=object()).check(None, HOST)  # the kernel is not even asked
    assert (found.scope, found.verdict.outcome, found.verdict.reason) == (trust.ON_SEGMENT, trust.UNVERIFIED, "no_address")
    assert not trust.admit("phone_home", found, None, 0).allowed
    assert SegmentCheck(enabled=False).check("10.0.0.5", HOST).scope == "not_checked"
