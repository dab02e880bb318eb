# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nixie_power_* host variables of the inventory plugin, and the password template they carry."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, is_trusted_as_template

from ansible_collections.nixie.metal.plugins.inventory.hosts import power_variables

REDFISH = {"driver": "redfish", "address": "https://10.0.0.5", "user": "admin", "password_env": "NODE1_BMC_PASSWORD",
           "system": "1", "validate_certs": False}
IPMI = {"driver": "ipmi", "address": "10.0.0.6", "port": 6230, "user": "ADMIN", "password_var": "vault_node2_bmc"}


def render(template, variables=None):
    return Templar(loader=DataLoader(), variables=variables or {}).template(template)


def test_wake_on_lan_hosts_get_only_the_driver():
    assert power_variables("node0", {"driver": "wol"}) == {"nixie_power_driver": "wol"}


def test_bmc_fields_become_variables_and_the_password_a_trusted_template():
    variables = power_variables("node1", REDFISH)
    assert {k: v for k, v in variables.items() if k != "nixie_power_password"} == {
        "nixie_power_driver": "redfish", "nixie_power_address": "https://10.0.0.5", "nixie_power_user": "admin",
        "nixie_power_system": "1", "nixie_power_validate_certs": False}
    template = variables["nixie_power_password"]
    assert "NODE1_BMC_PASSWORD" in template and is_trusted_as_template(template)
    assert power_variables("node2", IPMI)["nixie_power_port"] == 6230


def test_password_from_the_environment(monkeypatch):
    template = power_variables("node1", REDFISH)["nixie_power_password"]
    monkeypatch.setenv("NODE1_BMC_PASSWORD", "s3cret")
    assert render(template) == "s3cret"
    monkeypatch.delenv("NODE1_BMC_PASSWORD")
    with pytest.raises(AnsibleError, match=r"the environment variable NODE1_BMC_PASSWORD, which hosts.json names for the "
                                           r"BMC password of node1 \(power.password_env\), is not set or empty"):
        render(template)


def test_password_from_an_ansible_variable():
    template = power_variables("node2", IPMI)["nixie_power_password"]
    assert render(template, {"vault_node2_bmc": "from-the-vault"}) == "from-the-vault"
    with pytest.raises(AnsibleError, match=r"the variable vault_node2_bmc, which hosts.json names for the BMC password "
                                           r"of node2 \(power.password_var\), is not defined"):
        render(template)
