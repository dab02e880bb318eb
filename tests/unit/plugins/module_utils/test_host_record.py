# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Host record (plugins/module_utils/_hosts/record.py) and the module option it is also made from."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import (
    Host, HostsFileError, hosts_from_option, is_canonical_mac, mac_from_octets, parse_hosts)

MAC = "bc:24:11:d0:28:34"


def test_a_host_has_the_defaults_of_hosts_json():
    host = Host("web1", MAC)
    assert (host.arch, host.ip, host.groups, host.vars, host.description, host.system, host.power) == (
        "x86_64-linux", None, (), {}, None, None, {"driver": "wol"})


def test_a_host_cannot_be_changed():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Host("web1", MAC).mac = "bc:24:11:d0:28:35"


def test_a_host_keeps_its_own_copies():
    groups, power = ["rack1"], {"driver": "wol"}
    host = Host("web1", MAC, groups=groups, power=power)
    groups.append("rack2")
    power["driver"] = "ipmi"
    assert host.groups == ("rack1",) and host.power == {"driver": "wol"}


@pytest.mark.parametrize("fields, message", [
    (dict(name="", mac=MAC), "non-empty name"),
    (dict(name=None, mac=MAC), "non-empty name"),
    (dict(name="web1", mac="BC-24-11-D0-28-34"), "host 'web1': 'BC-24-11-D0-28-34' is not a MAC address in the one spelling"),
    (dict(name="web1", mac=None), "is not a MAC address"),
    (dict(name="web1", mac=MAC, arch="riscv64-linux"), "arch 'riscv64-linux' is not one of x86_64-linux, aarch64-linux"),
])
def test_a_host_refuses_what_loading_would_have_normalised_or_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        Host(**fields)


def test_to_dict_and_from_dict_are_one_pair_through_json():
    text = json.dumps({"web1": {"mac_address": "BC24.11D0.2834", "ip": "10.0.0.5", "arch": "aarch64-linux",
                                "groups": ["rack1"], "vars": {"disk": "/dev/sda"}, "description": "top",
                                "power": {"driver": "ipmi", "address": "10.0.0.9", "user": "admin", "password_env": "BMC_PW"}}})
    host, = parse_hosts(text)
    again = Host.from_dict(json.loads(json.dumps(host.to_dict())))
    assert again == host
    assert again.mac == MAC and again.groups == ("rack1",) and again.power["driver"] == "ipmi"


@pytest.mark.parametrize("data", [None, [], {"mac": MAC}, {"name": "web1", "mac": "BC-24-11-D0-28-34"}])
def test_from_dict_refuses_what_is_not_a_record(data):
    with pytest.raises(ValueError):
        Host.from_dict(data)


def test_the_option_is_judged_as_hosts_json_is():
    hosts = hosts_from_option([{"name": "web2", "mac": "BC-24-11-D0-28-35", "arch": None},
                               {"name": "web1", "mac_address": "bc2411d02834", "arch": "aarch64-linux"}])
    assert hosts == [Host("web1", MAC, arch="aarch64-linux"), Host("web2", "bc:24:11:d0:28:35")]
    assert hosts == parse_hosts(json.dumps({"web1": {"mac_address": MAC, "arch": "aarch64-linux"},
                                            "web2": {"mac_address": "bc:24:11:d0:28:35"}}))


@pytest.mark.parametrize("entries, message", [
    ([{"mac": MAC}], r"^hosts\[0\]: every entry needs a name \(its flake attribute\)$"),
    (["web1"], r"^hosts\[0\]: must be a mapping with name and mac, found 'web1'$"),
    ([{"name": "web1", "mac": "zz"}], "hosts: host 'web1', field 'mac_address': 'zz' is not a MAC address"),
    ([{"name": "web1", "mac": MAC}, {"name": "web2", "mac": "BC-24-11-D0-28-34"}],
     "hosts: host 'web2', field 'mac_address': bc:24:11:d0:28:34 is also the MAC of host 'web1'"),
    ([{"name": "web1", "mac": MAC, "arch": "mips"}], "hosts: host 'web1', field 'arch': 'mips' is not supported"),
    ([{"name": "web1", "mac": "01:00:5e:00:00:01"}], "a multicast or broadcast address is not a NIC's address"),
])
def test_the_option_errors_name_the_host_and_the_field(entries, message):
    with pytest.raises(HostsFileError, match=message):
        hosts_from_option(entries)


def test_the_option_name_is_the_errors_place():
    with pytest.raises(HostsFileError, match=r"^machines\[1\]: every entry"):
        hosts_from_option([{"name": "a", "mac": MAC}, {}], "machines")


def test_the_one_spelling_is_checked_not_made():
    assert is_canonical_mac(MAC)
    assert not any(is_canonical_mac(x) for x in ("BC:24:11:D0:28:34", "bc-24-11-d0-28-34", "bc2411d02834", None, 7, MAC + "\n"))


@pytest.mark.parametrize("octets, mac", [
    (bytes.fromhex("bc2411d02834"), MAC),
    (b"\x00" * 6, "00:00:00:00:00:00"),
    (b"", None),
    (bytes(20), None),          # InfiniBand's 20-octet address
    (bytes(5), None),
])
def test_octets_become_the_one_spelling(octets, mac):
    assert mac_from_octets(octets) == mac
