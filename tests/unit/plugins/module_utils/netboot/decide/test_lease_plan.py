# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the addresses mode's plan: which host gets which address (decide/lease_plan.py)."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide.lease_plan import (
    LeasePlanError, WantedLease, parse_range, plan_addresses,
)

NET = "10.0.0.0/24"
SERVER = ("10.0.0.1",)


def host(n, ip=None):
    return WantedLease("node%d" % n, "52:54:00:12:34:%02x" % n, ip)


def test_hosts_json_ips_first_then_the_ranges_in_inventory_order():
    plan = plan_addresses([host(1), host(2, "10.0.0.100"), host(3)], NET, SERVER, ["10.0.0.100-10.0.0.103"])
    assert plan.reservations == {"52:54:00:12:34:02": "10.0.0.100", "52:54:00:12:34:01": "10.0.0.101",
                                 "52:54:00:12:34:03": "10.0.0.102"}
    assert plan.spare == ("10.0.0.103",)


def test_a_hosts_static_network_address_is_never_leased_to_another_host():
    """node1's installer takes 10.0.0.100 by itself (hosts.json network): the range skips it, and an ip naming it is refused."""
    static = WantedLease("node1", "52:54:00:12:34:01", None, "10.0.0.100")
    plan = plan_addresses([static, host(2)], NET, SERVER, ["10.0.0.100-10.0.0.102"])
    assert plan.reservations == {"52:54:00:12:34:01": "10.0.0.101", "52:54:00:12:34:02": "10.0.0.102"}
    with pytest.raises(LeasePlanError, match="host node2: ip 10.0.0.100 is the static network address of host node1"):
        plan_addresses([static, host(2, "10.0.0.100")], NET, SERVER, ["10.0.0.100-10.0.0.102"])
    # A host's own ip may be its own static address (hosts.json lets the two agree).
    own = WantedLease("node1", "52:54:00:12:34:01", "10.0.0.100", "10.0.0.100")
    assert plan_addresses([own], NET, SERVER).reservations == {"52:54:00:12:34:01": "10.0.0.100"}


def test_the_same_inventory_gets_the_same_addresses():
    hosts = [host(n) for n in range(1, 6)]
    assert plan_addresses(hosts, NET, SERVER, ["10.0.0.50-10.0.0.60"]) == plan_addresses(hosts, NET, SERVER, ["10.0.0.50-10.0.0.60"])


def test_ranges_skip_the_server_and_the_subnets_edges():
    plan = plan_addresses([host(1)], NET, SERVER, ["10.0.0.0-10.0.0.2", "10.0.0.255"])
    assert plan.reservations == {"52:54:00:12:34:01": "10.0.0.2"} and plan.spare == ()
    with pytest.raises(LeasePlanError, match="hosts node2: dhcp_ranges has no address left"):
        plan_addresses([host(1), host(2)], NET, SERVER, ["10.0.0.0-10.0.0.2", "10.0.0.255"])


def test_every_problem_is_named_by_host_and_field_at_once():
    hosts = [host(1, "10.1.0.5"), host(2, "10.0.0.7"), host(3, "10.0.0.7"), host(4, "10.0.0.1"), host(5, "10.0.0.255"),
             host(6, "nonsense")]
    with pytest.raises(LeasePlanError) as caught:
        plan_addresses(hosts, NET, SERVER)
    problems = caught.value.problems
    assert problems == (
        "host node1: ip 10.1.0.5 is outside the served subnet 10.0.0.0/24; use an address of that subnet, or serve "
        "the interface the host is on",
        "hosts node2 and node3: both have ip 10.0.0.7; each host needs its own",
        "host node4: ip 10.0.0.1 is the server or a router's address; give the host another one",
        "host node5: ip 10.0.0.255 is the subnet's broadcast address",
        "host node6: ip 'nonsense' is not an IPv4 address",
    )


def test_hosts_without_ip_need_a_range_big_enough():
    with pytest.raises(LeasePlanError, match=r"hosts node1, node3: no ip in hosts.json and no dhcp_ranges"):
        plan_addresses([host(1), host(2, "10.0.0.9"), host(3)], NET, SERVER)
    with pytest.raises(LeasePlanError, match=r"hosts node3: dhcp_ranges has no address left for them \(1 hosts need one\)"):
        plan_addresses([host(1), host(2), host(3)], NET, SERVER, ["10.0.0.10-10.0.0.11"])


@pytest.mark.parametrize("ranges,words", [
    (["10.0.0.10-10.0.0.20", "10.0.0.15-10.0.0.30"], r"dhcp_ranges\[0\] and dhcp_ranges\[1\] overlap"),
    (["10.0.0.250-10.0.1.5"], r"dhcp_ranges\[0\]: 10.0.0.250-10.0.1.5 is not inside the served subnet"),
    (["10.0.0.20-10.0.0.10"], r"dhcp_ranges\[0\]: 10.0.0.20-10.0.0.10: the first address is above the last"),
    (["ten-eleven"], r"dhcp_ranges\[0\]: .*write first-last"),
    (["bad", "10.0.0.10-10.0.0.20", "10.0.0.20"], r"dhcp_ranges\[1\] and dhcp_ranges\[2\] overlap"),
])
def test_bad_ranges_are_named_by_their_index(ranges, words):
    with pytest.raises(LeasePlanError, match=words):
        plan_addresses([host(1)], NET, SERVER, ranges)


def test_one_address_is_a_range():
    assert parse_range("10.0.0.9") == parse_range("10.0.0.9-10.0.0.9")
