# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hosts.json ``power`` field (plugins/module_utils/_hosts/): schema, checks and messages."""

from __future__ import annotations

import json

import pytest

from ansible_collections.nixie.metal.plugins.module_utils._hosts import HostsFileError, parse_hosts

MAC = "bc:24:11:d0:28:34"
REDFISH = {"driver": "redfish", "address": "https://10.0.0.5", "user": "admin", "password_env": "NODE1_BMC"}
IPMI = {"driver": "ipmi", "address": "10.0.0.6", "port": 6230, "user": "ADMIN", "password_var": "vault_bmc"}


def parse_power(power):
    return parse_hosts(json.dumps({"node1": {"mac_address": MAC, "power": power}}), "site/hosts.json")[0].power


def problems(power):
    with pytest.raises(HostsFileError) as caught:
        parse_power(power)
    return str(caught.value)


def test_no_power_field_means_wake_on_lan():
    assert parse_hosts(json.dumps({"node1": {"mac_address": MAC}}))[0].power == {"driver": "wol"}
    assert parse_power({"driver": "wol"}) == {"driver": "wol"}


def test_bmc_entries_are_kept_as_given():
    assert parse_power(REDFISH) == REDFISH
    assert parse_power(IPMI) == IPMI
    full = dict(REDFISH, system="System.Embedded.1", validate_certs=False, boot_mode="uefi", port=8443)
    assert parse_power(full) == full


def test_a_password_in_clear_is_refused_with_what_to_do_instead():
    message = problems(dict(REDFISH, password="hunter2"))
    assert message.startswith("site/hosts.json: host 'node1', field 'power.password': a password is never written")
    assert "power.password_env" in message and "power.password_var" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("power, expected", [
    ({"address": "x"}, "field 'power': \"driver\" is missing; say how the machine is powered on: wol, redfish, ipmi"),
    (dict(REDFISH, driver="amt"), "field 'power.driver': 'amt' is not supported; use one of 'wol', 'redfish', 'ipmi'"),
    (dict(REDFISH, adress="x"), "field 'power.adress': unknown field; did you mean 'address'?"),
    (dict(REDFISH, password_env="1BAD"), "field 'power.password_env': '1BAD' is not a variable name"),
    (dict(REDFISH, port=70000), "field 'power.port': 70000 is not a port number (1-65535)"),
    (dict(REDFISH, user=""), "field 'power.user': must not be empty"),
    (dict(REDFISH, validate_certs="no"), "field 'power.validate_certs': expected true or false"),
])
def test_schema_errors_name_the_field(power, expected):
    assert expected in problems(power)


@pytest.mark.parametrize("power, expected", [
    ({"driver": "wol", "address": "10.0.0.5"},
     "field 'power.address': only BMC drivers (redfish, ipmi) take it; driver 'wol' needs the MAC address only"),
    ({"driver": "ipmi", "user": "u", "password_env": "P"}, "field 'power.address': driver 'ipmi' needs the BMC's address"),
    ({"driver": "redfish", "address": "a", "password_env": "P"}, "field 'power.user': driver 'redfish' needs the BMC's user"),
    ({"driver": "redfish", "address": "a", "user": "u"}, "field 'power': driver 'redfish' needs exactly one of password_env"),
    (dict(REDFISH, password_var="V"), "; both are given"),
    (dict(IPMI, system="1"), "field 'power.system': a Redfish field; driver 'ipmi' does not take it"),
])
def test_semantic_errors_name_the_field(power, expected):
    assert expected in problems(power)


def test_every_problem_of_every_host_is_reported_at_once():
    text = json.dumps({"a": {"mac_address": MAC, "power": {"driver": "redfish"}},
                       "b": {"mac_address": "bc:24:11:d0:28:35", "power": {"driver": "wol", "user": "x"}}})
    with pytest.raises(HostsFileError) as caught:
        parse_hosts(text, "h.json")
    lines = str(caught.value).splitlines()
    assert any(line.startswith("h.json: host 'a', field 'power.address'") for line in lines)
    assert any(line.startswith("h.json: host 'a', field 'power': driver 'redfish' needs exactly one") for line in lines)
    assert any(line.startswith("h.json: host 'b', field 'power.user': only BMC drivers") for line in lines)
