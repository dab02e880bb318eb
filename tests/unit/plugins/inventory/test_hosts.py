# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json
import os
import textwrap

import pytest

from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

HOSTS = {
    "web1": {"mac_address": "BC-24-11-D0-28-34", "ip": "10.0.0.5", "groups": ["rack1"],
             "vars": {"ansible_user": "root"}, "description": "by the door"},
    "arm1": {"mac_address": "bc24.11d0.2835", "arch": "aarch64-linux"},
    "db1": {"mac_address": "bc24.11d0.2836", "system": "/nix/store/" + "0" * 32 + "-nixos-system-db1"},
}


@pytest.fixture
def site(tmp_path):
    """A site directory with hosts.json and an inventory config, as a user would lay it out."""
    (tmp_path / "hosts.json").write_text(json.dumps(HOSTS))
    return tmp_path


def write_config(directory, body, name="hosts.nixie.yml"):
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def parse(config_path, cache=False):
    plugin = inventory_loader.get("nixie.metal.hosts")
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), config_path, cache=cache)
    if cache:
        plugin.update_cache_if_changed()  # as InventoryManager does after a cached parse
    return plugin, inventory


def test_verify_file_wants_nixie_suffix(site):
    plugin = inventory_loader.get("nixie.metal.hosts")
    for name in ("hosts.nixie.yml", "x.nixie.yaml"):
        assert plugin.verify_file(write_config(site, "plugin: nixie.metal.hosts\n", name))
    for name in ("hosts.yml", "nixie.yml", "hosts.nixie.json"):
        assert not plugin.verify_file(write_config(site, "plugin: nixie.metal.hosts\n", name))


def test_hosts_groups_and_variables(site):
    dummy, inventory = parse(write_config(site, "plugin: nixie.metal.hosts\n"))
    assert sorted(h.name for h in inventory.groups["nixie"].get_hosts()) == ["arm1", "db1", "web1"]
    assert [h.name for h in inventory.groups["rack1"].get_hosts()] == ["web1"]
    web1 = inventory.get_host("web1").get_vars()
    assert web1["nixie_mac"] == "bc:24:11:d0:28:34"
    assert web1["nixie_flake_attr"] == "web1"
    assert web1["nixie_arch"] == "x86_64-linux"
    assert web1["nixie_description"] == "by the door"
    assert web1["ansible_host"] == web1["nixie_ip"] == "10.0.0.5"
    assert web1["ansible_user"] == "root"
    arm1 = inventory.get_host("arm1").get_vars()
    assert arm1["nixie_arch"] == "aarch64-linux"
    assert "ansible_host" not in arm1 and "nixie_ip" not in arm1 and "nixie_description" not in arm1 and "nixie_system" not in arm1
    assert inventory.get_host("db1").get_vars()["nixie_system"] == HOSTS["db1"]["system"]


def test_path_is_relative_to_the_config_file_not_the_working_directory(site, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (site / "sub").mkdir()
    (site / "sub" / "machines.json").write_text(json.dumps({"db1": {"mac_address": "bc:24:11:d0:28:40"}}))
    config = write_config(site, "plugin: nixie.metal.hosts\npath: sub/machines.json\n")
    monkeypatch.chdir(elsewhere)
    dummy, inventory = parse(config)
    assert list(inventory.hosts) == ["db1"]


def test_group_name_is_configurable(site):
    dummy, inventory = parse(write_config(site, "plugin: nixie.metal.hosts\ngroup: metal\n"))
    assert "nixie" not in inventory.groups
    assert len(inventory.groups["metal"].get_hosts()) == 3


def test_constructed_options(site):
    config = write_config(site, """\
        plugin: nixie.metal.hosts
        compose:
          boot_mac: nixie_mac | upper
        groups:
          has_address: ansible_host is defined
        keyed_groups:
          - key: nixie_arch
            prefix: arch
        """)
    dummy, inventory = parse(config)
    assert inventory.get_host("web1").get_vars()["boot_mac"] == "BC:24:11:D0:28:34"
    assert [h.name for h in inventory.groups["has_address"].get_hosts()] == ["web1"]
    assert [h.name for h in inventory.groups["arch_aarch64_linux"].get_hosts()] == ["arm1"]
    assert sorted(h.name for h in inventory.groups["arch_x86_64_linux"].get_hosts()) == ["db1", "web1"]


def test_strict_compose_error_is_raised(site):
    config = write_config(site, """\
        plugin: nixie.metal.hosts
        strict: true
        compose:
          broken: no_such_variable.attribute
        """)
    with pytest.raises(Exception):
        parse(config)


def test_bad_hosts_file_is_a_parser_error_naming_file_host_and_field(site):
    (site / "hosts.json").write_text(json.dumps({"web1": {"mac_adress": "bc:24:11:d0:28:34"}}))
    with pytest.raises(AnsibleParserError) as caught:
        parse(write_config(site, "plugin: nixie.metal.hosts\n"))
    message = str(caught.value)
    assert "%s: host 'web1', field 'mac_adress': unknown field; did you mean 'mac_address'?" % (site / "hosts.json") in message


def test_missing_hosts_file(site):
    with pytest.raises(AnsibleParserError, match="nope.json: no such file"):
        parse(write_config(site, "plugin: nixie.metal.hosts\npath: nope.json\n"))


def test_cache_serves_hosts_until_the_file_changes(site):
    cache_dir = site / "cache"
    config = write_config(site, """\
        plugin: nixie.metal.hosts
        cache: true
        cache_plugin: ansible.builtin.jsonfile
        cache_connection: %s
        """ % cache_dir)
    plugin, inventory = parse(config, cache=True)
    assert sorted(inventory.hosts) == ["arm1", "db1", "web1"]
    assert len(os.listdir(cache_dir)) == 1

    # A cache that is current is read, not the file: prove it by planting a host only the cache knows.
    key = plugin.get_cache_key(str(site / "hosts.json"))
    entry = plugin._cache[key]
    plugin._cache[key] = dict(entry, hosts=entry["hosts"] + [dict(entry["hosts"][0], name="from_cache", mac="bc:24:11:d0:28:99")])
    plugin.update_cache_if_changed()
    dummy, inventory = parse(config, cache=True)
    assert "from_cache" in inventory.hosts

    # Editing hosts.json makes the cached entry stale.
    (site / "hosts.json").write_text(json.dumps({"solo": {"mac_address": "bc:24:11:d0:28:50"}}))
    dummy, inventory = parse(config, cache=True)
    assert sorted(inventory.hosts) == ["solo"]
