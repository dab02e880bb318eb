# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hosts.json ``network``: the static network record, its checks, and where it travels (no sockets)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.nixie.metal.plugins.inventory.hosts import host_variables
from ansible_collections.nixie.metal.plugins.module_utils import _provision
from ansible_collections.nixie.metal.plugins.module_utils._hosts import Host, HostNetwork, HostsFileError, hosts_from_option, parse_hosts

MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"
FULL = {"address": "192.0.2.10/24", "gateway": "192.0.2.1", "nameservers": ["192.0.2.53", "2001:db8::53"], "vlan": 20,
        "interface": "52-54-00-00-00-AA"}


def load(hosts):
    return parse_hosts(json.dumps(hosts), "site/hosts.json")


def refusal(hosts):
    with pytest.raises(HostsFileError) as caught:
        load(hosts)
    return str(caught.value)


def test_a_full_network_is_normalised_into_the_record():
    (host,) = load({"node1": {"mac_address": MAC1, "ip": "192.0.2.10", "network": FULL}})
    assert host.network == HostNetwork(address="192.0.2.10/24", interface="52:54:00:00:00:aa", gateway="192.0.2.1",
                                       nameservers=("192.0.2.53", "2001:db8::53"), vlan=20)
    assert (host.network.ip, host.network.netmask) == ("192.0.2.10", "255.255.255.0")


def test_the_interface_defaults_to_the_hosts_mac_and_the_rest_is_optional():
    (host,) = load({"node1": {"mac_address": "52:54:00:00:00:01", "network": {"address": "10.1.0.5/16"}}})
    assert host.network == HostNetwork(address="10.1.0.5/16", interface=MAC1)
    assert host.ip is None
    assert host.network.to_dict() == {"address": "10.1.0.5/16", "interface": MAC1}


def test_the_record_crosses_json_and_back():
    (host,) = load({"node1": {"mac_address": MAC1, "network": FULL}})
    again = Host.from_dict(json.loads(json.dumps(host.to_dict())))
    assert again == host and again.network.vlan == 20
    assert Host.from_dict(json.loads(json.dumps(Host("n", MAC1).to_dict()))).network is None


@pytest.mark.parametrize("network, field, words", [
    ({"address": "192.0.2.10"}, "network.address", "has no prefix length"),
    ({"address": "2001:db8::10/64"}, "network.address", "not an IPv4 address with a prefix length"),
    ({"address": "192.0.2.300/24"}, "network.address", "not an IPv4 address"),
    ({"address": "192.0.2.255/24"}, "network.address", "the broadcast address of 192.0.2.0/24"),
    ({"address": "192.0.2.10/24", "gateway": "192.0.3.1"}, "network.gateway", "outside 192.0.2.0/24"),
    ({"address": "192.0.2.10/24", "gateway": "router"}, "network.gateway", "not an IPv4 address"),
    ({"address": "192.0.2.10/24", "gateway": "192.0.2.10"}, "network.gateway", "the host's own address"),
    ({"address": "192.0.2.10/24", "vlan": 0}, "network.vlan", "not a VLAN ID (a whole number from 1 to 4094)"),
    ({"address": "192.0.2.10/24", "vlan": 4095}, "network.vlan", "not a VLAN ID"),
    ({"address": "192.0.2.10/24", "vlan": "20"}, "network.vlan", "expected an integer"),
    ({"address": "192.0.2.10/24", "interface": "eth0"}, "network.interface", "not a MAC address; name the NIC"),
    ({"address": "192.0.2.10/24", "interface": "01:00:5e:00:00:01"}, "network.interface", "multicast"),
    ({"address": "192.0.2.10/24", "nameservers": ["dns.example"]}, "network.nameservers[0]", "not an IP address"),
    ({"address": "192.0.2.10/24", "nameservers": ["192.0.2.53", "192.0.2.53"]}, "network.nameservers",
     "the same name server twice"),
    ({"gateway": "192.0.2.1"}, "network", '"address" is missing'),
    ({"address": "192.0.2.10/24", "gatway": "192.0.2.1"}, "network.gatway", "did you mean 'gateway'?"),
    ({"address": "192.0.2.10/24", "dns": ["192.0.2.53"]}, "network.dns", "known fields: address, gateway"),
])
def test_each_bad_field_is_named_with_what_to_do(network, field, words):
    message = refusal({"node1": {"mac_address": MAC1, "network": network}})
    assert message.startswith("site/hosts.json: host 'node1', field '%s': " % field), message
    assert words in message
    assert "Traceback" not in message


def test_a_network_that_is_not_an_object_is_named():
    assert refusal({"node1": {"mac_address": MAC1, "network": "192.0.2.10/24"}}) == (
        "site/hosts.json: host 'node1', field 'network': expected an object, found a string (\"192.0.2.10/24\")")


def test_ip_and_network_address_must_agree():
    message = refusal({"node1": {"mac_address": MAC1, "ip": "192.0.2.11", "network": {"address": "192.0.2.10/24"}}})
    assert message.startswith("site/hosts.json: host 'node1', field 'network.address': ip is 192.0.2.11 but "
                              "network.address is 192.0.2.10/24")
    assert "make them agree" in message
    (host,) = load({"node1": {"mac_address": MAC1, "ip": "192.0.2.10", "network": {"address": "192.0.2.10/24"}}})
    assert host.ip == host.network.ip


def test_a_static_address_held_by_another_host_is_refused_either_way():
    both_static = refusal({"a": {"mac_address": MAC1, "network": {"address": "192.0.2.10/24"}},
                           "b": {"mac_address": MAC2, "network": {"address": "192.0.2.10/25"}}})
    assert both_static == ("site/hosts.json: host 'b', field 'network.address': 192.0.2.10 is also the address of host "
                           "'a' (its network.address); each machine needs its own address")
    against_ip = refusal({"a": {"mac_address": MAC1, "ip": "192.0.2.10"},
                          "b": {"mac_address": MAC2, "network": {"address": "192.0.2.10/24"}}})
    assert "host 'b', field 'network.address': 192.0.2.10 is also the address of host 'a' (its ip)" in against_ip


def test_every_problem_of_every_host_is_told_at_once():
    message = refusal({"a": {"mac_address": MAC1, "network": {"address": "192.0.2.10/24", "gateway": "10.0.0.1"}},
                       "b": {"mac_address": MAC2, "network": {"address": "10.9.9.9"}}})
    assert message.splitlines() == [
        "site/hosts.json: host 'a', field 'network.gateway': 10.0.0.1 is outside 192.0.2.0/24, the subnet of the address; "
        "a gateway must be reachable on the link: fix the gateway or the address's prefix",
        "site/hosts.json: host 'b', field 'network.address': '10.9.9.9' has no prefix length; write the address with its "
        "prefix, such as 192.0.2.10/24",
    ]


def test_the_module_option_is_judged_like_the_file_and_unset_suboptions_dropped():
    unset = {"gateway": None, "nameservers": None, "vlan": None, "interface": None}
    (host,) = hosts_from_option([{"name": "node1", "mac": MAC1, "ip": None, "network": dict(unset, address="10.0.0.5/24")}])
    assert host.network == HostNetwork(address="10.0.0.5/24", interface=MAC1)
    with pytest.raises(HostsFileError) as caught:
        hosts_from_option([{"name": "node1", "mac": MAC1, "network": dict(unset, address="10.0.0.5/24", vlan=9999)}])
    assert str(caught.value).startswith("hosts: host 'node1', field 'network.vlan': 9999 is not a VLAN ID")


def test_the_record_refuses_unchecked_values():
    with pytest.raises(ValueError, match="no prefix length"):
        HostNetwork(address="10.0.0.5", interface=MAC1)
    with pytest.raises(ValueError, match="not a MAC in the one spelling"):
        HostNetwork(address="10.0.0.5/24", interface="52-54-00-00-00-01")
    with pytest.raises(ValueError, match="network must be a HostNetwork"):
        Host("node1", MAC1, network={"address": "10.0.0.5/24"})


def test_the_inventory_and_the_playbook_carry_it_to_pxe_server():
    (host,) = load({"node1": {"mac_address": MAC1, "network": FULL}})
    variables = host_variables(host)
    assert variables["nixie_network"] == {"address": "192.0.2.10/24", "interface": "52:54:00:00:00:aa",
                                          "gateway": "192.0.2.1", "nameservers": ["192.0.2.53", "2001:db8::53"], "vlan": 20}
    assert "ansible_host" not in variables and "nixie_ip" not in variables
    wanted = _provision.server_hosts(["node1"], {"node1": variables})
    assert wanted == [{"name": "node1", "mac": MAC1, "arch": "x86_64-linux", "network": variables["nixie_network"]}]
    # what the playbook passes, pxe_server reads back into the same record
    assert hosts_from_option(wanted) == [host]
