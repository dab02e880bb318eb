# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's static network as kernel arguments, and in the per-MAC iPXE script (pure, no sockets)."""

from __future__ import annotations

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import HostNetwork
from ansible_collections.nixie.metal.plugins.module_utils._netboot.decide import ipxe, kernel_network

MAC = "52:54:00:12:34:01"
NIC = "52:54:00:12:34:aa"
TOKEN = "Abc_def-0123456789xyz"


def test_a_tagged_network_in_the_order_an_initrd_applies_it():
    network = HostNetwork(address="192.0.2.10/24", interface=NIC, gateway="192.0.2.1",
                          nameservers=("192.0.2.53", "2001:db8::53"), vlan=20)
    assert kernel_network.network_arguments(network, "node1") == [
        "ifname=nixie0:52:54:00:12:34:aa",
        "vlan=nixie0.20:nixie0",
        "ip=192.0.2.10::192.0.2.1:255.255.255.0:node1:nixie0.20:none",
        "nameserver=192.0.2.53",
        "nameserver=2001:db8::53",
    ]


def test_an_untagged_network_without_router_or_name():
    network = HostNetwork(address="10.1.2.3/16", interface=MAC)
    # a flake attribute with "_" is no host name: the field stays empty rather than carrying it
    assert kernel_network.network_arguments(network, "web_1") == [
        "ifname=nixie0:52:54:00:12:34:01", "ip=10.1.2.3:::255.255.0.0::nixie0:none"]
    assert kernel_network.link_name(network) == "nixie0"


@pytest.mark.parametrize("name", [None, "", "-node", "node-", "a" * 64, "node 1", "node$1", "${ip}"])
def test_only_a_plain_dns_label_becomes_the_host_name(name):
    (ip_argument,) = [a for a in kernel_network.network_arguments(HostNetwork("10.0.0.2/24", MAC), name) if a.startswith("ip=")]
    assert ip_argument == "ip=10.0.0.2:::255.255.255.0::nixie0:none"


def test_the_longest_vlan_name_fits_the_kernels_fifteen_characters():
    assert len(kernel_network.link_name(HostNetwork("10.0.0.2/24", MAC, vlan=4094))) <= 15


def test_a_record_whose_values_were_tampered_with_is_refused():
    network = HostNetwork("10.0.0.2/24", MAC, gateway="10.0.0.1")
    # frozen, but a caller could still force a value in: the renderer checks again rather than trust it
    object.__setattr__(network, "gateway", "10.0.0.1 || shell")
    with pytest.raises(ValueError):
        kernel_network.network_arguments(network)
    object.__setattr__(network, "gateway", None)
    object.__setattr__(network, "vlan", 5000)
    with pytest.raises(ValueError, match="not a VLAN ID"):
        kernel_network.network_arguments(network)
    with pytest.raises(ValueError, match="must be a HostNetwork"):
        kernel_network.network_arguments({"address": "10.0.0.2/24"})


def test_the_operators_own_network_arguments_are_found():
    assert kernel_network.conflicting_arguments(["console=ttyS0", "ip=dhcp", "nameserver=1.1.1.1", "vlan=x:y", "ifname=a:b",
                                                 "rd.ip=1"]) == ["ip=dhcp", "nameserver=1.1.1.1", "vlan=x:y", "ifname=a:b"]


def kernel_line(script):
    (line,) = [line for line in script.splitlines() if line.startswith("kernel ")]
    return line.split(" || ")[0].split()


def test_the_script_carries_the_network_before_the_agents_arguments():
    network = HostNetwork("192.0.2.10/24", MAC, gateway="192.0.2.1", vlan=7)
    script = ipxe.render_script("http://192.0.2.1:8080", MAC, TOKEN, extra_cmdline="console=ttyS0", host_name="node1",
                                network=network)
    assert kernel_line(script)[2:] == [
        "initrd=initrd", "console=ttyS0", "ifname=nixie0:52:54:00:12:34:01", "vlan=nixie0.7:nixie0",
        "ip=192.0.2.10::192.0.2.1:255.255.255.0:node1:nixie0.7:none",
        "nixie.api=http://192.0.2.1:8080/api/v1", "nixie.token=" + TOKEN, "nixie.mac=" + MAC]
    without = ipxe.render_script("http://192.0.2.1:8080", MAC, TOKEN, extra_cmdline="console=ttyS0", host_name="node1")
    assert not [a for a in kernel_line(without) if a.startswith(kernel_network.NETWORK_PREFIXES)]


def test_the_script_refuses_extra_arguments_that_contradict_the_network():
    network = HostNetwork("192.0.2.10/24", MAC)
    with pytest.raises(ValueError, match=r"kernel argument ip=dhcp would contradict the host's static network"):
        ipxe.render_script("http://192.0.2.1:8080", MAC, TOKEN, extra_cmdline="ip=dhcp", network=network)
    # without a network the operator's ip= is theirs to give
    assert "ip=dhcp" in kernel_line(ipxe.render_script("http://192.0.2.1:8080", MAC, TOKEN, extra_cmdline="ip=dhcp"))
