# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import (
    Host,
    HostsFileError,
    load_hosts,
    normalize_mac,
    parse_hosts,
)

GOOD_MAC = "bc:24:11:d0:28:34"


def host_doc(**fields):
    entry = {"mac_address": GOOD_MAC}
    entry.update(fields)
    return {"web1": entry}


def error_of(document_or_text, path="site/hosts.json"):
    text = document_or_text if isinstance(document_or_text, str) else json.dumps(document_or_text)
    with pytest.raises(HostsFileError) as caught:
        parse_hosts(text, path)
    return str(caught.value)


@pytest.mark.parametrize("spelling", [
    "bc:24:11:d0:28:34",
    "BC:24:11:D0:28:34",
    "BC-24-11-D0-28-34",
    "bc24.11d0.2834",
    "BC24.11D0.2834",
    "bc2411d02834",
])
def test_usual_mac_spellings_are_normalised(spelling):
    assert normalize_mac(spelling) == "bc:24:11:d0:28:34"


@pytest.mark.parametrize("garbage", [
    "", "bc:24:11:d0:28", "bc:24:11:d0:28:34:56", "bc:24:11-d0:28:34", "gc:24:11:d0:28:34",
    "bc.24.11.d0.28.34", "bc24:11d0:2834", " bc:24:11:d0:28:34", "bc:24:11:d0:28:34\n", "b:c24:11:d0:28:34",
])
def test_garbage_is_not_a_mac(garbage):
    assert normalize_mac(garbage) is None


def test_upstream_nixie_file_is_accepted_with_defaults():
    hosts = parse_hosts('{"web1": {"mac_address": "BC-24-11-D0-28-34"}}')
    assert [host.to_dict() for host in hosts] == [{
        "name": "web1", "mac": GOOD_MAC, "arch": "x86_64-linux", "ip": None,
        "groups": [], "vars": {}, "description": None, "system": None, "power": {"driver": "wol"}, "network": None,
    }]
    assert hosts == [Host("web1", GOOD_MAC)]


def test_optional_fields_are_kept_and_hosts_sorted():
    text = json.dumps({
        "zeta": {"mac_address": "bc:24:11:d0:28:35"},
        "alpha": {"mac_address": GOOD_MAC, "ip": "2001:DB8::1", "arch": "aarch64-linux",
                  "groups": ["rack1", "arm"], "vars": {"ansible_user": "root", "disk": {"size": 2}},
                  "description": "top of rack"},
    })
    alpha, zeta = parse_hosts(text)
    assert [alpha.name, zeta.name] == ["alpha", "zeta"]
    assert alpha.ip == "2001:db8::1"
    assert alpha.arch == "aarch64-linux"
    assert alpha.groups == ("rack1", "arm")
    assert alpha.vars == {"ansible_user": "root", "disk": {"size": 2}}
    assert alpha.description == "top of rack"


def test_empty_object_means_no_hosts():
    assert parse_hosts("{}") == []


def test_invalid_json_names_file_line_and_column():
    message = error_of('{\n  "web1": {"mac_address": "bc:24:11:d0:28:34",}\n}')
    assert message.startswith("site/hosts.json: not valid JSON at line 2, column ")


def test_top_level_must_be_an_object():
    message = error_of([{"mac_address": GOOD_MAC}])
    assert "site/hosts.json: the top level must be a JSON object keyed by flake attribute" in message
    assert "found a list" in message


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_empty_file(text):
    assert "site/hosts.json: the file is empty" in error_of(text)


def test_missing_mac_address():
    message = error_of({"web1": {"ip": "10.0.0.5"}})
    assert message == ("site/hosts.json: host 'web1': \"mac_address\" is missing; add the MAC address the machine "
                       'network-boots from, e.g. "mac_address": "bc:24:11:d0:28:34"')


def test_host_entry_must_be_an_object():
    assert "host 'web1': must be an object" in error_of({"web1": "bc:24:11:d0:28:34"})


@pytest.mark.parametrize("mac", ["bc:24:11:d0:28", "not-a-mac", "bc:24:11:d0:28:3g"])
def test_malformed_mac(mac):
    message = error_of(host_doc(mac_address=mac))
    assert "site/hosts.json: host 'web1', field 'mac_address': %r is not a MAC address" % mac in message


@pytest.mark.parametrize("mac, why", [
    ("ff:ff:ff:ff:ff:ff", "multicast or broadcast"),
    ("01:00:5e:00:00:01", "multicast or broadcast"),
    ("00-00-00-00-00-00", "all-zero"),
])
def test_mac_that_no_nic_can_have(mac, why):
    message = error_of(host_doc(mac_address=mac))
    assert "host 'web1', field 'mac_address'" in message
    assert why in message


def test_same_mac_on_two_hosts_in_different_spellings():
    message = error_of({"a": {"mac_address": "BC-24-11-D0-28-34"}, "b": {"mac_address": "bc24.11d0.2834"}})
    assert message == ("site/hosts.json: host 'b', field 'mac_address': bc:24:11:d0:28:34 is also the MAC of host 'a'; "
                       "each machine needs its own MAC")


def test_same_host_twice_in_the_file():
    text = '{"a": {"mac_address": "bc:24:11:d0:28:34"}, "a": {"mac_address": "bc:24:11:d0:28:35"}}'
    assert "site/hosts.json: the key 'a' appears twice" in error_of(text)


@pytest.mark.parametrize("name", ["web 1", "1web", "web.example.com", "web/1", "", "a" * 64, "wéb"])
def test_host_name_must_be_a_flake_attribute_and_ansible_host(name):
    message = error_of({name: {"mac_address": GOOD_MAC}})
    assert "site/hosts.json: %r is not a usable host name" % name in message


@pytest.mark.parametrize("field, value, expected", [
    ("mac_address", 42, "field 'mac_address': expected a string, found a number (42)"),
    ("ip", ["10.0.0.1"], "field 'ip': expected a string, found a list"),
    ("groups", "rack1", "field 'groups': expected a list, found a string (\"rack1\")"),
    ("vars", [], "field 'vars': expected an object, found a list"),
    ("description", True, "field 'description': expected a string, found true (a boolean)"),
    ("groups", [1], "field 'groups.0': expected a string, found a number (1)"),
])
def test_wrong_types_name_the_field(field, value, expected):
    assert "host 'web1', " + expected in error_of(host_doc(**{field: value}))


def test_unsupported_arch_lists_choices():
    message = error_of(host_doc(arch="i686-linux"))
    assert "field 'arch': 'i686-linux' is not supported; use one of 'x86_64-linux', 'aarch64-linux'" in message


def test_bad_ip():
    assert "field 'ip': '10.0.0.300' is not an IPv4 or IPv6 address" in error_of(host_doc(ip="10.0.0.300"))


@pytest.mark.parametrize("misspelt, suggestion", [
    ("mac_adress", "mac_address"), ("group", "groups"), ("IP", None), ("architecture", None), ("var", "vars"),
])
def test_unknown_field_with_did_you_mean(misspelt, suggestion):
    document = host_doc(**{misspelt: "x"})
    message = error_of(document)
    assert "site/hosts.json: host 'web1', field %r: unknown field; " % misspelt in message
    if suggestion:
        assert "did you mean %r?" % suggestion in message
    else:
        assert "known fields: mac_address, ip, arch, groups, vars, description, system" in message


def test_group_and_variable_names_are_checked():
    assert "field 'groups.0': 'rack-1' is not a valid group name" in error_of(host_doc(groups=["rack-1"]))
    assert "field 'groups': lists the same group twice" in error_of(host_doc(groups=["a", "a"]))
    assert "field 'vars': '1disk' is not a valid variable name" in error_of(host_doc(vars={"1disk": 1}))


def test_a_prebuilt_system_is_a_store_path():
    path = "/nix/store/" + "a" * 32 + "-nixos-system-web1-25.05"
    assert parse_hosts(json.dumps(host_doc(system=path)))[0].system == path
    message = error_of(host_doc(system="/tmp/result"))
    assert "host 'web1', field 'system': '/tmp/result' is not a store path" in message


def test_nixie_variables_are_reserved():
    message = error_of(host_doc(vars={"nixie_mac": "x"}))
    assert "host 'web1', field 'vars': 'nixie_mac' is reserved" in message


def test_every_problem_is_reported_at_once():
    message = error_of({"a": {"mac_address": "nope"}, "b": {}, "c": {"mac_address": GOOD_MAC, "colour": "red"}})
    lines = message.splitlines()
    assert len(lines) == 3
    assert [line.split(":")[1].strip() for line in lines] == ["host 'a', field 'mac_address'", "host 'b'", "host 'c', field 'colour'"]


def test_load_hosts_reads_a_file(tmp_path):
    path = tmp_path / "hosts.json"
    path.write_text('\ufeff{"web1": {"mac_address": "%s"}}' % GOOD_MAC, encoding="utf-8")
    assert load_hosts(str(path))[0].mac == GOOD_MAC


def test_load_hosts_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(HostsFileError, match="^%s: no such file; create it" % path):
        load_hosts(str(path))


def test_load_hosts_directory(tmp_path):
    with pytest.raises(HostsFileError, match="is a directory"):
        load_hosts(str(tmp_path))


def test_load_hosts_not_utf8(tmp_path):
    path = tmp_path / "hosts.json"
    path.write_bytes(b'{"web1": {"mac_address": "\xff"}}')
    with pytest.raises(HostsFileError, match="not UTF-8 text"):
        load_hosts(str(path))


def test_example_hosts_file_is_valid():
    import os
    example = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "examples", "hosts.json")
    names = [host.name for host in load_hosts(example)]
    assert names == sorted(names) and len(names) >= 2
