# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks ansible-inventory's view of the example against the example hosts.json itself."""

from __future__ import annotations

import json
import re
import sys


def unwrap(value):
    """ansible-inventory marks untrusted strings as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict) and set(value) == {"__ansible_unsafe"}:
        return value["__ansible_unsafe"]
    return value


def main(list_path, graph_path, hosts_path):
    with open(list_path, encoding="utf-8") as handle:
        inventory = json.load(handle)
    with open(hosts_path, encoding="utf-8") as handle:
        expected = json.load(handle)
    with open(graph_path, encoding="utf-8") as handle:
        graph = handle.read()

    hostvars = inventory["_meta"]["hostvars"]
    assert sorted(inventory["nixie"]["hosts"]) == sorted(expected), inventory["nixie"]
    for name, entry in expected.items():
        variables = {key: unwrap(value) for key, value in hostvars[name].items()}
        assert variables["nixie_flake_attr"] == name
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", variables["nixie_mac"]), variables
        assert variables["nixie_mac"].replace(":", "") == re.sub(r"[^0-9a-f]", "", entry["mac_address"].lower())
        assert variables["nixie_arch"] == entry.get("arch", "x86_64-linux")
        assert variables.get("ansible_host") == entry.get("ip")
        for group in entry.get("groups", []):
            assert name in inventory[group]["hosts"], (group, name)
        arch_group = "arch_" + variables["nixie_arch"].replace("-", "_")
        assert name in inventory[arch_group]["hosts"], (arch_group, name)
    # keyed_groups from the example's config show in the graph
    assert "@arch_x86_64_linux:" in graph and "@arch_aarch64_linux:" in graph, graph
    print("ok example inventory: %d hosts" % len(expected))


if __name__ == "__main__":
    main(*sys.argv[1:])
