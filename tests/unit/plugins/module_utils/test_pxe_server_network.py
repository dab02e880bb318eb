# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning a run whose hosts have a static network: what plan() refuses before anything is bound (no sockets)."""

from __future__ import annotations


import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import HostNetwork
from ansible_collections.nixie.metal.plugins.module_utils._pxe_server import ControlError, plan
from ansible_collections.nixie.metal.tests.unit.plugins.module_utils.served_site import served_site, site_params

MAC1 = "52:54:00:12:34:01"
MAC2 = "52:54:00:12:34:02"
STATIC = {"address": "10.20.0.50/24", "gateway": "10.20.0.1", "vlan": 20}


def link(name, v4=(), v6=(), loopback=False):
    info = [{"family": "inet", "local": a, "prefixlen": 24, "scope": "global"} for a in v4]
    info += [{"family": "inet6", "local": a, "prefixlen": 64, "scope": "global"} for a in v6]
    return {"ifname": name, "flags": ["UP"] + (["LOOPBACK"] if loopback else []), "addr_info": info}


LO = link("lo", ["127.0.0.1"], loopback=True)
DUAL = [LO, link("br0", ["10.0.0.1"], ["fd77::1"])]
IPV6_ONLY = [LO, link("br0", v6=["fd77::1"])]


@pytest.fixture
def site():
    with served_site("nixie-test-pxe-server-network-") as top:
        yield top


def params(site, hosts, **extra):
    return site_params(site, hosts, **dict({"interface": "br0"}, **extra))


def test_a_dual_stack_run_carries_the_network_to_the_server(site):
    options = plan(params(site, {"node1": {"mac_address": MAC1, "network": STATIC}, "node2": {"mac_address": MAC2}}), links=DUAL)
    networks = {host.name: host.network for host in options.hosts}
    assert networks == {"node1": HostNetwork("10.20.0.50/24", MAC1, gateway="10.20.0.1", vlan=20), "node2": None}


def test_a_network_on_an_ipv6_only_run_is_refused_naming_the_hosts(site):
    hosts = {"node1": {"mac_address": MAC1, "network": STATIC}, "node2": {"mac_address": MAC2, "network": {"address": "10.20.0.51/24"}}}
    with pytest.raises(ControlError) as caught:
        plan(params(site, hosts), links=IPV6_ONLY)
    message = str(caught.value)
    assert message.startswith("%s: hosts 'node1', 'node2', field 'network': a static network is IPv4, but this run is "
                              "IPv6-only (br0 has no IPv4 address" % (site / "hosts.json"))
    assert "give br0 an IPv4 address on the machines' segment, or remove network from these hosts" in message
    # the same hosts without a network make a good IPv6-only run
    assert plan(params(site, {"node1": {"mac_address": MAC1}}), links=IPV6_ONLY).server_ip is None


def test_the_module_option_names_itself_on_an_ipv6_only_run(site):
    with pytest.raises(ControlError, match=r"^hosts: host 'node1', field 'network': a static network is IPv4"):
        plan(dict(params(site, {}), hosts_file=None, hosts=[{"name": "node1", "mac": MAC1, "network": STATIC}]), links=IPV6_ONLY)


@pytest.mark.parametrize("where, extra", [
    ("cmdline", {"cmdline": "console=ttyS0 ip=dhcp"}),
    ("artifacts.x86_64-linux.cmdline", {"artifacts": {"x86_64-linux": {"cmdline": "nameserver=1.1.1.1"}}}),
])
def test_kernel_arguments_that_contradict_a_static_network_are_refused(site, where, extra):
    hosts = {"node1": {"mac_address": MAC1, "network": STATIC}}
    if "artifacts" in extra:
        extra["artifacts"]["x86_64-linux"].update(kernel=str(site / "bzImage"), initrd=str(site / "initrd"))
    with pytest.raises(ControlError) as caught:
        plan(params(site, hosts, **extra), links=DUAL)
    assert str(caught.value).startswith("%s: " % where)
    assert "would contradict the static network (hosts.json network) of 'node1'; remove it from %s" % where in str(caught.value)
    # a run whose hosts have no static network leaves the operator's ip= alone
    assert plan(params(site, {"node1": {"mac_address": MAC1}}, **extra), links=DUAL).hosts[0].network is None


def test_the_arguments_of_another_architecture_do_not_reach_the_host(site):
    hosts = {"node1": {"mac_address": MAC1, "network": STATIC}}
    extra = {"artifacts": {"aarch64-linux": {"kernel": str(site / "bzImage"), "initrd": str(site / "initrd"), "cmdline": "ip=dhcp"}}}
    assert plan(params(site, hosts, **extra), links=DUAL).hosts[0].network.vlan == 20
