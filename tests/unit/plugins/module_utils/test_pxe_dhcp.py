# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pxe_server's dhcp option planned by plan(): the addresses mode from hosts, ranges and the interface."""

from __future__ import annotations


import pytest

from ansible_collections.nixie.metal.plugins.module_utils._pxe_server import ControlError, plan
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.served_site import served_site, site_params


def link(name, address, prefixlen=24):
    return {"ifname": name, "flags": ["UP"], "addr_info": [{"family": "inet", "local": address, "prefixlen": prefixlen}]}


LINKS = [link("eth0", "192.0.2.10")]


@pytest.fixture
def site():
    with served_site("nixie-test-pxe-dhcp-") as top:
        yield top


def params(site, hosts, **extra):
    return site_params(site, hosts, **dict({"dhcp": "addresses"}, **extra))


HOSTS = {"node1": {"mac_address": "52:54:00:12:34:01", "ip": "192.0.2.50"},
         "node2": {"mac_address": "52:54:00:12:34:02"}}


def test_each_host_gets_its_ip_or_one_of_the_range_on_the_interfaces_subnet(site):
    options = plan(params(site, HOSTS, dhcp_ranges=["192.0.2.100-192.0.2.101"], dhcp_routers=["192.0.2.1"],
                          dhcp_dns_servers=["192.0.2.53"], dhcp_lease_time=600), links=LINKS)
    assert options.dhcp_mode == "addresses"
    assert options.addresses.plan.reservations == {"52:54:00:12:34:01": "192.0.2.50", "52:54:00:12:34:02": "192.0.2.100"}
    assert options.addresses.plan.spare == ("192.0.2.101",)
    config = options.addresses.config
    assert (config.network, config.routers, config.dns_servers, config.lease_time) == (
        "192.0.2.0/24", ("192.0.2.1",), ("192.0.2.53",), 600)


def test_the_subnet_is_the_serving_addresss_own(site):
    options = plan(params(site, {"node1": {"mac_address": "52:54:00:12:34:01", "ip": "10.8.3.200"}}),
                   links=[link("eth0", "10.8.0.1", 22)])
    assert options.addresses.config.network == "10.8.0.0/22"


def test_proxy_and_off_plan_no_addresses_and_refuse_their_options(site):
    assert plan(params(site, HOSTS, dhcp="proxy"), links=LINKS).addresses is None
    off = plan(params(site, HOSTS, dhcp="off"), links=LINKS)
    assert off.addresses is None and off.dhcp_mode == "off"
    with pytest.raises(ControlError, match="dhcp_ranges, dhcp_routers only apply to dhcp=addresses \\(dhcp is proxy\\)"):
        plan(params(site, HOSTS, dhcp="proxy", dhcp_ranges=["192.0.2.100"], dhcp_routers=["192.0.2.1"]), links=LINKS)


@pytest.mark.parametrize("hosts, extra, message", [
    (HOSTS, {}, "dhcp=addresses: hosts node2: no ip in hosts.json and no dhcp_ranges"),
    ({"node1": {"mac_address": "52:54:00:12:34:01", "ip": "198.51.100.7"}}, {},
     "host node1: ip 198.51.100.7 is outside the served subnet 192.0.2.0/24"),
    ({"node1": {"mac_address": "52:54:00:12:34:01", "ip": "192.0.2.7"},
      "node2": {"mac_address": "52:54:00:12:34:02", "ip": "192.0.2.7"}}, {}, "hosts node1 and node2: both have ip 192.0.2.7"),
    (HOSTS, {"dhcp_ranges": ["192.0.2.100-192.0.2.120", "192.0.2.110-192.0.2.130"]},
     "dhcp_ranges\\[0\\] and dhcp_ranges\\[1\\] overlap"),
    ({"node1": {"mac_address": "52:54:00:12:34:01", "ip": "192.0.2.10"}}, {}, "host node1: ip 192.0.2.10 is the server"),
    (HOSTS, {"dhcp_ranges": ["192.0.2.100"], "dhcp_routers": ["198.51.100.1"]}, "router 198.51.100.1 is outside"),
    (HOSTS, {"dhcp_ranges": ["192.0.2.100"], "dhcp_lease_time": 5}, "lease time 5 is not between 60 s"),
])
def test_bad_input_names_the_host_and_field(site, hosts, extra, message):
    with pytest.raises(ControlError, match=message):
        plan(params(site, hosts, **extra), links=LINKS)


def test_an_ipv6_only_run_cannot_give_ipv4_addresses(site):
    address6 = {"family": "inet6", "local": "fd00:1::1", "prefixlen": 64, "scope": "global"}
    links = [{"ifname": "eth0", "flags": ["UP"], "addr_info": [address6]}]
    with pytest.raises(ControlError, match="dhcp=addresses needs an IPv4 address on the serving interface"):
        plan(params(site, HOSTS), links=links)
