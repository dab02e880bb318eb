# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning a run's IPv6 side: which address, which DHCPv6 mode, IPv6-only runs (no sockets)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._pxe_server import ControlError, choose_address6, plan
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.served_site import served_site


def link(name, v4=(), v6=(), up=True, loopback=False):
    flags = (["UP"] if up else []) + (["LOOPBACK"] if loopback else [])
    info = [{"family": "inet", "local": a, "prefixlen": 24, "scope": "global"} for a in v4]
    for entry in v6:
        address, extra = (entry, {}) if isinstance(entry, str) else entry
        scope = "link" if address.startswith("fe80:") else "global"
        info.append(dict({"family": "inet6", "local": address, "prefixlen": 64, "scope": scope}, **extra))
    return {"ifname": name, "flags": flags, "addr_info": info}


LO = link("lo", ["127.0.0.1"], ["::1"], loopback=True)


@pytest.fixture
def site():
    with served_site("nixie-test-pxe-server-ipv6-") as top:
        (top / "hosts.json").write_text(json.dumps({"node1": {"mac_address": "52:54:00:12:34:01"}}), encoding="utf-8")
        yield top


def params(site, **extra):
    values = {"hosts_file": str(site / "hosts.json"), "kernel": str(site / "bzImage"), "initrd": str(site / "initrd"),
              "ipxe_dir": str(site / "ipxe")}
    values.update(extra)
    return values


def test_a_unique_local_address_is_preferred_and_link_local_never_chosen():
    links = [LO, link("br0", ["10.0.0.1"], ["fe80::1", "2001:db8::1", "fd77::1"])]
    assert choose_address6(links, "br0") == ("br0", "fd77::1", 64)


@pytest.mark.parametrize("flag", ["tentative", "dadfailed", "deprecated", "temporary"])
def test_unsettled_and_privacy_addresses_are_not_chosen(flag):
    links = [link("br0", v6=[("fd77::9", {flag: True}), "2001:db8::1"])]
    assert choose_address6(links, "br0") == ("br0", "2001:db8::1", 64)


def test_a_configured_address_beats_one_slaac_made():
    links = [link("br0", v6=[("fd77::2841:83ff:fe02:22df", {"dynamic": True, "mngtmpaddr": True}), "fd77::1"])]
    assert choose_address6(links, "br0") == ("br0", "fd77::1", 64)


def test_no_usable_ipv6_address_is_none():
    assert choose_address6([LO, link("br0", ["10.0.0.1"], ["fe80::1"])], "br0") is None


def test_address6_must_be_configured():
    links = [link("br0", v6=["fd77::1"])]
    assert choose_address6(links, None, "FD77:0::1") == ("br0", "fd77::1", 64)
    with pytest.raises(ControlError, match="IPv6 address fd77::2 is not configured on br0"):
        choose_address6(links, "br0", "fd77::2")


def test_dual_stack_run_serves_both_families(site):
    options = plan(params(site), links=[LO, link("br0", ["10.0.0.1"], ["fd77::1"])])
    assert (options.server_ip, options.server_ip6, options.dhcp6_mode, options.dhcp6_prefix) == ("10.0.0.1", "fd77::1", "proxy", None)
    assert options.http_base == "http://10.0.0.1:8080" and options.http_base6 == "http://[fd77::1]:8080"


def test_ipv6_only_interface_makes_an_ipv6_only_run(site):
    options = plan(params(site, interface="br0"), links=[LO, link("eth0", ["192.0.2.1"]), link("br0", v6=["fd77::1"])])
    assert options.server_ip is None and options.server_ip6 == "fd77::1" and options.interface == "br0"
    assert options.api_url == "http://[fd77::1]:8080/api/v1"


def test_ipv6_only_machine_without_interface_finds_it(site):
    options = plan(params(site), links=[LO, link("br0", v6=["fd77::1"])])
    assert options.interface == "br0" and options.server_ip is None


def test_addresses_mode_hands_out_the_interface_prefix(site):
    options = plan(params(site, dhcp6="addresses"), links=[link("br0", v6=["fd77::1"])])
    assert options.dhcp6_mode == "addresses" and options.dhcp6_prefix == "fd77::/64"


def test_dhcp6_off_serves_ipv4_only(site):
    options = plan(params(site, dhcp6="off"), links=[link("br0", ["10.0.0.1"], ["fd77::1"])])
    assert options.server_ip6 is None


@pytest.mark.parametrize("links, extra, message", [
    ([link("br0", ["10.0.0.1"])], {"dhcp6": "addresses"}, "dhcp6=addresses needs an IPv6 address on br0"),
    ([link("br0", ["10.0.0.1"], ["fd77::1"])], {"address6": "fe80::1"}, "address6 fe80::1 is link-local"),
    ([link("br0", ["10.0.0.1"], ["fd77::1"])], {"address6": "nope"}, "address6 'nope' is not an IPv6 address"),
    ([link("br0", ["10.0.0.1"], ["fd77::1"])], {"address6": "fd77::1", "dhcp6": "off"}, "address6 is set but dhcp6 is off"),
    ([link("br0", v6=["fd77::1"])], {"dhcp6": "off"}, "no interface that is up has an IPv4 address"),
    ([link("br0", v6=["fe80::1"])], {}, "no interface that is up has an IPv4 address"),
    ([link("br0", v6=["fd77::1"]), link("br1", v6=["fd78::1"])], {}, "several interfaces have IPv6 addresses"),
    ([link("br0", ["10.0.0.1"]), link("br1", ["10.1.0.1"], ["fd78::1"])], {}, "several interfaces could serve"),
])
def test_plan_explains_what_is_wrong(site, links, extra, message):
    with pytest.raises(ControlError, match=message):
        plan(params(site, **extra), links=links)
