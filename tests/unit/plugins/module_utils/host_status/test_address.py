# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_status's address (plugins/module_utils/_host_status/address.py): the neighbour table, the
sweep targets and the choice of an address, on what ``ip -j`` printed. No network."""

from __future__ import annotations

import ipaddress
import json

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._host_status import address, common
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.host_status.samples import MAC

# What `ip -j neigh show` printed in a lab namespace (iproute2 6.1), plus made-up neighbours.
NEIGH_JSON = json.dumps([
    {"dst": "10.77.0.173", "dev": "br0", "lladdr": "52:54:00:12:34:01", "state": ["STALE"]},
    {"dst": "10.77.0.2", "dev": "br0", "lladdr": "aa:bb:cc:00:00:02", "state": ["REACHABLE"]},
    {"dst": "fd77::5054:ff:fe12:3401", "dev": "br0", "lladdr": "52:54:00:12:34:01", "router": None, "state": ["REACHABLE"]},
    {"dst": "fe80::5054:ff:fe12:3401", "dev": "br0", "lladdr": "52:54:00:12:34:01", "state": ["REACHABLE"]},
    {"dst": "10.77.0.150", "dev": "br0", "state": ["FAILED"]},
    {"dst": "10.77.0.151", "dev": "br0", "lladdr": "52:54:00:12:34:01", "state": ["INCOMPLETE"]},
])

ADDR_JSON = json.dumps([
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifindex": 4, "ifname": "br0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "10.77.0.1", "prefixlen": 24}]},
    {"ifindex": 5, "ifname": "wlan0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
     "addr_info": [{"family": "inet", "local": "172.16.3.4", "prefixlen": 16}]},
    {"ifindex": 6, "ifname": "eth9", "flags": ["BROADCAST", "MULTICAST"],
     "addr_info": [{"family": "inet", "local": "192.168.9.1", "prefixlen": 24}]},
])


# --- neighbours, addresses, sweep targets -----------------------------------------------


def test_parse_neighbours():
    entries = address.parse_neighbours(NEIGH_JSON)
    assert entries[0] == {"ip": "10.77.0.173", "dev": "br0", "mac": MAC, "states": ["STALE"]}
    assert entries[4]["mac"] is None
    assert address.parse_neighbours("") == []
    assert address.parse_neighbours('[{"dst": "1.2.3.4", "state": "reachable", "lladdr": "52-54-00-12-34-01"}]')[0] == {
        "ip": "1.2.3.4", "dev": None, "mac": MAC, "states": ["REACHABLE"]}
    with pytest.raises(common.HostStatusError, match="ip -j neigh"):
        address.parse_neighbours("not json")


def test_neighbour_candidates_trusted_and_stale():
    entries = address.parse_neighbours(NEIGH_JSON)
    trusted, stale = address.neighbour_candidates(entries, MAC)
    # Link-local IPv6 is never used; FAILED/INCOMPLETE entries are ignored.
    assert trusted == ["fd77::5054:ff:fe12:3401"]
    assert stale == ["10.77.0.173"]
    assert address.neighbour_candidates(entries, MAC, interface="eth0") == ([], [])
    assert address.neighbour_candidates(entries, "52:54:00:99:99:99") == ([], [])


def test_neighbour_candidates_prefers_ipv4():
    entries = [{"ip": "fd77::10", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]},
               {"ip": "10.0.0.9", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]},
               {"ip": "10.0.0.3", "dev": "br0", "mac": MAC, "states": ["PERMANENT"]}]
    assert address.neighbour_candidates(entries, MAC)[0] == ["10.0.0.3", "10.0.0.9", "fd77::10"]


def test_serving_ipv4_skips_loopback_and_down():
    assert address.serving_ipv4(json.loads(ADDR_JSON)) == [("br0", ipaddress.ip_interface("10.77.0.1/24")),
                                                           ("wlan0", ipaddress.ip_interface("172.16.3.4/16"))]


def test_sweep_targets_default_skips_big_subnets():
    warnings = []
    targets = address.sweep_targets(address.serving_ipv4(json.loads(ADDR_JSON)), warnings=warnings)
    assert targets == [("br0", ipaddress.ip_network("10.77.0.0/24"))]
    assert "172.16.0.0/16" in warnings[0]


def test_sweep_targets_interface_and_subnet():
    addresses = address.serving_ipv4(json.loads(ADDR_JSON))
    assert address.sweep_targets(addresses, interface="br0") == [("br0", ipaddress.ip_network("10.77.0.0/24"))]
    assert address.sweep_targets(addresses, subnet="10.77.0.128/25") == [("br0", ipaddress.ip_network("10.77.0.128/25"))]
    assert address.sweep_targets(addresses, subnet="172.16.8.7/22") == [("wlan0", ipaddress.ip_network("172.16.8.0/22"))]
    assert address.sweep_targets(addresses, interface="eth5", subnet="10.9.0.0/24") == [("eth5", ipaddress.ip_network("10.9.0.0/24"))]


@pytest.mark.parametrize("kwargs, message", [
    ({"interface": "eth9"}, "interface eth9 has no IPv4 address"),
    ({"subnet": "10.99.0.0/24"}, "no interface of this machine has an address in 10.99.0.0/24"),
    ({"subnet": "10.0.0.0/8"}, "too slow"),
    ({"subnet": "fd77::/64"}, "IPv4"),
    ({"subnet": "banana"}, "not an IP network"),
])
def test_sweep_targets_errors(kwargs, message):
    with pytest.raises(common.HostStatusError, match=message):
        address.sweep_targets(address.serving_ipv4(json.loads(ADDR_JSON)), **kwargs)


def test_sweep_targets_nothing_to_sweep():
    with pytest.raises(common.HostStatusError, match="no directly connected IPv4 subnet"):
        address.sweep_targets([("wlan0", ipaddress.ip_interface("172.16.3.4/16"))])


# --- address discovery and one run ----------------------------------------------------------


def test_discover_uses_trusted_neighbour_without_sweep():
    def sweep(*args):
        raise AssertionError("no sweep expected")
    neighbours = [{"ip": "10.0.0.5", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]}]
    assert address.discover_address(MAC, neighbours=lambda i: neighbours, addresses=lambda: [], sweep=sweep) == ("10.0.0.5", "neighbour")


def test_discover_sweeps_when_neighbour_is_stale():
    neighbours = [{"ip": "10.77.0.5", "dev": "br0", "mac": MAC, "states": ["STALE"]}]
    seen = []

    def sweep(targets, mac, timeout):
        seen.append((targets, mac, timeout))
        return ["10.77.0.9"]

    got = address.discover_address(MAC, arp_timeout=1.5, neighbours=lambda i: neighbours,
                                   addresses=lambda: address.serving_ipv4(json.loads(ADDR_JSON)), sweep=sweep)
    assert got == ("10.77.0.9", "arp")
    assert seen == [([("br0", ipaddress.ip_network("10.77.0.0/24"))], MAC, 1.5)]


def test_discover_prefers_ipv4_over_confirmed_ipv6():
    neighbours = [{"ip": "fd77::10", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]}]

    def addresses():
        return address.serving_ipv4(json.loads(ADDR_JSON))

    assert address.discover_address(MAC, neighbours=lambda i: neighbours, addresses=addresses,
                                    sweep=lambda *a: ["10.77.0.9"]) == ("10.77.0.9", "arp")
    assert address.discover_address(MAC, neighbours=lambda i: neighbours, addresses=addresses,
                                    sweep=lambda *a: []) == ("fd77::10", "neighbour")


def test_discover_nothing_answers():
    assert address.discover_address(MAC, neighbours=lambda i: [], addresses=lambda: address.serving_ipv4(json.loads(ADDR_JSON)),
                                    sweep=lambda *a: []) == (None, None)


def test_discover_falls_back_to_stale_when_sweep_impossible():
    neighbours = [{"ip": "10.77.0.5", "dev": "br0", "mac": MAC, "states": ["STALE"]}]

    def sweep(*args):
        raise common.HostStatusError("the ARP sweep needs root")

    warnings = []
    got = address.discover_address(MAC, warnings=warnings, neighbours=lambda i: neighbours,
                                   addresses=lambda: address.serving_ipv4(json.loads(ADDR_JSON)), sweep=sweep)
    assert got == ("10.77.0.5", "stale_neighbour")
    assert "needs root" in warnings[-1]
    with pytest.raises(common.HostStatusError, match="needs root"):
        address.discover_address(MAC, neighbours=lambda i: [], addresses=lambda: address.serving_ipv4(json.loads(ADDR_JSON)), sweep=sweep)


def test_neighbour_owner():
    entries = address.parse_neighbours(NEIGH_JSON)
    assert address.neighbour_owner(entries, "10.77.0.2") == "aa:bb:cc:00:00:02"
    assert address.neighbour_owner(entries, "10.77.0.173") == MAC  # STALE still names its holder
    assert address.neighbour_owner(entries, "10.77.0.151") is None  # INCOMPLETE: nobody answered
    assert address.neighbour_owner(entries, "10.77.0.150") is None
    assert address.neighbour_owner(entries, "10.77.0.99") is None


def test_discover_skips_an_address_just_found_silent():
    # Right after a reboot the table may still call the installer's address confirmed: it must not stand in for a sweep.
    neighbours = [{"ip": "10.77.0.5", "dev": "br0", "mac": MAC, "states": ["REACHABLE"]}]
    swept = []

    def sweep(targets, mac, timeout):
        swept.append(mac)
        return ["10.77.0.5", "10.77.0.9"]

    def addresses():
        return address.serving_ipv4(json.loads(ADDR_JSON))

    assert address.discover_address(MAC, neighbours=lambda i: neighbours, addresses=addresses, sweep=sweep,
                                    skip=["10.77.0.5"]) == ("10.77.0.9", "arp")
    assert swept == [MAC]
    # A sweep that finds the skipped address only still returns it: the machine does hold it.
    assert address.discover_address(MAC, neighbours=lambda i: neighbours, addresses=addresses, sweep=lambda *a: ["10.77.0.5"],
                                    skip=["10.77.0.5"]) == ("10.77.0.5", "arp")
